"""What the fleet tool does on one device over SSH: read its update status, upload a bundle (resumable,
checked by SHA-256 on the device), install it, wait for the device to come back, roll it back.

The on-device side is ``eticket update`` (docs/fleet.md); its JSON is parsed here and nowhere else.
Uploads go to ``/var/lib/eticket-update/incoming/<sha256>.raucb.part`` (root-only, on the data partition), are
continued from the size already there, hashed on the device and only then renamed to ``<sha256>.raucb``; a
partial file never reaches ``rauc install``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh

from ._inventory import Device
from ._ssh import CommandFailed, Unreachable, connect, run

INCOMING_DIR = "/var/lib/eticket-update/incoming"
UPLOAD_CHUNK_BYTES = 1 << 20
"""Bytes per SFTP write call (asyncssh splits it into parallel requests); progress is reported per chunk."""
STATUS_TIMEOUT_SECONDS = 60.0
INSTALL_TIMEOUT_SECONDS = 1800.0
"""``rauc install`` writes a whole root file system to an SD card: minutes on a Pi."""
HASH_TIMEOUT_SECONDS = 600.0
RECONNECT_FIRST_SECONDS = 1.0
RECONNECT_MAX_SECONDS = 5.0
"""Reconnect backoff while a device reboots: 1 s, doubling, at most 5 s between attempts (a longer gap is
time the rollout waits after the device is back). A device that answers but is not done yet (its health
gate running) is asked again every :data:`RECONNECT_FIRST_SECONDS`."""
EXIT_REFUSED = 10
EXIT_CURRENT = 11
EXIT_NO_GOOD_SLOT = 12
"""``eticket update`` exit statuses (docs/fleet.md §11): refused bundle, version already booted, no good other slot."""
TERMINAL_RESULTS = {"committed", "rolled-back", "refused", "failed"}


def _json(result_stdout: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(result_stdout)
    except json.JSONDecodeError as exc:
        raise CommandFailed(f"{what} printed no JSON: {result_stdout[:200]!r}") from exc
    if not isinstance(value, dict):
        raise CommandFailed(f"{what} printed {type(value).__name__}, not a JSON object")
    return value


async def read_status(conn: asyncssh.SSHClientConnection, device: Device) -> dict[str, Any]:
    """The device's ``eticket update status --json`` (docs/fleet.md §11 shape: version, booted, primary, boot_state,
    slots, other_slot_good, last_update). CommandFailed if it exits non-zero or prints no JSON; Unreachable if
    the connection drops."""
    done = await run(conn, [device.command, "update", "status", "--json"], STATUS_TIMEOUT_SECONDS)
    if done.exit_status != 0:
        raise CommandFailed(f"eticket update status exited {done.exit_status}: {done.stderr.strip()[-300:]}")
    return _json(done.stdout, "eticket update status")


def bundle_paths(sha256: str) -> tuple[str, str]:
    """(final, partial) remote paths of the bundle with this SHA-256 (hex)."""
    final = f"{INCOMING_DIR}/{sha256}.raucb"
    return final, final + ".part"


async def _remote_sha256(conn: asyncssh.SSHClientConnection, path: str) -> str:
    done = await run(conn, ["sha256sum", path], HASH_TIMEOUT_SECONDS)
    if done.exit_status != 0:
        raise CommandFailed(f"sha256sum {path} exited {done.exit_status}: {done.stderr.strip()[-300:]}")
    return done.stdout.split()[0] if done.stdout.split() else ""


async def upload(conn: asyncssh.SSHClientConnection, bundle: Path, sha256: str, size: int,
                 progress: Callable[[int, int], None],
                 verifying: Callable[[], None] = lambda: None) -> tuple[str, int, int]:
    """Put ``bundle`` on the device, continuing a partial upload; returns (remote path, bytes sent, offset the
    upload resumed from). ``progress(done_bytes, size)`` is called after each chunk, ``verifying()`` before
    the device hashes the file.

    A complete ``<sha256>.raucb`` already there is reused (0 bytes sent); a ``.part`` longer than the bundle is
    restarted. After the upload the device hashes the file; on a mismatch the part is removed and
    CommandFailed raised (the next run starts afresh). Unreachable if the connection drops: the part stays
    for the next run to continue.
    """
    final, part = bundle_paths(sha256)
    try:
        mkdir = await run(conn, ["sh", "-c", f"umask 077 && mkdir -p {INCOMING_DIR}"], STATUS_TIMEOUT_SECONDS)
        if mkdir.exit_status != 0:
            raise CommandFailed(f"cannot create {INCOMING_DIR}: {mkdir.stderr.strip()[-300:]}")
        async with conn.start_sftp_client() as sftp:
            if await sftp.exists(final) and (await sftp.stat(final)).size == size:
                progress(size, size)
                verifying()
                if await _remote_sha256(conn, final) == sha256:
                    return final, 0, size
                await sftp.remove(final)
            offset = 0
            if await sftp.exists(part):
                offset = (await sftp.stat(part)).size or 0
                if offset > size:  # not a prefix of this bundle: start again
                    offset = 0
            sent = 0
            async with sftp.open(part, "r+b" if offset else "wb") as remote:
                with bundle.open("rb") as local:
                    local.seek(offset)
                    position = offset
                    progress(position, size)
                    while chunk := local.read(UPLOAD_CHUNK_BYTES):
                        await remote.write(chunk, position)
                        position += len(chunk)
                        sent += len(chunk)
                        progress(position, size)
            verifying()
            if await _remote_sha256(conn, part) != sha256:
                await sftp.remove(part)
                raise CommandFailed(f"the uploaded bundle does not hash to {sha256} on the device: removed, "
                                    "run the deploy again")
            await sftp.posix_rename(part, final)
            return final, sent, offset
    except (TimeoutError, OSError, asyncssh.Error) as exc:
        if isinstance(exc, asyncssh.SFTPError):
            raise CommandFailed(f"SFTP upload to {part}: {exc.reason}") from exc
        raise Unreachable(f"connection lost during the upload: {exc or type(exc).__name__}") from exc


async def install(conn: asyncssh.SSHClientConnection, device: Device, path: str,
                  sha256: str) -> tuple[int, dict[str, Any]]:
    """``eticket update install PATH --sha256 H --json`` on the device: (exit status, its JSON: result,
    version, to_slot, message). The device reboots by itself after exit 0."""
    done = await run(conn, [device.command, "update", "install", path, "--sha256", sha256, "--json"],
                     INSTALL_TIMEOUT_SECONDS)
    try:
        answer = _json(done.stdout, "eticket update install")
    except CommandFailed:
        answer = {"result": "failed", "message": (done.stderr.strip() or done.stdout.strip())[-300:]}
    return done.exit_status, answer


async def rollback(conn: asyncssh.SSHClientConnection, device: Device) -> tuple[int, dict[str, Any]]:
    """``eticket update rollback --json``: (exit status, JSON); exit 12 when the other slot is not good."""
    done = await run(conn, [device.command, "update", "rollback", "--json"], STATUS_TIMEOUT_SECONDS)
    try:
        answer = _json(done.stdout, "eticket update rollback")
    except CommandFailed:
        answer = {"result": "failed", "message": (done.stderr.strip() or done.stdout.strip())[-300:]}
    return done.exit_status, answer


async def wait_back(device: Device, done: Callable[[dict[str, Any]], bool], deadline_seconds: float,
                    on_attempt: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Reconnect to ``device`` (backoff 1 s doubling to 5 s) until ``done(status)`` holds for its update
    status, or ``deadline_seconds`` pass: then Unreachable (with the last status seen, if any, in the message).

    Used after an install or a rollback: the device reboots, may boot the new slot, run its health gate and
    commit or fall back by itself; we only watch. A host key that changes meanwhile raises HostKeyRefused.
    """
    from ._ssh import AuthRefused, HostKeyRefused

    deadline = time.monotonic() + deadline_seconds
    delay = RECONNECT_FIRST_SECONDS
    reason = "no answer"
    while True:
        try:
            async with await connect(device, timeout=min(10.0, max(1.0, deadline - time.monotonic()))) as conn:
                status = await read_status(conn, device)
            if done(status):
                return status
            reason = f"still {(status.get('last_update') or {}).get('result') or status.get('boot_state')}"
            delay = RECONNECT_FIRST_SECONDS  # it answers (its health gate is running): ask again in 1 s
        except (HostKeyRefused, AuthRefused):
            raise
        except (Unreachable, CommandFailed) as exc:
            reason = str(exc)
        if on_attempt is not None:
            on_attempt(reason)
        left = deadline - time.monotonic()
        if left <= 0:
            raise Unreachable(f"{device.name}: not back within {deadline_seconds:.0f} s ({reason})")
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, RECONNECT_MAX_SECONDS)
