"""The panel's physical size shapes the ticket scene: under 4" it asks the customer to hold the phone close
(legibly, in the screen's language); on a large monitor the QR stays small enough for a phone at 30 cm.
Also: where that size comes from (EDID in sysfs, or the diagonal given), and the pairing scene's countdown."""

from __future__ import annotations

import calendar
import time
from pathlib import Path

import numpy as np
import pygame
import pytest
import zxingcpp

from eticket_core.i18n import translator
from eticket_core.money import format_money
from kiosk.panel import connected_size_mm, edid_size_mm, size_from_diagonal
from kiosk.qr import QUIET_ZONE_MODULES, qr_span
from kiosk.scenes import LEGIBLE_TEXT_PX, pairing_expiry, qr_max_mm, render, ticket_layout

RELAY_URL = "https://relay.example.org/r/AQAAAABnWxYz0123456789abcdef"  # the relay's shape: 56 characters
HOLD_CLOSE = "Hold your phone close to scan"


def _ticket(size: tuple[int, int], inches: float | None, lang: str = "fr", url: str = RELAY_URL) -> dict[str, object]:
    state: dict[str, object] = {"scene": "ticket", "shop": "x", "lang": lang,
                                "ticket": {"url": url, "total": "12.50", "currency": "EUR", "valid_days": 30}}
    if inches is not None:
        state["panel_mm"] = list(size_from_diagonal(inches, size))
    return state


def _decode(surface: pygame.Surface) -> list[zxingcpp.Barcode]:
    pixels = np.ascontiguousarray(pygame.surfarray.array3d(surface).swapaxes(0, 1))
    return list(zxingcpp.read_barcodes(pixels, formats=zxingcpp.BarcodeFormat.QRCode))


def _qr_side_px(surface: pygame.Surface) -> int:
    """Width of the decoded QR symbol (finder pattern corners, no quiet zone), in screen pixels."""
    (found,) = _decode(surface)
    return int(found.position.top_right.x - found.position.top_left.x)


@pytest.mark.parametrize("lang", ["fr", "de", "it", "es", "en"])
@pytest.mark.parametrize("size, inches", [((240, 320), 2.8), ((320, 240), 2.8), ((480, 320), 3.5),
                                          ((320, 480), 3.5), ((320, 240), None), ((480, 320), None)],
                         ids=["240x320", "320x240", "480x320", "320x480", "320x240-unknown", "480x320-unknown"])
def test_a_small_panel_asks_to_hold_the_phone_close_in_full_and_legibly(
        size: tuple[int, int], inches: float | None, lang: str) -> None:
    """A customer at a 2.8"-3.5" panel reads, in the screen's language, the whole sentence asking to hold the
    phone close (not a fragment), at a size that can be read, beside a QR that decodes. A panel that
    reports no size is judged by its resolution."""
    surface, lines = ticket_layout(_ticket(size, inches, lang), size)
    assert lines[0].text == format_money("12.50", "EUR", lang)
    assert " ".join(line.text for line in lines[1:]) == translator(lang)(HOLD_CLOSE)
    screen = surface.get_rect()
    (qr,) = _decode(surface)
    assert qr.text == RELAY_URL
    left, top = qr.position.top_left.x, qr.position.top_left.y
    qr_rect = pygame.Rect(left, top, qr.position.bottom_right.x - left, qr.position.bottom_right.y - top)
    for line in lines:
        assert line.px >= LEGIBLE_TEXT_PX, f"{line.text!r} drawn at {line.px} px"
        assert screen.contains(line.rect), f"{line.text!r} runs off the screen"
        assert not line.rect.colliderect(qr_rect), f"{line.text!r} is drawn over the QR"


@pytest.mark.parametrize("size, inches", [((800, 480), 7.0), ((1024, 600), 7.0), ((1920, 1080), 21.5),
                                          ((800, 480), None)])
