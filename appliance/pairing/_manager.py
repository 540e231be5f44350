"""The device's pairing logic: the window, its lifetime, the two ways in, attempts and lockout."""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from ..errors import BadPairingRequest, PairingBusy, PairingLocked, PairingRefused
from ..store import Pos, Store
from ._spake import DeviceSide
from ._window import MAX_WRONG_CODES, PairingWindow

log = logging.getLogger(__name__)

SPAKE_SESSION_SECONDS = 10.0
"""A SPAKE2 exchange must be confirmed within this time (seconds), else it is dropped. The POS confirms as
soon as it has our answer — the person typed the code before step 1 — so this only allows for a slow link."""
MAX_SPAKE_SESSIONS = 4
"""Open exchanges at once (each costs the device a little work and memory)."""
SPAKE_STALE_SECONDS = 2.0
"""With MAX_SPAKE_SESSIONS open, a new exchange displaces the oldest one older than this (seconds): exchanges
left open cannot keep a till from pairing. A displaced exchange counts as a wrong attempt, so a flood of
exchanges ends in the lockout the screen shows instead of blocking pairing unseen."""
OPEN_WINDOW_SECONDS = 600.0
"""How long ``eticket pairings open`` keeps pairing open on a paired device."""


@dataclass(slots=True)
class _Session:
    side: DeviceSide
    code: str
    started_at: float
    expires_at: float


