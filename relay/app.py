"""The relay's HTTP API (FastAPI). See ``docs/protocol.md`` §5 for the contract.

* ``PUT /api/v1/receipts/{rid}`` — a device uploads a sealed receipt (signed; quota; block list).
* ``POST /api/v1/status`` — a device asks which of its receipts were downloaded (signed; long poll).
* ``GET|HEAD /r/{token}`` — a phone fetches a receipt: the relay derives the key from the token and returns
  the PDF; "on its way" page while it has not arrived; 410 after expiry; 404 otherwise; misses rate-limited.
* ``GET /healthz``.

State lives in storage only (:mod:`relay.storage`), so any number of replicas can share one bucket. Per-replica
memory holds caches and the miss counters (a client spread over N replicas gets up to N times the budget).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

from cryptography.exceptions import InvalidTag
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from appliance import __version__
from appliance.web.common import SecurityHeaders, add_problem_handlers
from appliance.web.logs import AccessLog

from .crypto import BadSignature, BadToken, parse_token, valid_rid, verify_request
from .errors import (
    BadRequest,
    BadSignatureError,
    DamagedReceipt,
    DeviceBlocked,
    Gone,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
    ReceiptConflict,
    TooManyMisses,
)
from .storage import DirStorage, S3Storage

log = logging.getLogger("eticket.relay")

MAX_STATUS_IDS = 200
MAX_WAIT_SECONDS = 25.0
REFRESH_SECONDS = 3
BLOCK_CACHE_SECONDS = 10.0
SWEEP_INTERVAL_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """How a relay behaves. Units: seconds, bytes, counts."""

    retention_seconds: float = 30 * 86_400
    """A receipt is served this long after upload at most (the device may ask for less)."""
    pending_seconds: float = 7 * 86_400
    """A link whose receipt has not arrived gets the "on its way" page this long after the token was issued
    (the device's upload queue may be held up by an outage); after that, 404."""
    quota_receipts: int = 5_000
    quota_bytes: int = 1 << 30
    max_receipt_bytes: int = 20 * 1024 * 1024 + 16
    miss_limit: int = 30
    """Unknown or expired links per client address per minute before 429."""
    pending_limit: int = 120
    """"On its way" pages per client address per minute (a phone refreshing every 3 s uses 20)."""


class RateLimiter:
    """Fixed one-minute windows per (client address, kind); remembers at most ``capacity`` addresses."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._windows: OrderedDict[tuple[str, str], tuple[int, int]] = OrderedDict()
        self._capacity = capacity

    def over(self, address: str, kind: str, limit: int, now: float) -> int:
        """Seconds until the window ends if ``address`` already used ``limit`` of ``kind``, else 0."""
        minute = int(now // 60)
        window, count = self._windows.get((address, kind), (minute, 0))
        return 60 - int(now % 60) if window == minute and count >= limit else 0

    def count(self, address: str, kind: str, now: float) -> None:
        """Record one ``kind`` event for ``address``."""
        minute = int(now // 60)
        key = (address, kind)
        window, count = self._windows.pop(key, (minute, 0))
        self._windows[key] = (minute, count + 1 if window == minute else 1)
        while len(self._windows) > self._capacity:
            self._windows.popitem(last=False)


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%d")


def _html(title: str, text: str, status: int, refresh: int | None = None) -> Response:
    meta = f"<meta http-equiv=refresh content={refresh}>" if refresh else ""
    page = ("<!doctype html><html><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"{meta}<title>{escape(title)}</title></head><body style='font:18px sans-serif;margin:2em'>"
            f"<h1>{escape(title)}</h1><p>{text}</p></body></html>")
    return Response(page, status_code=status, media_type="text/html; charset=utf-8")


class Relay:
    """The relay's behaviour over a storage backend; blocking storage calls run in worker threads."""

    def __init__(self, storage: DirStorage | S3Storage, settings: RelaySettings) -> None:
        self.storage = storage
        self.settings = settings
        self.limiter = RateLimiter()
        self._blocked: dict[str, tuple[float, bool]] = {}
        self._marked: OrderedDict[str, None] = OrderedDict()
        self._downloads = asyncio.Condition()
        self._download_seq = 0

    # --- devices --------------------------------------------------------------------------------------
    async def async_check_blocked(self, device: str) -> None:
        """Raise :class:`DeviceBlocked` if the operator blocked ``device`` (cached for 10 s per replica)."""
        now = time.monotonic()
        cached = self._blocked.get(device)
        if cached is None or now - cached[0] > BLOCK_CACHE_SECONDS:
            blocked = await run_in_threadpool(self.storage.head, f"b/{device}") is not None
            self._blocked[device] = cached = (now, blocked)
        if cached[1]:
            raise DeviceBlocked(f"This relay's operator blocked device {device}; ask them why.", device=device)

    async def async_put(self, rid: str, device: str, sealed: bytes, expires: float) -> bool:
        """Store a sealed receipt; True if new, False if this device already stored these very bytes.

        Raises ReceiptConflict (other bytes or another device under ``rid``), QuotaExceeded."""
        digest = hashlib.sha256(sealed).hexdigest()
        existing = await run_in_threadpool(self.storage.head, f"r/{rid}")
        if existing is not None:
            if existing.get("device") == device and existing.get("sha256") == digest:
                return False
            raise ReceiptConflict("Another receipt is already stored under this id.")
        now = time.time()
        day = _day(now)
        ledger = [k.rsplit(".", 1) for k in await run_in_threadpool(
            lambda: list(self.storage.keys(f"q/{device}/{day}/")))]
        used_bytes = sum(int(size) for _, size in ledger if size.isdigit())
        if len(ledger) + 1 > self.settings.quota_receipts or used_bytes + len(sealed) > self.settings.quota_bytes:
            retry = 86_400 - int(now % 86_400)
            raise QuotaExceeded(
                f"Device {device} reached today's quota ({self.settings.quota_receipts} receipts, "
                f"{self.settings.quota_bytes} bytes per UTC day); retry after midnight UTC.",
                retry_after=retry, device=device)
        meta = {"device": device, "expires": str(int(expires)), "sha256": digest, "created": str(int(now))}
        await run_in_threadpool(self.storage.put, f"q/{device}/{day}/{rid}.{len(sealed)}", b"", {})
        await run_in_threadpool(self.storage.put, f"r/{rid}", sealed, meta)
        return True

    async def async_downloaded(self, device: str, rids: list[str], wait: float) -> dict[str, int]:
        """``{rid: downloaded_at}`` for those of ``device``'s receipts that were downloaded; waits up to
        ``wait`` seconds for one, waking at once on a download through this replica, else checking storage
        every second (another replica may have served it)."""
        deadline = time.monotonic() + wait
        while True:
            seq = self._download_seq
            found: dict[str, int] = {}
            for rid in rids:
                meta = await run_in_threadpool(self.storage.head, f"d/{rid}")
                if meta is not None and meta.get("device") == device:
                    found[rid] = int(meta.get("at", "0"))
            left = deadline - time.monotonic()
            if found or left <= 0:
                return found
            await self._async_wait_download(seq, min(1.0, left))

    async def _async_wait_download(self, seq: int, timeout: float) -> None:
        def changed() -> bool:
            return self._download_seq != seq

        async with self._downloads:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._downloads.wait_for(changed), timeout)

    # --- phones ---------------------------------------------------------------------------------------
    async def async_fetch(self, token: str, client: str, mark: bool) -> tuple[str, bytes | None, int]:
        """What ``GET /r/{token}`` shows: ``("pdf", pdf, created)`` or ``("pending", None, 0)``.

        Raises NotFound, Gone (both counted as misses for ``client``), TooManyMisses, DamagedReceipt."""
        now = time.time()
        for kind, limit in (("miss", self.settings.miss_limit), ("pending", self.settings.pending_limit)):
            retry = self.limiter.over(client, kind, limit, now)
            if retry and kind == "miss":
                raise TooManyMisses("Too many unknown receipt links from this address; wait a minute.",
                                    retry_after=retry)
        try:
            keys = parse_token(token)
            if keys.issued > now + 300:
                raise BadToken("issued in the future")
        except BadToken:
            self.limiter.count(client, "miss", now)
            raise NotFound("No receipt at this address.") from None
        found = await self._async_get(f"r/{keys.rid}")
        if found is None:
            if now > keys.issued + self.settings.retention_seconds:
                self.limiter.count(client, "miss", now)
                raise Gone("This receipt has expired.")
            if now - keys.issued <= self.settings.pending_seconds:
                retry = self.limiter.over(client, "pending", self.settings.pending_limit, now)
                if retry:
                    raise TooManyMisses("Too many requests from this address; wait a minute.", retry_after=retry)
                self.limiter.count(client, "pending", now)
                return "pending", None, 0
            self.limiter.count(client, "miss", now)
            raise NotFound("No receipt at this address.")
        sealed, meta = found
        if now >= float(meta.get("expires", "0")):
            self.limiter.count(client, "miss", now)
            raise Gone("This receipt has expired.")
        try:
            pdf = keys.open(sealed)
        except InvalidTag:
            log.error("stored receipt %s… fails authentication: storage damaged or tampered with", keys.rid[:8])
            raise DamagedReceipt("The stored receipt is damaged; ask the shop for a copy.") from None
        if mark:
            await self._async_mark(keys.rid, meta.get("device", ""), now)
        return "pdf", pdf, int(meta.get("created", "0"))

    async def _async_get(self, key: str) -> tuple[bytes, dict[str, str]] | None:
        """Read an object: on the event loop for local files (receipt-sized, usually in the page cache: the
        thread hop would halve the download rate, bench/relay_vs_nginx.py), in a worker thread for S3."""
        if isinstance(self.storage, DirStorage):
            return self.storage.get(key)
        return await run_in_threadpool(self.storage.get, key)

    async def _async_mark(self, rid: str, device: str, now: float) -> None:
        if rid in self._marked:
            return
        if await run_in_threadpool(self.storage.head, f"d/{rid}") is None:
            await run_in_threadpool(self.storage.put, f"d/{rid}", b"", {"at": str(int(now)), "device": device})
        self._marked[rid] = None
        while len(self._marked) > 10_000:
            self._marked.popitem(last=False)
        async with self._downloads:
            self._download_seq += 1
            self._downloads.notify_all()

    # --- housekeeping ---------------------------------------------------------------------------------
    def sweep(self, now: float | None = None) -> int:
        """Delete expired receipts with their download marks, and quota ledgers older than two days.
        Idempotent: every replica may run it. Returns receipts deleted."""
        now = time.time() if now is None else now
        deleted = 0
        for key in list(self.storage.keys("r/")):
            meta = self.storage.head(key)
            if meta is not None and now >= float(meta.get("expires", "0")):
                rid = key.split("/", 1)[1]
                self.storage.delete(key)
                self.storage.delete(f"d/{rid}")
                deleted += 1
        keep = {_day(now), _day(now - 86_400)}
        for key in list(self.storage.keys("q/")):
            if key.split("/")[2] not in keep:
                self.storage.delete(key)
        return deleted


