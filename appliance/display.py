"""The customer screen's state, as the appliance decides it, and the stream screen clients follow.

States (``scene``):

* ``pairing`` — no POS paired yet: the pairing QR and the short code.
* ``idle`` — the shop name.
* ``wifi`` — without a relay, when a guest Wi-Fi is configured: its join QR (``ticket.wifi.qr``, the ``WIFI:``
  format) for ``guest_wifi_seconds`` before the receipt's own QR, so a phone on mobile data can reach the LAN.
* ``ticket`` — the QR of a receipt's capability URL, total and currency; back to rest (``idle``) after
  ``display_timeout_seconds``, on ``DELETE /api/v1/display``, or replaced by the next ticket.
* ``screen-link`` — the one-time link that pairs another screen (``eticket screens add``). Until the link is
  claimed or expires, every return to rest (a clear, a receipt's timeout, a pairing window closing) comes back
  to it rather than to ``idle``/``pairing``.
* ``downloaded`` — the customer's phone fetched the receipt on screen: a thank-you for a few seconds.
* ``sale`` — a sale going on: the two lines a till sends for a customer display (``sale.lines``, TakePOS's
  ``GET /display/index.php?text=``: the item just rung up, then the total at payment), until the receipt
  comes, a clear, or ``SALE_SECONDS`` without a new line.

``lang`` (fr, it, en, de, es) is the shop's language, or the one the ticket asked for. ``logo`` is the
path of the shop's logo on the appliance (``/logo?v=<hash>``) or null; ``clock`` asks the idle scene for
the time.

Shape sent to screen clients (JSON)::

    {"seq": 7, "scene": "ticket", "shop": "Boulangerie Martin",
     "ticket": {"id": "t-…", "url": "http://192.168.1.20:8080/r/…", "total": "12.50", "currency": "EUR",
                "expires_at": "2026-12-29T10:00:00Z"},
     "pairing": null}

``notice`` is null, or a message for the shop owner drawn over every scene (a refused ``eticket.toml``).
``storage`` is null, or ``{"status": "repaired"|"damaged", "receipts_lost", "pairings_lost"}`` (with
``"database_lost": true`` when the whole database was gone): a band too.

``till_bound`` is null, or ``{"address": "192.168.1.30"}`` after a till printing while pairing was open was
allowed to print (appliance/printer): a band for the shop owner saying so, on the ``idle`` scene only (never
over a QR, nor over the customer's sale or thank-you), for ``TILL_BOUND_SECONDS`` from the moment the screen
comes to rest after the test receipt's QR.

``seq`` increases with every change, so a client can tell a new state from a repeated one.
All methods run on the event loop (``async_`` where they wait).

Change notification holds no lock: each generation of the state has one future, resolved when the state
changes; followers wait on it through :func:`asyncio.wait`, which never cancels or takes the shared future,
so a follower cancelled at any moment (a screen that drops while the state changes: Starlette cancels its
task, anyio again on every loop iteration) leaves nothing behind. The lock-based design before it
(``asyncio.Condition`` + ``wait_for``) could leave its lock released by the wrong task and then held for
ever on Python 3.11: every later change, the next receipt and shutdown then waited on it.
"""

from __future__ import annotations

import asyncio
import copy
import time
from datetime import datetime
from typing import Any

from .pairing._window import PairingWindow

SCENE_IDLE = "idle"
SCENE_PAIRING = "pairing"
SCENE_TICKET = "ticket"
SCENE_SCREEN_LINK = "screen-link"
SCENE_DOWNLOADED = "downloaded"
SCENE_WIFI = "wifi"
SCENE_SALE = "sale"
_TICKET_SCENES = (SCENE_WIFI, SCENE_TICKET, SCENE_DOWNLOADED)
DOWNLOADED_SECONDS = 6.0
"""How long the thank-you shows after the customer's phone fetched the receipt on screen."""
SALE_SECONDS = 300.0
"""A sale's display lines stay this long after the last one (a till left mid-sale goes back to rest)."""
TILL_BOUND_SECONDS = 60.0
"""How long the band saying that a till was allowed to print stays on the idle scene."""