def test_a_counter_screen_of_7_inches_or_more_keeps_the_usual_call_to_action(
        size: tuple[int, int], inches: float | None) -> None:
    _, lines = ticket_layout(_ticket(size, inches), size)
    texts = [line.text for line in lines]
    assert "Scannez pour obtenir" in texts and "votre ticket" in texts
    assert all(translator("fr")(HOLD_CLOSE) not in t for t in texts)


@pytest.mark.parametrize("size, inches", [((1920, 1080), 21.5), ((1920, 1080), 24.0), ((3840, 2160), 27.0),
                                          ((2560, 1440), 32.0)])
def test_on_a_large_monitor_the_qr_is_no_larger_than_a_phone_at_30_cm_frames(
        size: tuple[int, int], inches: float) -> None:
    """At 30 cm a phone's camera frames about 21 cm across its short side; a QR filling a 21.5" monitor's
    height (25 cm) overflows it. With the panel's size known the QR (quiet zone included) stays within
    ``qr_max_mm()`` and still decodes; without it the QR is as large as the layout allows."""
    mm = size_from_diagonal(inches, size)
    px_per_mm = size[0] / mm[0]
    capped = render(_ticket(size, inches), size)
    symbol_mm = _qr_side_px(capped) / px_per_mm
    modules = qr_span(RELAY_URL) - 2 * QUIET_ZONE_MODULES
    assert symbol_mm * (modules + 2 * QUIET_ZONE_MODULES) / modules <= qr_max_mm() + 1  # with its quiet zone
    assert symbol_mm > qr_max_mm() * 0.7  # capped, not shrunk for nothing
    uncapped = render(_ticket(size, None), size)
    assert _qr_side_px(uncapped) / px_per_mm > qr_max_mm()


def _edid(width_mm: int, height_mm: int, cm: tuple[int, int] = (48, 27), pixel_clock: int = 14850) -> bytes:
    block = bytearray(128)
    block[:8] = bytes.fromhex("00ffffffffffff00")
    block[18:20] = b"\x01\x04"  # EDID 1.4
    block[21:23] = bytes(cm)
    dtd = 54
    block[dtd:dtd + 2] = pixel_clock.to_bytes(2, "little")
    block[dtd + 12] = width_mm & 0xFF
    block[dtd + 13] = height_mm & 0xFF
    block[dtd + 14] = (width_mm >> 8) << 4 | (height_mm >> 8)
    block[127] = (-sum(block[:127])) % 256
    return bytes(block)


def test_the_panel_size_comes_from_the_connected_monitors_edid(tmp_path: Path) -> None:
    """A 21.5" HDMI monitor's EDID gives 477x268 mm (detailed timing); a disconnected connector and one
    without an EDID (an SPI panel) are passed over; a damaged EDID gives nothing rather than nonsense."""
    drm = tmp_path / "drm"
    for name, status, edid in [("card0-DSI-1", "connected", b""), ("card0-HDMI-A-1", "disconnected", _edid(600, 340)),
                               ("card0-HDMI-A-2", "connected", _edid(477, 268))]:
        (drm / name).mkdir(parents=True)
        (drm / name / "status").write_text(status + "\n")
        (drm / name / "edid").write_bytes(edid)
    assert connected_size_mm(drm) == (477.0, 268.0)
    assert edid_size_mm(_edid(0, 0, cm=(52, 29))) == (520.0, 290.0)  # no mm in the timing: the whole cm
    assert edid_size_mm(_edid(0, 0, cm=(0, 0))) is None  # a projector, or a cheap panel's zeros
    damaged = bytearray(_edid(477, 268))
    damaged[60] ^= 0xFF
    assert edid_size_mm(bytes(damaged)) is None
    assert connected_size_mm(tmp_path / "nothing") is None


