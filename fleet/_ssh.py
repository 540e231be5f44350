"""SSH to a device with asyncssh: keys only, the host key checked against the inventory, no password ever.

No trust on first use: the only host key accepted is the inventory's ``host_key`` (no ``~/.ssh/known_hosts``,
no certificate authority, no X.509); password, keyboard-interactive and GSS-API authentication are turned off,
so a device that asks for a password is refused instead of prompting. The user's ``~/.ssh/config`` is not read
(an inventory says everything needed, and a stray ``Host *`` there must not change who we talk to).
"""

from __future__ import annotations

import asyncio
import shlex
from dataclasses import dataclass

import asyncssh

from ._inventory import Device

CONNECT_TIMEOUT_SECONDS = 10.0
"""TCP connect plus SSH handshake and authentication."""
KEEPALIVE_SECONDS = 15.0
"""An SSH keepalive every 15 s, 3 unanswered ones drop the connection: a device that vanishes mid-command is
noticed within a minute instead of at the TCP timeout (many minutes)."""
KEEPALIVE_COUNT_MAX = 3


class FleetError(Exception):
    """Base of the fleet tool's errors; the message says what happened and what to do."""


class Unreachable(FleetError):
    """The device did not answer over SSH (no route, refused, timed out, connection lost)."""


class HostKeyRefused(FleetError):
    """The device's host key is not the inventory's: nothing is sent to it (possible man in the middle)."""


class AuthRefused(FleetError):
    """The device refused our key."""


class CommandFailed(FleetError):
    """An on-device command failed or printed something that is not the JSON it promises."""


@dataclass(frozen=True, slots=True)
class Result:
    """An on-device command's exit status and output (text)."""

    exit_status: int
    stdout: str
    stderr: str


async def connect(device: Device, timeout: float = CONNECT_TIMEOUT_SECONDS) -> asyncssh.SSHClientConnection:
    """An SSH connection to ``device`` (close it, or use ``async with``).

    Raises HostKeyRefused, AuthRefused or Unreachable (each message names the device and the address).
    """
    where = f"{device.name} ({device.user}@{device.host}:{device.port})"
    trusted = asyncssh.import_public_key(device.host_key)
    try:
        return await asyncssh.connect(
            device.host, device.port, username=device.user,
            known_hosts=([trusted], [], []), x509_trusted_certs=None,
            client_keys=[str(device.identity)] if device.identity else (),
            password_auth=False, kbdint_auth=False, gss_auth=False, gss_kex=False,
            config=None, connect_timeout=timeout, login_timeout=timeout,
            keepalive_interval=KEEPALIVE_SECONDS, keepalive_count_max=KEEPALIVE_COUNT_MAX)
    except asyncssh.HostKeyNotVerifiable as exc:
        raise HostKeyRefused(f"{where}: host key does not match the inventory's host_key ({exc.reason}); nothing "
                             "was sent. If the device was re-imaged, read its new key out of band (on its "
                             "console or SD card) and update the inventory; otherwise suspect a man in the "
                             "middle") from exc
    except asyncssh.PermissionDenied as exc:
        raise AuthRefused(f"{where}: our SSH key was refused ({exc.reason}); is its public key in the device's "
                          "authorized_keys (eticket.toml ssh_authorized_keys)?") from exc
    except (TimeoutError, OSError, asyncssh.Error) as exc:
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        raise Unreachable(f"{where}: unreachable: {reason}") from exc
    except asyncssh.KeyImportError as exc:  # an unreadable or passphrase-protected identity file
        raise AuthRefused(f"{where}: cannot load the identity {device.identity}: {exc}") from exc


async def run(conn: asyncssh.SSHClientConnection, argv: list[str], timeout: float | None = None) -> Result:
    """``argv`` run on the device (quoted for its shell); Unreachable if the connection drops or ``timeout``
    (seconds) passes first."""
    try:
        done = await asyncio.wait_for(conn.run(shlex.join(argv), check=False), timeout)
    except (TimeoutError, OSError, asyncssh.Error) as exc:
        raise Unreachable(f"connection lost during {shlex.join(argv)!r}: {exc or type(exc).__name__}") from exc
    out, err = done.stdout, done.stderr
    return Result(exit_status=done.exit_status if done.exit_status is not None else -1,
                  stdout=out if isinstance(out, str) else (out or b"").decode(errors="replace"),
                  stderr=err if isinstance(err, str) else (err or b"").decode(errors="replace"))