def _signed_device(request: Request, body: bytes) -> str:
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        return verify_request(request.method, request.url.path, headers, body)
    except BadSignature as exc:
        raise BadSignatureError(str(exc)) from None


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"A sealed receipt may be at most {limit} bytes.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"A sealed receipt may be at most {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def create_relay_app(storage: DirStorage | S3Storage, settings: RelaySettings | None = None,
                     sweep_interval: float = SWEEP_INTERVAL_SECONDS) -> FastAPI:
    """The relay as an ASGI app over ``storage``; a background sweep expires receipts every ``sweep_interval``
    seconds (0: never)."""
    relay = Relay(storage, settings or RelaySettings())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def sweeper() -> None:
            while True:
                try:
                    deleted = await run_in_threadpool(relay.sweep)
                    if deleted:
                        log.info("expired %d receipts", deleted)
                except Exception:  # storage outage: try again next round, keep serving
                    log.exception("sweep failed")
                await asyncio.sleep(sweep_interval)

        task = asyncio.create_task(sweeper()) if sweep_interval > 0 else None
        log.info("relay ready: storage %s, retention %d s", storage.describe(), relay.settings.retention_seconds)
        yield
        if task is not None:
            task.cancel()

    app = FastAPI(title="eTicket relay", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.relay = relay

    @app.put("/api/v1/receipts/{rid}", status_code=201)
    async def upload(rid: str, request: Request) -> Response:
        """Store a sealed receipt under ``rid`` (43 base64url characters) for the signing device.

        Headers: ``Eticket-Key``, ``Eticket-Date``, ``Eticket-Expires`` (Unix seconds; capped at the relay's
        retention), ``Eticket-Signature`` (:mod:`relay.crypto`). Body: the sealed bytes.
        201 ``{"rid", "expires"}`` when stored, 200 when this device already stored the same bytes (a retry or
        a replay changes nothing). Errors: 400, 401 bad-signature, 403 device-blocked, 409 receipt-conflict,
        413 too-large, 429 quota-exceeded (Retry-After).
        """
        body = await _read_body(request, relay.settings.max_receipt_bytes)
        device = _signed_device(request, body)
        if not valid_rid(rid):
            raise BadRequest("The receipt id must be 43 base64url characters (HKDF of the token).")
        await relay.async_check_blocked(device)
        expires_text = request.headers.get("eticket-expires", "")
        now = time.time()
        if not expires_text.isdigit() or int(expires_text) <= now:
            raise BadRequest("Eticket-Expires must be a future time in Unix seconds.")
        expires = min(int(expires_text), int(now + relay.settings.retention_seconds))
        if not body:
            raise BadRequest("The body must hold the sealed receipt.")
        created = await relay.async_put(rid, device, body, expires)
        if created:
            log.info("stored receipt %s… from device %s… (%d bytes)", rid[:8], device[:8], len(body))
        return JSONResponse({"rid": rid, "expires": expires}, status_code=201 if created else 200)

    @app.post("/api/v1/status")
    async def status(request: Request, wait: float = 0.0) -> dict[str, Any]:
        """Which of the signing device's receipts were downloaded: body ``{"ids": [rid, …]}`` (at most 200),
        answer ``{"downloaded": {rid: unix_seconds}}``. ``wait`` (0–25 s) holds the answer until one is
        downloaded (long poll). Another device's receipts are never reported. Errors: 400, 401, 403."""
        body = await _read_body(request, 64 * 1024)
        device = _signed_device(request, body)
        await relay.async_check_blocked(device)
        try:
            ids = json.loads(body)["ids"]
            if not isinstance(ids, list) or len(ids) > MAX_STATUS_IDS or not all(
                    isinstance(r, str) and valid_rid(r) for r in ids):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise BadRequest(f'The body must be {{"ids": [...]}} with at most {MAX_STATUS_IDS} receipt ids.') from None
        if not 0 <= wait <= MAX_WAIT_SECONDS:
            raise BadRequest(f"wait must be between 0 and {MAX_WAIT_SECONDS:g} seconds.")
        return {"downloaded": await relay.async_downloaded(device, ids, wait)}

    @app.api_route("/r/{token}", methods=["GET", "HEAD"])
    async def download(token: str, request: Request) -> Response:
        """The receipt PDF for a capability token (``Content-Disposition: inline``), opened with the key the
        token derives. Not arrived yet: an HTML page that reloads itself every 3 s (no JavaScript); 410 once
        expired; 404 otherwise; 429 after too many misses from one address. Browsers get HTML pages for
        errors, other clients problem details."""
        client = request.client.host if request.client else "-"
        wants_html = "text/html" in request.headers.get("accept", "")
        try:
            kind, pdf, created = await relay.async_fetch(token, client, mark=request.method == "GET")
        except (NotFound, Gone, TooManyMisses) as error:
            if not wants_html:
                raise
            page = {404: "This receipt link is not known here. Check that you scanned the code on the shop's "
                         "screen.", 410: "This receipt has expired and was deleted. Ask the shop for a copy.",
                    429: "Too many unknown links from your connection. Please wait a minute."}[error.status]
            response = _html(error.title, escape(page), error.status)
            if error.status == 429:
                response.headers["Retry-After"] = str(error.extensions.get("retry_after", 60))
            return response
        if kind == "pending":
            if wants_html:
                return _html("Votre ticket arrive · Your receipt is on its way",
                             "Votre ticket arrive, cette page se recharge toute seule.<br>"
                             "Your receipt is on its way; this page reloads by itself.", 200, REFRESH_SECONDS)
            raise NotFound("The receipt has not arrived yet; retry in a few seconds.", retry_after=REFRESH_SECONDS,
                           pending=True)
        assert pdf is not None
        day = datetime.fromtimestamp(created or time.time(), UTC).strftime("%Y-%m-%d")
        return Response(pdf, media_type="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="receipt-{day}.pdf"'})

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> dict[str, Any]:
        """``{"status": "ok", "version"}``."""
        return {"status": "ok", "version": __version__}

    @app.get("/")
    async def home() -> Response:
        """What this is, for a curious visitor."""
        return _html("eTicket relay", "This server passes sealed till receipts from shops to their customers. "
                     "It cannot read them and keeps them only for a limited time.", 200)

    add_problem_handlers(app)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AccessLog)
    return app
