"""``eticket update status | install | rollback``: the device side of an A/B update (docs/fleet.md §11), run as root by
the fleet tool and the Ansible playbook over SSH. ``commit`` (the health gate) is in :mod:`.gate`.

Exit codes (docs/fleet.md §11): 0 done; 1 failed (another error: RAUC's service down, a write error, the bundle
missing); 10 refused (a bad hash, signature, tampering, wrong ``compatible``: nothing was written); 11 the
bundle's version already runs; 12 no good slot to roll back to.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import rauc
from .rauc import BundleRefused, RaucBusy, RaucError, RaucStatus
from .state import INCOMING_DIR, UpdateState, boot_id, image_version, now_rfc3339

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 10
EXIT_CURRENT = 11
EXIT_NO_GOOD_SLOT = 12
REBOOT_DELAY_SECONDS = 2
"""The reboot after an install or rollback waits this long, so that the command's answer reaches the SSH
client first."""
REBOOT_COMMAND = ("systemd-run", "--quiet", f"--on-active={REBOOT_DELAY_SECONDS}", "--timer-property=AccuracySec=100ms",
                  "systemctl", "reboot")
"""A transient timer unit (systemd-run(1)) that reboots once this command has answered and exited."""
HASH_CHUNK_BYTES = 1 << 20


@dataclass
class Outcome:
    """What a command answers: the exit ``code``, the one-line ``message`` (stderr without ``--json``) and the
    JSON ``body`` (``--json``)."""

    code: int
    message: str
    body: dict[str, Any] = field(default_factory=dict)


def reboot_later() -> str | None:
    """Schedule a reboot REBOOT_DELAY_SECONDS from now (REBOOT_COMMAND); None when scheduled, else why not."""
    try:
        result = subprocess.run(REBOOT_COMMAND, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the reboot could not be scheduled: {exc}"
    if result.returncode != 0:
        return f"the reboot could not be scheduled: {result.stderr.strip() or result.returncode}"
    return None


def booted_version(st: RaucStatus) -> str | None:
    """The running release: ``version=`` of ``/etc/eticket-image-id`` (the booted root's own stamp), else what
    RAUC recorded for the booted slot."""
    found = image_version()
    if found is not None:
        return found
    slot = st.slot(st.booted)
    return slot.version if slot else None


def boot_state(st: RaucStatus, last: dict[str, Any] | None) -> str:
    """``trying`` when this boot is the first boots of a slot just installed (``last_update`` says
    ``installed`` into the booted slot, from an earlier boot) and not yet committed; ``committed`` when the
    booted slot is good otherwise; ``unknown`` else (RAUC cannot tell the booted slot, or it is marked bad)."""
    if (last and last.get("result") == "installed" and last.get("to_slot") == st.booted
            and last.get("boot_id") != boot_id()):
        return "trying"
    slot = st.slot(st.booted)
    return "committed" if slot is not None and slot.boot_status == "good" else "unknown"


def status_body(st: RaucStatus, state: UpdateState) -> dict[str, Any]:
    """The ``eticket update status --json`` shape of docs/fleet.md §11: ``{"compatible", "version", "booted", "primary",
    "boot_state", "slots": [{"bootname", "state", "boot_status", "version"}], "other_slot_good",
    "last_update", "busy"}`` (``last_update`` without its internal ``boot_id``; ``busy`` false: RAUC answered,
    see :func:`busy_body`)."""
    last = state.last_update()
    running = booted_version(st)
    other = st.other()
    known = state.slot_versions()
    slots = [{"bootname": s.bootname, "state": s.state, "boot_status": s.boot_status,
              "version": running if s.bootname == st.booted else s.version or known.get(s.bootname)}
             for s in st.slots]
    public = None if last is None else {k: v for k, v in last.items() if k != "boot_id"}
    return {"compatible": st.compatible, "version": running, "booted": st.booted, "primary": st.primary,
            "boot_state": boot_state(st, last), "slots": slots,
            "other_slot_good": other is not None and other.boot_status == "good",
            "last_update": public, "busy": False}


CMDLINE = Path("/proc/cmdline")


def booted_from_cmdline(path: Path = CMDLINE) -> str | None:
    """The ``rauc.slot=`` bootname on the kernel command line (FLEET-FACTS: every slot's command line has it)."""
    try:
        words = path.read_text().split()
    except OSError:
        return None
    return next((w.partition("=")[2] for w in words if w.startswith("rauc.slot=")), None)


def busy_body(state: UpdateState) -> dict[str, Any]:
    """The status while RAUC installs (its service answers nothing else then): the docs/fleet.md §11 shape with what is
    known without RAUC — ``booted`` from the kernel command line, ``version`` from the image — ``slots``
    empty, ``boot_state`` ``unknown`` and ``busy`` true."""
    last = state.last_update()
    return {"compatible": None, "version": image_version(), "booted": booted_from_cmdline(), "primary": None,
            "boot_state": "unknown", "slots": [], "other_slot_good": False,
            "last_update": None if last is None else {k: v for k, v in last.items() if k != "boot_id"},
            "busy": True}


def status(state: UpdateState) -> Outcome:
    """``eticket update status``: :func:`status_body`, or :func:`busy_body` while RAUC installs a bundle."""
    try:
        st = rauc.status()
    except RaucBusy:
        return Outcome(EXIT_OK, "", busy_body(state))
    except RaucError as exc:
        return Outcome(EXIT_FAILED, f"cannot read the slots from RAUC: {exc}", {"error": str(exc)})
    return Outcome(EXIT_OK, "", status_body(st, state))


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in HASH_CHUNK_BYTES pieces."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _answer(code: int, result: str, message: str, version: str | None, to_slot: str | None) -> Outcome:
    return Outcome(code, message, {"result": result, "version": version, "to_slot": to_slot, "message": message})


BUSY = "another install or rollback is running on this device (it holds /var/lib/eticket-update/lock)"


def install(state: UpdateState, bundle: Path, expected_sha256: str | None = None, reboot: bool = True) -> Outcome:
    """:func:`install_unlocked` while holding the state's lock; exit 1 at once when another install or
    rollback holds it. A bundle uploaded into the incoming folder (``<state dir>/incoming``, where the fleet
    tool and the Ansible playbook put it) is deleted once RAUC is done with it, whatever the outcome, with any
    partial upload of it: a bundle is about the size of a root slot, and two left behind fill a small data
    partition, where the receipts live (the appliance then cannot write)."""
    with state.locked() as mine:
        if not mine:
            return _answer(EXIT_FAILED, "failed", BUSY, None, None)
        try:
            return install_unlocked(state, bundle, expected_sha256, reboot)
        finally:
            _forget_upload(state, bundle)


def _forget_upload(state: UpdateState, bundle: Path) -> None:
    """Delete ``bundle`` (and ``bundle.part``) when it lies in the state's incoming folder; leave any other
    path alone (an operator's own copy)."""
    incoming = (state.directory / INCOMING_DIR).resolve()
    try:
        target = bundle.resolve()
    except OSError:
        return
    if target.parent != incoming:
        return
    for path in (target, target.with_name(target.name + ".part")):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def install_unlocked(state: UpdateState, bundle: Path, expected_sha256: str | None = None,
                     reboot: bool = True) -> Outcome:
    """``eticket update install BUNDLE``: check, install into the other slot, record, reboot (docs/fleet.md §11).

    Steps: the file exists; its SHA-256 equals ``expected_sha256`` when given; ``rauc info`` checks the
    signature and reads the manifest; its ``compatible`` is this system's; its version is not the running one
    (exit 11, result ``current``); ``rauc install`` (RAUC checks the signature and compatible again before it
    writes: exit 10 with RAUC's reason); then ``last_update.result = installed`` and a reboot in
    REBOOT_DELAY_SECONDS unless ``reboot`` is False. A refusal or failure is recorded in ``last_update`` too,
    except over an update that is installed and waits for its reboot (its record decides the next boot's gate).
    """
    try:
        st = rauc.status()
    except RaucError as exc:
        return _answer(EXIT_FAILED, "failed", f"cannot read the slots from RAUC: {exc}", None, None)
    target = st.other()
    to_slot = target.bootname if target else None
    record: dict[str, Any] = {"version": None, "bundle_sha256": None, "from_slot": st.booted, "to_slot": to_slot,
                              "started_at": now_rfc3339(), "finished_at": None, "result": "installing",
                              "message": None, "boot_id": boot_id()}

    previous = state.last_update()
    waiting = previous is not None and previous.get("result") == "installed"

    def finish(code: int, result: str, message: str, written: bool = False) -> Outcome:
        """Record and answer. A refusal before RAUC touched a slot (``written`` False) leaves an ``installed``
        record alone: that update still waits for its reboot and its health gate."""
        record.update(result=result, message=message, finished_at=now_rfc3339())
        if written or not waiting:
            state.save_last_update(record)
        elif previous is not None:
            message += (f" (the update to {previous.get('version')} installed earlier still waits for its "
                        "reboot)")
        return _answer(code, result, message, record["version"], to_slot)

    if not bundle.is_file():  # a mistyped path: nothing was tried, the last update's record stays as it is
        return _answer(EXIT_FAILED, "failed", f"no bundle file at {bundle}", None, to_slot)
    if target is None:
        return finish(EXIT_FAILED, "failed", "RAUC knows no other slot to install into (see /etc/rauc/system.conf)")
    if boot_state(st, previous) == "trying":
        return finish(EXIT_FAILED, "failed", f"slot {st.booted} is still on trial (not committed): installing "
                      f"now would overwrite the good slot {to_slot}; wait for 'eticket update commit'")
    record["bundle_sha256"] = digest = sha256_file(bundle)
    if expected_sha256 is not None and digest != expected_sha256.lower():
        return finish(EXIT_REFUSED, "refused", f"hash mismatch: the bundle's SHA-256 is {digest}, not the "
                      f"expected {expected_sha256.lower()} (a damaged or partial upload)")
    try:
        manifest = rauc.info(bundle)
    except BundleRefused as exc:
        return finish(EXIT_REFUSED, "refused", f"RAUC refused the bundle: {exc}")
    except RaucError as exc:
        return finish(EXIT_FAILED, "failed", f"rauc info failed: {exc}")
    record["version"] = version = manifest.get("version") if isinstance(manifest.get("version"), str) else None
    compatible = manifest.get("compatible")
    if compatible != st.compatible:
        return finish(EXIT_REFUSED, "refused", f"wrong compatible: the bundle is for {compatible!r}, this device "
                      f"is {st.compatible!r}")
    if version is not None and version == booted_version(st):
        # Not recorded: the last real update stays what status reports.
        return _answer(EXIT_CURRENT, "current", f"version {version} already runs in slot {st.booted}",
                       version, st.booted)
    if st.booted is not None:  # RAUC never recorded a version for the slot the card was flashed with
        state.remember_slot_version(st.booted, booted_version(st))
    state.save_last_update(record)  # "installing": a power cut from here on is seen at the next boot
    try:
        rauc.install(bundle)
    except BundleRefused as exc:
        return finish(EXIT_REFUSED, "refused", f"RAUC refused the bundle: {exc}", written=True)
    except RaucError as exc:
        return finish(EXIT_FAILED, "failed", f"rauc install failed: {exc}", written=True)
    message = f"version {version} installed into slot {to_slot}"
    if not reboot:
        return finish(EXIT_OK, "installed", message + "; waiting for a reboot", written=True)
    outcome = finish(EXIT_OK, "installed", message + f"; rebooting in {REBOOT_DELAY_SECONDS} s", written=True)
    problem = reboot_later()
    if problem is not None:
        return finish(EXIT_FAILED, "installed", message + f"; {problem}: reboot by hand to try it", written=True)
    return outcome


def rollback(state: UpdateState, reboot: bool = True) -> Outcome:
    """``eticket update rollback``: only when the other slot is good (exit 12 otherwise):
    ``rauc status mark-active other``, ``last_update.result = rolled-back``, then a reboot. Exit 1 at once
    while another install or rollback runs."""
    with state.locked() as mine:
        if not mine:
            return _answer(EXIT_FAILED, "failed", BUSY, None, None)
        return _rollback(state, reboot)


def _rollback(state: UpdateState, reboot: bool) -> Outcome:
    try:
        st = rauc.status()
    except RaucError as exc:
        return _answer(EXIT_FAILED, "failed", f"cannot read the slots from RAUC: {exc}", None, None)
    other = st.other()
    if other is None or other.boot_status != "good":
        why = "there is none" if other is None else f"slot {other.bootname} is marked bad"
        return _answer(EXIT_NO_GOOD_SLOT, "refused", f"no good slot to roll back to: {why}", None,
                       other.bootname if other else None)
    try:
        rauc.mark("active", "other")
    except RaucError as exc:
        return _answer(EXIT_FAILED, "failed", f"rauc could not activate slot {other.bootname}: {exc}",
                       other.version, other.bootname)
    message = f"rolled back by 'eticket update rollback' from slot {st.booted} to {other.bootname}"
    version = other.version or state.slot_versions().get(other.bootname)
    state.save_last_update({"version": version, "bundle_sha256": None, "from_slot": st.booted,
                            "to_slot": other.bootname, "started_at": now_rfc3339(), "finished_at": now_rfc3339(),
                            "result": "rolled-back", "message": message, "boot_id": boot_id()})
    if reboot:
        problem = reboot_later()
        if problem is not None:
            return _answer(EXIT_FAILED, "rolled-back", f"{message}; {problem}", version, other.bootname)
        message += f"; rebooting in {REBOOT_DELAY_SECONDS} s"
    return _answer(EXIT_OK, "rolled-back", message, version, other.bootname)
