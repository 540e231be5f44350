"""``eticket relay``: run a relay, or administer its storage.

    eticket relay serve   [--listen HOST:PORT] [--storage DIR|s3://BUCKET[/PREFIX]] [--s3-endpoint URL] …
    eticket relay block   DEVICE [--reason TEXT]     refuse this device's uploads (every replica, ≤ 10 s)
    eticket relay unblock DEVICE
    eticket relay sweep                               delete expired receipts now
    eticket relay check-page URL [--expect SHA256]    is URL/r the published download page? (exit 1 if not)

These settings also come from the environment: ``ETICKET_RELAY_STORAGE``, ``ETICKET_RELAY_S3_ENDPOINT``,
``ETICKET_RELAY_RETENTION_DAYS``, ``ETICKET_RELAY_PENDING_DAYS``, ``ETICKET_RELAY_QUOTA_RECEIPTS``,
``ETICKET_RELAY_QUOTA_BYTES``, ``ETICKET_RELAY_NETWORK_QUOTA_RECEIPTS``, ``ETICKET_RELAY_NETWORK_QUOTA_BYTES``,
``ETICKET_RELAY_NEW_DEVICES_PER_NETWORK``, ``ETICKET_RELAY_MISS_LIMIT``; flags win. ``--listen``,
``--forwarded-allow-ips`` and ``--sweep-interval`` are flags only.
S3 credentials come from boto3's usual sources (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``…).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance._paths import configure_logging, split_host_port

from .limits import NETWORK_RECEIPTS_PER_DAY, NEW_DEVICES_PER_NETWORK_PER_DAY

if TYPE_CHECKING:
    from .app import RelaySettings
    from .storage import DirStorage, S3Storage

# The relay's own modules (FastAPI, cryptography) are imported by the commands that run, not here: every
# `eticket` command builds this parser, the kiosk and the POS client included (memory on a 512 MB board).

ENV = "ETICKET_RELAY_"


def _storage(args: argparse.Namespace, existing: bool = False) -> DirStorage | S3Storage:
    """The storage named by ``--storage`` / ``ETICKET_RELAY_STORAGE`` (default ``relay-data``). With
    ``existing``, a directory must already be there (an operator's command never acts on a fresh, empty one)."""
    from .storage import open_storage

    spec = args.storage or os.environ.get(ENV + "STORAGE", "relay-data")
    if existing and not spec.startswith("s3://") and not Path(spec).is_dir():
        raise SystemExit(f"eticket relay: error: no relay storage at {spec!r}; pass the server's --storage")
    try:
        return open_storage(spec, args.s3_endpoint or os.environ.get(ENV + "S3_ENDPOINT"))
    except ModuleNotFoundError as exc:
        if exc.name not in ("boto3", "botocore"):
            raise
        raise SystemExit("eticket relay: error: S3 storage needs boto3, which the relay's extra installs: "
                         "pip install 'eticket[relay]' (in this checkout: .venv/bin/pip install -e '.[relay]')"
                         ) from None


def _settings(args: argparse.Namespace) -> RelaySettings:
    from .app import RelaySettings

    def pick(flag: Any, name: str, default: float) -> float:
        value = flag if flag is not None else os.environ.get(ENV + name, default)
        try:
            return float(value)
        except ValueError:
            raise SystemExit(f"eticket relay: error: {ENV + name}={value!r} is not a number") from None

    base = RelaySettings()
    return RelaySettings(
        retention_seconds=pick(args.retention_days, "RETENTION_DAYS", base.retention_seconds / 86_400) * 86_400,
        pending_seconds=pick(args.pending_days, "PENDING_DAYS", base.pending_seconds / 86_400) * 86_400,
        quota_receipts=int(pick(args.quota_receipts, "QUOTA_RECEIPTS", base.quota_receipts)),
        quota_bytes=int(pick(args.quota_bytes, "QUOTA_BYTES", base.quota_bytes)),
        network_quota_receipts=int(pick(args.network_quota_receipts, "NETWORK_QUOTA_RECEIPTS",
                                        base.network_quota_receipts)),
        network_quota_bytes=int(pick(args.network_quota_bytes, "NETWORK_QUOTA_BYTES", base.network_quota_bytes)),
        new_devices_per_network=int(pick(args.new_devices_per_network, "NEW_DEVICES_PER_NETWORK",
                                         base.new_devices_per_network)),
        miss_limit=int(pick(args.miss_limit, "MISS_LIMIT", base.miss_limit)),
        upload_buffer_bytes=int(pick(args.upload_buffer_mib, "UPLOAD_BUFFER_MIB",
                                     base.upload_buffer_bytes / (1 << 20)) * (1 << 20)),
    )


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from appliance.web.framing import StrictH11Protocol

    from .app import create_relay_app
    from .storage import S3Storage

    configure_logging(args.log_level)
    storage = _storage(args)
    settings = _settings(args)
    if isinstance(storage, S3Storage):
        print(f"eticket relay: {storage.ensure_bucket(max(1, round(settings.retention_seconds / 86_400)))}",
              file=sys.stderr)
    host, port = split_host_port(args.listen, 8090)
    app = create_relay_app(storage, settings, sweep_interval=args.sweep_interval)
    uvicorn.run(app, host=host, port=port, access_log=False, log_config=None, proxy_headers=True,
                forwarded_allow_ips=args.forwarded_allow_ips, server_header=False, timeout_keep_alive=30,
                http=StrictH11Protocol)  # CL+TE refused; one log line per malformed request
    return 0


def device_ids_as_options(argv: list[str]) -> list[str]:
    """``argv`` with a relay id that starts with ``-`` (one id in 64 does: base64url) after ``relay block`` or
    ``relay unblock`` rewritten as ``--device=ID``: argparse would otherwise take it for an option and say
    "the following arguments are required: device" to an operator who pasted the id from the log."""
    for i in range(len(argv) - 2):
        if argv[i] == "relay" and argv[i + 1] in ("block", "unblock") and "--" not in argv[i + 2:]:
            from .crypto import valid_rid

            return argv[:i + 2] + [f"--device={a}" if a.startswith("-") and not a.startswith("--")
                                   and valid_rid(a) else a for a in argv[i + 2:]]
    return argv


def _block(args: argparse.Namespace) -> int:
    from .crypto import valid_rid

    args.device = args.device_option or args.device
    if not args.device:
        print("eticket relay: error: name the device: its relay id (43 characters)", file=sys.stderr)
        return 2
    if not valid_rid(args.device):
        print("eticket relay: error: a device id is 43 base64url characters (shown by 'eticket status' "
              "on the device, and in the relay's log)", file=sys.stderr)
        return 2
    storage = _storage(args, existing=True)
    if args.relay_command == "block":
        storage.put(f"b/{args.device}", b"", {"reason": args.reason or ""})
        print(f"blocked {args.device}")
    else:
        storage.delete(f"b/{args.device}")
        print(f"unblocked {args.device}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from .app import Relay

    print(f"deleted {Relay(_storage(args, existing=True), _settings(args)).sweep()} expired receipts")
    return 0


def relay_base_url(url: str) -> str:
    """The relay's base URL from what an operator may paste: ``https://relay.example``, its page
    ``…/r`` or ``…/r/``, or a whole receipt link (``…/r#<secret>``, ``…/r/<v1 token>``, also percent-encoded):
    everything from the ``r`` path segment on, the fragment, the query and any user information are dropped,
    so a secret is never fetched or printed."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url.strip())
    kept = []
    for segment in parts.path.split("/"):
        if unquote(segment).split("#")[0] == "r":
            break
        kept.append(segment)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, "/".join(kept).rstrip("/"), "", ""))


def _check_page(args: argparse.Namespace) -> int:
    """Fetch ``URL/r`` as a phone would (without any secret) and compare it with the published download page:
    its SHA-256 (this release's :data:`relay.page.PAGE_SHA256`, or ``--expect``) and its Content-Security-Policy.
    Exit 0 when both match, 1 when the relay serves something else (it could then read the secrets of the
    phones that open it: docs/security.md), 2 when it cannot be reached."""
    import asyncio
    import json

    import httpx

    from .page import PAGE_SHA256, async_fetch_page

    base = relay_base_url(args.url)
    url = base + "/r"
    expected = (args.expect or PAGE_SHA256).lower()

    async def fetch() -> Any:
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as client:
            return await async_fetch_page(client, base, expect=args.expect, deadline=15.0)

    try:
        page = asyncio.run(fetch())
    except (httpx.HTTPError, TimeoutError) as exc:
        why = "no complete answer within 15 s" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        print(f"eticket relay: error: {url} cannot be reached: {why}", file=sys.stderr)
        return 2
    served, faults = page.sha256, page.faults
    csp = page.headers.get("content-security-policy", "")
    if args.json:
        print(json.dumps({"url": url, "status": page.status, "sha256": served, "expected": expected,
                          "content_security_policy": csp, "ok": not faults, "faults": faults}))
    elif faults:
        print(f"{url} is NOT the published eTicket download page: it " + "; it ".join(faults) + ".")
    else:
        print(f"{url} serves the published eTicket download page (SHA-256 {served}).")
    return 1 if faults else 0


def add_relay_parser(sub: Any) -> None:
    """Add ``relay serve|block|unblock|sweep|check-page`` to the ``eticket`` parser."""
    relay = sub.add_parser("relay", help="run a receipt relay, or administer its storage")
    commands = relay.add_subparsers(dest="relay_command", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--storage", help="a directory, or s3://BUCKET[/PREFIX] (default ./relay-data; "
                        "env ETICKET_RELAY_STORAGE)")
    common.add_argument("--s3-endpoint", metavar="URL", help="S3-compatible server (default: AWS; "
                        "env ETICKET_RELAY_S3_ENDPOINT)")
    policy = argparse.ArgumentParser(add_help=False)
    policy.add_argument("--retention-days", type=float, help="keep receipts this long at most (default 30)")
    policy.add_argument("--pending-days", type=float,
                        help="show 'on its way' for links this long before 404 (default 7)")
    policy.add_argument("--quota-receipts", type=int, help="receipts per device per UTC day (default 5000)")
    policy.add_argument("--quota-bytes", type=int, help="bytes per device per UTC day (default 1 GiB)")
    policy.add_argument("--network-quota-receipts", type=int,
                        help="receipts per client network (IPv4 address, IPv6 /64) per UTC day, all devices "
                        f"together (default {NETWORK_RECEIPTS_PER_DAY})")
    policy.add_argument("--network-quota-bytes", type=int,
                        help="bytes per client network per UTC day, all devices together (default 4 GiB)")
    policy.add_argument("--new-devices-per-network", type=int,
                        help="device keys new to this relay per client network per UTC day "
                        f"(default {NEW_DEVICES_PER_NETWORK_PER_DAY})")
    policy.add_argument("--miss-limit", type=int, help="unknown links per client address per minute (default 30)")
    policy.add_argument("--upload-buffer-mib", type=float, metavar="MIB",
                        help="upload bodies held in memory at once, all clients together (default 128)")
    serve = commands.add_parser("serve", parents=[common, policy], help="run the relay")
    serve.add_argument("--listen", default="127.0.0.1:8090", metavar="HOST:PORT", help="default 127.0.0.1:8090")
    serve.add_argument("--forwarded-allow-ips", default="127.0.0.1",
                       help="load balancers whose X-Forwarded-For is trusted (default 127.0.0.1)")
    serve.add_argument("--sweep-interval", type=float, default=600.0, help="seconds between expiry sweeps")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=_serve)
    for name, text in (("block", "refuse a device's uploads"), ("unblock", "accept a device again")):
        cmd = commands.add_parser(name, parents=[common], help=text)
        cmd.add_argument("device", nargs="?", help="the device's relay id (43 characters)")
        cmd.add_argument("--device", dest="device_option", metavar="ID",
                         help="the same, for an id that starts with '-' (--device=ID)")
        if name == "block":
            cmd.add_argument("--reason", help="kept with the block, for the operator")
        cmd.set_defaults(func=_block)
    commands.add_parser("sweep", parents=[common, policy],
                        help="delete expired receipts now").set_defaults(func=_sweep)
    check = commands.add_parser("check-page", help="check that a relay serves the published download page")
    check.add_argument("url", help="the relay's base URL, e.g. https://relay.example.org")
    check.add_argument("--expect", metavar="SHA256", help="the hash to expect (default: this release's page, "
                       "as docs/security.md publishes it)")
    check.add_argument("--json", action="store_true", help="the result as JSON")
    check.set_defaults(func=_check_page)