class PairingManager:
    """Owns the pairing window. ``on_change(window)`` redraws the screen; ``on_paired()`` updates mDNS.

    All ``async_`` methods run on the event loop.
    """

    def __init__(self, *, store: Store, device_id: str, address: str, name: str, fingerprint: str,
                 ttl_seconds: float, on_change: Callable[..., Awaitable[None]],
                 on_paired: Callable[[], Awaitable[None]]) -> None:
        self._store = store
        self._device_id = device_id
        self._address = address
        self._name = name
        self._fingerprint = fingerprint
        self._ttl = ttl_seconds
        self._on_change = on_change
        self._on_paired = on_paired
        self.window: PairingWindow | None = None
        self._sessions: dict[str, _Session] = {}

    async def async_open(self, seconds: float | None) -> PairingWindow:
        """Open (or re-open) the window; ``seconds`` None keeps it open until the first pairing."""
        self.window = PairingWindow(
            device_id=self._device_id, address=self._address, name=self._name, fingerprint=self._fingerprint,
            ttl_seconds=self._ttl, closes_at=None if seconds is None else time.time() + seconds,
        )
        self._sessions.clear()
        await self._on_change(self.window, now=True)
        log.info("pairing window open%s", "" if seconds is None else f" for {seconds:.0f} s")
        return self.window

    async def async_set_address(self, address: str) -> None:
        """The API's address changed: later QR codes carry the new one (the open window is redrawn)."""
        if address == self._address:
            return
        self._address = address
        if self.window is not None:
            self.window.address = address
            await self._on_change(self.window)

    async def async_close(self) -> None:
        """Close the window (after a pairing, or when its time is up)."""
        self.window = None
        self._sessions.clear()
        await self._on_change(None)

    async def async_tick(self) -> None:
        """Once a second: close a window whose time is up, renew an expired code, end a lockout's display."""
        window = self.window
        if window is None:
            return
        now = time.time()
        self._sessions = {k: v for k, v in self._sessions.items() if v.expires_at > now}
        if window.closed:
            await self.async_close()
        elif window.expired:
            window.renew()
            await self._on_change(window)
        elif window.locked_until and now >= window.locked_until:
            window.locked_until = 0.0
            await self._on_change(window)

    def _open_window(self) -> PairingWindow:
        window = self.window
        if window is None or window.closed:
            raise PairingRefused("Pairing is closed. On the device, run 'eticket pairings open' to pair another POS.")
        left = window.locked_for()
        if left > 0:
            raise PairingLocked(f"Too many wrong codes; pairing is locked for {left:.0f} s more.",
                                retry_after=int(left) + 1)
        return window

    async def _async_wrong(self, window: PairingWindow) -> None:
        if window.count_wrong():
            self._sessions.clear()
            await self._on_change(window)
            log.warning("pairing locked after %d wrong attempts; new code on screen", MAX_WRONG_CODES)

    async def _async_grant(self, name: str) -> tuple[Pos, str]:
        # Spend the window before the first await: concurrent requests with the same secret or code must
        # find it closed (single use), not race through while the token is being stored.
        window, self.window = self.window, None
        self._sessions.clear()
        token = secrets.token_urlsafe(32)
        try:
            pos = await run_in_threadpool(self._store.add_pos, name, token)
        except BaseException:  # nothing was stored (the storage failed): the code on screen stays valid
            self.window = window
            raise
        await self.async_close()
        await self._on_paired()
        log.info("paired POS %s (%r)", pos.id, pos.name)
        return pos, token

    async def async_pair_with_secret(self, secret: str, name: str) -> tuple[Pos, str]:
        """The QR way: the POS pinned our certificate from the QR and proves it read the QR's secret.

        Raises:
            PairingRefused: window closed, or wrong, expired or already used secret.
            PairingLocked: too many wrong attempts lately.
        """
        window = self._open_window()
        if not window.check_secret(secret):
            await self._async_wrong(window)
            raise PairingRefused("Wrong, expired or already used pairing secret. Scan the QR on the screen again.")
        return await self._async_grant(name)

    async def async_spake_start(self, msg_a: bytes) -> tuple[str, bytes]:
        """The typed-code way, step 1: answer the POS's SPAKE2 message; return ``(session id, our message)``.

        With MAX_SPAKE_SESSIONS exchanges open, the oldest one started more than SPAKE_STALE_SECONDS ago is
        dropped to make room (a wrong attempt: see SPAKE_STALE_SECONDS).

        Raises:
            PairingRefused / PairingLocked: as above; BadPairingRequest: malformed message;
            PairingBusy: every slot holds an exchange younger than SPAKE_STALE_SECONDS.
        """
        window = self._open_window()
        side = DeviceSide(window.code, self._device_id)
        try:
            side.receive(msg_a, self._fingerprint)
        except ValueError as exc:
            raise BadPairingRequest("The SPAKE2 message is malformed.") from exc
        now = time.time()
        self._sessions = {k: v for k, v in self._sessions.items() if v.expires_at > now}
        if len(self._sessions) >= MAX_SPAKE_SESSIONS:
            oldest = min(self._sessions, key=lambda k: self._sessions[k].started_at)
            wait = self._sessions[oldest].started_at + SPAKE_STALE_SECONDS - now
            if wait > 0:
                raise PairingBusy(f"{MAX_SPAKE_SESSIONS} pairing exchanges were started just now; retry in "
                                  f"{wait:.1f} s.", retry_after=math.ceil(wait))
            age = now - self._sessions.pop(oldest).started_at
            log.warning("typed-code pairing: an exchange left unconfirmed for %.1f s was displaced by a new one "
                        "(counted as a wrong attempt)", age)
            await self._async_wrong(window)
            self._open_window()  # that may have been the attempt that locks pairing (and renews the code)
        session = secrets.token_urlsafe(16)
        self._sessions[session] = _Session(side=side, code=window.code, started_at=now,
                                           expires_at=now + SPAKE_SESSION_SECONDS)
        return session, side.msg_b

    async def async_spake_confirm(self, session: str, pos_confirm: bytes, name: str) -> tuple[bytes, bytes, Pos]:
        """Step 2: check the POS's confirmation; on success return ``(our confirmation, sealed grant, pos)``.

        A failed confirmation is a wrong attempt: wrong code, or a relay between us (certificate mismatch).

        Raises:
            PairingRefused: unknown/expired session, code renewed meanwhile, or confirmation wrong.
            PairingLocked: too many wrong attempts lately.
        """
        window = self._open_window()
        state = self._sessions.pop(session, None)
        if state is None or state.code != window.code or window.expired:
            raise PairingRefused("This pairing exchange is unknown or expired; start again with the code on screen.")
        if not state.side.check(pos_confirm):
            await self._async_wrong(window)
            raise PairingRefused("Wrong pairing code (or the connection is not direct to this device).")
        pos, token = await self._async_grant(name)
        confirm, sealed = state.side.seal({"token": token, "pos_id": pos.id, "device_id": self._device_id})
        return confirm, sealed, pos
