"""A raw Linux framebuffer sink, for small SPI panels that have no KMS driver (``/dev/fbN`` from fbtft).

Geometry and pixel format come from sysfs (``/sys/class/graphics/fbN/{virtual_size,bits_per_pixel,stride}``,
Documentation/ABI/testing/sysfs-class-graphics and fbdev's sysfs attributes), so the same code drives a real
panel and a file laid out by a test. Pixels are written in the framebuffer's native little-endian layouts:

* 16 bpp: RGB565 (``rrrrrggg gggbbbbb`` as a little-endian 16-bit word), what fbtft panels use;
* 32 bpp: XRGB8888 (bytes B, G, R, X in memory), what simplefb/efifb and most 32-bit framebuffers use.

Packing is done by SDL itself (a blit onto a 16-bit RGB565 surface, or ``pygame.image.tobytes`` in BGRA order),
so the kiosk needs nothing beyond pygame-ce: the image installs only the runtime requirements.
"""

from __future__ import annotations

import os
import sys
from array import array
from dataclasses import dataclass
from pathlib import Path

import pygame

SYSFS_GRAPHICS = Path("/sys/class/graphics")
FORMATS = {16: "RGB565", 32: "XRGB8888"}
RGB565_MASKS = (0xF800, 0x07E0, 0x001F, 0)  # red, green, blue, alpha bits of one 16-bit word


class FramebufferError(Exception):
    """The framebuffer is missing, unreadable, or in a pixel format we do not write."""


@dataclass(frozen=True, slots=True)
class Geometry:
    """``width`` x ``height`` visible pixels, ``bits_per_pixel``, ``stride`` bytes per line, ``format``."""

    width: int
    height: int
    bits_per_pixel: int
    stride: int
    format: str

    @property
    def size_bytes(self) -> int:
        """Bytes of one full frame (stride x height)."""
        return self.stride * self.height


def read_geometry(name: str, sysfs: Path = SYSFS_GRAPHICS) -> Geometry:
    """Geometry of framebuffer ``name`` (``"fb1"``) from ``<sysfs>/<name>/``.

    Raises:
        FramebufferError: missing attributes or an unsupported depth (only 16 and 32 bpp).
    """
    folder = sysfs / name
    try:
        width, height = (int(v) for v in (folder / "virtual_size").read_text().strip().split(","))
        bpp = int((folder / "bits_per_pixel").read_text().strip())
        stride_file = folder / "stride"
        stride = int(stride_file.read_text().strip()) if stride_file.exists() else width * bpp // 8
    except (OSError, ValueError) as exc:
        raise FramebufferError(f"cannot read the geometry of {name} from {folder}: {exc}") from exc
    if bpp not in FORMATS:
        raise FramebufferError(f"{name} has {bpp} bits per pixel; only 16 (RGB565) and 32 (XRGB8888) are written")
    if stride < width * bpp // 8:
        raise FramebufferError(f"{name}: stride {stride} is shorter than a line of {width} pixels")
    return Geometry(width=width, height=height, bits_per_pixel=bpp, stride=stride, format=FORMATS[bpp])


def pack(surface: pygame.Surface, geometry: Geometry) -> bytes:
    """The frame as the framebuffer stores it: each line packed, then padded with zeros to ``stride``.

    Raises:
        ValueError: the surface is not the framebuffer's size.
    """
    if surface.get_size() != (geometry.width, geometry.height):
        raise ValueError(f"frame is {surface.get_size()}, framebuffer is {geometry.width}x{geometry.height}")
    width, height = geometry.width, geometry.height
    if geometry.bits_per_pixel == 16:
        # SDL's blit to RGB565 keeps the top 5/6/5 bits of each channel (no dithering, no rounding).
        words = pygame.Surface((width, height), 0, 16, RGB565_MASKS)
        words.blit(surface, (0, 0))
        pitch = words.get_pitch()  # SDL pads each line to 4 bytes
        raw = words.get_buffer().raw
        line_bytes = width * 2
        packed = b"".join(raw[y * pitch:y * pitch + line_bytes] for y in range(height)) \
            if pitch != line_bytes else raw
        if sys.byteorder != "little":  # SDL stores native-endian words; the panel wants little-endian
            swapped = array("H", packed)
            swapped.byteswap()
            packed = swapped.tobytes()
    else:
        pixels = bytearray(pygame.image.tobytes(surface, "BGRA"))  # B, G, R, A: the memory order of XRGB8888
        pixels[3::4] = bytes(width * height)  # the X byte is unused: written as zero
        packed = bytes(pixels)
        line_bytes = width * 4
    pad = geometry.stride - line_bytes
    if not pad:
        return packed
    zeros = bytes(pad)
    return b"".join(packed[y * line_bytes:(y + 1) * line_bytes] + zeros for y in range(height))

class FramebufferSink:
    """Writes frames to a framebuffer device (or a file standing in for one) at offset 0."""

    def __init__(self, device: Path, sysfs: Path = SYSFS_GRAPHICS) -> None:
        self.device = device
        self.geometry = read_geometry(device.name, sysfs)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) the frames must have."""
        return self.geometry.width, self.geometry.height

    def show(self, surface: pygame.Surface) -> None:
        """Write one frame.

        Raises:
            FramebufferError: the device cannot be opened or written (unplugged panel, permissions).
        """
        data = pack(surface, self.geometry)
        try:
            fd = os.open(self.device, os.O_WRONLY)
            try:
                os.pwrite(fd, data, 0)
            finally:
                os.close(fd)
        except OSError as exc:
            raise FramebufferError(f"cannot write to {self.device}: {exc.strerror}") from exc
