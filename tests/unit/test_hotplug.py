"""HDMI unplug and re-plug, replayed from a recorded `udevadm monitor --kernel --property` session."""

from __future__ import annotations

import os
from pathlib import Path

import pygame
import pytest

from kiosk.hotplug import DrmWatcher, UdevEvent, parse_udevadm_monitor
from tests.conftest import REPO

RECORDING = (REPO / "tests" / "fixtures" / "udev-hdmi-unplug-replug.txt").read_text()


def _connector(tmp_path: Path, status: str) -> Path:
    folder = tmp_path / "drm" / "card1-HDMI-A-1"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "status").write_text(status + "\n")
    return tmp_path / "drm"


def test_the_recording_parses_into_drm_hotplug_events() -> None:
    events = list(parse_udevadm_monitor(RECORDING))
    assert [e.properties["SUBSYSTEM"] for e in events] == ["drm", "i2c", "drm"]
    assert [e.is_drm_hotplug for e in events] == [True, False, True]


def test_unplug_then_replug_is_reported_once_each(tmp_path: Path) -> None:
    sysfs = _connector(tmp_path, "connected")
    changes: list[bool] = []
    watcher = DrmWatcher(changes.append, sysfs)
    unplug, noise, replug = parse_udevadm_monitor(RECORDING)
    _connector(tmp_path, "disconnected")
    watcher.feed([unplug, noise, unplug])  # repeated events do not repeat the news
    _connector(tmp_path, "connected")
    watcher.feed([replug])
    assert changes == [False, True]
    watcher.feed([UdevEvent("change", {"SUBSYSTEM": "drm"})])  # no HOTPLUG=1: ignored
    assert changes == [False, True]


def test_the_kiosk_output_closes_and_reopens_without_stopping(tmp_path: Path) -> None:
    from kiosk.app import _Panel, compose

    os.environ.pop("DISPLAY", None)
    panel = _Panel((320, 240), False, None)
    try:
        pygame.font.init()
        frame = compose(None, panel.size, 0)
        panel.close()
        assert not pygame.display.get_init()
        panel.show(frame, tmp_path)  # nothing to draw on: no crash, nothing written
        panel.reopen()
        assert pygame.display.get_init() and panel.open
        panel.show(frame, tmp_path)
        assert (tmp_path / "screen.png").exists()
    finally:
        pygame.display.quit()


def test_a_drm_card_that_appears_is_reported_as_a_plug(tmp_path: Path) -> None:
    """This is a display driver loading after the kiosk started: the waiting kiosk must look again."""
    changes: list[bool] = []
    watcher = DrmWatcher(changes.append, tmp_path / "drm")
    watcher.feed([UdevEvent("add", {"SUBSYSTEM": "drm", "DEVNAME": "/dev/dri/renderD128"}),
                  UdevEvent("add", {"SUBSYSTEM": "drm", "DEVNAME": "/dev/dri/card0"})])
    assert changes == [True]


def test_when_sdl_cannot_drive_the_drm_card_frames_go_to_the_framebuffer(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A card SDL cannot open (here: not a real one; on a device: no EGL/GBM, no mode) must not stop the
    screen: the kiosk draws on the framebuffer beside it."""
    if Path("/dev/dri").exists():
        pytest.skip("this machine has DRM devices that SDL might really open")
    from kiosk.app import _Panel, compose
    from kiosk.hotplug import Devices

    (tmp_path / "dev" / "dri").mkdir(parents=True)
    (tmp_path / "dev" / "dri" / "card0").touch()
    graphics = tmp_path / "sys" / "graphics" / "fb0"
    graphics.mkdir(parents=True)
    (graphics / "virtual_size").write_text("64,48\n")
    (graphics / "bits_per_pixel").write_text("16\n")
    (tmp_path / "dev" / "fb0").write_bytes(bytes(64 * 48 * 2))
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setenv("SDL_VIDEODRIVER", "kmsdrm")
    panel = _Panel(None, True, None, Devices(dev=tmp_path / "dev", sysfs=tmp_path / "sys"))
    try:
        assert panel.fallback and not panel.waiting and panel.size == (64, 48)
        assert panel.describe() == f"framebuffer {tmp_path / 'dev' / 'fb0'} (RGB565)"
        pygame.font.init()
        panel.show(compose(None, panel.size, 0), tmp_path)
        assert (tmp_path / "dev" / "fb0").read_bytes() != bytes(64 * 48 * 2)  # the connecting scene is drawn
        (tmp_path / "dev" / "fb0").unlink()  # the firmware framebuffer goes (a DRM driver took over)
        panel.show(compose(None, panel.size, 0), tmp_path)
        assert panel.waiting and not panel.fallback  # looks for a display again, no exception
    finally:
        pygame.display.quit()
