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
SALE = ("Croissant       1,20", "Total           6,50")
"""What TakePOS sends a customer display: two lines of 20 characters, padded with spaces."""


def _state(scene: str) -> dict[str, object]:
    return {
        "seq": 3, "scene": scene, "shop": "Boulangerie Martin",
        "ticket": {"id": "t-1", "url": URL, "total": "12.5", "currency": "EUR", "expires_at": "2026-12-29T10:00:00Z",
                   "wifi": {"qr": WIFI, "ssid": "Boulangerie-Invités"}},
        "pairing": {"uri": PAIR, "code": "ABCD-2345", "expires_at": "2026-11-29T10:10:00Z"},
        "sale": {"lines": list(SALE)},
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


@pytest.mark.parametrize("scene", ["idle", "sale", "downloaded", "error", "unknown-future-scene", None])
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


SALE_SIZES = [(240, 320), (320, 240), (800, 480), (1920, 1080)]


def _ink(surface: pygame.Surface, rect: pygame.Rect) -> float:
    """Share of dark pixels inside ``rect``."""
    pixels = pygame.surfarray.array3d(surface)[rect.left:rect.right, rect.top:rect.bottom]
    return float((pixels.min(axis=2) < 128).mean())


@pytest.mark.parametrize("size", SALE_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_sale_scene_shows_the_tills_two_lines_large_and_whole_under_the_shop(size: tuple[int, int]) -> None:
    """The item just rung up and the total, as the till sent them less their padding, both at one legible size,
    inside the screen, one under the other and under the shop's name; the label on the left and the amount on
    the right as on a pole display."""
    surface, lines = scenes.sale_layout(_state("sale"), size)
    assert [line.text for line in lines] == [text.strip() for text in SALE]
    screen = surface.get_rect()
    w, h = size
    for line in lines:
        assert screen.contains(line.rect) and line.rect.top >= h * scenes.SALE_HEADER_SHARE
        assert line.px >= scenes.LEGIBLE_TEXT_PX and line.rect.height >= h // 12
        assert line.rect.width >= w * 0.8  # "Croissant" at the left margin, "1,20" at the right one
        assert _ink(surface, line.rect) > 0.05
    assert lines[0].rect.bottom <= lines[1].rect.top
    assert lines[0].px == lines[1].px
    header = pygame.Rect(0, 0, w, int(h * scenes.SALE_HEADER_SHARE))
    assert _ink(surface, header) > 0.005  # the shop's name
    assert _decode(render(_state("sale"), size)) == []


@pytest.mark.parametrize("size", SALE_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_a_sale_line_without_an_amount_is_centred_and_an_empty_second_line_is_left_out(size: tuple[int, int]) -> None:
    state = _state("sale")
    state["sale"] = {"lines": ["Merci de votre visite", " " * 20]}
    surface, lines = scenes.sale_layout(state, size)
    assert [line.text for line in lines] == ["Merci de votre visite"]
    (line,) = lines
    assert surface.get_rect().contains(line.rect) and abs(line.rect.centerx - size[0] // 2) <= 1
    assert line.px >= scenes.LEGIBLE_TEXT_PX


def test_the_sale_scene_puts_the_shops_logo_at_the_top_when_it_has_one() -> None:
    logo = pygame.Surface((400, 100))
    logo.fill((0, 0, 0))
    state = _state("sale")
    state["logo_image"] = logo
    surface, lines = scenes.sale_layout(state, (800, 480))
    header = pygame.Rect(0, 0, 800, int(480 * scenes.SALE_HEADER_SHARE))
    assert _ink(surface, header) > 0.2  # the (black) logo, scaled into the top band
    assert [line.text for line in lines] == [text.strip() for text in SALE]


def test_sale_lines_lose_their_padding_and_keep_the_amount_apart() -> None:
    from kiosk.bands import sale_line_parts

    assert sale_line_parts("Croissant       1,20") == ("Croissant", "1,20")
    assert sale_line_parts("  2 x Pain   au lait    3,00 ") == ("2 x Pain au lait", "3,00")
    assert sale_line_parts("Merci  de votre visite") == ("Merci", "de votre visite")
    assert sale_line_parts("Bonne journée") == ("Bonne journée",)
    assert sale_line_parts("    ") == () and sale_line_parts(None) == ()


def _band_pixels(surface: pygame.Surface) -> int:
    return int((pygame.surfarray.array3d(surface) == np.array(scenes.NOTICE_BACKGROUND)).all(axis=2).sum())


@pytest.mark.parametrize("scene", ["idle", "sale", "pairing", "downloaded", "screen-link", "ticket", "wifi"])
def test_the_till_bound_band_shows_over_every_scene_but_the_qr_of_a_receipt(scene: str) -> None:
    """A till allowed to print while pairing was open: a band tells the shop owner, over every scene but
    the receipt's QR (and the Wi-Fi step before it), whose quiet zone it would cover."""
    state = _state(scene)
    state["till_bound"] = {"address": "192.168.1.30"}
    w, h = 800, 480
    surface = render(state, (w, h))
    plain = dict(state, till_bound=None)
    assert _band_pixels(render(plain, (w, h))) == 0
    if scene in ("ticket", "wifi"):
        assert pygame.image.tobytes(surface, "RGB") == pygame.image.tobytes(render(plain, (w, h)), "RGB")
        assert _decode(surface) == [URL if scene == "ticket" else WIFI]
    else:
        assert _band_pixels(surface) > w * (h // 6) * 0.8


def test_the_till_bound_band_stacks_with_the_storage_band() -> None:
    state = _state("idle")
    state["till_bound"] = {"address": "192.168.1.30"}
    state["storage"] = {"status": "repaired", "receipts_lost": 1, "pairings_lost": 0}
    assert _band_pixels(render(state, (800, 480))) > 2 * 800 * (480 // 6) * 0.8


def test_the_till_bound_band_names_the_till_in_the_screen_language() -> None:
    from eticket_core.i18n import translator
    from kiosk.bands import till_bound_lines

    assert till_bound_lines(None, translator("en")) is None
    assert till_bound_lines({"address": ""}, translator("en")) is None
    assert till_bound_lines({"address": 7}, translator("en")) is None
    assert till_bound_lines({"address": "192.168.1.30"}, translator("en")) == (
        "New till:", "The till at 192.168.1.30 may print receipts now.")
    head, text = till_bound_lines({"address": "192.168.1.30"}, translator("fr")) or ("", "")
    assert head == "Nouvelle caisse :" and text == "La caisse 192.168.1.30 peut maintenant imprimer des tickets."


def test_the_web_screen_draws_the_sale_lines_escaped_and_the_till_band_as_the_kiosk() -> None:
    from appliance.web.screen_page import _body, _notice, _view

    state = _state("sale")
    state.update(seq=4, lang="en", sale={"lines": ["<b>Tarte</b>      4,50", "Total           6,50"]},
                 till_bound={"address": "192.168.1.30"})
    html = _body(state, lambda text: text)
    assert "<p class=sale><span>4,50</span>&lt;b&gt;Tarte&lt;/b&gt;</p>" in html
    assert "<span>6,50</span>Total" in html and "Boulangerie Martin" in html and "<b>Tarte" not in html
    band = "The till at 192.168.1.30 may print receipts now."
    assert band in _notice(state, lambda text: text) and band in _view(state)
    for scene in ("idle", "pairing"):
        assert band in _notice(dict(state, scene=scene), lambda text: text)
    for scene in ("ticket", "wifi"):
        assert _notice(dict(state, scene=scene), lambda text: text) == ""
    state["sale"] = {"lines": ["Merci de votre visite", " " * 20]}
    assert _body(state, lambda text: text).count("class='sale one'>Merci de votre visite</p>") == 1
