"""Daily quotas of a relay: per device key, and per client network across every key.

A device key costs nothing to make, so a quota per key alone bounds nothing: a client that makes 40 keys gets 40
quotas. Three limits per UTC day, all counted in storage so that every replica sees the same ledgers:

* per device key: ``quota_receipts`` receipts and ``quota_bytes`` bytes;
* per client network (:func:`client_key`: an IPv4 address, an IPv6 /64), whatever keys it uses:
  ``network_receipts`` receipts and ``network_bytes`` bytes — a new key cannot escape these;
* per client network: ``new_devices`` keys that never stored a receipt on this relay before — this bounds how
  often a client can trade a blocked or exhausted key for a fresh one. Keys that stored a receipt before are
  not new wherever they come from, so a shop's devices moving to another line are not affected.

Storage keys (see :mod:`relay.storage`)::

    q/<device>/<YYYYMMDD>/<rid>.<n>   one per receipt accepted from this device that day, n bytes
    n/<net>/<YYYYMMDD>/r/<rid>.<n>    one per receipt accepted from this network that day, any device
    n/<net>/<YYYYMMDD>/k/<device>     a key first seen from this network that day
    k/<device>                        this key stored a receipt here before (metadata: since, YYYYMMDD)

``<net>`` is :func:`network_id` (``192.0.2.7``, ``2001-db8-0-1--_64``). Ledgers of days before yesterday are
deleted by :meth:`Quotas.sweep`; ``k/`` markers hold no address and are kept (an S3 lifecycle rule may expire
them; a device that uploaded today or yesterday gets its marker back).

On one replica every check and write happens under a lock per network and per device, so the limits are exact;
several replicas may together go past a limit by the uploads they accept in the same instant, and a network's
by what the others stored in the last ``NETWORK_CACHE_SECONDS`` (a replica re-reads a network's ledger at most
that often: listing 50 000 entries of a directory takes about 0.4 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool

from .errors import NetworkQuotaExceeded, QuotaExceeded, TooManyNewDevices
from .storage import DamagedObject, DirStorage, S3Storage

NETWORK_CACHE_SECONDS = 10.0
"""A replica re-lists a network's ledger at most this often (between, it adds what it accepted itself)."""
LOCK_STRIPES = 256
CACHE_ENTRIES = 100_000
SECONDS_PER_DAY = 86_400

def client_key(address: str) -> str:
    """The rate-limit and quota key of a client address: IPv4 as is, IPv6 by its /64 (one subscriber's
    network, RFC 6177), anything else (no address) as given."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def network_id(address: str) -> str:
    """:func:`client_key` as one storage key segment: ``:`` becomes ``-``, ``/`` becomes ``_``
    (``2001:db8:0:1::/64`` → ``2001-db8-0-1--_64``); a client "address" that is no IP address (a proxy's
    odd ``X-Forwarded-For``, a test client) becomes ``h-`` and 16 hex digits of its SHA-256."""
    key = client_key(address)
    try:
        ipaddress.ip_network(key)
    except ValueError:
        return "h-" + hashlib.sha256(address.encode()).hexdigest()[:16]
    return key.replace(":", "-").replace("/", "_")


def day_of(ts: float) -> str:
    """The UTC day of Unix time ``ts`` as ``YYYYMMDD``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%d")


def seconds_to_midnight(ts: float) -> int:
    """Whole seconds from Unix time ``ts`` to the next midnight UTC (1…86 400), for ``Retry-After``."""
    return SECONDS_PER_DAY - int(ts % SECONDS_PER_DAY)


@dataclass(slots=True)
class _Usage:
    receipts: int
    bytes: int
    listed_at: float  # time.monotonic()


def _ledger_usage(keys: list[str]) -> tuple[int, int]:
    """``(receipts, bytes)`` of ledger keys ending ``<rid>.<n>``."""
    sizes = [key.rsplit(".", 1)[-1] for key in keys]
    return len(keys), sum(int(n) for n in sizes if n.isdigit())


class LockStripes:
    """A fixed set of asyncio locks, one chosen per key by its SHA-256: keys that share a lock wait for each
    other, which is harmless; memory stays bounded however many keys (devices, networks, receipt ids) come."""

    def __init__(self, stripes: int = LOCK_STRIPES) -> None:
        self._locks = [asyncio.Lock() for _ in range(stripes)]

    def __call__(self, key: str) -> asyncio.Lock:
        """The lock of ``key`` (any string)."""
        return self._locks[int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % len(self._locks)]


