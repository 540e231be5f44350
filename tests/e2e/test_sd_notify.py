"""A real ``eticket serve`` under a systemd-style NOTIFY_SOCKET: READY=1 only once it answers, WATCHDOG=1 pings
at half of WATCHDOG_USEC while it runs, STOPPING=1 on SIGTERM. (The image's boot test proves the same under
the real systemd.)"""

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
