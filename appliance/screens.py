"""Pairing extra screens (a second display, later an old tablet's browser) with a one-time link.

``eticket screens add`` (device-local admin) makes a link of 128 random bits, valid 10 minutes, single-use,
shown as a QR on the device screen. Whoever opens it *from that screen* — physical presence again — and
confirms gets a screen token (stored hashed) that opens the display stream.

``eticket screens revoke`` forgets the token and ends that screen's open display streams at once: each stream
holds a revocation event from :meth:`ScreenLinks.revocation`, which :meth:`ScreenLinks.async_revoke` sets.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from starlette.concurrency import run_in_threadpool

from .display import Display
from .errors import PairingRefused
from .store import Pos, Store, new_screen_id

log = logging.getLogger(__name__)

LINK_SECONDS = 600.0
ENDED_LINKS_KEPT = 16
"""How many spent, expired or replaced links the device remembers (since start) to tell a browser why its
link no longer works."""
CLAIM_REPEAT_SECONDS = 60.0
"""For this long after a link is spent, the same claim again (a double tap on the button, a reload of the
"screen paired" page, a JSON client retrying after a lost answer) answers the same screen and key again
instead of "already used", which left a paired screen whose key nobody held. The secret is the capability:
whoever holds it was authorized for that one screen. The key is kept in memory (never stored or logged)
only this long; a revoke ends it sooner."""
LinkState = Literal["open", "used", "expired", "replaced", "unknown"]


@dataclass(slots=True)
class _Link:
    secret: str
    name: str
    expires_at: float
    screen_id: str
    """The id the screen will have once it claims the link (shown by ``eticket screens add``)."""


@dataclass(slots=True)
class _Claim:
    """The answer of the last spent link, repeated for CLAIM_REPEAT_SECONDS."""

    secret: str
    screen: Pos
    token: str
    until: float


class ScreenLinks:
    """At most one open link at a time; a new one replaces the old."""

    def __init__(self, store: Store, display: Display) -> None:
        self._store = store
        self._display = display
        self._link: _Link | None = None
        self._claimed: _Claim | None = None
        self._claiming = asyncio.Lock()
        """One claim at a time, so a double tap's second request waits for the first's key, then gets it."""
        self._ended: dict[str, LinkState] = {}
        """Secret → why it ended ("used", "expired", "replaced"), the last ENDED_LINKS_KEPT."""
        self._streams: dict[str, set[asyncio.Event]] = {}
        self._revoked: set[str] = set()
        """Screen ids revoked since start (ids are random and never reused): a stream that authenticated
        just before a revoke and registers just after it still finds itself revoked."""

    @contextlib.contextmanager
    def revocation(self, screen_id: str) -> Iterator[asyncio.Event]:
        """For the life of one display stream of ``screen_id`` (``scr-…``, or any other id for the local
        kiosk, which cannot be revoked): an event set when the screen is revoked. On the event loop."""
        event = asyncio.Event()
        if screen_id in self._revoked:
            event.set()
        streams = self._streams.setdefault(screen_id, set())
        streams.add(event)
        try:
            yield event
        finally:
            streams.discard(event)
            if not streams and self._streams.get(screen_id) is streams:
                del self._streams[screen_id]

    async def async_revoke(self, screen_id: str) -> bool:
        """Forget ``screen_id``'s token and end its open display streams now; False if there is no such screen.
        Logged (the id, never the token)."""
        removed = await run_in_threadpool(self._store.revoke_screen, screen_id)
        if not removed:
            return False
        self._revoked.add(screen_id)
        streams = self._streams.pop(screen_id, set())
        for event in streams:
            event.set()
        log.info("revoked screen %s; ended %d open display stream(s)", screen_id, len(streams))
        return True

    async def async_add(self, name: str, public_url: str) -> tuple[str, str, float]:
        """Open a link for a screen called ``name``; return ``(screen_id, url, expires_at)`` (Unix seconds):
        the id the screen will have once it claims the link. A link still open is ended ("replaced", or
        "expired" if its time was up), so opening it later says why."""
        if self._link is not None:
            self._end(self._link, "expired" if time.time() >= self._link.expires_at else "replaced")
        self._link = _Link(secrets.token_urlsafe(16), name, time.time() + LINK_SECONDS, new_screen_id())
        url = f"{public_url}/screen/claim/{self._link.secret}"
        from .service import rfc3339

        await self._display.async_set_screen_link({"url": url, "name": name,
                                                   "expires_at": rfc3339(self._link.expires_at)})
        log.info("screen link opened for %r", name)
        return self._link.screen_id, url, self._link.expires_at

    async def async_claim(self, secret: str) -> tuple[Pos, str]:
        """Spend the link: ``(screen, token)``. The same secret again within CLAIM_REPEAT_SECONDS (seconds)
        of the first claim gets the same ``(screen, token)`` (unless that screen was revoked since).

        Raises:
            PairingRefused: no open link, expired, wrong secret, or a used link after CLAIM_REPEAT_SECONDS.
        """
        async with self._claiming:
            return await self._async_claim(secret)

    async def _async_claim(self, secret: str) -> tuple[Pos, str]:
        claimed = self._claimed
        if (claimed is not None and time.time() < claimed.until and claimed.screen.id not in self._revoked
                and hmac.compare_digest(secret.encode(), claimed.secret.encode())):
            log.info("screen %s (%r): the same claim again, answered with the same key", claimed.screen.id,
                     claimed.screen.name)
            return claimed.screen, claimed.token
        link = self._link
        if link is None or time.time() >= link.expires_at or not hmac.compare_digest(
                secret.encode(), link.secret.encode()):
            raise PairingRefused("This screen link is unknown, used or expired; run 'eticket screens add' again.")
        self._end(link, "used")
        token = secrets.token_urlsafe(32)
        screen = await run_in_threadpool(self._store.add_screen, link.name, token, link.screen_id)
        self._claimed = _Claim(link.secret, screen, token, time.time() + CLAIM_REPEAT_SECONDS)
        await self._display.async_set_screen_link(None)
        log.info("screen %s (%r) paired", screen.id, screen.name)
        return screen, token

    def link_state(self, secret: str) -> LinkState:
        """What the link with ``secret`` is now, without spending it (a browser's GET of the claim page):
        ``open`` (it pairs a screen), ``used`` (a screen was paired with it), ``expired`` (after LINK_SECONDS),
        ``replaced`` (a newer ``eticket screens add``), or ``unknown`` (never made here, or before the last
        restart: links live in memory only)."""
        link = self._link
        if link is not None and hmac.compare_digest(secret.encode(), link.secret.encode()):
            return "expired" if time.time() >= link.expires_at else "open"
        return self._ended.get(secret, "unknown")

    def _end(self, link: _Link, why: LinkState) -> None:
        """Close the open ``link``, remembering why (the oldest memory goes first)."""
        if self._link is link:
            self._link = None
        self._ended[link.secret] = why
        while len(self._ended) > ENDED_LINKS_KEPT:
            del self._ended[next(iter(self._ended))]

    async def async_tick(self) -> None:
        """Drop an expired link from the screen, and the key of a claim past CLAIM_REPEAT_SECONDS."""
        if self._claimed is not None and time.time() >= self._claimed.until:
            self._claimed = None
        if self._link is not None and time.time() >= self._link.expires_at:
            self._end(self._link, "expired")
            await self._display.async_set_screen_link(None)