class Quotas:
    """The three daily limits over ``storage``; blocking storage calls run in worker threads.

    Use :meth:`async_locked` around :meth:`async_check` and :meth:`async_record` (and the write of the receipt
    itself), so that two uploads of one device or one network are counted one after the other."""

    def __init__(self, storage: DirStorage | S3Storage, *, device_receipts: int, device_bytes: int,
                 network_receipts: int, network_bytes: int, new_devices: int) -> None:
        self.storage = storage
        self.device_receipts, self.device_bytes = device_receipts, device_bytes
        self.network_receipts, self.network_bytes = network_receipts, network_bytes
        self.new_devices = new_devices
        # Two stripe arrays, always taken network first: no two uploads can wait on each other in a cycle.
        self._network_locks, self._device_locks = LockStripes(), LockStripes()
        self._usage: OrderedDict[tuple[str, str], _Usage] = OrderedDict()
        self._known: OrderedDict[str, None] = OrderedDict()

    @contextlib.asynccontextmanager
    async def async_locked(self, device: str, network: str) -> AsyncIterator[None]:
        """Hold the locks of ``network`` (a :func:`network_id`) and ``device`` (on this replica)."""
        async with self._network_locks(network), self._device_locks(device):
            yield

    def _is_known(self, device: str) -> bool:
        """Whether ``device`` stored a receipt here before: its ``k/`` marker, or a quota ledger of today or
        yesterday (relays from before the marker; S3 lifecycle rules expire markers after the retention)."""
        if device in self._known:
            return True
        try:
            known = self.storage.head(f"k/{device}") is not None
        except DamagedObject:
            known = True
        if not known and next(iter(self.storage.keys(f"q/{device}/")), None) is not None:
            known = True  # the marker is missing (an S3 lifecycle rule expired it, or an older relay): restore it
            self.storage.put(f"k/{device}", b"", {"since": day_of(time.time())})
        if known:
            self._remember(device)
        return known

    def _remember(self, device: str) -> None:
        self._known[device] = None
        while len(self._known) > CACHE_ENTRIES:
            self._known.popitem(last=False)

    def _network_usage(self, network: str, day: str) -> _Usage:
        """The network's use today, listed from storage at most every NETWORK_CACHE_SECONDS. A day's ledger
        only grows, so the cached count (plus what this replica added since) is never too high: a refusal on
        it is right, and a client at its quota cannot make the relay list the ledger at every attempt."""
        usage = self._usage.get((network, day))
        if usage is None or time.monotonic() - usage.listed_at > NETWORK_CACHE_SECONDS:
            receipts, used = _ledger_usage(list(self.storage.keys(f"n/{network}/{day}/r/")))
            usage = _Usage(receipts, used, time.monotonic())
            self._usage[(network, day)] = usage
            while len(self._usage) > CACHE_ENTRIES:
                self._usage.popitem(last=False)
        self._usage.move_to_end((network, day))
        return usage

    async def async_check(self, device: str, network: str, size: int, now: float) -> bool:
        """Raise if storing ``size`` more bytes from ``device`` on ``network`` at Unix time ``now`` would pass a
        limit; else return whether ``device`` is new here (its first receipt).

        Raises TooManyNewDevices, NetworkQuotaExceeded, QuotaExceeded (each 429 with ``retry_after``: seconds
        to midnight UTC, when the day's ledgers start afresh)."""
        day, retry = day_of(now), seconds_to_midnight(now)
        new = not await run_in_threadpool(self._is_known, device)
        if new:
            first_seen = await run_in_threadpool(lambda: sum(1 for _ in self.storage.keys(f"n/{network}/{day}/k/")))
            if first_seen >= self.new_devices:
                raise TooManyNewDevices(
                    f"This relay accepts at most {self.new_devices} new device keys per UTC day from one network "
                    f"(an IPv4 address or an IPv6 /64); device {device} is new here. Devices that already stored "
                    "receipts are not affected. Retry after midnight UTC, or ask the relay's operator to raise "
                    "--new-devices-per-network.", retry_after=retry, device=device)
        usage = await run_in_threadpool(self._network_usage, network, day)
        if usage.receipts + 1 > self.network_receipts or usage.bytes + size > self.network_bytes:
            raise NetworkQuotaExceeded(
                f"Your network (an IPv4 address or an IPv6 /64) reached today's quota on this relay "
                f"({self.network_receipts} receipts, {self.network_bytes} bytes per UTC day, all devices "
                "together); retry after midnight UTC, or ask the relay's operator to raise "
                "--network-quota-receipts / --network-quota-bytes.", retry_after=retry)
        ledger = await run_in_threadpool(lambda: list(self.storage.keys(f"q/{device}/{day}/")))
        receipts, used = _ledger_usage(ledger)
        if receipts + 1 > self.device_receipts or used + size > self.device_bytes:
            raise QuotaExceeded(
                f"Device {device} reached today's quota ({self.device_receipts} receipts, {self.device_bytes} "
                "bytes per UTC day); retry after midnight UTC.", retry_after=retry, device=device)
        return new

    async def async_record(self, device: str, network: str, rid: str, size: int, now: float, new: bool) -> None:
        """Count one accepted receipt of ``size`` bytes in the device's and the network's ledgers (before the
        receipt is written: a crash in between over-counts, never under-counts)."""
        day = day_of(now)

        def write() -> None:
            self.storage.put(f"q/{device}/{day}/{rid}.{size}", b"", {})
            self.storage.put(f"n/{network}/{day}/r/{rid}.{size}", b"", {})
            if new:
                self.storage.put(f"n/{network}/{day}/k/{device}", b"", {})
                self.storage.put(f"k/{device}", b"", {"since": day})

        await run_in_threadpool(write)
        if new:
            self._remember(device)
        usage = self._usage.get((network, day))
        if usage is not None:
            usage.receipts += 1
            usage.bytes += size

    def sweep(self, now: float) -> None:
        """Delete the ledgers of days before yesterday (UTC), and stray keys under ``q/`` and ``n/``."""
        keep = {day_of(now), day_of(now - SECONDS_PER_DAY)}
        for key in list(self.storage.keys("q/")):
            parts = key.split("/")
            if len(parts) != 4 or parts[2] not in keep:
                self.storage.delete(key)
        for key in list(self.storage.keys("n/")):
            parts = key.split("/")
            if len(parts) != 5 or parts[2] not in keep or parts[3] not in ("r", "k"):
                self.storage.delete(key)