class Display:
    """Holds the current screen state and wakes every follower when it changes."""

    def __init__(self, shop: str, timeout_seconds: float, lang: str = "fr", logo: str | None = None,
                 clock: bool = False) -> None:
        self._shop = shop
        self._lang = lang
        self._logo = logo
        self._clock = clock
        self._timeout = timeout_seconds
        self._seq = 0
        self._scene = SCENE_IDLE
        self._ticket: dict[str, Any] | None = None
        self._storage: dict[str, Any] | None = None
        self._pairing: dict[str, Any] | None = None
        self._screen_link: dict[str, Any] | None = None
        self._notice: str | None = None
        self._sale: dict[str, Any] | None = None
        self._till_bound: dict[str, Any] | None = None
        self._till_bound_timer: asyncio.TimerHandle | None = None
        self._next_change: asyncio.Future[None] | None = None
        """Resolved (and replaced) at the next change; created by the first follower that waits."""
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False

    def snapshot(self) -> dict[str, Any]:
        """The current state, in the shape documented above (a copy)."""
        return copy.deepcopy(
            {
                "seq": self._seq,
                "scene": self._scene,
                "shop": self._shop,
                "logo": self._logo,
                "clock": self._clock,
                "lang": (self._ticket or {}).get("lang") or self._lang
                if self._scene in _TICKET_SCENES else self._lang,
                "ticket": self._ticket if self._scene in _TICKET_SCENES else None,
                "pairing": self._pairing if self._scene == SCENE_PAIRING else None,
                "screen_link": self._screen_link if self._scene == SCENE_SCREEN_LINK else None,
                "notice": self._notice,
                "storage": self._storage,
                "sale": self._sale if self._scene == SCENE_SALE else None,
                "till_bound": self._till_bound if self._scene == SCENE_IDLE else None,
            }
        )

    async def async_wait_change(self, after_seq: int, timeout: float) -> dict[str, Any] | None:
        """Wait until ``seq`` exceeds ``after_seq``; return the new state, or None after ``timeout`` seconds
        or once the display is closed (check :attr:`closed`).

        Safe to cancel at any point: the caller's CancelledError propagates and nothing is left waiting.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._seq <= after_seq and not self.closed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            if self._next_change is None:
                self._next_change = loop.create_future()
            # asyncio.wait neither cancels nor consumes the shared future when this task is cancelled or
            # times out; it only removes its own callback.
            await asyncio.wait((self._next_change,), timeout=remaining)
        return None if self.closed else self.snapshot()

    def _notify(self) -> None:
        """Wake every follower: resolve this generation's future; the next follower makes a new one."""
        change, self._next_change = self._next_change, None
        if change is not None and not change.done():
            change.set_result(None)

    async def async_close(self) -> None:
        """The process is stopping: wake every follower so that its stream ends and shutdown is prompt."""
        self._cancel_timer()
        self.closed = True
        self._notify()

    async def async_show_ticket(self, ticket: dict[str, Any], wifi_seconds: float = 0.0) -> None:
        """Show a ticket's QR now; schedule the return to idle. With ``ticket["wifi"]`` (``{"qr", "ssid"}``)
        the Wi-Fi join QR shows first, for ``wifi_seconds``."""
        self._cancel_timer()
        self._ticket = ticket
        self._sale = None
        loop = asyncio.get_running_loop()
        if ticket.get("wifi") and wifi_seconds > 0:
            await self._async_set(SCENE_WIFI)
            self._timer = loop.call_later(wifi_seconds, lambda: loop.create_task(self._async_wifi_done(ticket)))
            return
        await self._async_set(SCENE_TICKET)
        self._timer = loop.call_later(self._timeout, lambda: loop.create_task(self.async_clear()))

    async def _async_wifi_done(self, ticket: dict[str, Any]) -> None:
        if self._scene == SCENE_WIFI and self._ticket is ticket:
            await self._async_set(SCENE_TICKET)
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._timeout, lambda: loop.create_task(self.async_clear()))

    async def async_show_sale(self, lines: list[str]) -> None:
        """Show a sale's customer-display lines (``["Croissant      1,20", ""]``, at most two, as a till
        sends them); back to rest after SALE_SECONDS without a new call. A receipt on screen gives way: the
        next customer's sale has begun."""
        self._cancel_timer()
        self._ticket = None
        self._sale = {"lines": list(lines)}
        await self._async_set(SCENE_SALE)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(SALE_SECONDS, lambda: loop.create_task(self.async_clear()))

    async def async_till_bound(self, address: str) -> None:
        """Say on the idle scene, for TILL_BOUND_SECONDS once the screen is at rest, that the till at
        ``address`` may print now."""
        if self._till_bound_timer is not None:
            self._till_bound_timer.cancel()
            self._till_bound_timer = None
        self._till_bound = {"address": address}
        await self._async_set(self._scene)

    async def _async_till_bound_done(self) -> None:
        self._till_bound_timer = None
        self._till_bound = None
        await self._async_set(self._scene)

    async def async_ticket_downloaded(self, ticket_id: str) -> None:
        """The phone fetched ``ticket_id``: if it is on screen, thank the customer, then go idle."""
        if self._scene not in (SCENE_TICKET, SCENE_WIFI) or (self._ticket or {}).get("id") != ticket_id:
            return
        self._cancel_timer()
        await self._async_set(SCENE_DOWNLOADED)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(DOWNLOADED_SECONDS, lambda: loop.create_task(self.async_clear()))

    async def async_rebase_urls(self, old_base: str, new_base: str) -> None:
        """The device's own base URL changed (``http://169.254.7.9:8080`` -> ``http://192.168.1.20:8080``, a
        new address): the receipt and screen-link URLs on screen that start with ``old_base`` get ``new_base``
        instead (the token stays) and screens redraw. A relay's URLs are left as they are."""
        changed = False
        for shown in (self._ticket, self._screen_link):
            url = str((shown or {}).get("url", ""))
            if shown is not None and url.startswith(old_base + "/"):
                shown["url"] = new_base + url[len(old_base):]  # in place: the Wi-Fi step holds this very dict
                changed = True
        if changed:
            await self._async_set(self._scene)

    def _resting_scene(self) -> str:
        """The scene when no receipt is on screen: the open screen link (until its ``expires_at``), else
        pairing while a pairing window is open, else idle."""
        link = self._screen_link
        if link is not None:
            try:
                expires_at = datetime.fromisoformat(str(link.get("expires_at"))).timestamp()
            except ValueError:
                expires_at = 0.0
            if time.time() < expires_at:
                return SCENE_SCREEN_LINK
        return SCENE_PAIRING if self._pairing else SCENE_IDLE

    async def async_clear(self) -> None:
        """Leave the ticket scene (a till's clear, the receipt's timeout): back to the open screen link,
        else pairing while unpaired, else idle (:meth:`_resting_scene`)."""
        self._cancel_timer()
        self._ticket = None
        self._sale = None
        await self._async_set(self._resting_scene())

    async def async_set_screen_link(self, link: dict[str, Any] | None) -> None:
        """Show the one-time link that pairs another screen (``{"url", "name", "expires_at"}``), or end it."""
        self._screen_link = link
        if link is not None:
            self._cancel_timer()
            self._ticket = None
            await self._async_set(SCENE_SCREEN_LINK)
        elif self._scene == SCENE_SCREEN_LINK:
            await self._async_set(self._resting_scene())

    async def async_set_pairing(self, window: PairingWindow | None, *, now: bool = False) -> None:
        """Show the pairing scene for ``window`` (None: pairing closed). A receipt on screen stays until it
        times out, unless ``now`` (someone at the device asked to pair)."""
        self._pairing = None if window is None else window.screen_state()
        if now and self._pairing:
            self._cancel_timer()
            self._ticket = None
        if now and self._pairing:
            await self._async_set(SCENE_PAIRING)
        elif self._scene not in (SCENE_TICKET, SCENE_WIFI, SCENE_SALE) or now:
            await self._async_set(self._resting_scene())

    async def async_set_notice(self, notice: str | None) -> None:
        """Show ``notice`` over every scene (None: remove it); no change, no new state."""
        if notice != self._notice:
            self._notice = notice
            await self._async_set(self._scene)

    async def async_set_storage(self, storage: dict[str, Any] | None) -> None:
        """Show the storage's state over every scene (None: it is fine); no change, no new state."""
        if storage != self._storage:
            self._storage = storage
            await self._async_set(self._scene)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _async_set(self, scene: str) -> None:
        if scene == SCENE_IDLE and self._till_bound is not None and self._till_bound_timer is None:
            loop = asyncio.get_running_loop()
            self._till_bound_timer = loop.call_later(TILL_BOUND_SECONDS,
                                                     lambda: loop.create_task(self._async_till_bound_done()))
        self._scene = scene
        self._seq += 1
        self._notify()
