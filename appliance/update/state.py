"""What the update command keeps across reboots, on the data partition: ``/var/lib/eticket-update/state.json``
(root only), and what it reads of the running system (its image's version, the boot's id).

``state.json``: ``{"last_update": null | {"version", "bundle_sha256", "from_slot", "to_slot", "started_at",
"finished_at", "result", "message", "boot_id"}}``; times RFC 3339 UTC; ``result``: ``installing`` |
``installed`` (waiting for the reboot) | ``committed`` | ``rolled-back`` | ``refused`` | ``failed``;
``boot_id``: the kernel's boot id when the install finished, so the next boot can tell it is a new one.
Beside it ``"slot_versions": {"A": "0.1.0+abc"}``: the release each slot ran when an install left it (RAUC
records a version only for the slots it wrote, not for the one the card was flashed with).

Writes are atomic (a temporary file, fsync, rename, fsync of the directory: POSIX rename(2)): a power cut
leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATE_DIR = Path("/var/lib/eticket-update")
STATE_FILE = "state.json"
LOCK_FILE = "lock"
"""Held (``flock``, exclusive) by an install or a rollback, so that two at once (a retrying fleet tool and an
operator) cannot interleave."""
INCOMING_DIR = "incoming"
"""Uploads from the fleet tool: ``<sha256>.raucb`` and partial ``<sha256>.raucb.part`` (docs/fleet.md §11)."""
IMAGE_ID = Path("/etc/eticket-image-id")
"""Stamped by the image build (image-build/customize.sh): ``key=value`` lines, ``version=`` the release."""
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
"""A fresh random id per boot (proc(5))."""
RESULTS = ("installing", "installed", "committed", "rolled-back", "refused", "failed")


def now_rfc3339() -> str:
    """The time now, ``2026-12-02T03:00:00Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_version(path: Path = IMAGE_ID) -> str | None:
    """The running system's release from ``version=`` in ``path`` (``/etc/eticket-image-id``); None when the
    file or the key is missing (a desk, an image built before issue 12)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "version" and value.strip():
            return value.strip()
    return None


def boot_id(path: Path = BOOT_ID) -> str | None:
    """This boot's id (proc(5) ``random/boot_id``), None when unreadable."""
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a power cut leaves the old or the new file: a temporary file in the
    same directory, fsync, rename over ``path``, fsync of the directory. Mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class UpdateState:
    """``state.json`` in ``directory`` (default STATE_DIR)."""

    def __init__(self, directory: Path = STATE_DIR) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE

    @contextlib.contextmanager
    def locked(self) -> Iterator[bool]:
        """Hold LOCK_FILE for the ``with`` block; yields False (without waiting) when another process holds it."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def load(self) -> dict[str, Any]:
        """The state (``{"last_update": …}``); an empty state when there is no file yet. A file that does not
        parse (written by hand, or damaged) counts as empty rather than stopping every update."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {"last_update": None}
        if not isinstance(data, dict) or not isinstance(data.get("last_update"), dict | None):
            return {"last_update": None}
        return data

    def last_update(self) -> dict[str, Any] | None:
        """``last_update`` or None."""
        last: dict[str, Any] | None = self.load().get("last_update")
        return last

    def save_last_update(self, last: dict[str, Any]) -> None:
        """Replace ``last_update`` (atomically, see :func:`write_atomic`)."""
        state = self.load()
        state["last_update"] = last
        write_atomic(self.path, (json.dumps(state, indent=2) + "\n").encode())

    def slot_versions(self) -> dict[str, str]:
        """``{bootname: version}`` remembered by :meth:`remember_slot_version`."""
        known = self.load().get("slot_versions")
        return {str(k): str(v) for k, v in known.items() if isinstance(v, str)} if isinstance(known, dict) else {}

    def remember_slot_version(self, bootname: str, version: str | None) -> None:
        """Keep the release that runs in slot ``bootname`` (before an install leaves it)."""
        if version is None:
            return
        state = self.load()
        state["slot_versions"] = {**self.slot_versions(), bootname: version}
        write_atomic(self.path, (json.dumps(state, indent=2) + "\n").encode())

    def update(self, **changes: Any) -> dict[str, Any]:
        """Change fields of ``last_update`` (which must exist) and save; the new record."""
        last = dict(self.last_update() or {})
        last.update(changes)
        self.save_last_update(last)
        return last
