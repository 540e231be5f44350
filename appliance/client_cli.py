"""``eticket discover | pair | send``: the POS-side commands, on the client library (:mod:`appliance.client`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._paths import split_host_port

if TYPE_CHECKING:
    from .client import PairedDevice

# The client library (httpx, zeroconf) is imported inside the handlers: building the parser stays cheap, so
# `eticket kiosk` does not pay for it.

DEFAULT_DISCOVERY_SECONDS = 3.0


class CommandError(Exception):
    """A one-line error for stderr."""


def _interfaces(spec: str | None) -> list[str] | None:
    from .discovery import resolve_interfaces

    spec = spec or os.environ.get("ETICKET_MDNS_INTERFACES") or "auto"
    try:
        return resolve_interfaces(spec, loopback_only=False)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def _address(text: str) -> str:
    try:
        host, port = split_host_port(text)
    except ValueError as exc:
        raise CommandError(f"--address: {exc}") from exc
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _find(device_id: str, args: argparse.Namespace, pin: str | None = None) -> str:
    """Address of ``device_id`` by mDNS, or CommandError. With ``pin``, announcements whose ``fp`` differs are
    ignored (mDNS is unauthenticated: a spoofed answer must not redirect a paired POS)."""
    from .client import discover

    devices = discover(args.timeout, _interfaces(args.mdns_interfaces), device_id=device_id)
    for device in devices:
        if device.id == device_id and (pin is None or device.fingerprint == pin):
            return _reachable(device.api_addresses)
    raise CommandError(f"device {device_id} not found on the network within {args.timeout:g} s")


def _reachable(addresses: list[str], timeout: float = 2.0) -> str:
    """The first ``host:port`` that accepts a TCP connection (a device on two networks announces both; only
    one may be reachable from this POS); the first one when none does (the error then names it)."""
    import socket

    from ._paths import split_host_port

    for address in addresses:
        host, port = split_host_port(address)
        try:
            socket.create_connection((host.strip("[]"), port), timeout=timeout).close()
            return address
        except OSError:
            continue
    return addresses[0]


def _discover(args: argparse.Namespace) -> None:
    from .client import discover

    devices = discover(args.timeout, _interfaces(args.mdns_interfaces))
    if args.json:
        print(json.dumps([d.as_json() for d in devices], indent=2))
        return
    if not devices:
        raise CommandError(f"no eTicket device found within {args.timeout:g} s")
    from .client import Credentials

    mine = Credentials().load()
    rows = [("ID", "NAME", "API", "HAS A POS", "PAIRED WITH THIS POS", "CERTIFICATE SHA-256")]
    rows += [(d.id, d.name, d.api_address + ("" if d.tls else " (no TLS)"), "yes" if d.paired else "no",
              "yes" if d.id in mine else "no", d.fingerprint or "-") for d in devices]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _pair(args: argparse.Namespace) -> None:
    from .client import Credentials, pair_with_code, pair_with_uri

    if args.uri is not None:
        try:
            device = pair_with_uri(args.uri, args.pos_name)
        except ValueError as exc:
            raise CommandError(f"--uri: {exc}") from exc
    else:
        if not (args.device or args.address):
            raise CommandError("--code needs --device ID or --address HOST:PORT")
        address = _address(args.address) if args.address else _find(args.device, args)
        device = pair_with_code(address, args.code, args.pos_name, device_id=args.device)
    Credentials().save(device)
    print(f"paired with {device.device_id} at {device.address} as {device.pos_id}")


def _pick(args: argparse.Namespace) -> PairedDevice:
    from .client import Credentials

    devices = Credentials().load()
    if args.device:
        if args.device not in devices:
            raise CommandError(f"not paired with device {args.device}; run: eticket pair --uri URI")
        return devices[args.device]
    if args.address:
        address = _address(args.address)
        for device in devices.values():
            if device.address == address:
                return device
        raise CommandError(f"not paired with a device at {address}; run: eticket pair --uri URI")
    if len(devices) == 1:
        return next(iter(devices.values()))
    if not devices:
        raise CommandError("not paired with any device; run: eticket pair --uri URI (the QR on the device screen)")
    raise CommandError(f"paired with {len(devices)} devices; choose one with --device ({', '.join(devices)})")


def _send(args: argparse.Namespace) -> None:
    from .client import ClientError, Credentials, DeviceClient

    path = Path(args.file)
    try:
        pdf = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
    device = _pick(args)

    def attempt(address: str) -> Any:
        with DeviceClient(address, device.token, device.cert_pem or None) as client:
            return client.send(pdf, total=args.total, currency=args.currency, ref=args.ref,
                               idempotency_key=args.idempotency_key)

    try:
        sent = attempt(device.address)
    except ClientError as exc:
        if getattr(exc, "status", None) is not None or args.address:
            raise
        # The device may have a new address (DHCP): find it again by its stable id and certificate pin, and
        # keep the new address only once the pinned handshake has worked there.
        from .identity import fingerprint_pem

        pin = fingerprint_pem(device.cert_pem) if device.cert_pem else None
        address = _find(device.device_id, args, pin)
        sent = attempt(address)
        device.address = address
        Credentials().save(device)
    if args.json:
        print(json.dumps({"id": sent.id, "url": sent.url, "expires_at": sent.expires_at}))
    else:
        print(sent.url)


def _mdns_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=DEFAULT_DISCOVERY_SECONDS,
                        help=f"seconds to browse (default {DEFAULT_DISCOVERY_SECONDS:g})")
    parser.add_argument("--mdns-interfaces", metavar="LIST",
                        help="addresses or interface names to browse on (default $ETICKET_MDNS_INTERFACES or all)")


def add_client_parsers(sub: Any) -> None:
    """Add ``discover``, ``pair`` and ``send`` to the ``eticket`` subparsers."""
    p = sub.add_parser("discover", help="list eTicket devices on the LAN (mDNS)")
    _mdns_option(p)
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=_run(_discover))

    p = sub.add_parser("pair", help="pair this POS with a device")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--uri", help="text of the pairing QR shown on the device (eticket://pair?...)")
    how.add_argument("--code", help="the code shown on the device screen, e.g. ABCD-EFGH")
    p.add_argument("--device", metavar="ID", help="device id (found by mDNS)")
    p.add_argument("--address", metavar="HOST:PORT", help="device address")
    p.add_argument("--pos-name", default="POS", help="how the device will list this POS")
    _mdns_option(p)
    p.set_defaults(func=_run(_pair))

    p = sub.add_parser("send", help="send a receipt PDF; prints the customer's download URL")
    p.add_argument("file", metavar="FILE.pdf")
    p.add_argument("--total", help="decimal total, e.g. 12.50")
    p.add_argument("--currency", help="ISO 4217 code, e.g. EUR")
    p.add_argument("--ref", help="the POS's own reference")
    p.add_argument("--idempotency-key", help="reuse to make a retry safe (default: a new UUID)")
    p.add_argument("--device", metavar="ID", help="the paired device to use (default: the only one)")
    p.add_argument("--address", metavar="HOST:PORT", help="the paired device at this address")
    p.add_argument("--json", action="store_true", help="print {id, url, expires_at}")
    _mdns_option(p)
    p.set_defaults(func=_run(_send))


def _run(handler: Any) -> Any:
    def wrapped(args: argparse.Namespace) -> int:
        from .client import ClientError

        try:
            handler(args)
        except (CommandError, ClientError) as exc:
            print(f"eticket: error: {exc}", file=sys.stderr)
            return 1
        return 0

    return wrapped
