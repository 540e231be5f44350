"""The kiosk process follows the appliance; when the appliance restarts it shows "connecting" and recovers."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ETICKET, REPO, Appliance, decode_qr_png, samples


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def _qr_now(png: Path) -> list[str]:
    try:
        return decode_qr_png(png)
    except (OSError, SyntaxError, ValueError):
        return []


def _shows_connecting(png: Path) -> bool:
    """True when the PNG is, pixel for pixel, the connecting scene."""
    import pygame

    from kiosk.scenes import render

    try:
        shown = pygame.image.load(str(png))
    except (pygame.error, FileNotFoundError):
        return False
    expected = render(None, shown.get_size())
    return bool(pygame.image.tobytes(shown, "RGB") == pygame.image.tobytes(expected, "RGB"))


def test_headless_kiosk_shows_tickets_and_survives_an_appliance_restart(appliance: Appliance, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
    log = open(tmp_path / "kiosk.log", "wb")
    kiosk = subprocess.Popen([*ETICKET, "kiosk", "--data-dir", str(appliance.data_dir), "--size", "800x480"],
                             env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    screen = appliance.data_dir / "screen.png"
    try:
        _wait_for(lambda: any(u.startswith("eticket://pair") for u in _qr_now(screen)), 20, "the pairing QR")
        token = appliance.pair()
        _wait_for(lambda: _qr_now(screen) == [], 10, "the idle scene after pairing")

        sent = appliance.api.post("/api/v1/tickets", content=samples("pdf")[0].read_bytes(),
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"}).json()
        _wait_for(lambda: _qr_now(screen) == [sent["url"]], 10, "the ticket QR")

        appliance.kill9()
        _wait_for(lambda: _shows_connecting(screen) and kiosk.poll() is None, 15, "the connecting scene")
        appliance.start()
        sent2 = appliance.api.post("/api/v1/tickets", content=samples("pdf")[1].read_bytes(),
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"}).json()
        _wait_for(lambda: _qr_now(screen) == [sent2["url"]], 20, "the ticket QR after the restart")
        assert kiosk.poll() is None, "the kiosk must keep running"
    finally:
        kiosk.terminate()
        kiosk.wait(10)
