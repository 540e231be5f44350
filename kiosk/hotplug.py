"""Display hot-plug: an HDMI cable pulled and plugged back must never leave the screen blank.

The kernel announces connector changes as udev events on the ``drm`` subsystem (``ACTION=change``,
``HOTPLUG=1``; the connector's ``status`` file in sysfs then reads ``connected`` or ``disconnected``).
:class:`DrmWatcher` listens with pyudev (kernel netlink source, so it works without udevd) and tells the
kiosk, which closes its output on unplug and re-opens it on re-plug while everything else keeps running.
Events can also be fed from a recording (``udevadm monitor --kernel --property`` text), which is how the
tests drive it. A DRM card that appears later (a panel driver that loads late) is reported as a plug too, so a
kiosk that is waiting for a display (see :class:`Devices`) opens it at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SYSFS_DRM = Path("/sys/class/drm")


@dataclass(frozen=True, slots=True)
class Devices:
    """Where the kiosk looks for outputs: device nodes under ``dev`` (``/dev/dri/cardN``, ``/dev/fbN``) and
    their sysfs classes under ``sysfs`` (``/sys/class/drm``, ``/sys/class/graphics``). Tests lay out their own."""

    dev: Path = Path("/dev")
    sysfs: Path = Path("/sys/class")

    def drm_cards(self) -> list[Path]:
        """The DRM cards present now (``/dev/dri/card0`` ...), sorted; render nodes are not outputs."""
        return sorted((self.dev / "dri").glob("card[0-9]*"))

    def framebuffer(self) -> Path | None:
        """The first framebuffer device (``/dev/fb0``: simplefb/efifb, fbtft, or a DRM driver's fbdev
        emulation), or None."""
        found = sorted(self.dev.glob("fb[0-9]*"), key=lambda p: int(p.name[2:]) if p.name[2:].isdigit() else 99)
        return found[0] if found else None

    @property
    def graphics(self) -> Path:
        """The framebuffers' sysfs class (geometry: ``virtual_size``, ``bits_per_pixel``, ``stride``)."""
        return self.sysfs / "graphics"


@dataclass(frozen=True, slots=True)
class UdevEvent:
    """One uevent: ``action`` (add/remove/change) and its properties (``SUBSYSTEM``, ``HOTPLUG``, ...)."""

    action: str
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def is_drm_hotplug(self) -> bool:
        """A DRM connector change: what an HDMI plug or unplug looks like."""
        return (self.properties.get("SUBSYSTEM") == "drm" and self.action == "change"
                and self.properties.get("HOTPLUG") == "1")

    @property
    def is_drm_card_added(self) -> bool:
        """A DRM card appeared (``ACTION=add``, ``DEVNAME=dri/cardN``): a display driver has loaded."""
        name = self.properties.get("DEVNAME", "").removeprefix("/dev/")
        return self.properties.get("SUBSYSTEM") == "drm" and self.action == "add" and name.startswith("dri/card")


def parse_udevadm_monitor(text: str) -> Iterator[UdevEvent]:
    """Events from ``udevadm monitor --kernel --property`` output (blocks of KEY=VALUE after a header line)."""
    props: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        line = line.strip()
        if not line:
            if props:
                yield UdevEvent(action=props.get("ACTION", ""), properties=props)
            props = {}
        elif "=" in line and not line.startswith(("KERNEL[", "UDEV[")):
            key, _, value = line.partition("=")
            props[key] = value


def connected(sysfs: Path = SYSFS_DRM) -> bool:
    """True when any DRM connector reports ``connected`` (or when there is no DRM at all: a desk window)."""
    statuses = [p.read_text().strip() for p in sysfs.glob("card*-*/status")] if sysfs.is_dir() else []
    return not statuses or "connected" in statuses


class DrmWatcher:
    """Calls ``on_change(connected)`` when the DRM connection state flips, and ``on_change(True)`` when a DRM
    card appears.

    ``feed(events)`` drives it from recorded events; ``start()`` listens to the kernel with pyudev.
    """

    def __init__(self, on_change: Callable[[bool], None], sysfs: Path = SYSFS_DRM) -> None:
        self._on_change = on_change
        self._sysfs = sysfs
        self._state = connected(sysfs)
        self._observer: object | None = None
        self._lock = threading.Lock()

    @property
    def connected(self) -> bool:
        """The last known state."""
        return self._state

    def feed(self, events: Iterable[UdevEvent]) -> None:
        """Handle events (from the kernel or a recording)."""
        for event in events:
            if event.is_drm_card_added:
                with self._lock:
                    self._state = connected(self._sysfs)
                log.info("display device %s appeared", event.properties.get("DEVNAME"))
                self._on_change(True)
                continue
            if not event.is_drm_hotplug:
                continue
            with self._lock:
                now = connected(self._sysfs)
                if now == self._state:
                    continue
                self._state = now
            log.info("display %s", "connected" if now else "disconnected")
            self._on_change(now)

    def start(self) -> bool:
        """Listen to kernel uevents of the drm subsystem; False (logged) where that is not possible."""
        try:
            import pyudev

            context = pyudev.Context()
            monitor = pyudev.Monitor.from_netlink(context, source="kernel")
            monitor.filter_by("drm")

            def handle(device: pyudev.Device) -> None:
                props = {k: str(v) for k, v in device.properties.items()}
                self.feed([UdevEvent(action=str(device.action or ""), properties=props)])

            observer = pyudev.MonitorObserver(monitor, callback=handle, name="drm-hotplug")
            observer.daemon = True
            observer.start()
            self._observer = observer
        except Exception as exc:  # no netlink, no libudev: the kiosk still runs, without hot-plug
            log.warning("cannot watch display hot-plug (%s)", exc)
            return False
        return True
