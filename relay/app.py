"""The relay's HTTP API (FastAPI). See ``docs/protocol.md`` §9 for the contract.

* ``PUT /api/v1/receipts/{rid}`` — a device uploads a sealed receipt (signed; quota; block list).
* ``POST /api/v1/status`` — a device asks which of its receipts were downloaded (signed; long poll).
* ``GET /r`` — the blind download page for links ``/r#<secret>``: the phone derives the key and decrypts.
* ``GET|HEAD /o/{rid}`` — a sealed receipt's bytes as an immutable static object (what nginx may serve).
* ``POST /api/v1/downloaded/{rid}`` — the page's download notice (the shop's screen says "downloaded").
* ``GET|HEAD /r/{token}`` — deprecated v1 links: the relay derives the key from the token and returns
  the PDF; "on its way" page while it has not arrived; 410 after expiry; 404 otherwise; misses rate-limited.
* ``GET /healthz``.

State lives in storage only (:mod:`relay.storage`), so any number of replicas can share one bucket. Per-replica
memory holds caches, locks and counters: the miss limit, the concurrency limits and the quota locks are per
replica (a client spread over N replicas gets up to N times the budget; quotas are exact on one replica and
best effort across several).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import logging
import re
import time
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from appliance import __version__
from appliance.web.common import PROBLEM_MEDIA_TYPE, SecurityHeaders, add_problem_handlers, loads_json
from appliance.web.logs import AccessLog
from eticket_core.negotiation import prefers

from .crypto import (
    TOKEN_VERSION,
    BadSignature,
    BadToken,
    parse_token,
    precheck_headers,
    token_version,
    unix_seconds,
    valid_rid,
    verify_request,
)
from .errors import (
    BadRequest,
    BadSignatureError,
    DamagedReceipt,
    DeviceBlocked,
    Gone,
    NotFound,
    PayloadTooLarge,
    ReceiptConflict,
    TooManyMisses,
    TooManyRequests,
)
from .limits import NETWORK_BYTES_PER_DAY, NETWORK_RECEIPTS_PER_DAY, NEW_DEVICES_PER_NETWORK_PER_DAY
from .page import PAGE, PAGE_HEADERS, PAGE_SHA256
from .quotas import LockStripes, Quotas, client_key, network_id
from .storage import OBJECT_CACHE_CONTROL, OBJECTS, DamagedObject, DirStorage, S3Storage

log = logging.getLogger("eticket.relay")

MAX_STATUS_IDS = 50
MAX_WAIT_SECONDS = 25.0
STATUS_RECHECK_SECONDS = 2.0
REFRESH_SECONDS = 3
FUTURE_SKEW_SECONDS = 300
BLOCK_CACHE_SECONDS = 10.0
SWEEP_INTERVAL_SECONDS = 600.0
BODY_DEADLINE_SECONDS = 60.0
UPLOADS_PER_ADDRESS = 4
POLLS_PER_DEVICE = 2
"""Status polls at once per device (docs/protocol.md §9.3); a device's new poll ends its older ones."""
POLLS_PER_ADDRESS = 16
"""Status polls at once per client address (IPv6: /64): a shop's devices behind one NAT hold one each."""
POLL_SLOT_GRACE_SECONDS = 1.0
"""A poll over the device's limit waits this long for a slot before 429: the older polls it ended, or whose
client went away, need a moment to finish."""
SLOT_RECHECK_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """How a relay behaves. Units: seconds, bytes, counts."""

    retention_seconds: float = 30 * 86_400
    """A receipt is served this long after upload at most (the device may ask for less)."""
    pending_seconds: float = 7 * 86_400
    """A link whose receipt has not arrived gets the "on its way" page this long after the token was issued
    (the device's upload queue may be held up by an outage); after that, 404."""
    quota_receipts: int = 5_000
    """Receipts per device key per UTC day."""
    quota_bytes: int = 1 << 30
    """Bytes per device key per UTC day."""
    network_quota_receipts: int = NETWORK_RECEIPTS_PER_DAY
    """Receipts per client network (IPv4 address, IPv6 /64) per UTC day, all device keys together."""
    network_quota_bytes: int = NETWORK_BYTES_PER_DAY
    """Bytes per client network per UTC day, all device keys together."""
    new_devices_per_network: int = NEW_DEVICES_PER_NETWORK_PER_DAY
    """Device keys new to this relay per client network per UTC day."""
    max_receipt_bytes: int = 20 * 1024 * 1024 + 16
    upload_buffer_bytes: int = 128 * 1024 * 1024
    """Upload bodies held in memory at once, all clients together, counted as their bytes arrive; one client
    network may hold a quarter of it. Past either, 429 too-many-requests (Retry-After 5). A body must be read
    whole before its signature can be checked, so without this bound many networks' forged uploads could
    take the relay's memory."""
    miss_limit: int = 30
    """Unknown or expired links per client address per minute before 429 (stored receipts are always served)."""
    pending_limit: int = 120
    """"On its way" pages per client address per minute (a phone refreshing every 3 s uses 20)."""


