"""Notice address changes at once: an rtnetlink socket subscribed to address and link events (Linux).

The kernel multicasts RTM_NEWADDR / RTM_DELADDR / RTM_NEWLINK to subscribers (rtnetlink(7)); we do not parse
them, we only take them as "something changed" and re-read the addresses (ifaddr) after a short debounce, so a
DHCP renewal or a Wi-Fi roam is re-announced over mDNS within a second or two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
DEBOUNCE_SECONDS = 0.5
"""Events come in bursts (an address change is a delete, an add, a route change): act once per burst."""


class AddressWatcher:
    """Calls ``on_change()`` (a coroutine function) after each burst of address or link events."""

    def __init__(self, on_change: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._on_change = on_change
        self._sock: socket.socket | None = None
        self._pending: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> bool:
        """Subscribe; False (and a log line) where rtnetlink is unavailable."""
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        except (OSError, AttributeError) as exc:
            log.warning("cannot watch address changes (%s); mDNS keeps the start-up addresses", exc)
            return False
        sock.setblocking(False)
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)
        return True

    def _readable(self) -> None:
        assert self._sock is not None
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while self._sock.recv(65536):
                pass
        loop = asyncio.get_running_loop()
        if self._pending is not None:
            self._pending.cancel()
        self._pending = loop.call_later(DEBOUNCE_SECONDS, self._fire)

    def _fire(self) -> None:
        self._pending = None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._on_change())
        else:  # a change arrived while we were handling the previous one: look again afterwards
            self._task.add_done_callback(lambda _: self._fire())

    def poke(self) -> None:
        """Call ``on_change()`` once now, as if an event had come (serialised with the events' calls): for
        changes made before :meth:`start` subscribed, e.g. a link-local address that arrived while mDNS was
        starting."""
        self._fire()

    def stop(self) -> None:
        """Unsubscribe."""
        if self._pending is not None:
            self._pending.cancel()
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
