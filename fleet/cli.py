"""``eticket fleet``: the operator's commands (status, deploy, rollback, discover, keys init).

    eticket fleet status   [--inventory FILE] [--json]
    eticket fleet deploy   BUNDLE [--waves 1,5,20%] [--max-fail-percent P] [--parallel N] [--json-report FILE]
    eticket fleet rollback (--device NAME ... | --all)
    eticket fleet discover [--timeout S]
    eticket fleet keys init DIR [--ca-days N] [--signing-days N] [--name NAME]
    eticket fleet keys rotate DIR [--signing-days N]

Exit status: 0 all good; 1 a device failed, rolled back or was unreachable, the rollout stopped, or (status) a
device is unreachable or not healthy; 2 bad usage or input (inventory, bundle, options), with one
``eticket: error: ...`` line naming the fault.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
DEFAULT_INVENTORY = Path("fleet.toml")


def _error(message: str) -> int:
    print(f"eticket: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _devices(args: argparse.Namespace) -> list[Any]:
    """The inventory's devices (those named by ``--device``); InventoryError names the fault, including an
    ``identity`` that is no file here (a mistake of this machine, not an unreachable device)."""
    from ._inventory import InventoryError, load_inventory, select

    devices = select(load_inventory(args.inventory), getattr(args, "device", None))
    for device in devices:
        if device.identity is not None and not device.identity.is_file():
            raise InventoryError(f"{args.inventory}: device {device.name!r}: identity {device.identity} is not a "
                                 "file (a private key without a passphrase; leave identity out to use the SSH agent)")
    return devices


def _status(args: argparse.Namespace) -> int:
    from ._inventory import InventoryError
    from ._status import fleet_status, status_table

    if fault := _check_common(args):
        return _error(fault)
    try:
        devices = _devices(args)
    except InventoryError as exc:
        return _error(str(exc))
    import asyncio

    rows = asyncio.run(fleet_status(devices, args.parallel))
    sys.stdout.write(json.dumps(rows, indent=2) + "\n" if args.json else status_table(rows))
    return EXIT_OK if all(r["reachable"] and r["health"] == "good" for r in rows) else EXIT_FAILED


def _check_common(args: argparse.Namespace) -> str | None:
    """The options every command shares, checked before any device is touched: the fault, or None."""
    if args.parallel < 1:
        return "--parallel must be at least 1"
    timeout = getattr(args, "reboot_timeout", None)
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        return f"--reboot-timeout must be a positive number of seconds, not {timeout!r}"
    report = getattr(args, "json_report", None)
    if report is not None:
        if report.is_dir():
            return f"--json-report {report}: is a directory, not a file"
        if not report.parent.is_dir():
            return f"--json-report {report}: no directory {report.parent} to write it in"
        if not os.access(report.parent, os.W_OK):
            return f"--json-report {report}: {report.parent} is not writable"
    return None


def _write_report(path: Path | None, data: object) -> None:
    if path is not None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(path)


def _summary(devices: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for d in devices:
        counts[d["outcome"]] = counts.get(d["outcome"], 0) + 1
    return ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))


def _deploy(args: argparse.Namespace) -> int:
    from ._bundle import BundleError, read_bundle
    from ._deploy import deploy
    from ._inventory import InventoryError
    from ._progress import Progress
    from ._waves import WaveSpecError, parse_max_fail_percent, parse_waves

    if fault := _check_common(args):
        return _error(fault)
    try:
        waves = parse_waves(args.waves)
        cap = parse_max_fail_percent(args.max_fail_percent)
        devices = _devices(args)
        bundle = read_bundle(args.bundle, args.version)
    except (InventoryError, WaveSpecError, BundleError) as exc:
        return _error(str(exc))
    print(f"deploying {bundle.path.name} (version {bundle.version}, sha256 {bundle.sha256[:12]}…) to "
          f"{len(devices)} device(s), waves {args.waves}, --max-fail-percent {cap:g}", file=sys.stderr)
    progress = Progress([d.name for d in devices], sys.stderr)
    import asyncio

    report = asyncio.run(deploy(devices, bundle, waves, cap, args.parallel, progress, args.reboot_timeout))
    data = report.as_json()
    _write_report(args.json_report, data)
    if args.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        print(f"{_summary(data['devices'])}" + (f"; {report.reason}" if report.reason else ""))
    return EXIT_FAILED if report.failed() else EXIT_OK


def _rollback(args: argparse.Namespace) -> int:
    from ._deploy import roll_back
    from ._inventory import InventoryError
    from ._progress import Progress

    if not args.device and not args.all:
        return _error("name the devices to roll back with --device NAME (repeatable), or pass --all")
    if fault := _check_common(args):
        return _error(fault)
    try:
        devices = _devices(args)
    except InventoryError as exc:
        return _error(str(exc))
    progress = Progress([d.name for d in devices], sys.stderr)
    import asyncio

    reports = asyncio.run(roll_back(devices, args.parallel, progress, args.reboot_timeout))
    from dataclasses import asdict

    data = [asdict(r) for r in reports]
    _write_report(args.json_report, data)
    sys.stdout.write(json.dumps(data, indent=2) + "\n" if args.json else _summary(data) + "\n")
    return EXIT_OK if all(r.outcome in ("rolled-back", "skipped") for r in reports) else EXIT_FAILED


def _discover(args: argparse.Namespace) -> int:
    from ._discover import as_inventory, discover

    try:
        found = discover(args.timeout, args.mdns_interfaces)
    except ValueError as exc:
        return _error(str(exc))
    sys.stdout.write(json.dumps(found, indent=2) + "\n" if args.json else as_inventory(found))
    return EXIT_OK


def _keys_init(args: argparse.Namespace) -> int:
    """``fleet.keys.init_keys`` (helper "trust"'s module; docs/fleet.md), imported only when used."""
    from . import keys  # type: ignore[attr-defined,unused-ignore]

    options = {k: v for k, v in (("ca_days", args.ca_days), ("signing_days", args.signing_days),
                                 ("name", args.name)) if v is not None}
    try:
        made = keys.init_keys(args.directory, **options)
    except keys.KeysError as exc:
        return _error(str(exc))
    for path in made.files():
        print(path)
    print(f"sign bundles with {made.signing_cert} and {made.signing_key}; devices trust {made.keyring}. "
          f"Keep {made.ca_key} offline (docs/fleet.md)", file=sys.stderr)
    return EXIT_OK


def _keys_rotate(args: argparse.Namespace) -> int:
    """``fleet.keys.rotate_signing``: a new signing key and certificate from DIR's CA (helper "trust")."""
    from . import keys

    options = {"signing_days": args.signing_days} if args.signing_days is not None else {}
    try:
        made = keys.rotate_signing(args.directory, **options)
    except keys.KeysError as exc:
        return _error(str(exc))
    print(made.signing_cert)
    print(made.signing_key)
    print(f"sign bundles with {made.signing_cert} and {made.signing_key} from now on; devices need no change. "
          f"Put {made.ca_key} back offline (docs/fleet.md)", file=sys.stderr)
    return EXIT_OK


def add_fleet_parser(sub: Any) -> None:
    """``eticket fleet ...`` on the top-level subparsers ``sub``."""
    from ._const import BROWSE_SECONDS, DEFAULT_PARALLEL, REBOOT_DEADLINE_SECONDS
    from ._waves import DEFAULT_WAVES

    fleet = sub.add_parser("fleet", help="roll signed system updates out to devices over SSH (operator side)")
    commands = fleet.add_subparsers(dest="fleet_command", required=True, metavar="COMMAND")

    def common(parser: argparse.ArgumentParser, json_help: str) -> None:
        parser.add_argument("--inventory", type=Path, default=DEFAULT_INVENTORY,
                            help="the fleet's inventory TOML (default ./fleet.toml; docs/fleet.md)")
        parser.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL,
                            help=f"devices handled at once (default {DEFAULT_PARALLEL})")
        parser.add_argument("--json", action="store_true", help=json_help)

    status = commands.add_parser("status", help="each device's version, slot, boot state, health, last update")
    common(status, "print JSON instead of a table")
    status.set_defaults(func=_status)

    deploy = commands.add_parser("deploy", help="install a bundle in waves, canary first, with a failure cap")
    deploy.add_argument("bundle", type=Path, metavar="BUNDLE", help="the signed .raucb (make bundle)")
    common(deploy, "print the JSON report on stdout")
    deploy.add_argument("--waves", default=DEFAULT_WAVES,
                        help=f"wave sizes, counts or percentages of the inventory; the last repeats "
                             f"(default {DEFAULT_WAVES.replace('%', '%%')}, as Ansible's serial)")
    deploy.add_argument("--max-fail-percent", default="0",
                        help="stop when the failures in a wave exceed this percentage of it (default 0: any)")
    deploy.add_argument("--json-report", type=Path, metavar="FILE", help="write the JSON report to FILE")
    deploy.add_argument("--device", action="append", metavar="NAME",
                        help="only this device (repeatable; default every device of the inventory)")
    deploy.add_argument("--version", help="the bundle's version, when rauc is not installed here to read it")
    deploy.add_argument("--reboot-timeout", type=float, default=REBOOT_DEADLINE_SECONDS,
                        help=f"seconds a device has to come back committed after the install "
                             f"(default {REBOOT_DEADLINE_SECONDS:.0f})")
    deploy.set_defaults(func=_deploy)

    rollback = commands.add_parser("rollback", help="boot the other slot again, where it is good")
    common(rollback, "print the JSON report on stdout")
    rollback.add_argument("--device", action="append", metavar="NAME", help="a device to roll back (repeatable)")
    rollback.add_argument("--all", action="store_true", help="every device of the inventory")
    rollback.add_argument("--json-report", type=Path, metavar="FILE", help="write the JSON report to FILE")
    rollback.add_argument("--reboot-timeout", type=float, default=REBOOT_DEADLINE_SECONDS,
                          help="seconds a device has to come back on the other slot")
    rollback.set_defaults(func=_rollback)

    discover = commands.add_parser("discover", help="devices on this LAN (mDNS), as inventory entries to fill in")
    discover.add_argument("--timeout", type=float, default=BROWSE_SECONDS, help="seconds to listen (default 3)")
    discover.add_argument("--mdns-interfaces", metavar="LIST", help="addresses or interfaces (default: all)")
    discover.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    discover.set_defaults(func=_discover)

    keys = commands.add_parser("keys", help="signing keys of the fleet")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    init = keys_commands.add_parser("init", help="make a CA, a code-signing certificate and the device keyring")
    init.add_argument("directory", type=Path, metavar="DIR", help="where to write ca.crt/key, signing.crt/key, "
                      "keyring.pem (created; keep ca.key offline)")
    init.add_argument("--ca-days", type=int, help="validity of the CA certificate, days")
    init.add_argument("--signing-days", type=int, help="validity of the signing certificate, days")
    init.add_argument("--name", help="the fleet's name in the certificates' subjects")
    init.set_defaults(func=_keys_init)
    rotate = keys_commands.add_parser("rotate", help="a new signing certificate and key from the same CA")
    rotate.add_argument("directory", type=Path, metavar="DIR", help="the fleet's keys (needs ca.crt and ca.key)")
    rotate.add_argument("--signing-days", type=int, help="validity of the new signing certificate, days")
    rotate.set_defaults(func=_keys_rotate)