class RateLimiter:
    """Fixed one-minute windows per (client key, kind); remembers at most ``capacity`` keys."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._windows: OrderedDict[tuple[str, str], tuple[int, int]] = OrderedDict()
        self._capacity = capacity

    def over(self, address: str, kind: str, limit: int, now: float) -> int:
        """Seconds until the window ends if ``address`` already used ``limit`` of ``kind``, else 0."""
        minute = int(now // 60)
        window, count = self._windows.get((client_key(address), kind), (minute, 0))
        return 60 - int(now % 60) if window == minute and count >= limit else 0

    def count(self, address: str, kind: str, now: float) -> None:
        """Record one ``kind`` event for ``address``."""
        minute = int(now // 60)
        key = (client_key(address), kind)
        window, count = self._windows.pop(key, (minute, 0))
        self._windows[key] = (minute, count + 1 if window == minute else 1)
        while len(self._windows) > self._capacity:
            self._windows.popitem(last=False)


class ByteBudget:
    """Bytes held at once, at most ``limit`` for all callers together and ``limit / shares`` per key (a
    client network), charged as they arrive: a connection that declared a large body and sends nothing holds
    nothing, and one network cannot take the whole budget."""

    def __init__(self, limit: int, shares: int = 4) -> None:
        self.limit, self.per_key, self.reserved = limit, max(1, limit // shares), 0
        self._by_key: defaultdict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[Callable[[int], None]]:
        """A ``charge(size)`` function for ``key``'s bytes as they arrive (raising TooManyRequests, Retry-After
        5, when they do not fit); everything charged is given back when the block ends."""
        charged = 0

        def charge(size: int) -> None:
            nonlocal charged
            if self.reserved + size > self.limit or self._by_key[key] + size > self.per_key:
                raise TooManyRequests("The relay is receiving too many uploads at once; try again in a moment.",
                                      retry_after=5)
            self.reserved += size
            self._by_key[key] += size
            charged += size

        try:
            yield charge
        finally:
            self.reserved -= charged
            self._by_key[key] -= charged
            if self._by_key[key] <= 0:
                del self._by_key[key]


class Concurrency:
    """At most ``limit`` requests in flight per key; :meth:`slot` raises TooManyRequests beyond it."""

    def __init__(self, limit: int, what: str) -> None:
        self._limit, self._what = limit, what
        self._in_flight: defaultdict[str, int] = defaultdict(int)

    @contextlib.asynccontextmanager
    async def async_slot(self, key: str, grace: float) -> AsyncIterator[None]:
        """:meth:`slot`, waiting up to ``grace`` seconds for one to be free before TooManyRequests."""
        deadline = time.monotonic() + grace
        while self._in_flight.get(key, 0) >= self._limit and time.monotonic() < deadline:
            await asyncio.sleep(SLOT_RECHECK_SECONDS)
        with self.slot(key):
            yield

    @contextlib.contextmanager
    def slot(self, key: str) -> Iterator[None]:
        """Hold one of ``key``'s slots; raises TooManyRequests (Retry-After: 1) when all are taken."""
        if self._in_flight.get(key, 0) >= self._limit:
            raise TooManyRequests(f"At most {self._limit} {self._what} at once; wait for one to finish.",
                                  retry_after=1)
        self._in_flight[key] += 1
        try:
            yield
        finally:
            self._in_flight[key] -= 1
            if not self._in_flight[key]:
                del self._in_flight[key]


@dataclass(eq=False, slots=True)
class _Waiting:
    """One status poll waiting on this replica: ``wake`` is set by any download through this replica (the poll
    then looks in storage), and ``ended`` with it when a newer poll of the same device arrives."""

    wake: asyncio.Event = field(default_factory=asyncio.Event)
    ended: bool = False


def _html(title: str, text: str, status: int, refresh: int | None = None, lang: str = "en") -> Response:
    meta = f"<meta http-equiv=refresh content={refresh}>" if refresh else ""
    page = (f"<!doctype html><html lang={lang}><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"{meta}<title>{escape(title)}</title></head><body style='font:18px sans-serif;margin:2em'>"
            f"<h1>{escape(title)}</h1><p>{escape(text)}</p></body></html>")
    return Response(page, status_code=status, media_type="text/html; charset=utf-8")


PENDING_PAGE = {
    "fr": ("Votre ticket arrive", "Votre ticket est en route. Cette page se recharge toute seule."),
    "en": ("Your receipt is on its way", "Your receipt is on its way. This page reloads by itself."),
    "it": ("Il tuo scontrino sta arrivando", "Lo scontrino è in arrivo. Questa pagina si ricarica da sola."),
    "de": ("Ihr Beleg ist unterwegs", "Ihr Beleg ist unterwegs. Diese Seite lädt sich selbst neu."),
    "es": ("Su ticket está en camino", "Su ticket está en camino. Esta página se recarga sola."),
}
ERROR_PAGE = {
    404: "This receipt link is not known here. Check that you scanned the code on the shop's screen.",
    410: "This receipt has expired and was deleted. Ask the shop for a copy.",
    429: "Too many unknown links from your connection. Please wait a minute.",
    500: "This receipt is damaged. Ask the shop for a copy.",
}


def preferred_language(accept_language: str) -> str:
    """The first of fr, en, it, de, es named in an ``Accept-Language`` header (RFC 9110 §12.5.4; q-values in
    order of appearance suffice for browsers), else en."""
    for part in accept_language.split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in PENDING_PAGE:
            return tag
    return "en"


