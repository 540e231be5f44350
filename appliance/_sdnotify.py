"""sd_notify(3) for ``Type=notify`` units: READY=1 once the appliance serves, WATCHDOG=1 from the event loop.

The protocol is one datagram per message to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a path, or an
abstract socket written ``@name``). Without ``$NOTIFY_SOCKET`` (a desk, a test) every call is a no-op.
``$WATCHDOG_USEC`` asks for keep-alives; we send them at half that interval (as sd_watchdog_enabled(3)
advises) from a task on the event loop, so a hung loop stops them and systemd restarts the service.

Why not a library: ``systemd-python`` needs libsystemd headers and has no wheels (the image installs from
wheels only); ``sdnotify`` is unmaintained since 2017. The protocol is a few lines.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"
USEC_PER_SECOND = 1_000_000
WATCHDOG_FRACTION = 0.5
"""Keep-alives go out at this fraction of ``WATCHDOG_USEC``."""


@dataclass(frozen=True, slots=True)
class Notifier:
    """Where to send notifications (``address``: None = nowhere) and how often to feed the watchdog
    (``watchdog_interval``: seconds, None = no watchdog requested)."""

    address: str | None = None
    watchdog_interval: float | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], pid: int | None = None) -> Notifier:
        """Read ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID`` (the watchdog is ours only when
        ``WATCHDOG_PID`` is unset or equals ``pid``, default this process). Malformed values disable the
        watchdog rather than fail the start."""
        address = environ.get(NOTIFY_SOCKET_ENV) or None
        interval: float | None = None
        owner = environ.get(WATCHDOG_PID_ENV)
        mine = owner is None or owner == str(pid if pid is not None else os.getpid())
        try:
            usec = int(environ.get(WATCHDOG_USEC_ENV, "0"))
        except ValueError:
            usec = 0
        if mine and usec > 0:
            interval = usec / USEC_PER_SECOND * WATCHDOG_FRACTION
        return cls(address=address, watchdog_interval=interval)

    def notify(self, message: str) -> bool:
        """Send ``message`` (e.g. ``"READY=1"``, ``"STATUS=serving"``); True when sent, False when there is
        no socket to send to. Send errors are logged, never raised: a notification must not kill the
        service."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message.encode(), target)
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.address, exc)
            return False
        return True

    async def async_watchdog(self) -> None:
        """Send ``WATCHDOG=1`` every ``watchdog_interval`` seconds until cancelled; returns at once when no
        watchdog was requested."""
        import asyncio  # here: the kiosk uses this module without an event loop

        if self.address is None or self.watchdog_interval is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval)
