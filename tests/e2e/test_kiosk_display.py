"""The device's kiosk (``SDL_VIDEODRIVER=kmsdrm``, as its unit sets) when there is no display yet: a panel whose
driver loads late, an HDMI cable plugged in after boot. It must stay up, say once that it waits, keep systemd's
watchdog fed, and draw as soon as an output appears (here a framebuffer, laid out as the kernel shows one),
instead of exiting and being restarted in a loop."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import ETICKET, REPO, Appliance, samples, wait_for

WATCHDOG_USEC = "400000"  # pings every 0.2 s
FB_WIDTH, FB_HEIGHT = 800, 480
HARNESS = """
import logging, os, sys
from pathlib import Path
from appliance._sdnotify import Notifier
from kiosk.app import run
from kiosk.hotplug import Devices
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
run(Path(sys.argv[1]), None, True, notifier=Notifier.from_environ(os.environ),
    devices=Devices(dev=Path(sys.argv[2]), sysfs=Path(sys.argv[3])))
"""


def _device_env(notify: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(SDL_VIDEODRIVER="kmsdrm", NOTIFY_SOCKET=notify, WATCHDOG_USEC=WATCHDOG_USEC)
    return env


class Notifications:
    """A NOTIFY_SOCKET read all the time, as systemd does (a full datagram queue would block the sender)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[str] = []
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        self._socket.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self._socket.recv(4096).decode())
            except TimeoutError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()


def _plug_framebuffer(dev: Path, sysfs: Path) -> Path:
    """What the kernel shows of a 32-bpp framebuffer: /dev/fb0 and /sys/class/graphics/fb0/{geometry}."""
    folder = sysfs / "graphics" / "fb0"
    folder.mkdir(parents=True)
    (folder / "virtual_size").write_text(f"{FB_WIDTH},{FB_HEIGHT}\n")
    (folder / "bits_per_pixel").write_text("32\n")
    (folder / "stride").write_text(f"{FB_WIDTH * 4}\n")
    device = dev / "fb0"
    device.write_bytes(bytes(FB_WIDTH * FB_HEIGHT * 4))
    return device


def _qr_on_framebuffer(device: Path) -> list[str]:
    import zxingcpp
    from PIL import Image

    data = device.read_bytes()
    if len(data) < FB_WIDTH * FB_HEIGHT * 4:
        return []
    image = Image.frombuffer("RGB", (FB_WIDTH, FB_HEIGHT), data, "raw", "BGRX", FB_WIDTH * 4, 1)
    return [r.text for r in zxingcpp.read_barcodes(image.convert("L"), formats=zxingcpp.BarcodeFormat.QRCode)]


def test_without_any_display_the_device_kiosk_waits_and_feeds_the_watchdog(appliance: Appliance,
                                                                            tmp_path: Path) -> None:
    """This is the kiosk service started before the panel's driver loaded: no /dev/dri card, no framebuffer."""
    if list(Path("/dev/dri").glob("card[0-9]*")) or list(Path("/dev").glob("fb[0-9]*")):
        pytest.skip("this machine has a display device; the harnessed test below covers it with a laid-out /dev")
    notes = Notifications(tmp_path / "notify")
    log = tmp_path / "kiosk.log"
    kiosk = subprocess.Popen([*ETICKET, "kiosk", "--data-dir", str(appliance.data_dir), "--fullscreen"],
                             env=_device_env(str(notes.path)), stdout=open(log, "wb"),
                             stderr=subprocess.STDOUT, cwd=REPO)
    try:
        # 15 pings at 0.2 s: three seconds alive, where the kiosk used to exit within 1.5 s
        wait_for(lambda: kiosk.poll() is not None or notes.messages.count("WATCHDOG=1") >= 15, 30,
                 "the kiosk's watchdog pings")
        assert kiosk.poll() is None, log.read_text()
        # up for systemd (its start timeout must not fire), and saying why nothing is drawn
        assert notes.messages[:2] == ["STATUS=waiting for a display", "READY=1"], notes.messages[:5]
        assert log.read_text().count("waiting for a display (no DRM device") == 1, log.read_text()
    finally:
        kiosk.terminate()
        kiosk.wait(10)
        notes.close()


def test_a_framebuffer_that_appears_later_gets_the_pairing_and_the_ticket_qr(appliance: Appliance,
                                                                             tmp_path: Path) -> None:
    """The kiosk waits on a device tree without a display; a framebuffer appears (an SPI panel's fbtft
    driver, a firmware framebuffer) and the kiosk draws on it: the pairing QR, then a ticket's QR."""
    dev, sysfs = tmp_path / "dev", tmp_path / "sys" / "class"
    dev.mkdir()
    sysfs.mkdir(parents=True)
    notes = Notifications(tmp_path / "notify")
    log = tmp_path / "kiosk.log"
    kiosk = subprocess.Popen([*ETICKET[:1], "-c", HARNESS, str(appliance.data_dir), str(dev), str(sysfs)],
                             env=_device_env(str(notes.path)), stdout=open(log, "wb"),
                             stderr=subprocess.STDOUT, cwd=REPO)
    try:
        wait_for(lambda: "READY=1" in notes.messages, 30, "READY=1")
        assert notes.messages[:2] == ["STATUS=waiting for a display", "READY=1"], log.read_text()
        device = _plug_framebuffer(dev, sysfs)
        wait_for(lambda: kiosk.poll() is not None or any(u.startswith("eticket://pair")
                                                         for u in _qr_on_framebuffer(device)),
                 20, "the pairing QR on the framebuffer")
        assert kiosk.poll() is None, log.read_text()
        token = appliance.pair()
        sent = appliance.api.post("/api/v1/tickets", content=samples("pdf")[0].read_bytes(),
                                  headers={"Authorization": f"Bearer {token}",
                                           "Content-Type": "application/pdf"}).json()
        wait_for(lambda: _qr_on_framebuffer(device) == [sent["url"]], 20, "the ticket QR on the framebuffer")
        text = log.read_text()
        assert text.count("waiting for a display (") == 1 and "drawing on the framebuffer" in text, text
        # sd_notify datagrams are read by the listener's thread: under load the last one may still be on its way
        wait_for(lambda: sum(m.startswith("STATUS=") for m in notes.messages) >= 2, 10, "the framebuffer STATUS=")
        statuses = [m for m in notes.messages if m.startswith("STATUS=")]
        assert statuses == ["STATUS=waiting for a display", f"STATUS=framebuffer {device} (XRGB8888)"]
        assert kiosk.poll() is None
    finally:
        kiosk.terminate()
        kiosk.wait(10)
        notes.close()
