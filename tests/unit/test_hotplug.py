"""HDMI unplug and re-plug, replayed from a recorded `udevadm monitor --kernel --property` session."""

from __future__ import annotations

import os
from pathlib import Path

import pygame

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
