"""Scenes are pure functions of (state, size): rendered headless, the QR read back from the pixels."""

from __future__ import annotations

import numpy as np
import pygame
import pytest
import zxingcpp

from kiosk import scenes
from kiosk.qr import QUIET_ZONE_MODULES, draw_qr, qr_matrix
from kiosk.scenes import _split, render

URL = "http://192.168.1.20:8080/r/" + "x" * 43
PAIR = "eticket://pair?v=1&id=et-0123456789abcdef&addr=192.168.1.20%3A8080&code=ABCD2345&name=Boulangerie"
WIFI = "WIFI:T:WPA;S:Boulangerie-Invités;P:croissant\\;2026;;"
SIZES = [(800, 480), (1920, 1080), (480, 800), (320, 240), (1280, 720)]


def _state(scene: str) -> dict[str, object]:
    return {
        "seq": 3, "scene": scene, "shop": "Boulangerie Martin",
        "ticket": {"id": "t-1", "url": URL, "total": "12.5", "currency": "EUR", "expires_at": "2026-12-29T10:00:00Z",
                   "wifi": {"qr": WIFI, "ssid": "Boulangerie-Invités"}},
        "pairing": {"uri": PAIR, "code": "ABCD-2345", "expires_at": "2026-11-29T10:10:00Z"},
    }


def _decode(surface: pygame.Surface) -> list[str]:
    pixels = np.ascontiguousarray(pygame.surfarray.array3d(surface).swapaxes(0, 1))
    return [r.text for r in zxingcpp.read_barcodes(pixels, formats=zxingcpp.BarcodeFormat.QRCode)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("scene, text", [("ticket", URL), ("pairing", PAIR), ("wifi", WIFI)])
def test_qr_scenes_decode_at_every_size(scene: str, text: str, size: tuple[int, int]) -> None:
    surface = render(_state(scene), size)
    assert surface.get_size() == size
    assert _decode(surface) == [text]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_qr_is_as_large_as_the_layout_allows_with_whole_pixel_modules(size: tuple[int, int]) -> None:
    surface = pygame.Surface(size)
    area, _ = _split(size)
    placement = draw_qr(surface, URL, area)
    span = placement.modules + 2 * QUIET_ZONE_MODULES
    assert placement.rect.width == span * placement.module_px
    assert placement.module_px == min(area.size) // span  # one more pixel per module would not fit
    assert area.contains(placement.rect)
    # The quiet zone (4 modules each side) is light, and the symbol's top-left module is dark.
    pixels = pygame.surfarray.array3d(surface)
    q = QUIET_ZONE_MODULES * placement.module_px
    r = placement.rect
    for band in (pixels[r.left:r.left + q, r.top:r.bottom], pixels[r.right - q:r.right, r.top:r.bottom],
                 pixels[r.left:r.right, r.top:r.top + q], pixels[r.left:r.right, r.bottom - q:r.bottom]):
        assert band.min() == 255
    assert pixels[r.left + q, r.top + q].max() == 0


def test_each_module_is_a_uniform_block() -> None:
    surface = pygame.Surface((800, 480))
    surface.fill((255, 255, 255))
    placement = draw_qr(surface, URL, pygame.Rect(0, 0, 480, 480))
    matrix = qr_matrix(URL)
    px = placement.module_px
    pixels = pygame.surfarray.array3d(surface)[:, :, 0]
    origin = placement.rect.x + QUIET_ZONE_MODULES * px, placement.rect.y + QUIET_ZONE_MODULES * px
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            block = pixels[origin[0] + x * px: origin[0] + (x + 1) * px, origin[1] + y * px: origin[1] + (y + 1) * px]
            assert (block == (0 if dark else 255)).all()


def test_never_micro_qr() -> None:
    assert len(qr_matrix("1")) >= 21  # version 1 QR is 21 modules; Micro QR would be 11


def test_scenes_are_pure() -> None:
    a = render(_state("ticket"), (800, 480))
    b = render(_state("ticket"), (800, 480))
    assert pygame.image.tobytes(a, "RGB") == pygame.image.tobytes(b, "RGB")


@pytest.mark.parametrize("scene", ["idle", "downloaded", "error", "unknown-future-scene", None])
def test_text_scenes_have_no_qr_and_are_not_blank(scene: str | None) -> None:
    state = None if scene is None else _state(scene)
    surface = render(state, (800, 480))
    assert _decode(surface) == []
    pixels = pygame.surfarray.array3d(surface)
    assert (pixels.min(axis=2) < 128).mean() > 0.005  # some dark ink: text is drawn


@pytest.mark.parametrize("lang, shown", [("fr", "104,90\u00a0€"), ("en", "€104.90"), ("de", "104,90\u00a0€")])
def test_the_ticket_scene_writes_the_total_in_the_screen_language(lang: str, shown: str) -> None:
    """A French screen shows "104,90 €" (CLDR), not "104.90 €": the lines the scene draws, as drawn."""
    state = _state("ticket")
    state["lang"] = lang
    state["ticket"]["total"] = "104.90"  # type: ignore[index]
    surface, lines = scenes.ticket_layout(state, (800, 480))
    assert lines[0].text == shown
    assert _decode(surface) == [URL]


def test_locked_pairing_shows_no_qr_and_no_code() -> None:
    state = _state("pairing")
    state["pairing"]["locked_until"] = "2026-11-29T10:00:00Z"  # type: ignore[index]
    assert _decode(render(state, (800, 480))) == []


@pytest.mark.parametrize("rotate", [0, 90, 180, 270])
def test_rotated_panels_show_the_upright_scene_turned_exactly(rotate: int) -> None:
    from kiosk.app import compose

    physical = (480, 800) if rotate in (90, 270) else (800, 480)
    shown = compose(_state("ticket"), physical, rotate)
    assert shown.get_size() == physical
    upright = pygame.transform.rotate(shown, rotate)  # turn it back
    assert pygame.image.tobytes(upright, "RGB") == pygame.image.tobytes(render(_state("ticket"), (800, 480)), "RGB")
    assert _decode(shown) == [URL]


@pytest.mark.parametrize("size", [(240, 320), (320, 240)], ids=["240x320", "320x240"])
def test_small_spi_panels_still_carry_a_decodable_qr(size: tuple[int, int]) -> None:
    for scene, text in (("ticket", URL), ("pairing", PAIR)):
        assert _decode(render(_state(scene), size)) == [text]


def test_a_scene_that_cannot_draw_falls_back_to_a_plain_one(caplog: pytest.LogCaptureFixture) -> None:
    """A URL too long for a tiny panel makes the ticket scene fail: the screen shows the error scene."""
    from kiosk.app import _safe_render
    from kiosk.scenes import scene_error

    state = {"scene": "ticket", "shop": "x", "ticket": {"url": "http://x/" + "y" * 2000}}
    frame = _safe_render(state, (96, 64))
    assert pygame.image.tobytes(frame, "RGB") == pygame.image.tobytes(scene_error(state, (96, 64)), "RGB")
    assert "failed to draw" in caplog.text


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_pairing_scene_names_the_device_so_two_new_ones_can_be_told_apart(size: tuple[int, int]) -> None:
    """Two fresh devices side by side both show a pairing code: each also shows its name ("eTicket 3F9A", as
    in `eticket discover`), inside the screen and beside a QR that still decodes."""
    state = _state("pairing")
    state["shop"] = "eTicket 3F9A"
    surface, lines = scenes.pairing_layout(state, size)
    named = [line for line in lines if line.text == "eTicket 3F9A"]
    assert named and surface.get_rect().contains(named[0].rect)
    assert _decode(surface) == [PAIR]
