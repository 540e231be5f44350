"""Settings from a USB stick: when a USB partition with an ``eticket.toml`` appears, apply it (pyudev)."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

STICK_FILE_SYSTEMS = ("vfat", "exfat", "ext4")
MOUNT_BASE = Path("/run/eticket-usb")
SETTINGS_FILE = "eticket.toml"


def stick_partition(event: Mapping[str, str]) -> str | None:
    """The device node to look at for a udev event (its properties: ``ACTION``, ``SUBSYSTEM``, ``ID_BUS``,
    ``ID_FS_TYPE``, ``DEVNAME``), or None: only a USB block device with a readable file system, added."""
    if event.get("ACTION") != "add" or event.get("SUBSYSTEM") != "block":
        return None
    if event.get("ID_BUS") != "usb" or event.get("ID_FS_TYPE") not in STICK_FILE_SYSTEMS:
        return None
    return event.get("DEVNAME") or None


def with_mounted(devnode: str, use: Callable[[Path], None], base: Path = MOUNT_BASE) -> None:
    """Mount ``devnode`` (nodev, nosuid, noexec) under ``base``, call ``use(mountpoint)``, unmount.

    Raises:
        subprocess.CalledProcessError: mount failed (the stick was pulled, an unknown file system).
    """
    target = base / Path(devnode).name
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-o", "nodev,nosuid,noexec", devnode, str(target)], check=True,
                   capture_output=True, text=True)
    try:
        use(target)
    finally:
        subprocess.run(["umount", str(target)], check=False)
        target.rmdir()


def udev_events() -> Iterator[dict[str, str]]:
    """Block-device events from udev, as property dicts with ``ACTION`` (blocks; runs until killed)."""
    import pyudev

    context = pyudev.Context()
    monitor = pyudev.Monitor.from_netlink(context)
    monitor.filter_by("block")
    for device in iter(monitor.poll, None):
        event = dict(device.properties)
        event["ACTION"] = device.action or ""
        yield event
