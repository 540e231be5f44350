"""Remove secrets from an applied ``eticket.toml`` (the FAT boot partition or a USB stick is readable by
anyone who holds the card)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ._settings import DeviceSettings, render_settings

SCRUBBED_HEADER = (
    "# eticket.toml, applied by the device. The Wi-Fi passphrase was removed once applied; to join another\n"
    "# network, set ssid and passphrase under [wifi] again."
)


def scrub_secrets(path: Path, settings: DeviceSettings) -> bool:
    """Rewrite ``path`` as ``settings`` without secrets (atomic: temporary file, fsync, rename); True when
    rewritten, False when it held none. Comments of the original file are not kept.

    Raises:
        OSError: the partition is read-only or full (the caller reports it; the settings stay applied).
    """
    if not settings.has_secrets or settings.wifi is None:
        return False
    clean = dataclasses.replace(settings, wifi=dataclasses.replace(settings.wifi, passphrase=None))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        handle.write(render_settings(clean, SCRUBBED_HEADER))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True
