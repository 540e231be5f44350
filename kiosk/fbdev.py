"""A raw Linux framebuffer sink, for small SPI panels that have no KMS driver (``/dev/fbN`` from fbtft).

Geometry and pixel format come from sysfs (``/sys/class/graphics/fbN/{virtual_size,bits_per_pixel,stride}``,
Documentation/ABI/testing/sysfs-class-graphics and fbdev's sysfs attributes), so the same code drives a real
panel and a file laid out by a test. Pixels are written in the framebuffer's native little-endian layouts:

* 16 bpp: RGB565 (``rrrrrggg gggbbbbb`` as a little-endian 16-bit word), what fbtft panels use;
* 32 bpp: XRGB8888 (bytes B, G, R, X in memory), what simplefb/efifb and most 32-bit framebuffers use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pygame

SYSFS_GRAPHICS = Path("/sys/class/graphics")
FORMATS = {16: "RGB565", 32: "XRGB8888"}


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
    rgb = pygame.surfarray.array3d(surface).swapaxes(0, 1).astype(np.uint32)  # (height, width, 3)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if geometry.bits_per_pixel == 16:
        lines = (((r >> 3) << 11) | ((g >> 2) << 5) | (b >> 3)).astype("<u2")
    else:
        lines = ((r << 16) | (g << 8) | b).astype("<u4")
    raw = np.ascontiguousarray(lines).view(np.uint8).reshape(geometry.height, -1)
    pad = geometry.stride - raw.shape[1]
    if pad:
        raw = np.hstack([raw, np.zeros((geometry.height, pad), dtype=np.uint8)])
    return raw.tobytes()


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
