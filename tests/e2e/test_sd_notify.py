"""A real ``eticket serve`` under a systemd-style NOTIFY_SOCKET: READY=1 only once it answers, WATCHDOG=1 pings
at half of WATCHDOG_USEC while it runs, STOPPING=1 on SIGTERM, and a STATUS= line that tells the storage's
state. (The image's boot test proves the same under the real systemd.)"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ETICKET, REPO, Appliance, free_port


def test_serve_notifies_ready_watchdog_and_stopping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     mdns_loopback: None) -> None:
    address = str(tmp_path / "notify")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(address)
    receiver.settimeout(30)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # pings every 0.2 s
    app = Appliance(data_dir=tmp_path / "data", port=free_port())
    try:
        app.start()
        messages: list[tuple[float, str]] = []
        while not any("READY=1" in m for _, m in messages):
            messages.append((time.monotonic(), receiver.recv(4096).decode()))
        # READY came after the listeners started: /healthz answered before start() returned, and the
        # only messages before READY are none (no early pings).
        assert messages[-1][1].startswith("READY=1"), messages
        assert httpx.get(app.url + "/healthz").status_code == 200
        pings = []
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            pings.append(receiver.recv(4096).decode())
        assert pings.count("WATCHDOG=1") >= 4, pings
        app.stop()
        receiver.settimeout(5)
        rest = []
        try:
            while True:
                rest.append(receiver.recv(4096).decode())
        except TimeoutError:
            pass
        assert "STOPPING=1" in rest
    finally:
        app.stop()
        receiver.close()


def test_kiosk_notifies_ready_after_its_first_frame_and_pings_from_the_render_loop(
        appliance: Appliance, tmp_path: Path) -> None:
    address = str(tmp_path / "kiosk-notify")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(address)
    receiver.settimeout(30)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
    env.update(NOTIFY_SOCKET=address, WATCHDOG_USEC="400000")
    kiosk = subprocess.Popen([*ETICKET, "kiosk", "--data-dir", str(appliance.data_dir), "--size", "320x240"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        first = receiver.recv(4096).decode()
        assert first == "READY=1"
        assert (appliance.data_dir / "screen.png").exists()  # the first frame was out before READY
        pings = [receiver.recv(4096).decode() for _ in range(4)]
        assert set(pings) == {"WATCHDOG=1"}
    finally:
        kiosk.terminate()
        kiosk.wait(10)
        receiver.close()


def _receiver(path: Path) -> socket.socket:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.settimeout(30)
    return receiver


def _statuses_until(receiver: socket.socket, wanted: str, seconds: float) -> list[str]:
    """The STATUS= values received (in order) until one equals ``wanted`` or ``seconds`` pass."""
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and wanted not in seen:
        receiver.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            message = receiver.recv(4096).decode()
        except TimeoutError:
            break
        seen += [line.removeprefix("STATUS=") for line in message.splitlines() if line.startswith("STATUS=")]
    return seen


def test_status_says_the_storage_is_unavailable_and_then_that_it_serves_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, appliance_factory: object) -> None:
    """No usable database at start (a directory where the file should be): ``systemctl status`` must not say
    a plain "serving" while /healthz is degraded. Once the fault is gone and the device uses its storage again,
    the status says so by itself."""
    receiver = _receiver(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    data = tmp_path / "broken"
    (data / "eticket.sqlite3").mkdir(parents=True)
    try:
        app: Appliance = appliance_factory(data_dir=data)  # type: ignore[operator]
        ready = receiver.recv(4096).decode()
        assert ready == "READY=1\nSTATUS=serving; storage unavailable: receipts cannot be stored", ready
        assert httpx.get(app.url + "/healthz").json()["status"] == "degraded"
        (data / "eticket.sqlite3").rmdir()  # the fault is gone; the next use of the storage reopens it
        deadline = time.monotonic() + 30
        while app.api.post("/api/v1/pair", json={"secret": app.pairing_secret(), "name": "till"}).status_code != 201:
            assert time.monotonic() < deadline, "pairing never worked again"
            time.sleep(0.5)
        assert httpx.get(app.url + "/healthz").json()["status"] == "ok"
        assert _statuses_until(receiver, "serving", 10)[-1:] == ["serving"]
    finally:
        receiver.close()


def test_status_after_a_repair_says_how_many_receipts_were_lost(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, appliance_factory: object) -> None:
    """A b-tree page of the receipts was garbage at start: the device repaired its database, and the unit's
    status says so with the number of receipts lost, the same number /healthz and the screens give."""
    from tests.e2e.test_storage_damage import PAGE_SIZE, _db, _device_with_receipts, _overwrite, _pages

    app, _token, _sent = _device_with_receipts(appliance_factory, count=24)  # type: ignore[arg-type]
    leaves = _pages(app, "leaf")
    _overwrite(_db(app), (leaves[0] - 1) * PAGE_SIZE, b"\x5a" * 64)
    receiver = _receiver(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    try:
        app.start()
        ready = receiver.recv(4096).decode()
        lost = app.display()["storage"]["receipts_lost"]  # type: ignore[index]
        assert isinstance(lost, int) and lost > 0
        assert httpx.get(app.url + "/healthz").json()["storage"]["last_repair"]["receipts_lost"] == lost
        assert ready == f"READY=1\nSTATUS=serving; storage repaired ({lost} receipt{'s' * (lost != 1)} lost)", ready
    finally:
        receiver.close()