def test_the_pairing_scene_counts_down_the_minutes_the_code_stays_valid() -> None:
    """The shop owner sees how long the code and QR on screen remain valid, rounded up to the minute, in the
    screen's language; the kiosk adds its clock (``now``) and redraws when the text changes."""
    from kiosk.app import Extras

    expires = "2026-11-29T10:10:00Z"
    at = float(calendar.timegm(time.strptime("2026-11-29T10:01:30", "%Y-%m-%dT%H:%M:%S")))
    state: dict[str, object] = {"scene": "pairing", "lang": "fr",
                                "pairing": {"uri": "eticket://pair?v=1", "code": "ABCD-2345", "expires_at": expires}}
    shown = Extras(Path("/nonexistent")).add(state, now=at)
    assert shown is not None and shown["now"] == at
    assert pairing_expiry(shown) == "Ce code expire dans 9 min"
    assert pairing_expiry({**shown, "now": at + 8 * 60 + 29, "lang": "en"}) == "This code expires in 1 min"
    assert pairing_expiry({**shown, "now": at + 9 * 60}) == ""  # past: a new code is on its way
    early, late = render(shown, (800, 480)), render({**shown, "now": at + 60}, (800, 480))
    assert pygame.image.tobytes(early, "RGB") != pygame.image.tobytes(late, "RGB")


def test_a_time_limited_pairing_window_shows_its_own_end_when_sooner_than_the_code() -> None:
    """``eticket pairings open`` lasts 10 minutes; a code renewed near its end must not promise longer."""
    from appliance.pairing import PairingWindow

    closes = time.time() + 90
    window = PairingWindow(device_id="et-1", address="127.0.0.1:1", name="x", fingerprint="f", ttl_seconds=600,
                           closes_at=closes)
    assert window.screen_state()["expires_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(closes))


@pytest.mark.parametrize("total, currency, lang", [("12345.60", "SEK", "en"), ("123456.78", "CHF", "fr"),
                                                   ("123456.78", "CHF", "de"), ("123456.78", "CHF", "it"),
                                                   ("999999999999.9999", "BHD", "de"),
                                                   ("999999999999.9999", "BHD", "fr"),
                                                   ("-999999999999.99", "EUR", "it")])
@pytest.mark.parametrize("size, mm", [((320, 240), (70, 53)), ((240, 320), (53, 70)), ((480, 320), None),
                                      ((480, 320), "unknown")],
                         ids=["320x240", "240x320", "480x320", "480x320-unknown"])
def test_a_long_total_on_a_small_panel_stays_legible_broken_between_groups_if_it_must(
        size: tuple[int, int], mm: tuple[int, int] | str | None, total: str, currency: str, lang: str) -> None:
    """The total, the thing the customer checks, is never drawn smaller than the hold-close message's legible
    size: a long one is broken into lines at its spaces or digit groups (all of it shown, in order), beside a
    QR that still decodes and that no text covers."""
    state = _ticket(size, 3.5, lang)
    if mm == "unknown":
        del state["panel_mm"]
    elif mm is not None:
        state["panel_mm"] = list(mm)
    state["ticket"] = {**state["ticket"], "total": total, "currency": currency}  # type: ignore[dict-item]
    surface, lines = ticket_layout(state, size)
    message = translator(lang)(HOLD_CLOSE)
    cut = next(i for i in range(len(lines)) if " ".join(line.text for line in lines[i:]) == message)
    heads, money = lines[:cut], format_money(total, currency, lang)
    assert "".join("".join(line.text.split()) for line in heads) == "".join(money.split())  # all, in order
    for before in heads[:-1]:  # each break at a space or just after a group separator
        rest = money[money.index(before.text) + len(before.text):]
        assert rest[:1].isspace() or before.text[-1] in ".,'", (before.text, money)
    (qr,) = _decode(surface)
    assert qr.text == RELAY_URL
    left, top = qr.position.top_left.x, qr.position.top_left.y
    qr_rect = pygame.Rect(left, top, qr.position.bottom_right.x - left, qr.position.bottom_right.y - top)
    for line in lines:
        assert line.px >= LEGIBLE_TEXT_PX, f"{line.text!r} drawn at {line.px} px"
        assert surface.get_rect().contains(line.rect), f"{line.text!r} runs off the screen"
        assert not line.rect.colliderect(qr_rect), f"{line.text!r} is drawn over the QR"
