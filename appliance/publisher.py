"""Publishing receipts to a relay: a durable outbox drained in the background, and download notices.

The ticket and its outbox row are written in one SQLite transaction (:meth:`Store.add_ticket`), before the POS
gets its 201, and the QR (``<relay>/r/<token>``) is on screen at once: nothing waits for the network. The
:class:`Publisher` task uploads due rows, sealed (:mod:`relay.crypto`) and signed with the device key; on a
failure it retries with exponential backoff and jitter (2 s doubling to 5 min), so a relay outage of hours or
a restart of the device loses nothing. Outcomes by relay answer:

* 201/200 — stored (200: it already had these bytes: an earlier attempt got through).
* 401 (clock skew?), 403 (blocked), 408/5xx, network errors — retried (403 at most hourly).
* 429 — retried after ``Retry-After``.
* 400, 409, 413 — given up (``failed``): retrying the same bytes cannot succeed; the error is kept.

A second task asks the relay which uploaded receipts of the last hour were downloaded (long poll, ``wait=20``)
and tells the display, so the screen thanks the customer as it does for a download on the LAN.
A failing relay never takes anything else down: every error is caught, logged without tokens, and retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool

from relay.crypto import Signer, parse_token

from .store import Store

log = logging.getLogger(__name__)

BACKOFF_FIRST_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 300.0
BLOCKED_RETRY_SECONDS = 3600.0
WATCH_WINDOW_SECONDS = 3600.0
LONG_POLL_SECONDS = 20.0


def backoff(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds before attempt ``attempts + 1``: 2, 4, 8… capped at 300, each ±20% (so devices that lost the
    relay together do not all come back in the same second)."""
    base: float = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2.0 ** min(attempts, 16))
    jitter: float = (rng or random).uniform(0.8, 1.2)
    return base * jitter


