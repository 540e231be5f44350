"""``eticket``: one command, a subcommand per role.

    eticket serve      the appliance (device side)
    eticket kiosk      the pygame screen client (device side)
    eticket discover   find devices on the LAN (POS side)
    eticket pair       pair this POS with a device (POS side)
    eticket send       send a receipt PDF (POS side)
    eticket clear      take the receipt off the screen (POS side)
    eticket pairings   list, revoke or open POS pairings (device side, local admin socket)
    eticket status     health, pairing state and URLs (device side)
    eticket relay      run a receipt relay for phones on the internet (server side)
    eticket provision  first-boot settings from eticket.toml (device side)
    eticket fleet      roll signed system updates out to devices over SSH (operator side)
    eticket update     A/B system updates with RAUC: status, install, rollback, commit (device side, root)

Errors are one line on stderr (``eticket: error: …``) and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eticket_core.i18n import LANGUAGES as SCREEN_LANGUAGES

from . import __version__

EXIT_USAGE = 2
EXIT_FAILURE = 1


def _serve(args: argparse.Namespace) -> int:
    from .config import ConfigError, load_settings
    from .server import serve

    try:
        settings = load_settings(
            args.config, data_dir=args.data_dir, listen=args.listen, public_url=args.public_url,
            mdns_interfaces=args.mdns_interfaces, name=args.name, kiosk=args.kiosk or None,
            api_listen=args.api_listen, tls=args.tls, logo=args.logo, clock=args.clock or None,
            language=args.language, relay_url=args.relay_url,
            retention_seconds=args.retention_seconds, max_body_bytes=args.max_body_bytes,
            display_timeout_seconds=args.display_timeout, log_level=args.log_level,
            printer_listen=args.printer_listen, printer_paper_mm=args.printer_paper_mm,
        )
    except ConfigError as exc:
        print(f"eticket: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    serve(settings)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    from fleet.cli import add_fleet_parser
    from kiosk.cli import add_kiosk_parser
    from provisioning.cli import add_provision_parser
    from relay.cli import add_relay_parser

    from .admin_cli import add_admin_parsers
    from .client_cli import add_client_parsers
    from .update.cli import add_update_parser

    parser = argparse.ArgumentParser(prog="eticket", description="Paperless till receipts shown as a QR code.")
    parser.add_argument("--version", action="version", version=f"eticket {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the appliance (HTTP API, customer downloads, mDNS)")
    serve.add_argument("--config", type=Path, help="TOML settings file (default: $ETICKET_CONFIG, "
                       "/etc/eticket/eticket.toml, ~/.config/eticket/eticket.toml)")
    serve.add_argument("--data-dir", type=Path, help="state directory (default ~/.local/share/eticket)")
    serve.add_argument("--listen", metavar="HOST:PORT",
                       help="plain-HTTP address for customer downloads and screens (default 127.0.0.1:8080)")
    serve.add_argument("--api-listen", metavar="HOST:PORT",
                       help="address of the HTTPS POS API (default: the --listen host, port 8443)")
    serve.add_argument("--tls", action=argparse.BooleanOptionalAction, default=None,
                       help="serve the POS API over HTTPS with the pinned device certificate (default on)")
    serve.add_argument("--public-url", metavar="URL", help="base of customer URLs (default http://<LAN IPv4>:PORT)")
    serve.add_argument("--mdns-interfaces", metavar="LIST",
                       help="addresses or interface names for mDNS, 'none' to turn it off (default: auto)")
    serve.add_argument("--name", help="shop/device name shown on screen and in mDNS (default eTicket)")
    serve.add_argument("--logo", type=Path, help="PNG or JPEG shown on the idle screen")
    serve.add_argument("--clock", action="store_true", help="show the time on the idle screen")
    serve.add_argument("--language", choices=SCREEN_LANGUAGES, help="screen language (default fr)")
    serve.add_argument("--relay-url", metavar="URL",
                       help="publish receipts sealed to this eTicket relay; QR codes point there (default: none)")
    serve.add_argument("--kiosk", action="store_true", help="also run the kiosk as a supervised child process")
    serve.add_argument("--retention-seconds", type=float,
                       help="how long receipts stay downloadable (default 2592000 = 30 days)")
    serve.add_argument("--max-body-bytes", type=int, help="largest receipt accepted (default 10 MiB)")
    serve.add_argument("--display-timeout", type=float, help="seconds a ticket stays on screen (default 120)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="default info")
    serve.add_argument("--printer-listen", metavar="HOST:PORT",
                       help="accept ESC/POS print jobs from tills here, as a network printer (e.g. 0.0.0.0:9100)")
    serve.add_argument("--printer-paper-mm", type=int, choices=(80, 58),
                       help="paper width of printed receipts (default: guessed per receipt)")
    serve.set_defaults(func=_serve)

    add_kiosk_parser(sub)
    add_client_parsers(sub)
    add_admin_parsers(sub)
    add_relay_parser(sub)
    add_provision_parser(sub)
    add_fleet_parser(sub)
    add_update_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``eticket`` console script."""
    from relay.cli import device_ids_as_options

    parser = build_parser()
    args = parser.parse_args(device_ids_as_options(sys.argv[1:] if argv is None else list(argv)))
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
