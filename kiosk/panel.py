"""The panel's physical size, which decides how the ticket scene lays out its QR.

A panel under 4" (2.8"–3.5" SPI panels and HATs) tells the customer to hold the phone close; on a large monitor
(21.5" and up) the QR is capped to what a phone at 30 cm still frames (see :mod:`kiosk.scenes`). The size comes
from, in order:

1. the kiosk's ``--diagonal-inches`` setting (cheap HDMI panels often report nothing, or nonsense);
2. the EDID of a connected DRM connector (``/sys/class/drm/card*-*/edid``, what HDMI monitors send);
3. nothing: the scenes then judge by resolution alone (:func:`kiosk.scenes.is_small_panel`).

Sizes are ``(width, height)`` in millimetres of the panel as mounted before any ``--rotate``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)

MM_PER_INCH = 25.4
EDID_HEADER = bytes.fromhex("00ffffffffffff00")
"""VESA E-EDID 1.4 §3.3: the 8-byte header every EDID base block starts with."""
EDID_BLOCK_BYTES = 128
EDID_SCREEN_CM = slice(21, 23)
"""E-EDID 1.4 §3.6.2 (bytes 15h–16h): horizontal and vertical screen size in whole cm (0: unknown)."""
EDID_FIRST_DTD = 54
"""E-EDID 1.4 §3.10.2: the first 18-byte detailed timing descriptor (the preferred mode) starts at byte 36h;
its bytes 12–14 hold the image size in mm (low 8 bits of width, of height, then their high nibbles)."""

SizeMm = tuple[float, float]


def size_from_diagonal(diagonal_inches: float, pixels: tuple[int, int]) -> SizeMm:
    """``(width_mm, height_mm)`` of a panel of ``diagonal_inches`` with square pixels of ``pixels`` resolution.
    ``size_from_diagonal(3.5, (480, 320))`` -> ``(73.96, 49.31)``."""
    w, h = pixels
    diagonal_mm = diagonal_inches * MM_PER_INCH
    return diagonal_mm * w / math.hypot(w, h), diagonal_mm * h / math.hypot(w, h)


def diagonal_inches(size_mm: SizeMm) -> float:
    """The diagonal of ``(width_mm, height_mm)`` in inches."""
    return math.hypot(*size_mm) / MM_PER_INCH


def edid_size_mm(edid: bytes) -> SizeMm | None:
    """The image size an EDID reports, ``(width_mm, height_mm)``: the preferred detailed timing's mm when it has
    them, else the basic block's whole cm; None for no EDID, a damaged one or one that gives no size (projectors,
    many cheap panels write zeros)."""
    if len(edid) < EDID_BLOCK_BYTES or edid[:8] != EDID_HEADER or sum(edid[:EDID_BLOCK_BYTES]) % 256:
        return None  # absent, truncated, or its checksum (byte 7Fh makes the block sum 0 mod 256) is wrong
    dtd = edid[EDID_FIRST_DTD:EDID_FIRST_DTD + 18]
    if dtd[0] or dtd[1]:  # a pixel clock: a timing descriptor, not a display descriptor
        width, height = dtd[12] | (dtd[14] >> 4) << 8, dtd[13] | (dtd[14] & 0x0F) << 8
        if width and height:
            return float(width), float(height)
    cm_w, cm_h = edid[EDID_SCREEN_CM]
    if cm_w and cm_h:  # (one of them 0: an aspect ratio only, §3.6.2)
        return cm_w * 10.0, cm_h * 10.0
    return None


def connected_size_mm(sysfs_drm: Path) -> SizeMm | None:
    """The size of the first connected DRM connector that reports one (``card0-HDMI-A-1`` ...), or None.
    Never raises: a sysfs that cannot be read gives None."""
    for connector in sorted(sysfs_drm.glob("card*-*")):
        try:
            if (connector / "status").read_text().strip() != "connected":
                continue
            size = edid_size_mm((connector / "edid").read_bytes())
        except OSError:
            continue
        if size is not None:
            log.info("panel %s reports %.0fx%.0f mm (%.1f\")", connector.name, *size, diagonal_inches(size))
            return size
    return None
