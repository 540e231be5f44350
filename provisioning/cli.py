"""``eticket provision``: first-boot settings.

    eticket provision apply --from /boot/firmware/eticket.toml   apply (every boot; idempotent), scrub secrets
    eticket provision watch                                      apply from USB sticks as they are plugged in
    eticket provision seed --root DIR                            image build: the defaults of a fresh device

Exit status: 0 applied (or nothing to apply), 1 a bad file (the message names the file and the key; the
device keeps its previous settings and stays usable: every key is checked and every file computed before
the first one is written) or a state directory that cannot be written.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._apply import Layout

# The actions import what they use: every `eticket` command builds this parser (memory on a 512 MB board).

log = logging.getLogger("eticket.provision")

EXIT_OK = 0
EXIT_BAD_FILE = 1
STATUS_FILE = Path("/run/eticket-provision/status.json")
RESTARTS = {
    "hostname": [],
    "wifi": ["wpa_supplicant@wlan0.service"],
    "ssh_authorized_keys": [],
    "appliance": ["eticket.service", "eticket-kiosk.service"],
    "display_rotation": ["eticket-kiosk.service"],
    "display_diagonal_inches": ["eticket-kiosk.service"],
    "update_keyring": [],  # RAUC reads its keyring at each bundle check
    "keyring": [],
}
"""Units to try-restart after a live change (USB stick), by changed setting."""


def _status(path: Path | None, **fields: Any) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(fields, sort_keys=True) + "\n")
    except OSError as exc:
        log.warning("cannot write the status file %s: %s", path, exc.strerror)


def apply_file(source: Path, root: Path, status: Path | None, live: bool, restart: bool) -> int:
    """Apply ``source`` to the device under ``root``; with ``live``, also set the kernel's host name from the
    stored one (it is read before /var is mounted); with ``restart``, try-restart the units whose settings
    changed. Returns the exit status."""
    from ._apply import Layout, apply
    from ._errors import ProvisioningError
    from ._secrets import scrub_secrets
    from ._settings import read_settings

    if not source.exists():
        log.info("no %s: keeping the current settings", source)
        changed: list[str] = []
    else:
        try:
            settings = read_settings(source)
            changed = apply(settings, root)
        except ProvisioningError as exc:
            message = str(exc)
            if not message.startswith(str(source)):
                message = f"{source}: {message}"
            log.error("settings NOT applied: %s. The device keeps its previous settings.", message)
            _status(status, ok=False, source=str(source), message=message)
            return EXIT_BAD_FILE
        except OSError as exc:  # the data partition is full or read-only: nothing renamed if it failed early
            where = f"{exc.filename}: " if exc.filename else ""
            message = f"{source}: cannot write the settings under {root}: {where}{exc.strerror or exc}"
            log.error("settings NOT applied: %s.", message)
            _status(status, ok=False, source=str(source), message=message)
            return EXIT_BAD_FILE
        log.info("applied %s: %s", source, ", ".join(changed) or "nothing changed")
        try:
            if scrub_secrets(source, settings):
                log.info("removed the Wi-Fi passphrase from %s", source)
        except OSError as exc:
            log.error("could not remove the secrets from %s: %s", source, exc.strerror)
    if live:
        _sync_hostname(Layout(root))
    if restart:
        units = sorted({unit for key in changed for unit in RESTARTS.get(key, [])})
        if units:
            subprocess.run(["systemctl", "try-restart", *units], check=False)
    _status(status, ok=True, source=str(source), message="", changed=changed)
    return EXIT_OK


def _sync_hostname(layout: Layout) -> None:
    try:
        wanted = layout.hostname.read_text().strip()
    except FileNotFoundError:
        return
    if wanted and socket.gethostname() != wanted:
        socket.sethostname(wanted)
        log.info("host name set to %s", wanted)


def _logging() -> None:
    if not logging.getLogger().handlers:  # the journal adds the time and unit
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)


def _apply(args: argparse.Namespace) -> int:
    _logging()
    live = args.root == Path("/")
    return apply_file(args.source, args.root, args.status, live=live, restart=args.restart)


def _watch(args: argparse.Namespace) -> int:
    from ._usb import SETTINGS_FILE, stick_partition, udev_events, with_mounted

    _logging()
    log.info("watching for USB sticks holding %s", SETTINGS_FILE)
    for event in udev_events():
        devnode = stick_partition(event)
        if devnode is None:
            continue

        def use(mountpoint: Path, devnode: str = devnode) -> None:
            source = mountpoint / SETTINGS_FILE
            if source.is_file():
                apply_file(source, args.root, args.status, live=True, restart=True)
            else:
                log.info("%s has no %s", devnode, SETTINGS_FILE)

        try:
            with_mounted(devnode, use)
        except subprocess.CalledProcessError as exc:
            log.error("cannot mount %s: %s", devnode, (exc.stderr or "").strip())
    return EXIT_OK


def _seed(args: argparse.Namespace) -> int:
    from ._apply import seed

    written = seed(args.root)
    print(f"seeded {args.root}: {', '.join(written) or 'nothing'}")
    return EXIT_OK


def add_provision_parser(sub: Any) -> None:
    """Add ``provision apply|watch|seed`` to the ``eticket`` subcommands."""
    parser = sub.add_parser("provision", help="apply eticket.toml device settings (first boot, USB sticks)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    apply_p = actions.add_parser("apply", help="apply an eticket.toml (idempotent) and remove its secrets")
    apply_p.add_argument("--from", dest="source", type=Path, default=Path("/boot/firmware/eticket.toml"))
    apply_p.add_argument("--root", type=Path, default=Path("/"), help="the device root (tests: a directory)")
    apply_p.add_argument("--status", type=Path, default=STATUS_FILE, help="JSON status for screens and tools")
    apply_p.add_argument("--restart", action="store_true", help="try-restart the units whose settings changed")
    apply_p.set_defaults(func=_apply)
    watch_p = actions.add_parser("watch", help="apply eticket.toml from USB sticks as they are plugged in")
    watch_p.add_argument("--root", type=Path, default=Path("/"))
    watch_p.add_argument("--status", type=Path, default=STATUS_FILE)
    watch_p.set_defaults(func=_watch)
    seed_p = actions.add_parser("seed", help="write a fresh image's default settings under --root")
    seed_p.add_argument("--root", type=Path, required=True)
    seed_p.set_defaults(func=_seed)


def main(argv: list[str] | None = None) -> int:
    """``python -m provisioning ACTION …`` (the image build runs ``seed`` this way, before ``eticket``
    exists)."""
    parser = argparse.ArgumentParser(prog="eticket")
    add_provision_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["provision", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code

