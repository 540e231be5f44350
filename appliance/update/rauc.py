"""The RAUC command line, as the on-device update command drives it (Debian bookworm's ``rauc`` 1.8).

We never write to a slot ourselves: RAUC checks the bundle's signature (X.509/CMS against the keyring in
``/etc/rauc/system.conf``) and its ``compatible`` before it writes a byte, writes the other slot and switches
the boot loader (https://rauc.readthedocs.io/en/v1.8/using.html). Debian builds RAUC with its D-Bus service:
``rauc install``, ``rauc status`` and ``rauc status mark-*`` talk to ``rauc service`` (``rauc.service``) on the
system bus; ``rauc info`` works alone.

Commands used (RAUC docs, "Using RAUC" and "Reference"):
- ``rauc status --detailed --output-format=json``: ``{"compatible", "variant", "booted": <bootname>,
  "boot_primary": <slot name>, "slots": [{<slot name>: {"class", "device", "type", "bootname", "state":
  "booted"|"active"|"inactive", "boot_status": "good"|"bad", "slot_status": {"bundle": {"compatible",
  "version"}, "checksum", "installed", "activated", "status"}}}]}``.
- ``rauc info --output-format=json BUNDLE``: ``{"compatible", "version", "images": [...]}`` after checking the
  signature with the system's keyring.
- ``rauc install BUNDLE``: on failure, the reason on a ``LastError: …`` line (e.g. "signature verification
  failed: …", "Compatible mismatch: …").
- ``rauc status mark-good|mark-bad|mark-active booted|other``.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RAUC = "rauc"
RAUC_TIMEOUT_SECONDS = 60.0
"""For the quick commands (status, info, mark-*)."""
INSTALL_TIMEOUT_SECONDS = 1800.0
"""For ``rauc install`` (a root file system of a few hundred MiB onto an SD card)."""
SIGNATURE_FAULTS = ("signature verification failed", "Compatible mismatch", "compatible mismatch",
                    "bundle format", "manifest", "Failed to verify", "not allowed", "dm-verity")
"""Words in RAUC's reason that mean the bundle itself was refused (not the machine failing). A verity bundle
whose payload was changed after signing fails at its mount: "Failed mounting bundle … dm-verity … Input/output
error" (the signature covers the verity root hash, so dm-verity is what notices)."""


class RaucError(Exception):
    """RAUC failed; ``str()`` is RAUC's own reason (its ``LastError:`` line, else its last stderr line)."""


class RaucBusy(RaucError):
    """RAUC's service is installing a bundle and answers no other call until it is done (RAUC 1.8:
    "already processing a different method", for ``rauc status`` and ``mark-*`` alike)."""


BUSY_REASON = "already processing a different method"


class BundleRefused(RaucError):
    """RAUC refused the bundle (signature, tampering, format, compatible) before writing a slot."""


@dataclass(frozen=True, slots=True)
class Slot:
    """One root slot as ``rauc status`` reports it: ``bootname`` ("A"), RAUC's slot ``name`` ("rootfs.0"),
    ``state`` ("booted" | "active" | "inactive"), ``boot_status`` ("good" | "bad"), ``version`` (of the
    bundle RAUC last installed there, None when RAUC never wrote it: the slot the card was flashed with)."""

    bootname: str
    name: str
    state: str
    boot_status: str
    version: str | None


@dataclass(frozen=True, slots=True)
class RaucStatus:
    """``compatible`` of this system, the ``booted`` bootname, the ``primary`` bootname (what the boot loader
    tries next), and every slot that has a bootname, sorted by bootname."""

    compatible: str
    booted: str | None
    primary: str | None
    slots: tuple[Slot, ...]

    def slot(self, bootname: str | None) -> Slot | None:
        """The slot with this bootname, or None."""
        return next((s for s in self.slots if s.bootname == bootname), None)

    def other(self) -> Slot | None:
        """The slot that is not booted (with two root slots: the one an install writes)."""
        return next((s for s in self.slots if s.bootname != self.booted), None)