class Publisher:
    """Drains the outbox to ``relay_url`` and watches for downloads; ``on_downloaded(ticket_id)`` is awaited
    when the relay reports one."""

    def __init__(self, store: Store, relay_url: str, signer: Signer,
                 on_downloaded: Callable[[str], Awaitable[None]]) -> None:
        self.store = store
        self.relay_url = relay_url.rstrip("/")
        self.signer = signer
        self._on_downloaded = on_downloaded
        self._wake = asyncio.Event()
        self._uploaded = asyncio.Event()
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(LONG_POLL_SECONDS + 10, connect=5.0),
                                         headers={"User-Agent": "eticket-device"})
        self.last_success_at: float | None = None
        self.last_attempt_error: str | None = None
        self.counts: dict[str, Any] = {}

    def wake(self) -> None:
        """A ticket was queued: upload now rather than at the next scheduled time."""
        self._wake.set()

    def status(self) -> dict[str, Any]:
        """For ``/healthz`` and ``eticket status``: ``{"url", "relay_id", "pending", "sent", "failed",
        "expired", "oldest_pending_seconds", "last_success_at", "last_error"}`` (times in Unix seconds)."""
        counts = dict(self.counts)
        oldest = counts.pop("oldest_pending_at", None)
        return {"url": self.relay_url, "relay_id": self.signer.relay_id, **counts,
                "oldest_pending_seconds": None if oldest is None else round(time.time() - oldest, 1),
                "last_success_at": self.last_success_at,
                "last_error": counts.get("last_error") or self.last_attempt_error}

    async def async_refresh_counts(self) -> None:
        """Re-read the outbox counts shown by :meth:`status`."""
        self.counts = await run_in_threadpool(self.store.outbox_counts)

    async def async_close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    # --- uploads ----------------------------------------------------------------------------------------
    async def async_run_uploads(self) -> None:
        """Forever: upload what is due, then sleep until the next due time or a :meth:`wake`."""
        await self.async_refresh_counts()
        while True:
            try:
                await self._async_upload_due()
                next_at = await run_in_threadpool(self.store.next_upload_at)
                await self.async_refresh_counts()
            except Exception:  # the database is ours; anything here is a bug: log, pause, go on
                log.exception("publisher: unexpected error")
                next_at = time.time() + BACKOFF_MAX_SECONDS
            delay = 3600.0 if next_at is None else max(0.0, next_at - time.time())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _async_upload_due(self) -> None:
        while True:
            due = await run_in_threadpool(self.store.due_uploads, time.time())
            if not due:
                return
            for ticket_id, token, pdf, expires_at, attempts in due:
                await self._async_upload(ticket_id, token, pdf, expires_at, attempts)

    async def _async_upload(self, ticket_id: str, token: str, pdf: bytes, expires_at: float, attempts: int) -> None:
        keys = parse_token(token)
        sealed = await run_in_threadpool(keys.seal, pdf)
        path = f"/api/v1/receipts/{keys.rid}"
        headers = self.signer.headers("PUT", path, sealed, expires=int(expires_at))
        retry_at: float | None = time.time() + backoff(attempts)
        try:
            response = await self._client.put(self.relay_url + path, content=sealed,
                                              headers={**headers, "Content-Type": "application/octet-stream"})
        except httpx.HTTPError as exc:
            error = f"relay unreachable: {type(exc).__name__}"
        else:
            if response.status_code in (200, 201):
                await run_in_threadpool(self.store.upload_done, ticket_id)
                self.last_success_at, self.last_attempt_error = time.time(), None
                log.info("ticket %s published to the relay (%d bytes sealed)", ticket_id, len(sealed))
                self._uploaded.set()
                return
            error = f"relay answered {response.status_code}: {_problem_detail(response)}"
            if response.status_code in (400, 409, 413):
                retry_at = None
            elif response.status_code == 403:
                retry_at = time.time() + BLOCKED_RETRY_SECONDS
            elif response.status_code == 429:
                after = response.headers.get("retry-after", "")
                retry_at = time.time() + (float(after) if after.isdigit() else BACKOFF_MAX_SECONDS)
        self.last_attempt_error = error
        await run_in_threadpool(self.store.upload_failed, ticket_id, error, retry_at)
        if retry_at is None:
            log.error("ticket %s not published, giving up: %s", ticket_id, error)
        else:
            log.warning("ticket %s not published yet (attempt %d): %s; retry in %.0f s", ticket_id, attempts + 1,
                        error, retry_at - time.time())

    # --- downloads --------------------------------------------------------------------------------------
    async def async_run_download_watch(self) -> None:
        """Forever: long-poll the relay for downloads of receipts uploaded in the last hour."""
        failures = 0
        while True:
            self._uploaded.clear()
            watched = await run_in_threadpool(self.store.awaiting_download, time.time() - WATCH_WINDOW_SECONDS)
            if not watched:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._uploaded.wait(), 60.0)
                continue
            by_rid = {parse_token(token).rid: ticket_id for ticket_id, token in watched}
            poll = asyncio.ensure_future(self._async_poll(list(by_rid)))
            uploaded = asyncio.ensure_future(self._uploaded.wait())
            done, _ = await asyncio.wait({poll, uploaded}, return_when=asyncio.FIRST_COMPLETED)
            uploaded.cancel()
            if poll not in done:  # a new upload to watch: ask again with it included
                poll.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await poll
                continue
            try:
                downloaded = poll.result()
                failures = 0
            except Exception as exc:
                failures += 1
                log.debug("download status query failed: %s", type(exc).__name__)
                await asyncio.sleep(min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** min(failures, 8)))
                continue
            for rid, at in downloaded.items():
                ticket_id = by_rid.get(rid)
                if ticket_id is None:
                    continue
                if await run_in_threadpool(self.store.mark_downloaded_at, ticket_id, float(at)):
                    log.info("ticket %s downloaded through the relay", ticket_id)
                    await self._on_downloaded(ticket_id)

    async def _async_poll(self, rids: list[str]) -> dict[str, int]:
        body = json.dumps({"ids": rids}).encode()
        path = "/api/v1/status"
        response = await self._client.post(
            f"{self.relay_url}{path}?wait={LONG_POLL_SECONDS:g}", content=body,
            headers={**self.signer.headers("POST", path, body), "Content-Type": "application/json"})
        response.raise_for_status()
        result: dict[str, int] = response.json()["downloaded"]
        return result


def _problem_detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", ""))[:200]
    except ValueError:
        return response.text[:100]
