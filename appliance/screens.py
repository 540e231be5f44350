"""Pairing extra screens (a second display, later an old tablet's browser) with a one-time link.

``eticket screens add`` (device-local admin) makes a link of 128 random bits, valid 10 minutes, single-use,
shown as a QR on the device screen. Whoever opens it *from that screen* — physical presence again — and
confirms gets a screen token (stored hashed) that opens the display stream.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from .display import Display
from .errors import PairingRefused
from .store import Pos, Store

log = logging.getLogger(__name__)

LINK_SECONDS = 600.0


@dataclass(slots=True)
class _Link:
    secret: str
    name: str
    expires_at: float


class ScreenLinks:
    """At most one open link at a time; a new one replaces the old."""

    def __init__(self, store: Store, display: Display) -> None:
        self._store = store
        self._display = display
        self._link: _Link | None = None

    async def async_add(self, name: str, public_url: str) -> tuple[str, float]:
        """Open a link for a screen called ``name``; return ``(url, expires_at)`` (Unix seconds)."""
        self._link = _Link(secrets.token_urlsafe(16), name, time.time() + LINK_SECONDS)
        url = f"{public_url}/screen/claim/{self._link.secret}"
        from .service import rfc3339

        await self._display.async_set_screen_link({"url": url, "name": name,
                                                   "expires_at": rfc3339(self._link.expires_at)})
        log.info("screen link opened for %r", name)
        return url, self._link.expires_at

    async def async_claim(self, secret: str) -> tuple[Pos, str]:
        """Spend the link: ``(screen, token)``.

        Raises:
            PairingRefused: no open link, expired, or wrong secret.
        """
        link = self._link
        if link is None or time.time() >= link.expires_at or not hmac.compare_digest(
                secret.encode(), link.secret.encode()):
            raise PairingRefused("This screen link is unknown, used or expired; run 'eticket screens add' again.")
        self._link = None
        token = secrets.token_urlsafe(32)
        screen = await run_in_threadpool(self._store.add_screen, link.name, token)
        await self._display.async_set_screen_link(None)
        log.info("screen %s (%r) paired", screen.id, screen.name)
        return screen, token

    async def async_tick(self) -> None:
        """Drop an expired link from the screen."""
        if self._link is not None and time.time() >= self._link.expires_at:
            self._link = None
            await self._display.async_set_screen_link(None)
