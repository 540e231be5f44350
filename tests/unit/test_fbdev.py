"""The framebuffer writer, byte-exact against a file-backed framebuffer with sysfs geometry laid out here."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pygame
import pytest
import zxingcpp

from kiosk.fbdev import FramebufferError, FramebufferSink, read_geometry
from kiosk.scenes import render

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0), (18, 52, 86), (200, 100, 50)]


def _fake_fb(tmp_path: Path, width: int, height: int, bpp: int, stride: int) -> Path:
    sysfs = tmp_path / "sys"
    (sysfs / "fb1").mkdir(parents=True)
    (sysfs / "fb1" / "virtual_size").write_text(f"{width},{height}\n")
    (sysfs / "fb1" / "bits_per_pixel").write_text(f"{bpp}\n")
    (sysfs / "fb1" / "stride").write_text(f"{stride}\n")
    device = tmp_path / "dev" / "fb1"
    device.parent.mkdir()
    device.write_bytes(b"\xaa" * stride * height)  # garbage the writer must fully overwrite
    return sysfs


def _pattern(width: int, height: int) -> pygame.Surface:
    surface = pygame.Surface((width, height))
    for y in range(height):
        for x in range(width):
            surface.set_at((x, y), COLOURS[(x + 3 * y) % len(COLOURS)])
    return surface


def _expected(width: int, height: int, bpp: int, stride: int) -> bytes:
    """Written out pixel by pixel from the format definitions, independently of the writer."""
    out = bytearray()
    for y in range(height):
        line = bytearray()
        for x in range(width):
            r, g, b = COLOURS[(x + 3 * y) % len(COLOURS)]
            if bpp == 16:
                line += struct.pack("<H", ((r >> 3) << 11) | ((g >> 2) << 5) | (b >> 3))
            else:
                line += bytes((b, g, r, 0))
        out += line + bytes(stride - len(line))
    return bytes(out)


@pytest.mark.parametrize("bpp, stride", [(16, 7 * 2), (16, 7 * 2 + 6), (32, 7 * 4), (32, 7 * 4 + 4)],
                         ids=["rgb565", "rgb565-padded", "xrgb8888", "xrgb8888-padded"])
def test_frames_are_written_byte_exact(tmp_path: Path, bpp: int, stride: int) -> None:
    sysfs = _fake_fb(tmp_path, 7, 5, bpp, stride)
    sink = FramebufferSink(tmp_path / "dev" / "fb1", sysfs)
    assert sink.geometry.format == ("RGB565" if bpp == 16 else "XRGB8888")
    sink.show(_pattern(7, 5))
    assert (tmp_path / "dev" / "fb1").read_bytes() == _expected(7, 5, bpp, stride)


def test_a_ticket_on_a_240x320_rgb565_panel_still_scans(tmp_path: Path) -> None:
    """Read the panel's memory back as a picture: the QR survives RGB565 and decodes."""
    sysfs = _fake_fb(tmp_path, 240, 320, 16, 480)
    sink = FramebufferSink(tmp_path / "dev" / "fb1", sysfs)
    url = "http://192.168.1.20:8080/r/" + "x" * 43
    sink.show(render({"scene": "ticket", "shop": "x", "ticket": {"url": url, "total": "9.90", "currency": "EUR"}},
                     sink.size))
    words = np.frombuffer((tmp_path / "dev" / "fb1").read_bytes(), dtype="<u2").reshape(320, 240)
    grey = (((words >> 11) & 0x1F) * 255 // 31).astype(np.uint8)
    assert [r.text for r in zxingcpp.read_barcodes(grey, formats=zxingcpp.BarcodeFormat.QRCode)] == [url]


def test_unsupported_or_missing_framebuffers_are_named(tmp_path: Path) -> None:
    sysfs = _fake_fb(tmp_path, 8, 8, 24, 24)
    with pytest.raises(FramebufferError, match="24 bits"):
        read_geometry("fb1", sysfs)
    with pytest.raises(FramebufferError, match="fb9"):
        read_geometry("fb9", sysfs)
    sysfs = _fake_fb(tmp_path / "b", 8, 8, 16, 16)
    (tmp_path / "b" / "dev" / "fb1").unlink()
    with pytest.raises(FramebufferError, match="cannot write"):
        FramebufferSink(tmp_path / "b" / "dev" / "fb1", sysfs).show(pygame.Surface((8, 8)))