class Relay:
    """The relay's behaviour over a storage backend; blocking storage calls run in worker threads."""

    def __init__(self, storage: DirStorage | S3Storage, settings: RelaySettings) -> None:
        self.storage = storage
        self.settings = settings
        self.limiter = RateLimiter()
        self.uploads = Concurrency(UPLOADS_PER_ADDRESS, "uploads from one address")
        self.upload_buffer = ByteBudget(settings.upload_buffer_bytes)
        self.polls_by_device = Concurrency(POLLS_PER_DEVICE, "status polls per device")
        self.polls_by_address = Concurrency(POLLS_PER_ADDRESS, "status polls from one address")
        self._blocked: dict[str, tuple[float, bool]] = {}
        self._marked: OrderedDict[str, None] = OrderedDict()
        self.quotas = Quotas(storage, device_receipts=settings.quota_receipts, device_bytes=settings.quota_bytes,
                             network_receipts=settings.network_quota_receipts,
                             network_bytes=settings.network_quota_bytes,
                             new_devices=settings.new_devices_per_network)
        self._waiting: dict[str, set[_Waiting]] = {}
        self._put_locks = LockStripes()  # one receipt id's check and write at a time

    # --- devices --------------------------------------------------------------------------------------
    async def async_check_blocked(self, device: str) -> None:
        """Raise :class:`DeviceBlocked` if the operator blocked ``device`` (cached for 10 s per replica)."""
        now = time.monotonic()
        cached = self._blocked.get(device)
        if cached is None or now - cached[0] > BLOCK_CACHE_SECONDS:
            blocked = await run_in_threadpool(self.storage.head, f"b/{device}") is not None
            self._blocked[device] = cached = (now, blocked)
            while len(self._blocked) > 100_000:
                self._blocked.pop(next(iter(self._blocked)))
        if cached[1]:
            raise DeviceBlocked(f"This relay's operator blocked device {device}; ask them why.", device=device)

    async def async_put(self, rid: str, device: str, sealed: bytes, expires: float,
                        client: str = "-") -> tuple[bool, int]:
        """Store a sealed receipt that ``device`` sent from the address ``client``: ``(created, expires)``,
        created False if this device already stored these very bytes (a retry: not counted again, and
        ``expires`` is the stored one, Unix seconds). Two uploads of one id at once are taken one after the
        other (on this replica), so only one of them can store it.

        Raises ReceiptConflict (other bytes or another device under ``rid``), and the quotas' refusals
        (:meth:`relay.quotas.Quotas.async_check`): TooManyNewDevices, NetworkQuotaExceeded, QuotaExceeded."""
        digest = hashlib.sha256(sealed).hexdigest()
        network = network_id(client)
        async with self._put_locks(rid), self.quotas.async_locked(device, network):  # check and write as one step
            try:
                existing = await run_in_threadpool(self.storage.head, f"r/{rid}")
            except DamagedObject:
                existing = {}
            if existing is not None:
                if existing.get("device") == device and existing.get("sha256") == digest:
                    return False, unix_seconds(existing.get("expires", "")) or int(expires)
                raise ReceiptConflict("Another receipt is already stored under this id.")
            now = time.time()
            new = await self.quotas.async_check(device, network, len(sealed), now)
            await self.quotas.async_record(device, network, rid, len(sealed), now, new)
            meta = {"device": device, "expires": str(int(expires)), "sha256": digest, "created": str(int(now)),
                    "object": OBJECTS, "size": str(len(sealed))}
            await run_in_threadpool(self.storage.put_object, rid, sealed)  # the bytes first: a record has them
            await run_in_threadpool(self.storage.put, f"r/{rid}", b"", meta)
        return True, int(expires)

    async def async_downloaded(self, device: str, rids: list[str], wait: float) -> dict[str, int]:
        """``{rid: downloaded_at}`` for those of ``device``'s receipts that were downloaded; waits up to
        ``wait`` seconds for one, waking at once on a download through this replica, else checking storage
        every 2 s (another replica may have served it). Ids stored by another device, or not stored, are
        dropped after one look, so a throwaway key cannot make the relay poll storage for nothing. A newer
        poll of ``device`` (:meth:`end_polls`) ends the wait with what was found so far (often nothing).
        Safe to cancel at any point (the client went away)."""
        def owned(rid: str) -> bool:
            try:
                meta = self.storage.head(f"r/{rid}")
            except DamagedObject:
                return False
            return meta is not None and meta.get("device") == device

        mine = [rid for rid in rids if await run_in_threadpool(owned, rid)]
        deadline = time.monotonic() + wait
        waiting = _Waiting()
        self._waiting.setdefault(device, set()).add(waiting)
        try:
            while True:
                waiting.wake.clear()  # before looking: a download during the look is not missed
                found: dict[str, int] = {}
                for rid in mine:
                    try:
                        meta = await run_in_threadpool(self.storage.head, f"d/{rid}")
                    except DamagedObject:
                        continue
                    if meta is not None and meta.get("device") == device:
                        found[rid] = unix_seconds(meta.get("at", "")) or 0
                left = deadline - time.monotonic()
                if found or left <= 0 or not mine or waiting.ended:
                    return found
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiting.wake.wait(), min(STATUS_RECHECK_SECONDS, left))
        finally:
            polls = self._waiting.get(device)
            if polls is not None:
                polls.discard(waiting)
                if not polls:
                    del self._waiting[device]

    def end_polls(self, device: str) -> None:
        """A newer status poll of ``device`` arrived: its polls waiting on this replica answer now."""
        for waiting in self._waiting.get(device, ()):
            waiting.ended = True
            waiting.wake.set()

    # --- phones ---------------------------------------------------------------------------------------
    def _miss(self, client: str, now: float, error: NotFound | Gone) -> NotFound | Gone | TooManyMisses:
        retry = self.limiter.over(client, "miss", self.settings.miss_limit, now)
        if retry:
            return TooManyMisses("Too many unknown receipt links from this address; wait a minute.",
                                 retry_after=retry)
        self.limiter.count(client, "miss", now)
        return error

    async def async_fetch(self, token: str, client: str, mark: bool) -> tuple[str, bytes | None, int]:
        """What ``GET /r/{token}`` shows: ``("pdf", pdf, created)`` or ``("pending", None, 0)``.

        A stored receipt is always served; misses (NotFound, Gone) count against ``client`` and turn into
        TooManyMisses past the limit. Raises DamagedReceipt when the stored bytes do not open."""
        now = time.time()
        if token_version(token) != TOKEN_VERSION:  # a v2 secret is never used here: the relay must not see it
            raise self._miss(client, now, NotFound("No receipt at this address."))
        try:
            keys = parse_token(token)
            if keys.issued > now + FUTURE_SKEW_SECONDS:
                raise BadToken("issued in the future")
        except BadToken:
            raise self._miss(client, now, NotFound("No receipt at this address.")) from None
        try:
            found = await self._async_get(f"r/{keys.rid}")
            if found is not None and found[1].get("object"):
                data = await self._async_get_object(keys.rid)
                if data is None:
                    raise DamagedObject(f"r/{keys.rid}: its object is missing")
                found = (data, found[1])
        except DamagedObject:
            log.error("stored receipt %s… is unreadable", keys.rid[:8])
            raise DamagedReceipt("The stored receipt is damaged; ask the shop for a copy.") from None
        if found is None:
            if now > keys.issued + self.settings.retention_seconds or await run_in_threadpool(
                    self._tombstoned, keys.rid):
                raise self._miss(client, now, Gone("This receipt has expired."))
            if now - keys.issued <= self.settings.pending_seconds:
                retry = self.limiter.over(client, "pending", self.settings.pending_limit, now)
                if retry:
                    raise TooManyMisses("Too many requests from this address; wait a minute.", retry_after=retry)
                self.limiter.count(client, "pending", now)
                return "pending", None, 0
            raise self._miss(client, now, NotFound("No receipt at this address."))
        sealed, meta = found
        expires = unix_seconds(meta.get("expires", ""))
        if expires is None:
            raise DamagedReceipt("The stored receipt is damaged; ask the shop for a copy.")
        if now >= expires:
            raise self._miss(client, now, Gone("This receipt has expired."))
        try:
            pdf = keys.open(sealed)
        except InvalidTag:
            log.error("stored receipt %s… fails authentication: storage damaged or tampered with", keys.rid[:8])
            raise DamagedReceipt("The stored receipt is damaged; ask the shop for a copy.") from None
        if mark:
            await self._async_mark(keys.rid, meta.get("device", ""), now)
        return "pdf", pdf, unix_seconds(meta.get("created", "")) or 0

    async def async_object(self, rid: str, issued: int | None, client: str) -> dict[str, str]:
        """The record of the stored, unexpired object ``rid`` (its bytes: ``o/<rid>``), for ``GET /o/{rid}``.

        ``issued``: the link's issue time (Unix seconds), which the download page sends so that a miss can be
        told apart as the v1 route does: not arrived yet (NotFound with ``pending``, Retry-After 3, at most
        ``pending_limit`` a minute per address), expired (Gone: past the record's expiry, a tombstone, or
        issued longer ago than the retention), or unknown (NotFound). Misses count against ``client``
        (TooManyMisses past ``miss_limit``). Raises DamagedReceipt for an unreadable record or missing bytes."""
        now = time.time()
        try:
            meta = (self.storage.head(f"r/{rid}") if isinstance(self.storage, DirStorage)  # small, page cache
                    else await run_in_threadpool(self.storage.head, f"r/{rid}"))
        except DamagedObject:
            log.error("stored receipt %s… is unreadable", rid[:8])
            raise DamagedReceipt("The stored receipt is damaged; ask the shop for a copy.") from None
        if meta is not None:
            expires = unix_seconds(meta.get("expires", ""))
            if expires is None or not meta.get("object"):
                # No expiry, or a receipt stored before blind links (its bytes are not a static object).
                raise DamagedReceipt("The stored receipt cannot be served as an object; ask the shop for a copy.")
            if now >= expires:
                raise self._miss(client, now, Gone("This receipt has expired."))
            return meta
        if await run_in_threadpool(self._tombstoned, rid) or (
                issued is not None and now > issued + self.settings.retention_seconds):
            raise self._miss(client, now, Gone("This receipt has expired."))
        if issued is not None and -FUTURE_SKEW_SECONDS - 3600 <= now - issued <= self.settings.pending_seconds:
            retry = self.limiter.over(client, "pending", self.settings.pending_limit, now)
            if retry:
                raise TooManyMisses("Too many requests from this address; wait a minute.", retry_after=retry)
            self.limiter.count(client, "pending", now)
            raise NotFound("The receipt has not arrived yet; retry in a few seconds.", retry_after=REFRESH_SECONDS,
                           pending=True)
        raise self._miss(client, now, NotFound("No receipt at this address."))

    async def async_notice(self, rid: str) -> bool:
        """The download page opened ``rid``: mark it downloaded for its device's status poll. False (nothing
        marked) when no unexpired record ``rid`` exists. The relay learns only that this object was fetched."""
        try:
            meta = await run_in_threadpool(self.storage.head, f"r/{rid}")
        except DamagedObject:
            return False
        expires = unix_seconds((meta or {}).get("expires", ""))
        if meta is None or expires is None or time.time() >= expires:
            return False
        await self._async_mark(rid, meta.get("device", ""), time.time())
        return True

    async def _async_get_object(self, rid: str) -> bytes | None:
        if isinstance(self.storage, DirStorage):
            return self.storage.get_object(rid)
        return await run_in_threadpool(self.storage.get_object, rid)

    def _tombstoned(self, rid: str) -> bool:
        try:
            return self.storage.head(f"t/{rid}") is not None
        except DamagedObject:
            return True

    async def _async_get(self, key: str) -> tuple[bytes, dict[str, str]] | None:
        """Read an object: on the event loop for local files (receipt-sized, usually in the page cache: the
        thread hop would halve the download rate, bench/relay_vs_nginx.py), in a worker thread for S3."""
        if isinstance(self.storage, DirStorage):
            return self.storage.get(key)
        return await run_in_threadpool(self.storage.get, key)

    async def _async_mark(self, rid: str, device: str, now: float) -> None:
        if rid in self._marked:
            return

        def mark() -> None:
            try:
                present = self.storage.head(f"d/{rid}") is not None
            except DamagedObject:
                present = False
            if not present:
                self.storage.put(f"d/{rid}", b"", {"at": str(int(now)), "device": device})

        await run_in_threadpool(mark)
        self._marked[rid] = None
        while len(self._marked) > 10_000:
            self._marked.popitem(last=False)
        for polls in self._waiting.values():
            for waiting in polls:
                waiting.wake.set()

    # --- housekeeping ---------------------------------------------------------------------------------
    def sweep(self, now: float | None = None) -> int:
        """Delete expired receipts (leaving a small tombstone ``t/<rid>`` so their links keep answering 410
        while a phone may still hold them), unreadable receipts, old tombstones, quota ledgers older than two
        days and interrupted writes. Idempotent: every replica may run it; one bad object never stops it.
        Returns receipts deleted."""
        now = time.time() if now is None else now
        deleted = 0
        for key in list(self.storage.keys("r/")):
            rid = key.split("/", 1)[1]
            try:
                meta = self.storage.head(key)
                expires = unix_seconds((meta or {}).get("expires", ""))
                if meta is None or (expires is not None and now < expires):
                    continue
                if expires is None:
                    raise DamagedObject(f"{key}: no expiry")
            except DamagedObject as exc:
                log.warning("deleting unreadable object %s…: %s", key[:10], type(exc).__name__)
                expires = int(now)
            try:
                self.storage.put(f"t/{rid}", b"", {"until": str(int(expires + self.settings.pending_seconds))})
                self.storage.delete(key)
                self.storage.delete_object(rid)
                self.storage.delete(f"d/{rid}")
                deleted += 1
            except Exception:
                log.exception("sweep: could not delete %s…", key[:10])
        if isinstance(self.storage, DirStorage):  # bytes whose record never came (a crash mid-upload)
            for path in self.storage.object_path("x").parent.iterdir():
                try:
                    if (not path.name.startswith(".tmp-") and path.stat().st_mtime < now - 3600
                            and self.storage.head(f"r/{path.name}") is None):
                        path.unlink(missing_ok=True)
                except (OSError, ValueError, DamagedObject):
                    continue
        for key in list(self.storage.keys("t/")):
            try:
                until = unix_seconds((self.storage.head(key) or {}).get("until", ""))
            except DamagedObject:
                until = None
            if until is None or now >= until:
                self.storage.delete(key)
        self.quotas.sweep(now)
        if isinstance(self.storage, DirStorage):
            self.storage.remove_stale_temporaries(now - 86_400)
        return deleted


