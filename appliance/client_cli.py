"""``eticket discover | pair | send | clear``: the POS-side commands, on the client library
(:mod:`appliance.client`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from eticket_core.i18n import LANGUAGES as SCREEN_LANGUAGES

from ._paths import split_host_port

if TYPE_CHECKING:
    from .client import DeviceClient, DiscoveredDevice, PairedDevice

T = TypeVar("T")

# The client library (httpx, zeroconf) is imported inside the handlers: building the parser stays cheap, so
# `eticket kiosk` does not pay for it.

DEFAULT_DISCOVERY_SECONDS = 3.0
PAIRED_CHECK_SECONDS = 2.0
"""How long ``discover`` waits for a device to say whether this POS's token still works (devices are asked
side by side, PAIRED_CHECK_WORKERS at a time)."""
PAIRED_CHECK_WORKERS = 8
"""The languages a ticket's ``lang`` may ask for (docs/protocol.md §3)."""


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


def _this_pos(device: DiscoveredDevice, mine: dict[str, PairedDevice]) -> str:
    """Whether this POS is paired with ``device``, asked of the device itself (``GET /api/v1/pairing`` with the
    stored token, PAIRED_CHECK_SECONDS at most): ``"yes"``, ``"revoked"`` (the device refused the token: it
    revoked this till), ``"certificate-changed"`` (it presented another certificate than the pinned one: its
    identity was rebuilt, or someone is in between), ``"unknown"`` (unreachable, or it answered something
    else) or ``"no"`` (no token for it here)."""
    from .client import ClientError, DeviceClient, PinMismatchError, RefusedError

    paired = mine.get(device.id)
    if paired is None:
        return "no"
    address = _reachable(device.api_addresses, PAIRED_CHECK_SECONDS)
    try:
        with DeviceClient(address, paired.token, paired.cert_pem or None, timeout=PAIRED_CHECK_SECONDS) as client:
            client.pairing()
    except PinMismatchError:  # another certificate under this id: a rebuilt identity (or an impostor)
        return "certificate-changed"
    except RefusedError as exc:
        return "revoked" if exc.status == HTTPStatus.UNAUTHORIZED else "unknown"
    except ClientError:  # unreachable from here (another network, a firewall) or too slow to answer
        return "unknown"
    return "yes"


THIS_POS_TEXT = {"yes": "yes", "no": "no", "revoked": "revoked (pair again)",
                 "certificate-changed": "other certificate (pair again)", "unknown": "unknown (unreachable)"}


def _discover(args: argparse.Namespace) -> None:
    from .client import Credentials, discover

    mine = Credentials().load()  # first: a damaged file is said at once, not after browsing
    devices = discover(args.timeout, _interfaces(args.mdns_interfaces))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(len(devices), PAIRED_CHECK_WORKERS))) as pool:
        this_pos = dict(zip((d.id for d in devices), pool.map(lambda d: _this_pos(d, mine), devices), strict=True))
    if args.json:
        print(json.dumps([{**d.as_json(), "this_pos": this_pos[d.id]} for d in devices], indent=2))
        return
    if not devices:
        raise CommandError(f"no eTicket device found within {args.timeout:g} s")
    rows = [("ID", "NAME", "API", "HAS A POS", "PAIRED WITH THIS POS", "CERTIFICATE SHA-256")]
    rows += [(d.id, d.name, d.api_address + ("" if d.tls else " (no TLS)"), "yes" if d.paired else "no",
              THIS_POS_TEXT[this_pos[d.id]], d.fingerprint or "-") for d in devices]
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
        if args.device in devices:
            return devices[args.device]
        named = [d for d in devices.values() if d.name.casefold() == args.device.casefold()]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise CommandError(f"{len(named)} paired devices are called {args.device!r}; choose one by id: "
                               + ", ".join(d.device_id for d in named))
        raise CommandError(f"not paired with a device {args.device!r} (paired: {_listed(devices)}); "
                           "run: eticket pair --uri URI")
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
    raise CommandError(f"paired with {len(devices)} devices; choose one with --device NAME or ID: {_listed(devices)}")


def _listed(devices: dict[str, PairedDevice]) -> str:
    """``'eTicket 64A1' (et-64a1…), 'eTicket 08D9' (et-08d9…)``: the names the screens show, with their ids."""
    return ", ".join(f"{d.name!r} ({d.device_id})" if d.name != d.device_id else d.device_id
                     for d in devices.values()) or "none"


