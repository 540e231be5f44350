"""Publishing receipts to a relay: a durable outbox drained in the background, and download notices.

The ticket and its outbox row are written in one SQLite transaction (:meth:`Store.add_ticket`), before the POS
gets its 201, and the QR (``<relay>/r/<token>``) is on screen at once: nothing waits for the network. The
:class:`Publisher` task uploads due rows, sealed (:mod:`relay.crypto`) and signed with the device key; on a
failure it retries with exponential backoff and jitter (2 s doubling to 60 s), so a relay outage of hours or
a restart of the device loses nothing, and a relay that comes back gets the queue within a minute. Outcomes by
relay answer:

* 201/200 with the receipt id echoed — stored (200: it already had these bytes: an earlier attempt got through).
* 401 (clock skew?), 403 (blocked), 408/5xx, anything that is not the relay's own problem details, network
  errors, a reply slower than 60 s — retried (403 every 5 min).
* 429 — retried after ``Retry-After`` (at least the backoff, at most an hour).
* 400, 409, 413 as problem details from the relay — given up (``failed``): retrying the same bytes cannot
  succeed; the error is kept. (A proxy's HTML 413 is retried: the relay never saw the receipt.)

A second task asks the relay which receipts uploaded in the last 10 minutes were downloaded (long poll,
``wait=20``) and tells the display, so the screen thanks the customer as it does for a download on the LAN. It
keeps within the relay's limit of 2 polls at once per device: a new upload opens a second poll covering every
watched receipt (the relay then ends the first), and it never abandons a poll, which a relay would go on
counting.
A failing relay never takes anything else down: replies are read up to 4 KiB and parsed only when nested at
most RELAY_REPLY_MAX_DEPTH deep, every error is caught, logged without tokens (and with the relay's text
escaped), shown in ``/healthz`` (``relay.last_error``) and retried. Storage that cannot be used
(:class:`~appliance.errors.StorageUnavailable`, e.g. a failed SD card) does not stop either task either: they
say so in ``last_error`` and try again with the same backoff, so the queue drains once the storage is back.
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

from relay.crypto import Signer, new_secret, new_token, parse_token, unix_seconds
from relay.page import async_fetch_page

from .errors import JsonTooDeep, StorageUnavailable
from .store import Store
from .web.common import loads_json

log = logging.getLogger(__name__)

BACKOFF_FIRST_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 60.0
BLOCKED_RETRY_SECONDS = 300.0
RETRY_AFTER_MAX_SECONDS = 3600.0
WATCH_WINDOW_SECONDS = 600.0
WATCH_MAX_IDS = 20
LONG_POLL_SECONDS = 20.0
RELAY_POLLS_PER_DEVICE = 2
"""Status polls a relay allows open at once per device (docs/protocol.md §9.3)."""
POLL_MIN_INTERVAL_SECONDS = 1.0
"""At most one new status poll per second (a relay that answers at once, e.g. after losing its storage)."""
IDLE_RECHECK_SECONDS = 60.0
"""With no poll open, the outbox is looked at again after this long even without an upload."""
REQUEST_DEADLINE_SECONDS = 60.0
MAX_REPLY_BYTES = 4096
RELAY_CHECK_DEADLINE_SECONDS = 15.0
"""Each of the start-up checks of the relay (its link versions, its page) gives up after this long: uploads
wait for them, so a slow or hostile relay holds them back by at most twice this."""
RELAY_REPLY_MAX_DEPTH = 8
"""Nesting of arrays and objects a relay reply may have (ours have 2); a deeper one is refused unparsed."""


def backoff(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds before attempt ``attempts + 1``: 2, 4, 8… capped at 60, each ±20% (so devices that lost the
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
        self.storage_error: str | None = None
        """Why the outbox cannot be read or written now (the store's StorageUnavailable), else None."""
        self.last_poll_error: str | None = None
        """Why the last download status query failed (None after one that worked)."""
        self.counts: dict[str, Any] = {}
        self.relay_page: str | None = None
        """The relay's download page compared with this release's: "published", "different", None (not yet)."""
        self.blind_links = True
        """Whether receipts get blind links (``/r#<secret>``, v2): True unless the relay's ``/healthz`` says it
        serves only v1 links (a relay not upgraded yet), then v1 tokens that relay can still serve."""

    def new_secret(self, now: float) -> str:
        """A receipt's secret for a new ticket: a v2 secret (:func:`relay.crypto.new_secret`) while the relay
        serves blind links, else a deprecated v1 token."""
        return new_secret(now) if self.blind_links else new_token(now)

    async def async_check_relay_links(self) -> None:
        """Ask the relay's ``/healthz`` which link versions it serves (``links``; relays before blind links
        do not say, and serve v1 only). Unreachable or unreadable: keep the current choice."""
        try:
            status, _headers, reply = await self._async_request("GET", self.relay_url + "/healthz", b"", {},
                                                                 deadline=RELAY_CHECK_DEADLINE_SECONDS)
        except (httpx.HTTPError, TimeoutError):
            return
        answer, _fault = reply_object(reply)
        if status != 200 or answer is None or answer.get("status") != "ok":
            return
        links = answer.get("links")
        blind = isinstance(links, list) and 2 in links
        if not blind and self.blind_links:
            log.warning("the relay %s serves only v1 links: it can read the receipts it passes on; upgrade it",
                        self.relay_url)
        self.blind_links = blind
        if blind:
            await self._async_check_page()

    async def _async_check_page(self) -> None:
        """Compare the relay's download page (``GET /r``) with the one this release publishes
        (:data:`relay.page.PAGE_SHA256`): a relay that serves another page could read the secrets of the phones
        that open it (docs/security.md). Sets :attr:`relay_page` ("published", "different"; None: not checked)."""
        try:
            page = await async_fetch_page(self._client, self.relay_url, deadline=RELAY_CHECK_DEADLINE_SECONDS)
        except (httpx.HTTPError, TimeoutError):
            return
        same = not page.faults
        if not same:
            log.warning("the relay %s serves a download page that is not this release's (it %s): "
                        "check it with 'eticket relay check-page %s'", self.relay_url, "; it ".join(page.faults),
                        self.relay_url)
        self.relay_page = "published" if same else "different"

    def wake(self) -> None:
        """A ticket was queued: upload now rather than at the next scheduled time."""
        self._wake.set()

    def status(self) -> dict[str, Any]:
        """For ``/healthz`` and ``eticket status``: ``{"url", "relay_id", "pending", "sent", "failed",
        "expired", "page", "blind_links", "oldest_pending_seconds", "last_success_at", "last_error"}`` (ages in
        seconds, times ISO 8601 UTC; ``page``: the relay's download page is this release's ("published") or
        not ("different"), null until checked; ``blind_links``: new receipts get ``/r#`` links); the counts are
        null until the outbox could be read once (storage unavailable since the start).
        ``last_error``: null while all is well, else the first of: the storage's fault, the newest pending or
        failed upload's error, the last attempt's, the last failed download status query's."""
        counts = dict(self.counts)
        oldest = counts.pop("oldest_pending_at", None)
        last = self.last_success_at
        counts = {**dict.fromkeys(("pending", "sent", "failed", "expired")), **counts}  # None: storage unreadable
        return {"url": self.relay_url, "relay_id": self.signer.relay_id, **counts, "page": self.relay_page,
                "blind_links": self.blind_links,
                "oldest_pending_seconds": None if oldest is None else round(time.time() - oldest, 1),
                "last_success_at": None if last is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last)),
                "last_error": (self.storage_error or counts.get("last_error") or self.last_attempt_error
                               or self.last_poll_error)}

    async def async_refresh_counts(self) -> None:
        """Re-read the outbox counts shown by :meth:`status`."""
        self.counts = await run_in_threadpool(self.store.outbox_counts)

    async def async_close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    # --- uploads ----------------------------------------------------------------------------------------
    async def async_run_uploads(self) -> None:
        """Forever: upload what is due, then sleep until the next due time or a :meth:`wake`. Never raises:
        storage that cannot be used is retried after a backoff (:attr:`storage_error` says why meanwhile)."""
        storage_failures = 0
        await self.async_check_relay_links()
        while True:
            try:
                if storage_failures or not self.counts:  # at start, and after a storage failure
                    await self.async_refresh_counts()
                await self._async_upload_due()
                next_at = await run_in_threadpool(self.store.next_upload_at)
                await self.async_refresh_counts()
                self._storage_back(storage_failures)
                storage_failures = 0
            except StorageUnavailable as exc:  # a failed or full SD card: the store retries, so do we
                storage_failures += 1
                next_at = time.time() + backoff(storage_failures - 1)
                self._storage_failed(exc, storage_failures)
            except Exception:  # the database is ours; anything here is a bug: log, pause, go on
                log.exception("publisher: unexpected error")
                next_at = time.time() + BACKOFF_MAX_SECONDS
            delay = 3600.0 if next_at is None else max(0.0, next_at - time.time())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _storage_failed(self, exc: StorageUnavailable, failures: int) -> None:
        """Note (for ``/healthz``) and log, once per episode, that the outbox cannot be used."""
        if failures == 1:
            log.warning("relay uploads wait: the outbox cannot be read (%s); retrying", exc.detail)
        self.storage_error = f"storage unavailable, uploads wait: {exc.detail}"[:300]

    def _storage_back(self, failures: int) -> None:
        if failures:
            log.info("relay uploads resume: the outbox can be read again")
        self.storage_error = None

    async def _async_upload_due(self) -> None:
        while True:
            due = await run_in_threadpool(self.store.due_uploads, time.time())
            if not due:
                return
            for ticket_id, token, pdf, expires_at, attempts in due:
                await self._async_upload(ticket_id, token, pdf, expires_at, attempts)

    async def _async_request(self, method: str, url: str, body: bytes, headers: dict[str, str],
                             deadline: float = REQUEST_DEADLINE_SECONDS) -> tuple[int, httpx.Headers, bytes]:
        """``(status, headers, at most MAX_REPLY_BYTES of the body)``: a relay cannot make the device read
        more, or wait longer than ``deadline`` seconds. Raises httpx.HTTPError or TimeoutError."""
        async with asyncio.timeout(deadline):
            async with self._client.stream(method, url, content=body, headers=headers) as response:
                reply = bytearray()
                async for chunk in response.aiter_raw():
                    reply += chunk
                    if len(reply) >= MAX_REPLY_BYTES:
                        break
                return response.status_code, response.headers, bytes(reply[:MAX_REPLY_BYTES])

    async def _async_upload(self, ticket_id: str, token: str, pdf: bytes, expires_at: float, attempts: int) -> None:
        keys = parse_token(token)
        sealed = await run_in_threadpool(keys.seal, pdf)
        path = f"/api/v1/receipts/{keys.rid}"
        headers = {**self.signer.headers("PUT", path, sealed, expires=int(expires_at)),
                   "Content-Type": "application/octet-stream"}
        now = time.time()
        retry_at: float | None = now + backoff(attempts)
        try:
            status, reply_headers, reply = await self._async_request("PUT", self.relay_url + path, sealed, headers)
        except (httpx.HTTPError, TimeoutError) as exc:
            error = f"relay unreachable: {type(exc).__name__}"
        else:
            problem = reply_headers.get("content-type", "").startswith("application/problem+json")
            answer, fault = reply_object(reply)
            if status in (200, 201) and answer is not None and answer.get("rid") == keys.rid:
                await run_in_threadpool(self.store.upload_done, ticket_id)
                self.last_success_at, self.last_attempt_error = time.time(), None
                log.info("ticket %s published to the relay (%d bytes sealed)", ticket_id, len(sealed))
                self._uploaded.set()
                return
            detail = answer.get("detail") if problem and answer is not None else None
            detail = None if detail is None else str(detail)
            if status in (200, 201):  # stored, the relay says, but not in its own words: not trusted, retried
                error = f"relay answered {status} but {fault or 'its reply does not name this receipt'}"
            else:
                error = f"relay answered {status}: {printable(detail or reply[:100].decode('utf-8', 'replace'))}"
            if status in (400, 409, 413) and problem:
                retry_at = None
            elif status == 403:
                retry_at = now + max(backoff(attempts), BLOCKED_RETRY_SECONDS)
            elif status == 429:
                after = unix_seconds(reply_headers.get("retry-after", "").strip())
                retry_at = now + max(backoff(attempts), min(float(after if after is not None else BACKOFF_MAX_SECONDS),
                                                            RETRY_AFTER_MAX_SECONDS))
        self.last_attempt_error = error
        await run_in_threadpool(self.store.upload_failed, ticket_id, error, retry_at)
        if retry_at is None:
            log.error("ticket %s not published, giving up: %s", ticket_id, error)
        else:
            log.warning("ticket %s not published yet (attempt %d): %s; retry in %.0f s", ticket_id, attempts + 1,
                        error, retry_at - time.time())

    # --- downloads --------------------------------------------------------------------------------------
    async def async_run_download_watch(self) -> None:
        """Forever: long-poll the relay for downloads of receipts uploaded in the last 10 minutes, with at most
        RELAY_POLLS_PER_DEVICE polls open and never one abandoned (a relay may count an abandoned poll until its
        wait ends). A poll covers every watched receipt; an upload that no open poll covers opens another one
        (which ends the older one on the relay, docs/protocol.md §9.3) when the limit leaves room, else waits
        for an open poll to answer. Never dies: a failed or malformed answer is logged and the next poll waits
        for a backoff."""
        polls: dict[asyncio.Future[dict[str, float]], dict[str, str]] = {}
        failures = 0
        resume_at = 0.0  # time.monotonic(): no new poll before (a second after the last, or after a failure)
        try:
            while True:
                try:
                    failures, resume_at = await self._async_watch_once(polls, failures, resume_at)
                except StorageUnavailable as exc:  # a failed SD card: the store retries, so do we
                    failures += 1
                    log.warning("download watch waits: the outbox cannot be read (%s)", exc.detail)
                    await asyncio.sleep(backoff(min(failures, 5)))
                except Exception:  # the database is ours; anything here is a bug: log, pause, go on
                    log.exception("download watch: unexpected error")
                    await asyncio.sleep(BACKOFF_MAX_SECONDS)
        finally:
            for poll in polls:
                poll.cancel()

    async def _async_watch_once(self, polls: dict[asyncio.Future[dict[str, float]], dict[str, str]], failures: int,
                                resume_at: float) -> tuple[int, float]:
        """One round: open a poll if a watched receipt is not covered and the limit leaves room, wait for an
        answer or an upload, apply the answers. ``polls`` maps each open poll to its ``{rid: ticket_id}``;
        returns the new ``(failures, resume_at)``."""
        self._uploaded.clear()  # before reading the outbox: an upload during the read is not missed
        watched = await run_in_threadpool(self.store.awaiting_download, time.time() - WATCH_WINDOW_SECONDS,
                                          WATCH_MAX_IDS)
        by_rid = {parse_token(token).rid: ticket_id for ticket_id, token in watched}
        covered = {rid for asked in polls.values() for rid in asked}
        now = time.monotonic()
        if set(by_rid) - covered and len(polls) < RELAY_POLLS_PER_DEVICE and now >= resume_at:
            polls[asyncio.ensure_future(self._async_poll(list(by_rid)))] = by_rid
            resume_at = now + POLL_MIN_INTERVAL_SECONDS  # a relay that answers at once is not asked in a loop
        timeout: float | None = None if polls else IDLE_RECHECK_SECONDS
        if resume_at > now and set(by_rid) - covered:  # a poll is due when the backoff ends
            timeout = resume_at - now if timeout is None else min(timeout, resume_at - now)
        uploaded: asyncio.Future[Any] = asyncio.ensure_future(self._uploaded.wait())
        waits: set[asyncio.Future[Any]] = {*polls, uploaded}
        try:
            done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            uploaded.cancel()
        for poll in [p for p in polls if p in done]:
            asked = polls.pop(poll)
            try:
                answer = poll.result()
            except Exception as exc:  # the relay's problem (or the network's): retry after a backoff
                failures += 1
                resume_at = time.monotonic() + backoff(min(failures, 5))
                why = printable(str(exc))[:200] or type(exc).__name__
                self.last_poll_error = f"download status query failed: {why}"
                log.warning("download status query failed: %s", why)
                continue
            failures, self.last_poll_error = 0, None
            for rid, at in answer.items():
                ticket_id = asked.get(rid)
                if ticket_id is None:
                    continue
                if await run_in_threadpool(self.store.mark_downloaded, ticket_id, at):
                    log.info("ticket %s downloaded through the relay", ticket_id)
                    await self._on_downloaded(ticket_id)
        return failures, resume_at

    async def _async_poll(self, rids: list[str]) -> dict[str, float]:
        """``{rid: downloaded_at}`` from the relay. Raises ValueError on an answer of another shape."""
        body = json.dumps({"ids": rids}).encode()
        path = "/api/v1/status"
        status, _, reply = await self._async_request(
            "POST", f"{self.relay_url}{path}?wait={LONG_POLL_SECONDS:g}", body,
            {**self.signer.headers("POST", path, body), "Content-Type": "application/json"})
        if status != 200:
            raise ValueError(f"relay answered {status}")
        answer, fault = reply_object(reply)
        if answer is None:
            raise ValueError(f"relay answered {status} but {fault}")
        downloaded = answer.get("downloaded")
        if not isinstance(downloaded, dict) or not all(
                isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
                for k, v in downloaded.items()):
            raise ValueError("relay status answer is not {\"downloaded\": {rid: seconds}}")
        return {k: float(v) for k, v in downloaded.items()}


def printable(text: str) -> str:
    """``text`` with every non-printable character (newlines, terminal escapes) as ``\\xNN``: text from a
    relay goes into the log and ``/healthz`` and must not forge lines there."""
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def reply_object(reply: bytes) -> tuple[dict[str, Any] | None, str]:
    """A relay's reply body as a JSON object: ``({...}, "")``, or ``(None, why)`` for anything else, ``why``
    being a phrase for ``last_error`` ("its reply is not JSON", "its reply nests JSON deeper than 8 levels",
    "its reply is not a JSON object"). Never raises: the nesting is checked before parsing
    (:func:`appliance.web.common.loads_json`), so a hostile relay cannot reach the parser's recursion limit."""
    try:
        value = loads_json(reply, RELAY_REPLY_MAX_DEPTH)
    except JsonTooDeep:
        return None, f"its reply nests JSON deeper than {RELAY_REPLY_MAX_DEPTH} levels"
    except (ValueError, RecursionError):  # not JSON, not UTF-8 (or garbage json_depth could not measure)
        return None, "its reply is not JSON"
    if not isinstance(value, dict):
        return None, "its reply is not a JSON object"
    return value, ""