INLINE_OBJECT_BYTES = 1 << 20
"""Objects up to this size (nearly every receipt) are read whole on the event loop, from the page cache: each
thread hop of a streamed file response costs more than the read (bench/relay_vs_nginx.py)."""
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_HUGE = 10 ** 18  # past any object: a longer number is read as this, not parsed digit by digit


class Unsatisfiable(enum.Enum):
    """What :func:`byte_range` answers for a range no byte of the object is in (416)."""

    RANGE = "unsatisfiable"


UNSATISFIABLE = Unsatisfiable.RANGE


def byte_range(range_header: str | None, size: int) -> tuple[int, int] | None | Literal[Unsatisfiable.RANGE]:
    """The single byte range ``Range`` asks for in an object of ``size`` bytes (RFC 9110 §14.1.2):
    ``(first, last)`` inclusive, None to send the whole object (no header; several ranges; a malformed or
    invalid spec such as ``bytes=5-2``, which §14.2 lets a server ignore), :data:`UNSATISFIABLE` for a 416
    (the first byte lies beyond the end, or a zero-length suffix)."""
    match = _RANGE.fullmatch((range_header or "").strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first_s, last_s = match.groups()

    def number(digits: str) -> int:
        digits = digits.lstrip("0") or "0"
        return int(digits) if len(digits) <= 18 else _HUGE

    if first_s == "":  # the last N bytes
        suffix = number(last_s)
        return (max(0, size - suffix), size - 1) if suffix > 0 and size > 0 else UNSATISFIABLE
    first = number(first_s)
    last = number(last_s) if last_s else None
    if last is not None and last < first:
        return None
    if first >= size:
        return UNSATISFIABLE
    return first, size - 1 if last is None else min(last, size - 1)


def range_applies(request: Request, etag: str) -> str | None:
    """The request's ``Range``, or None when ``If-Range`` names another representation (RFC 9110 §13.1.5:
    strong comparison of an entity tag; a date is not one of ours, so it does not match either)."""
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        return None
    return request.headers.get("range")


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """True when ``If-None-Match`` names ``etag`` (weak comparison, a list, or ``*``: RFC 9110 §13.1.2)."""
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag.removeprefix("W/") in tags


def _unsatisfiable(size: int, headers: dict[str, str]) -> Response:
    kept = {k: v for k, v in headers.items() if k not in ("Cache-Control", "ETag")}
    return Response(status_code=416, headers={**kept, "Content-Range": f"bytes */{size}", "Cache-Control": "no-store"})


def _ranged(data: bytes, range_header: str | None, headers: dict[str, str]) -> Response:
    """``data`` as a 200, or the one byte range asked for as a 206 with Content-Range, or 416 when it lies
    beyond the end (:func:`byte_range`, RFC 9110 §14)."""
    headers = {**headers, "Accept-Ranges": "bytes"}
    span = byte_range(range_header, len(data))
    if span is None:
        return Response(data, media_type="application/octet-stream", headers=headers)
    if span is UNSATISFIABLE:
        return _unsatisfiable(len(data), headers)
    start, end = span
    return Response(data[start:end + 1], status_code=206, media_type="application/octet-stream",
                    headers={**headers, "Content-Range": f"bytes {start}-{end}/{len(data)}"})


def _headers(request: Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


SIGNED_HEADERS = ("eticket-key", "eticket-date", "eticket-expires", "eticket-signature")


def _precheck(request: Request) -> None:
    """Refuse a request whose signature headers are malformed, or sent twice (400: the signature covers one
    value, which another part of the relay must not read differently)."""
    for name in SIGNED_HEADERS:
        if len(request.headers.getlist(name)) > 1:
            raise BadRequest(f"The header {name} appears more than once.")
    try:
        precheck_headers(_headers(request))
    except BadSignature as exc:
        raise BadSignatureError(str(exc)) from None


def _signed_device(request: Request, body: bytes) -> str:
    try:
        return verify_request(request.method, request.url.path, _headers(request), body)
    except BadSignature as exc:
        raise BadSignatureError(str(exc)) from None


async def _read_body(request: Request, limit: int, charge: Callable[[int], None] | None = None) -> bytes:
    """The body, at most ``limit`` bytes, within BODY_DEADLINE_SECONDS; 413 / 408-style 400 otherwise.
    ``charge(size)`` is called for each chunk as it arrives (:meth:`ByteBudget.hold`: 429 when it does not
    fit)."""
    length = request.headers.get("content-length")
    if length is not None and (unix_seconds(length) or 0) > limit:
        raise PayloadTooLarge(f"The body may be at most {limit} bytes.")
    body = bytearray()
    try:
        async with asyncio.timeout(BODY_DEADLINE_SECONDS):
            async for chunk in request.stream():
                if charge is not None:
                    charge(len(chunk))
                body += chunk
                if len(body) > limit:
                    raise PayloadTooLarge(f"The body may be at most {limit} bytes.")
    except TimeoutError:
        raise BadRequest(f"The body did not arrive within {BODY_DEADLINE_SECONDS:g} s.") from None
    except ClientDisconnect:
        raise BadRequest("The client disconnected before sending the whole body.") from None
    return bytes(body)


async def _async_until_disconnected(request: Request) -> None:
    """Return when the client goes away (the body was read: the next ASGI message is ``http.disconnect``)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _async_long_poll(relay: Relay, request: Request, network: str, device: str, ids: list[str],
                           wait: float) -> dict[str, Any]:
    """The status answer within the poll limits: this poll ends the device's older polls on this replica
    (the device asks with every id it waits for, so they are no longer needed), waits up to
    POLL_SLOT_GRACE_SECONDS for their slots, and gives its own slot back as soon as the client goes away.
    Raises TooManyRequests past POLLS_PER_ADDRESS or POLLS_PER_DEVICE."""
    relay.end_polls(device)
    with relay.polls_by_address.slot(network):
        async with relay.polls_by_device.async_slot(device, POLL_SLOT_GRACE_SECONDS):
            answer = asyncio.ensure_future(relay.async_downloaded(device, list(dict.fromkeys(ids)), wait))
            gone = asyncio.ensure_future(_async_until_disconnected(request))
            try:
                await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (answer, gone):
                    task.cancel()
                await asyncio.gather(answer, gone, return_exceptions=True)
            if answer.cancelled():  # the client went away: nobody reads this
                return {"downloaded": {}}
            return {"downloaded": answer.result()}


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
    app.router.redirect_slashes = False  # its redirect is built from the Host header (and may lose https)
    app.state.relay = relay

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "-"

    @app.put("/api/v1/receipts/{rid}", status_code=201)
    async def upload(rid: str, request: Request) -> Response:
        """Store a sealed receipt under ``rid`` (43 base64url characters) for the signing device.

        Headers: ``Eticket-Key``, ``Eticket-Date``, ``Eticket-Expires`` (required: Unix seconds, capped at the
        relay's retention), ``Eticket-Signature`` (:mod:`relay.crypto`). Body: the sealed bytes.
        201 ``{"rid", "expires"}`` when stored, 200 when this device already stored the same bytes (a retry or
        a replay changes nothing). Errors: 400, 401 bad-signature (checked before the body is read),
        403 device-blocked, 409 receipt-conflict, 413 too-large, 429 quota-exceeded (per device),
        network-quota-exceeded (per client network, all keys), too-many-new-devices (each with Retry-After
        until midnight UTC, :mod:`relay.quotas`), 429 too-many-requests (over 4 uploads at once from one address,
        or over :attr:`RelaySettings.upload_buffer_bytes` of bodies being received from all clients).
        """
        _precheck(request)
        if not valid_rid(rid):
            raise BadRequest("The receipt id must be 43 base64url characters (HKDF of the token).")
        client = client_key(client_of(request))
        with relay.uploads.slot(client), relay.upload_buffer.hold(client) as charge:
            body = await _read_body(request, relay.settings.max_receipt_bytes, charge)
            device = _signed_device(request, body)
            await relay.async_check_blocked(device)
            now = time.time()
            expires = unix_seconds(request.headers.get("eticket-expires", ""))
            if expires is None or expires <= now:
                raise BadRequest("Eticket-Expires must be a future time in Unix seconds.")
            expires = min(expires, int(now + relay.settings.retention_seconds))
            if not body:
                raise BadRequest("The body must hold the sealed receipt.")
            created, expires = await relay.async_put(rid, device, body, expires, client_of(request))
        if created:
            log.info("stored receipt %s… from device %s (%d bytes)", rid[:8], device, len(body))
        return JSONResponse({"rid": rid, "expires": expires}, status_code=201 if created else 200)

    @app.post("/api/v1/status")
    async def status(request: Request, wait: float = 0.0) -> dict[str, Any]:
        """Which of the signing device's receipts were downloaded: body ``{"ids": [rid, …]}`` (at most 50;
        may be empty), answer ``{"downloaded": {rid: unix_seconds}}``. ``wait`` (0–25 s, default 0) holds the
        answer until one is downloaded (long poll); a newer poll of the same device ends it at once (answer:
        what was found, often ``{}``). Another device's receipts are never reported.
        Errors: 400 bad-request / json-too-deep (nested over 32 levels), 401, 403, 429 too-many-requests (over 2
        polls at once per device, 16 per address)."""
        _precheck(request)
        if not 0 <= wait <= MAX_WAIT_SECONDS:
            raise BadRequest(f"wait must be between 0 and {MAX_WAIT_SECONDS:g} seconds.")
        body = await _read_body(request, 16 * 1024)
        device = _signed_device(request, body)
        await relay.async_check_blocked(device)
        try:
            ids = loads_json(body)["ids"]  # JsonTooDeep (400 json-too-deep) passes through
            if not isinstance(ids, list) or len(ids) > MAX_STATUS_IDS or not all(
                    isinstance(r, str) and valid_rid(r) for r in ids):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise BadRequest(f'The body must be {{"ids": [...]}} with at most {MAX_STATUS_IDS} receipt ids.') from None
        return await _async_long_poll(relay, request, client_key(client_of(request)), device, ids, wait)

    @app.api_route("/r/{token}", methods=["GET", "HEAD"])
    async def download(token: str, request: Request) -> Response:
        """The receipt PDF for a capability token (``Content-Disposition: inline``), opened with the key the
        token derives. Not arrived yet: an HTML page that reloads itself every 3 s (no JavaScript), in the
        browser's language among fr, en, it, de, es; 410 once expired; 404 otherwise; 429 after too many misses
        from one address (stored receipts are still served); 500 receipt-damaged. Browsers get HTML pages for
        errors, other clients problem details."""
        wants_html = prefers(request, "text/html", over=PROBLEM_MEDIA_TYPE)  # RFC 9110 §12.5.1 weights
        try:
            kind, pdf, created = await relay.async_fetch(token, client_of(request), mark=request.method == "GET")
        except (NotFound, Gone, TooManyMisses, DamagedReceipt) as error:
            if not wants_html:
                raise
            response = _html(error.title, ERROR_PAGE[error.status], error.status)
            if "retry_after" in error.extensions:
                response.headers["Retry-After"] = str(error.extensions["retry_after"])
            return response
        if kind == "pending":
            if wants_html:
                lang = preferred_language(request.headers.get("accept-language", ""))
                title, text = PENDING_PAGE[lang]
                return _html(title, text, 200, REFRESH_SECONDS, lang)
            raise NotFound("The receipt has not arrived yet; retry in a few seconds.", retry_after=REFRESH_SECONDS,
                           pending=True)
        assert pdf is not None
        day = datetime.fromtimestamp(created or time.time(), UTC).strftime("%Y-%m-%d")
        return Response(pdf, media_type="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="receipt-{day}.pdf"'})

    @app.api_route("/r/", methods=["GET", "HEAD"], include_in_schema=False)
    @app.api_route("/r", methods=["GET", "HEAD"])
    async def receipt_page(request: Request) -> Response:
        """The blind download page for links ``/r#<secret>`` (docs/protocol.md §9.1): always the same bytes
        (:data:`relay.page.PAGE`, SHA-256 published), under a CSP that runs only its inline script. The
        secret stays in the fragment: the browser never sends it here. 304 for a matching ``If-None-Match``."""
        if etag_matches(request.headers.get("if-none-match"), PAGE_HEADERS["ETag"]):
            return Response(status_code=304, headers=PAGE_HEADERS)
        return Response(PAGE, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    @app.api_route("/o/{rid}", methods=["GET", "HEAD"])
    async def sealed_object(rid: str, request: Request, issued: str | None = None) -> Response:
        """A sealed receipt's bytes (ciphertext and GCM tag, ``application/octet-stream``) by object id:
        immutable, so ``ETag`` (its SHA-256), ``Cache-Control: public, max-age=86400, immutable``, ``Range``
        requests (206/416, RFC 9110 §14) and 304 for ``If-None-Match``. What docs/relay.md has nginx serve
        from ``<storage>/o/`` itself; a miss there falls back to this route.

        ``issued`` (Unix seconds, from the link) lets a miss say what it is: 404 problem details with
        ``"pending": true`` and Retry-After 3 while the receipt may still be on its way, 410 once expired, 404
        otherwise; 429 after too many misses from one address. 500 receipt-damaged for an unreadable record.
        Misses are never cached (``no-store``)."""
        client = client_of(request)
        if not valid_rid(rid):
            raise relay._miss(client, time.time(), NotFound("No receipt at this address."))
        meta = await relay.async_object(rid, unix_seconds(issued) if issued else None, client)
        headers = {"ETag": f'"{meta.get("sha256", "")}"', "Cache-Control": OBJECT_CACHE_CONTROL,
                   "Cross-Origin-Resource-Policy": "same-origin"}
        if etag_matches(request.headers.get("if-none-match"), headers["ETag"]):
            return Response(status_code=304, headers=headers)
        size = unix_seconds(meta.get("size", "")) or 0
        if isinstance(relay.storage, DirStorage) and size > INLINE_OBJECT_BYTES:
            path = relay.storage.object_path(rid)
            if path.is_file():  # large: streamed from the file in worker threads, a range too
                span = byte_range(range_applies(request, headers["ETag"]), size)
                if span is UNSATISFIABLE:
                    return _unsatisfiable(size, headers)
                # FileResponse streams the range; it is given the one this relay decided on, in canonical form
                # (or none), so both object sizes answer alike and no header reaches its own parser as sent.
                kept = [(k, v) for k, v in request.scope["headers"] if k not in (b"range", b"if-range")]
                if span is not None:
                    kept.append((b"range", f"bytes={span[0]}-{span[1]}".encode()))
                request.scope["headers"] = kept
                return FileResponse(path, media_type="application/octet-stream", headers=headers)
        else:
            data = await relay._async_get_object(rid)
            if data is not None:
                return _ranged(data, range_applies(request, headers["ETag"]), headers)
        log.error("stored receipt %s… has a record but no object", rid[:8])
        raise DamagedReceipt("The stored receipt is damaged; ask the shop for a copy.")

    @app.post("/api/v1/downloaded/{rid}", status_code=204)
    async def download_notice(rid: str, request: Request) -> Response:
        """The download page decrypted object ``rid``: mark it downloaded, so the device's status poll
        (``POST /api/v1/status``) sees it and the shop's screen says "downloaded". No body. 204 when marked
        (or already), 404 for an unknown or expired id (counted as a miss, 429 past the limit)."""
        client = client_of(request)
        if not valid_rid(rid) or not await relay.async_notice(rid):
            raise relay._miss(client, time.time(), NotFound("No receipt at this address."))
        return Response(status_code=204)

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> dict[str, Any]:
        """``{"status": "ok", "version", "links": [1, 2], "page_sha256"}``: ``links`` the link versions this
        relay serves (2: blind ``/r#<secret>``; a device makes v2 links only for a relay listing 2), and the
        SHA-256 of the download page it serves."""
        return {"status": "ok", "version": __version__, "links": [1, 2], "page_sha256": PAGE_SHA256}

    @app.get("/")
    async def home() -> Response:
        """What this is, for a curious visitor."""
        return _html("eTicket relay", "This server passes sealed till receipts from shops to their customers. "
                     "It cannot read them and keeps them only for a limited time.", 200)

    add_problem_handlers(app)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AccessLog)
    return app
