"""sd_notify: datagrams really arrive on path and abstract AF_UNIX sockets; the watchdog interval is half of
WATCHDOG_USEC and only for the process it names."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from appliance._sdnotify import Notifier


def _receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + address[1:] if address.startswith("@") else address)
    sock.settimeout(2)
    return sock


def test_ready_reaches_a_path_socket(tmp_path: Path) -> None:
    address = str(tmp_path / "notify")
    with _receiver(address) as sock:
        assert Notifier.from_environ({"NOTIFY_SOCKET": address}).notify("READY=1")
        assert sock.recv(4096) == b"READY=1"


def test_ready_reaches_an_abstract_socket() -> None:
    address = f"@eticket-test-{os.getpid()}"
    with _receiver(address) as sock:
        assert Notifier.from_environ({"NOTIFY_SOCKET": address}).notify("STATUS=serving")
        assert sock.recv(4096) == b"STATUS=serving"


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_environ({})
    assert notifier.address is None
    assert notifier.notify("READY=1") is False
    asyncio.run(asyncio.wait_for(notifier.async_watchdog(), 1))  # returns at once


def test_a_vanished_socket_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert Notifier(address=str(tmp_path / "gone")).notify("READY=1") is False
    assert "sd_notify" in caplog.text


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "20000000"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "4242"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}, None),  # another process's watchdog
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(environ: dict[str, str], expected: float | None) -> None:
    assert Notifier.from_environ({"NOTIFY_SOCKET": "@x", **environ}, pid=4242).watchdog_interval == expected


def test_watchdog_pings_repeat_from_the_loop(tmp_path: Path) -> None:
    address = str(tmp_path / "notify")
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "100000"})

    async def run_briefly() -> None:
        task = asyncio.create_task(notifier.async_watchdog())
        await asyncio.sleep(0.22)  # pings at 0, 50, 100, 150, 200 ms
        task.cancel()

    with _receiver(address) as sock:
        asyncio.run(run_briefly())
        sock.setblocking(False)
        pings = []
        while True:
            try:
                pings.append(sock.recv(64))
            except BlockingIOError:
                break
    assert pings and set(pings) == {b"WATCHDOG=1"}
    assert 3 <= len(pings) <= 6
