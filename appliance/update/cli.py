"""``eticket update status | install BUNDLE | rollback | commit``: argument parsing and output (docs/fleet.md §11)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from .command import Outcome
from .state import STATE_DIR, UpdateState


def _emit(outcome: Outcome, as_json: bool, text: str | None = None) -> int:
    """JSON on stdout with ``--json``; else ``text`` (or the message) on stdout when it worked, the message on
    stderr (``eticket: error: …``) when it did not."""
    if as_json:
        print(json.dumps(outcome.body, indent=2))
    elif outcome.code == 0:
        print(text if text is not None else outcome.message)
    else:
        print(f"eticket: error: {outcome.message}", file=sys.stderr)
    return outcome.code


def _status_text(body: dict[str, Any]) -> str:
    lines = [f"version {body['version']} in slot {body['booted']} ({body['boot_state']}); "
             f"compatible {body['compatible']}; boot loader tries {body['primary']} next"]
    for slot in body["slots"]:
        lines.append(f"  slot {slot['bootname']}: {slot['state']}, {slot['boot_status']}, "
                     f"version {slot['version'] or '-'}")
    if body.get("busy"):
        lines.append("  RAUC is installing a bundle: the slots are shown once it is done")
    last = body["last_update"]
    lines.append("last update: none" if last is None else
                 f"last update: {last.get('version')} {last.get('result')} ({last.get('message')})")
    return "\n".join(lines)


def _sha256(text: str) -> str:
    """``--sha256``: 64 hexadecimal digits (FIPS 180-4's SHA-256), lower-cased; else a usage error before
    anything on the device is touched."""
    if not re.fullmatch(r"[0-9A-Fa-f]{64}", text):
        raise argparse.ArgumentTypeError(f"{text[:80]!r} is not a SHA-256 (64 hexadecimal digits)")
    return text.lower()


def _run(args: argparse.Namespace) -> int:
    try:
        return _run_as_root(args)
    except PermissionError as exc:
        print(f"eticket: error: {exc.filename or exc}: permission denied (eticket update runs as root on the "
              "device)", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"eticket: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1


def _run_as_root(args: argparse.Namespace) -> int:
    from . import command

    state = UpdateState(args.state_dir)
    if args.action == "status":
        outcome = command.status(state)
        return _emit(outcome, args.json, _status_text(outcome.body) if outcome.code == 0 else None)
    if args.action == "install":
        return _emit(command.install(state, args.bundle, args.sha256, reboot=not args.no_reboot), args.json)
    if args.action == "rollback":
        return _emit(command.rollback(state, reboot=not args.no_reboot), args.json)
    from . import gate

    return _emit(gate.commit(state, gate.GateConfig(deadline_seconds=args.deadline, config=args.config,
                                                    data_dir=args.data_dir)), args.json)


def add_update_parser(sub: Any) -> None:
    """Add ``update`` to the ``eticket`` subparsers."""
    from .gate import COMMIT_DEADLINE_SECONDS, DEVICE_DATA_DIR

    p = sub.add_parser("update", help="on the device, as root: A/B system updates with RAUC (status, install, "
                       "rollback, commit)",
                       description="Exit codes: 0 done, 1 failed, 10 bundle refused (hash, signature, "
                       "compatible), 11 version already running, 12 no good slot to roll back to.")
    # One subparser per action, so that options may come before or after the bundle's path
    # (`install --json B` and `install B --json`; a positional `action` + optional `bundle` could not).
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    helps = {"status": "slots, versions, boot state and the last update",
             "install": "install a signed bundle into the other slot and reboot into it",
             "rollback": "boot the other slot again, when it is good",
             "commit": "the health gate run at every boot (eticket-update-commit.service)"}
    for name, text in helps.items():
        a = actions.add_parser(name, help=text, description=text)
        if name == "install":
            a.add_argument("bundle", type=Path, help="the .raucb bundle")
            a.add_argument("--sha256", metavar="HEX", type=_sha256,
                           help="refuse the bundle unless its SHA-256 is this")
        if name in ("install", "rollback"):
            a.add_argument("--no-reboot", action="store_true", help="do not reboot afterwards")
        if name == "commit":
            a.add_argument("--deadline", type=float, default=COMMIT_DEADLINE_SECONDS,
                           help=f"seconds the new slot has to prove healthy (default {COMMIT_DEADLINE_SECONDS:g})")
            a.add_argument("--config", type=Path, default=None, help="the appliance's settings file "
                           "(default /etc/eticket/eticket.toml)")
            a.add_argument("--data-dir", type=Path, default=DEVICE_DATA_DIR,
                           help=f"the appliance's data dir, holding admin.sock (default {DEVICE_DATA_DIR})")
        a.add_argument("--json", action="store_true", help="JSON on stdout")
        a.add_argument("--state-dir", type=Path, default=STATE_DIR, help=argparse.SUPPRESS)
    p.set_defaults(func=_run)