def _reason(result: subprocess.CompletedProcess[str]) -> str:
    """RAUC's reason for a failure: its ``LastError:`` line, else the last non-empty line it wrote."""
    lines = [line.strip() for line in (result.stdout + "\n" + result.stderr).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("LastError:"):
            return line.removeprefix("LastError:").strip()
    messages = [line for line in lines if not line.startswith("rauc-Message")] or lines
    return messages[-1] if messages else f"rauc exited with status {result.returncode}"


def run(*args: str, timeout: float = RAUC_TIMEOUT_SECONDS) -> str:
    """Run ``rauc ARGS``; its stdout.

    Raises:
        RaucError: rauc is missing, timed out or exited non-zero (RAUC's reason in the message).
    """
    try:
        result = subprocess.run([RAUC, *args], capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise RaucError("rauc is not installed (Debian package rauc)") from exc
    except subprocess.TimeoutExpired as exc:
        raise RaucError(f"rauc {args[0]} did not finish within {timeout:g} s") from exc
    if result.returncode != 0:
        reason = _reason(result)
        raise (RaucBusy if BUSY_REASON in reason else RaucError)(reason)
    return result.stdout


def parse_status(data: dict[str, Any]) -> RaucStatus:
    """A :class:`RaucStatus` from ``rauc status --detailed --output-format=json`` (shape in the module doc)."""
    slots: list[Slot] = []
    primary: str | None = None
    for entry in data.get("slots") or []:
        for name, slot in entry.items():
            if not slot.get("bootname"):
                continue
            bundle = ((slot.get("slot_status") or {}).get("bundle") or {})
            slots.append(Slot(bootname=str(slot["bootname"]), name=str(name), state=str(slot.get("state")),
                              boot_status=str(slot.get("boot_status")),
                              version=bundle.get("version") if isinstance(bundle.get("version"), str) else None))
            if name == data.get("boot_primary"):
                primary = str(slot["bootname"])
    return RaucStatus(compatible=str(data.get("compatible") or ""), booted=data.get("booted") or None,
                      primary=primary, slots=tuple(sorted(slots, key=lambda s: s.bootname)))


def status() -> RaucStatus:
    """``rauc status --detailed --output-format=json``, parsed. Raises RaucError."""
    out = run("status", "--detailed", "--output-format=json")
    try:
        return parse_status(json.loads(out))
    except (ValueError, AttributeError, KeyError) as exc:
        raise RaucError(f"rauc status answered something that is not its JSON: {out[:200]!r}") from exc


def info(bundle: Path) -> dict[str, Any]:
    """``rauc info --output-format=json BUNDLE``: the bundle's manifest (``compatible``, ``version``) once its
    signature checked out against the system's keyring.

    Raises:
        BundleRefused: the signature, the format or the manifest was refused (RAUC's reason).
        RaucError: rauc itself failed.
    """
    try:
        out = run("info", "--output-format=json", str(bundle))
    except RaucError as exc:
        raise BundleRefused(str(exc)) from None
    try:
        manifest: dict[str, Any] = json.loads(out)
    except ValueError as exc:
        raise RaucError(f"rauc info answered something that is not JSON: {out[:200]!r}") from exc
    return manifest


def install(bundle: Path) -> None:
    """``rauc install BUNDLE`` into the other slot; returns once RAUC wrote it and switched the boot loader.

    Raises:
        BundleRefused: RAUC refused the bundle before writing (signature, compatible, format).
        RaucError: anything else (a write error, the service not running).
    """
    try:
        run("install", str(bundle), timeout=INSTALL_TIMEOUT_SECONDS)
    except RaucError as exc:
        reason = str(exc)
        if any(word in reason for word in SIGNATURE_FAULTS):
            raise BundleRefused(reason) from None
        raise


BUSY_RETRY_SECONDS = 1.0


def mark(what: str, slot: str = "booted", busy_wait_seconds: float = 0.0) -> None:
    """``rauc status mark-good|mark-bad|mark-active booted|other`` (``what``: "good", "bad", "active"),
    tried again every BUSY_RETRY_SECONDS for up to ``busy_wait_seconds`` while RAUC is busy installing.
    Raises RaucError (RaucBusy when it stayed busy)."""
    end = time.monotonic() + busy_wait_seconds
    while True:
        try:
            run("status", f"mark-{what}", slot)
            return
        except RaucBusy:
            if time.monotonic() >= end:
                raise
            time.sleep(BUSY_RETRY_SECONDS)
