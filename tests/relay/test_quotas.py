"""The quota ledgers' keys and their sweep (in-process, over a real directory storage)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from relay.errors import NetworkQuotaExceeded
from relay.quotas import Quotas, client_key, day_of, network_id
from relay.storage import DirStorage, check_key


def test_a_client_network_is_an_ipv4_address_or_an_ipv6_slash_64_and_a_valid_storage_key() -> None:
    assert network_id("192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:0:1:aaaa::1") == client_key("2001:db8:0:1:ffff::2") == "2001:db8:0:1::/64"
    assert network_id("2001:db8:0:1:aaaa::1") == "2001-db8-0-1--_64"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"  # an IPv4 client on a dual-stack socket
    for address in ("192.0.2.7", "2001:db8::1", "-", "testclient", "../x", "a..b", "", "x/../../y"):
        assert check_key(f"n/{network_id(address)}/20260101/r/x.1")


def _quotas(tmp_path: Path, **limits: int) -> Quotas:
    settings = {"device_receipts": 100, "device_bytes": 10**9, "network_receipts": 100, "network_bytes": 10**9,
                "new_devices": 100, **limits}
    return Quotas(DirStorage(tmp_path), **settings)


def test_the_network_quota_counts_every_key_and_the_sweep_keeps_only_today_and_yesterday(tmp_path: Path) -> None:
    quotas = _quotas(tmp_path, network_receipts=3)
    now = time.time()

    async def upload(device: str, at: float) -> None:
        async with quotas.async_locked(device, "192.0.2.7"):
            new = await quotas.async_check(device, "192.0.2.7", 10, at)
            await quotas.async_record(device, "192.0.2.7", f"rid{device}{at:.0f}", 10, at, new)

    async def scenario() -> None:
        await upload("old", now - 3 * 86_400)
        for device in ("a", "b", "c"):
            await upload(device, now)
        with pytest.raises(NetworkQuotaExceeded):
            await upload("d", now)

    asyncio.run(scenario())
    quotas.sweep(now)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    today = day_of(now)
    assert [k for k in left if k.startswith("n/")] == sorted(
        [f"n/192.0.2.7/{today}/r/rid{d}{now:.0f}.10" for d in "abc"] + [f"n/192.0.2.7/{today}/k/{d}" for d in "abc"])
    assert not any(day_of(now - 3 * 86_400) in k for k in left)
    assert {"k/a", "k/b", "k/c", "k/old"} <= set(left)  # known keys stay known