def _on_device(args: argparse.Namespace, call: Callable[[DeviceClient], T]) -> T:
    """``call`` with a client for the paired device :func:`_pick` chooses. When the device cannot be reached
    at its address (DHCP may have given it a new one) and ``--address`` was not given, find it again by its
    stable id and certificate pin, and keep the new address only once the pinned handshake has worked there."""
    from .client import ClientError, Credentials, DeviceClient

    device = _pick(args)

    def attempt(address: str) -> T:
        with DeviceClient(address, device.token, device.cert_pem or None) as client:
            return call(client)

    try:
        return attempt(device.address)
    except ClientError as exc:
        if getattr(exc, "status", None) is not None or args.address:
            raise
        from .identity import fingerprint_pem

        pin = fingerprint_pem(device.cert_pem) if device.cert_pem else None
        address = _find(device.device_id, args, pin)
        result = attempt(address)
        device.address = address
        Credentials().save(device)
        return result


def _send(args: argparse.Namespace) -> None:
    path = Path(args.file)
    try:
        pdf = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
    sent = _on_device(args, lambda client: client.send(
        pdf, total=args.total, currency=args.currency, ref=args.ref, idempotency_key=args.idempotency_key,
        lang=args.lang))
    if args.json:
        print(json.dumps({"id": sent.id, "url": sent.url, "expires_at": sent.expires_at}))
    else:
        print(sent.url)


def _clear(args: argparse.Namespace) -> None:
    _on_device(args, lambda client: client.clear_display())
    print("the screen is back to idle")


def _mdns_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=DEFAULT_DISCOVERY_SECONDS,
                        help=f"seconds to browse (default {DEFAULT_DISCOVERY_SECONDS:g})")
    parser.add_argument("--mdns-interfaces", metavar="LIST",
                        help="addresses or interface names to browse on (default $ETICKET_MDNS_INTERFACES or all)")


def add_client_parsers(sub: Any) -> None:
    """Add ``discover``, ``pair``, ``send`` and ``clear`` to the ``eticket`` subparsers."""
    p = sub.add_parser("discover", help="list eTicket devices on the LAN (mDNS)",
                       description="List eTicket devices on the LAN (mDNS). 'PAIRED WITH THIS POS' is asked of "
                       "each device this POS holds a token for: yes, revoked (pair again), other certificate "
                       "(pair again) or unknown (the device did not answer within 2 s).")
    _mdns_option(p)
    p.add_argument("--json", action="store_true",
                   help="JSON output ('this_pos': yes, no, revoked, certificate-changed or unknown)")
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

    p = sub.add_parser("send", help="send a receipt PDF; prints the customer's download URL",
                       description="Send a receipt PDF to the paired device: its screen shows the QR of the "
                       "customer's download URL, which this prints. Try: eticket send samples/receipt.pdf "
                       "--total 12.50 --currency EUR")
    p.add_argument("file", metavar="FILE.pdf")
    p.add_argument("--total", help="decimal total, e.g. 12.50")
    p.add_argument("--currency", help="ISO 4217 code, e.g. EUR")
    p.add_argument("--ref", help="the POS's own reference")
    p.add_argument("--idempotency-key", help="reuse to make a retry safe (default: a new UUID)")
    p.add_argument("--device", metavar="NAME|ID", help="the paired device to use, by the name its screen shows "
                   "or its id (default: the only one)")
    p.add_argument("--address", metavar="HOST:PORT", help="the paired device at this address")
    p.add_argument("--lang", choices=SCREEN_LANGUAGES,
                   help="the screen's language for this customer (default: the device's language setting)")
    p.add_argument("--json", action="store_true", help="print {id, url, expires_at}")
    _mdns_option(p)
    p.set_defaults(func=_run(_send))

    p = sub.add_parser("clear", help="take the receipt off the paired device's screen (back to idle)",
                       description="Take the receipt off the paired device's screen now (the customer left); "
                       "the screen returns to idle. Uses the token from 'eticket pair', like send.")
    p.add_argument("--device", metavar="NAME|ID", help="the paired device to use, by the name its screen shows "
                   "or its id (default: the only one)")
    p.add_argument("--address", metavar="HOST:PORT", help="the paired device at this address")
    _mdns_option(p)
    p.set_defaults(func=_run(_clear))


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
