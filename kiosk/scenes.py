"""Scenes: pure functions of (display state, screen size) returning a pygame Surface.

The state is the appliance's display state (see ``appliance.display``); ``None`` means "not connected".
High contrast (black on white), the QR as large as the layout allows, text sized to the screen.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pygame

from eticket_core.expiry import minutes_shown, seconds_left
from eticket_core.i18n import translator
from eticket_core.money import format_money

from .bands import sale_line_parts, storage_lines, till_bound_lines
from .panel import diagonal_inches
from .qr import DARK, LIGHT, draw_qr, qr_span

BACKGROUND = LIGHT
INK = DARK
MUTED = (70, 70, 70)
MARGIN_RATIO = 0.04
"""Margin around the layout, as a fraction of the shorter screen side."""

State = dict[str, Any] | None


@lru_cache(maxsize=64)
def _font(px: int, heavy: bool = False) -> pygame.font.Font:
    """pygame-ce's bundled FreeSansBold (no system font lookup); ``heavy`` adds a little emboldening for
    headlines, kept small so that large digits stay crisp."""
    if not pygame.font.get_init():
        pygame.font.init()
    font = pygame.font.Font(None, px)
    if heavy and px < 64:
        font.bold = True
    return font


def _fitted(text: str, max_w: int, max_px: int, bold: bool = False,
            colors: tuple[tuple[int, int, int], tuple[int, int, int]] = (INK, BACKGROUND)
            ) -> tuple[pygame.Surface, int]:
    """``text`` rendered at the largest size up to ``max_px`` that fits ``max_w`` pixels, and that size."""
    px = max(max_px, 8)
    while True:
        image = _font(px, bold).render(text, True, *colors)
        if image.get_width() <= max_w or px <= 8:
            return image, px
        px = max(8, int(px * 0.9))


def _fit(text: str, max_w: int, max_px: int, bold: bool = False,
         colors: tuple[tuple[int, int, int], tuple[int, int, int]] = (INK, BACKGROUND)) -> pygame.Surface:
    """Render ``text`` at the largest size up to ``max_px`` that fits ``max_w`` pixels (``colors``: ink, paper)."""
    return _fitted(text, max_w, max_px, bold, colors)[0]


@dataclass(frozen=True, slots=True)
class Line:
    """One line of text as a scene laid it out: where (``rect``, screen pixels) and at what font size (``px``)."""

    text: str
    rect: pygame.Rect
    px: int


def _stack(surface: pygame.Surface, area: pygame.Rect, images: list[tuple[str, pygame.Surface, int]],
           gap: int) -> list[Line]:
    """Blit ``(text, image, px)`` one under the other, centred in ``area``; return where each went."""
    total = sum(i.get_height() for _, i, _ in images) + gap * (len(images) - 1)
    y = area.y + max(0, (area.height - total) // 2)
    placed = []
    for text, image, px in images:
        rect = image.get_rect(topleft=(area.centerx - image.get_width() // 2, y))
        surface.blit(image, rect)
        placed.append(Line(text, rect, px))
        y += image.get_height() + gap
    return placed


def _column(surface: pygame.Surface, area: pygame.Rect, lines: list[tuple[str, float, bool]]) -> list[Line]:
    """Stack lines vertically centred in ``area``; each is (text, height as fraction of area height, bold)."""
    images = [(text, *_fitted(text, area.width, int(area.height * frac), bold)) for text, frac, bold in lines
              if text]
    return _stack(surface, area, images, int(area.height * 0.04))


def _wrap(text: str, px: int, max_w: int, bold: bool = False) -> list[str] | None:
    """``text`` broken at spaces into lines no wider than ``max_w`` at ``px``; None if one word is wider."""
    font = _font(px, bold)
    lines: list[str] = []
    for word in text.split():
        if font.size(word)[0] > max_w:
            return None
        if lines and font.size(f"{lines[-1]} {word}")[0] <= max_w:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


_GROUP_SEPARATORS = ".,'\u2019\u066c"
"""Characters a total's digits are grouped with (CLDR: 1.234 de, 1,234 en, 1'234 de-CH, Arabic ٬); thin and
no-break spaces group too, and they break like spaces."""


def _money_pieces(total: str, groups: bool = True) -> list[tuple[str, str]]:
    """``total`` cut where a line may break: ``(piece, glue)`` pairs, ``glue`` the space dropped at a break (or
    kept mid-line) after the piece. A piece ends at a space, or (``groups``) after a group separator between
    digits; the last separator of a number is left alone (it may be the decimal mark)."""
    pieces: list[tuple[str, str]] = []
    for chunk, space in re.findall(r"(\S+)(\s*)", total):
        seps = [i for i, ch in enumerate(chunk) if ch in _GROUP_SEPARATORS and 0 < i < len(chunk) - 1
                and chunk[i - 1].isdigit() and chunk[i + 1].isdigit()]
        start = 0
        for i in seps[:-1] if groups else ():
            pieces.append((chunk[start:i + 1], ""))
            start = i + 1
        pieces.append((chunk[start:], space))
    if not groups:  # a (thin) space between digits groups them too: "123 456,78 CHF" breaks before "CHF" only
        merged: list[tuple[str, str]] = []
        for piece, glue in pieces:
            if merged and merged[-1][1] and merged[-1][0][-1:].isdigit() and piece[:1].isdigit():
                merged[-1] = (merged[-1][0] + merged[-1][1] + piece, glue)
            else:
                merged.append((piece, glue))
        pieces = merged
    return pieces


def _wrap_total(total: str, px: int, max_w: int, breaks: int = 2) -> list[str] | None:
    """A total (``format_money``) as lines no wider than ``max_w`` at ``px`` (bold): whole if it fits, else
    (``breaks`` 1) broken at its spaces, or (2) at its digit groups too (:func:`_money_pieces`), the currency
    kept on the line of the number's last digits when both fit; None if it cannot (``breaks`` 0: one line)."""
    font = _font(px, True)
    if font.size(total)[0] <= max_w:
        return [total]
    if breaks == 0:
        return None
    lines: list[list[tuple[str, str]]] = []
    for piece in _money_pieces(total, groups=breaks >= 2):
        if font.size(piece[0])[0] > max_w:
            return None
        if lines and font.size(_joined([*lines[-1], piece]))[0] <= max_w:
            lines[-1].append(piece)
        else:
            lines.append([piece])
    last = lines[-1]
    if (len(lines) > 1 and len(last) == 1 and not any(ch.isdigit() for ch in last[0][0])
            and len(lines[-2]) > 1 and font.size(_joined([lines[-2][-1], *last]))[0] <= max_w):
        last.insert(0, lines[-2].pop())  # "1 234" / "567 CHF" rather than "1 234 567" / "CHF"
    return [_joined(line) for line in lines]


def _joined(pieces: list[tuple[str, str]]) -> str:
    return "".join(piece + glue for piece, glue in pieces[:-1]) + pieces[-1][0]


def _wrapped_column(surface: pygame.Surface, area: pygame.Rect, headline: str, message: str,
                    wrap_headline: bool = False) -> list[Line]:
    """``headline`` (bold) over ``message`` broken into as many lines as it needs, both at the largest size
    that fits ``area`` and never under ``LEGIBLE_TEXT_PX`` (the headline is 1.4 times the message). The
    headline is broken at spaces if ``wrap_headline``, else it is a total: broken only if it must, at its
    spaces and digit groups (:func:`_wrap_total`), never shrunk under ``LEGIBLE_TEXT_PX``."""

    def heads_at(head_px: int, breaks: int) -> list[str] | None:
        if not headline:
            return []
        if wrap_headline:
            return _wrap(headline, head_px, area.width, True) or [headline]
        return _wrap_total(headline, head_px, area.width, breaks)

    def lines_at(px: int, head_px: int, breaks: int = 2) -> list[tuple[str, pygame.Surface, int]] | None:
        wrapped = _wrap(message, px, area.width)
        heads = heads_at(head_px, breaks)
        if wrapped is None or heads is None:
            return None
        images = [(line, *_fitted(line, area.width, head_px, True)) for line in heads]
        return images + [(line, *_fitted(line, area.width, px)) for line in wrapped]

    for breaks in (0, 1, 2):  # a total is broken only if it must; between its digit groups as a last resort
        for px in range(max(LEGIBLE_TEXT_PX, area.height // 3), LEGIBLE_TEXT_PX, -1):
            images = lines_at(px, int(px * 1.4), breaks)
            if images and sum(i.get_height() for _, i, _ in images) + px // 6 * (len(images) - 1) <= area.height:
                return _stack(surface, area, images, px // 6)
    px = LEGIBLE_TEXT_PX  # the smallest legible size, even if it overflows: never a fragment
    for head_px in range(int(px * 1.4), px - 1, -1):  # a long total in a narrow column: a smaller headline
        images = lines_at(px, head_px)
        if images:
            return _stack(surface, area, images, px // 6)
    images = [(headline, *_fitted(headline, area.width, px, True)), (message, *_fitted(message, area.width, px))]
    return _stack(surface, area, images, px // 6)


def _validity(t: Callable[[str], str], days: object) -> str:
    """"Link valid 30 days", or nothing when the state does not say."""
    return t("Link valid {days} days").format(days=days) if isinstance(days, int) and days > 0 else ""


SMALL_PANEL_MAX_INCHES = 4.0
"""Under this diagonal the ticket scene asks the customer to hold the phone close: at 30–60 cm a phone camera
gets under 2 pixels per QR module from a 2.8"–3.5" panel (bench/qr_first_scan.py), at 15–25 cm 3 or more."""
SMALL_PANEL_MAX_PX = 480
"""With no reported size, a panel whose long side is at most this many pixels counts as under 4": 240x320,
320x240 and 480x320 are sold as 2.8"–3.5" SPI panels and HATs, nothing larger has so few pixels."""
LEGIBLE_TEXT_PX = 14
"""Smallest font size (pixels) of the hold-close message: capitals 10 px high, 1.8 mm on a 2.8" 320x240 panel,
about 30 arc minutes at 20 cm (print is read comfortably from 15)."""
PANEL_MM_KEY = "panel_mm"
"""State key a screen client adds: ``[width_mm, height_mm]`` of the panel as drawn (after rotation)."""

PHONE_CAMERA_FOV_DEGREES = 65.0
"""Horizontal field of view of a phone's main camera in a scanner's preview: a 26 mm-equivalent lens
(2·atan(36/2/26) ≈ 69°, the wide camera of most phones since about 2018) cropped slightly to the preview;
the value bench/qr_first_scan.py simulates."""
PHONE_PREVIEW_ASPECT = 16 / 9
"""Scanner previews are 16:9 (1280x720, 1920x1080): the short side of the view sets what fits."""
NEAREST_SCAN_MM = 300.0
"""The nearest a customer holds the phone to a counter screen it can read from afar (30 cm)."""
QR_MAX_VIEW_SHARE = 0.6
"""Largest share of the camera view's short side the QR (with its quiet zone) may fill at ``NEAREST_SCAN_MM``:
room for an unsteady aim (±15 %) while the quiet zone stays in view."""


def qr_max_mm() -> float:
    """The largest QR side (quiet zone included, mm) a phone at ``NEAREST_SCAN_MM`` still frames whole:
    ``2·d·tan(FOV/2)/aspect·share`` ≈ 129 mm."""
    short_view = 2 * NEAREST_SCAN_MM * math.tan(math.radians(PHONE_CAMERA_FOV_DEGREES / 2)) / PHONE_PREVIEW_ASPECT
    return short_view * QR_MAX_VIEW_SHARE


def panel_mm(state: State) -> tuple[float, float] | None:
    """The panel's ``(width_mm, height_mm)`` as drawn, if the screen client knows it (``state["panel_mm"]``)."""
    value = None if state is None else state.get(PANEL_MM_KEY)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, (int, float)) and v > 0 for v in value):
        return float(value[0]), float(value[1])
    return None


def is_small_panel(state: State, size: tuple[int, int]) -> bool:
    """True for a panel under ``SMALL_PANEL_MAX_INCHES`` (or, its size unknown, of at most
    ``SMALL_PANEL_MAX_PX`` pixels on the long side)."""
    mm = panel_mm(state)
    if mm is not None:
        return diagonal_inches(mm) < SMALL_PANEL_MAX_INCHES
    return max(size) <= SMALL_PANEL_MAX_PX


def qr_cap_px(state: State, size: tuple[int, int]) -> int | None:
    """The largest QR side in pixels on this panel (:func:`qr_max_mm`), or None when its size is unknown."""
    mm = panel_mm(state)
    if mm is None:
        return None
    px_per_mm = min(size[0] / mm[0], size[1] / mm[1])
    return int(qr_max_mm() * px_per_mm)


SMALL_TEXT_AREA_PX = 120
"""Below this, the ticket scene keeps only the total and the call to action, so they stay legible."""
LARGE_SCREEN_PX = 600
"""From this short side up, modules are large anyway; the QR keeps a margin beyond its quiet zone."""
QR_SHARE = 0.72
"""Largest share of the long side the QR square may take; the rest holds the total and the instruction."""


def _split(size: tuple[int, int], qr_text: str | None = None) -> tuple[pygame.Rect, pygame.Rect]:
    """Split the screen into a square QR area and a text area (side by side, or stacked in portrait).

    The QR area runs to the screen's edge: its 4-module quiet zone is white like the background, so it is
    the margin, and every pixel goes to larger modules (what decides a first scan on small panels). Given
    ``qr_text`` on a small screen, the QR area shrinks to the whole modules the QR can use and the text area
    takes the pixels left over.
    """
    w, h = size
    margin = int(min(w, h) * MARGIN_RATIO)
    edge = 0 if min(w, h) < LARGE_SCREEN_PX else margin  # a big screen keeps its margin: phones come close
    side = min(h - 2 * edge, int(w * QR_SHARE)) if w >= h else min(w - 2 * edge, int(h * QR_SHARE))
    if qr_text is not None and edge == 0:
        span = qr_span(qr_text)
        side = side // span * span or side  # (0: it cannot fit; draw_qr says so)
    if w >= h:
        qr = pygame.Rect(edge, (h - side) // 2, side, side)
        text = pygame.Rect(qr.right, margin, w - qr.right - margin, h - 2 * margin)
    else:
        qr = pygame.Rect((w - side) // 2, edge, side, side)
        text = pygame.Rect(margin, qr.bottom, w - 2 * margin, h - qr.bottom - margin)
    return qr, text


def scene_connecting(state: State, size: tuple[int, int]) -> pygame.Surface:
    """Shown while the appliance cannot be reached (start-up, restart)."""
    t = translator(None if state is None else state.get("lang"))
    surface = pygame.Surface(size)
    surface.fill(BACKGROUND)
    _column(surface, surface.get_rect().inflate(-size[0] // 10, -size[1] // 4),
            [(t("Connecting…"), 0.22, True), (t("The receipt screen is starting."), 0.1, False)])
    return surface


def scene_idle(state: State, size: tuple[int, int]) -> pygame.Surface:
    """The shop name, large; the shop's logo above it (``logo_image``, a Surface the screen client put in
    the state) and the time (``time``, "HH:MM", when ``clock``) if configured."""
    t = translator(None if state is None else state.get("lang"))
    assert state is not None
    surface = pygame.Surface(size)
    surface.fill(BACKGROUND)
    w, h = size
    text_area = surface.get_rect().inflate(-w // 10, -h // 4)
    logo = state.get("logo_image")
    if isinstance(logo, pygame.Surface) and logo.get_width() and logo.get_height():
        box = pygame.Rect(w // 10, h // 12, w - w // 5, int(h * 0.4))
        scale = min(box.width / logo.get_width(), box.height / logo.get_height())
        image = pygame.transform.smoothscale(logo, (max(1, int(logo.get_width() * scale)),
                                                    max(1, int(logo.get_height() * scale))))
        surface.blit(image, image.get_rect(center=box.center))
        text_area = pygame.Rect(w // 20, box.bottom + h // 20, w - w // 10, h - box.bottom - h // 8)
    _column(surface, text_area,
            [(str(state.get("shop") or "eTicket"), 0.3, True), (t("Paperless receipts"), 0.1, False)])
    if state.get("clock") and state.get("time"):
        clock = _fit(str(state["time"]), w // 4, h // 10)
        surface.blit(clock, clock.get_rect(bottomright=(w - w // 40, h - h // 40)))
    return surface


def minutes_left(until: object, now: object) -> int | None:
    """Whole minutes, rounded up, from ``now`` (Unix seconds) to ``until`` (an RFC 3339 UTC time such as
    ``"2026-11-29T10:10:00Z"``); None when either is missing or malformed, or the time is past."""
    seconds = seconds_left(until, now)
    return None if seconds is None else minutes_shown(seconds)


def pairing_expiry(state: State) -> str:
    """"This code expires in 9 min" for the pairing scene (``state["pairing"]["expires_at"]`` and the
    screen client's clock, ``state["now"]``), or ``""``."""
    if state is None:
        return ""
    minutes = minutes_left((state.get("pairing") or {}).get("expires_at"), state.get("now"))
    if minutes is None:
        return ""
    return translator(state.get("lang"))("This code expires in {minutes} min").format(minutes=minutes)


def scene_pairing(state: State, size: tuple[int, int]) -> pygame.Surface:
    """The pairing scene (:func:`pairing_layout`)."""
    return pairing_layout(state, size)[0]


def pairing_layout(state: State, size: tuple[int, int]) -> tuple[pygame.Surface, list[Line]]:
    """The pairing QR (URI with device address, id and one-time code), the code to type, how long they stay
    valid (:func:`pairing_expiry`: a screen client that adds ``now`` redraws when the minute changes) and the
    device's name (``state["shop"]``, e.g. "eTicket 3F9A"), so that a till owner setting up two devices knows
    which one this code belongs to; with the lines of text as drawn."""
    t = translator(None if state is None else state.get("lang"))
    assert state is not None
    pairing = state.get("pairing") or {}
    surface = pygame.Surface(size)
    surface.fill(BACKGROUND)
    qr_area, text_area = _split(size)
    if pairing.get("locked_until"):
        return surface, _column(surface, surface.get_rect().inflate(-size[0] // 10, -size[1] // 4), [
            (t("Pairing locked"), 0.2, True),
            (t("Too many wrong codes."), 0.09, False),
            (t("Try again in a minute."), 0.09, False),
        ])
    draw_qr(surface, str(pairing.get("uri", "")), qr_area)
    return surface, _column(surface, text_area, [
        (t("Pair your till"), 0.13, True),
        (t("Scan this code with the till,"), 0.07, False),
        (t("or type:"), 0.07, False),
        (str(pairing.get("code", "")), 0.16, True),
        (pairing_expiry(state), 0.06, False),
        (str(state.get("shop") or ""), 0.07, False),
    ])


def ticket_layout(state: State, size: tuple[int, int]) -> tuple[pygame.Surface, list[Line]]:
    """The ticket scene and the lines of text it holds (for tests, and for whoever wants to read it out).

    The receipt QR as large as the layout allows, but on a panel of known size never larger than a phone at
    30 cm frames (:func:`qr_cap_px`); beside it the total and the instruction. On a panel under 4"
    (:func:`is_small_panel`) the instruction asks the customer to hold the phone close, wrapped to stay
    legible (``LEGIBLE_TEXT_PX``) in the narrow column.
    """
    t = translator(None if state is None else state.get("lang"))
    assert state is not None
    ticket = state.get("ticket") or {}
    surface = pygame.Surface(size)
    surface.fill(BACKGROUND)
    url = str(ticket.get("url", ""))
    small = is_small_panel(state, size)
    qr_area, text_area = _split(size, url if small else None)
    draw_qr(surface, url, qr_area, qr_cap_px(state, size))
    total = format_money(ticket.get("total"), ticket.get("currency"), state.get("lang"))
    if small:
        return surface, _wrapped_column(surface, text_area, total, t("Hold your phone close to scan"))
    lines = [
        (total, 0.2, True),
        (t("Scan to get"), 0.1, False),
        (t("your receipt"), 0.1, False),
        (t("No app, no e-mail"), 0.06, False),
        (_validity(t, ticket.get("valid_days")), 0.05, False),
    ]
    if min(text_area.size) < SMALL_TEXT_AREA_PX:  # a small text area: the call to action, wrapped
        return surface, _wrapped_column(surface, text_area, total, f"{t('Scan to get')} {t('your receipt')}")
    return surface, _column(surface, text_area, lines)


def scene_ticket(state: State, size: tuple[int, int]) -> pygame.Surface:
    """The receipt QR, the total and the instruction: see :func:`ticket_layout`."""
    return ticket_layout(state, size)[0]


def scene_wifi(state: State, size: tuple[int, int]) -> pygame.Surface:
    """Step 1 when the receipt is on the LAN only: the guest Wi-Fi's join QR, then the receipt QR follows."""
    t = translator(None if state is None else state.get("lang"))
    assert state is not None
    wifi = (state.get("ticket") or {}).get("wifi") or {}
    surface = pygame.Surface(size)
    surface.fill(BACKGROUND)
    qr_area, text_area = _split(size)
    draw_qr(surface, str(wifi.get("qr", "")), qr_area)
    lines = [
        (t("Step 1: Wi-Fi"), 0.13, True),
        (t("Join the shop's Wi-Fi"), 0.08, False),
        (str(wifi.get("ssid", "")), 0.1, True),
        (t("The receipt code comes next"), 0.06, False),
    ]
    if min(text_area.size) < SMALL_TEXT_AREA_PX:
        lines = [(lines[0][0], 0.25, True), (lines[2][0], 0.2, False)]
    _column(surface, text_area, lines)
    return surface


def scene_screen_link(state: State, size: tuple[int, int]) -> pygame.Surface:
    """The one-time link that pairs another screen."""
    t = translator(None if state is None else state.get("lang"))
    assert state is not None
    link = state.get("screen_link") or {}
    surface = pygame.Surface(size)
    surface.fill(BACKGROUND)
    qr_area, text_area = _split(size)
    draw_qr(surface, str(link.get("url", "")), qr_area)
    _column(surface, text_area, [
        (t("Add a screen"), 0.13, True),
        (t("Open this link on"), 0.07, False),
        (t("the screen '{name}'").format(name=link.get("name", "")), 0.07, False),
    ])
    return surface


def scene_downloaded(state: State, size: tuple[int, int]) -> pygame.Surface:
    """The customer's phone fetched the receipt: a short thank-you, no QR."""
    t = translator(None if state is None else state.get("lang"))
    surface = pygame.Surface(size)
    surface.fill(BACKGROUND)
    w, h = size
    unit = min(w, h) // 10  # a tick drawn as lines: the bundled font has no check-mark glyph
    cx, cy = w // 2, h // 4
    pygame.draw.lines(surface, INK, False, [(cx - 2 * unit, cy), (cx - unit // 2, cy + 3 * unit // 2),
                                            (cx + 2 * unit, cy - 3 * unit // 2)], max(4, unit // 2))
    _column(surface, pygame.Rect(w // 20, h // 2, w - w // 10, h // 2 - h // 10),
            [(t("Receipt downloaded"), 0.3, True), (t("Thank you!"), 0.22, False)])
    return surface


SALE_HEADER_SHARE = 0.2
"""Share of the screen height the sale scene gives the shop's name or logo, above the till's lines."""


def sale_layout(state: State, size: tuple[int, int]) -> tuple[pygame.Surface, list[Line]]:
    """A sale going on (``state["sale"]["lines"]``, the two lines a till sends a customer display): the shop's
    logo or name small at the top, the lines large below, both at one size, the largest that fits. A line
    whose amount the till right-aligned with spaces is drawn as on a pole display, the label on the left and
    the amount on the right (:func:`sale_line_parts`); any other line is centred. Returns the lines as drawn,
    each line's text the till's without its padding (``Line.rect`` spans label and amount)."""
    assert state is not None
    surface = pygame.Surface(size)
    surface.fill(BACKGROUND)
    w, h = size
    margin = int(min(w, h) * MARGIN_RATIO)
    header = pygame.Rect(margin, margin, w - 2 * margin, int(h * SALE_HEADER_SHARE))
    logo = state.get("logo_image")
    if isinstance(logo, pygame.Surface) and logo.get_width() and logo.get_height():
        scale = min(header.width / logo.get_width(), header.height / logo.get_height())
        image = pygame.transform.smoothscale(logo, (max(1, int(logo.get_width() * scale)),
                                                    max(1, int(logo.get_height() * scale))))
        surface.blit(image, image.get_rect(center=header.center))
    else:
        _column(surface, header, [(str(state.get("shop") or "eTicket"), 0.6, True)])
    body = pygame.Rect(margin, header.bottom + margin, w - 2 * margin, h - header.bottom - 2 * margin)
    raw = (state.get("sale") or {}).get("lines")
    texts = [str(line or "").strip() for line in (raw if isinstance(raw, list) else [])[:2]]
    lines = [(text, sale_line_parts(text)) for text in texts if text]
    if not lines:
        return surface, []
    px = max(8, body.height // (len(lines) + 1))
    while True:  # one size for both lines, the largest at which each fits the width and both the height
        font = _font(px, True)
        gap, spacing = font.size("  ")[0], px // 5
        widths = [sum(font.size(part)[0] for part in parts) + gap * (len(parts) - 1) for _, parts in lines]
        height = font.get_height() * len(lines) + spacing * (len(lines) - 1)
        if (max(widths) <= body.width and height <= body.height) or px <= 8:
            break
        px = max(8, int(px * 0.92))
    y = body.y + max(0, (body.height - height) // 2)
    placed = []
    for (text, parts), width in zip(lines, widths, strict=True):
        images = [font.render(part, True, INK, BACKGROUND) for part in parts]
        if len(images) == 2:  # as on a pole display: the label on the left, the amount on the right
            rects = [images[0].get_rect(topleft=(body.left, y)), images[1].get_rect(topright=(body.right, y))]
            if width > body.width:  # (only at the smallest size) never over the label
                rects[1].left = rects[0].right + gap
        else:
            rects = [images[0].get_rect(midtop=(body.centerx, y))]
        for image, rect in zip(images, rects, strict=True):
            surface.blit(image, rect)
        placed.append(Line(text, rects[0].unionall(rects[1:]), px))
        y += font.get_height() + spacing
    return surface, placed


def scene_sale(state: State, size: tuple[int, int]) -> pygame.Surface:
    """A sale going on: the till's customer-display lines, see :func:`sale_layout`."""
    return sale_layout(state, size)[0]


SCENE_SCREEN_REMOVED = "screen-removed"
"""Drawn by a claimed screen itself (never sent by the appliance): the device no longer accepts it."""


def scene_screen_removed(state: State, size: tuple[int, int]) -> pygame.Surface:
    """This (claimed) screen was revoked on the device: say so, and how to pair it again."""
    t = translator(None if state is None else state.get("lang"))
    surface = pygame.Surface(size)
    surface.fill(BACKGROUND)
    _wrapped_column(surface, surface.get_rect().inflate(-size[0] // 8, -size[1] // 6), t("This screen was removed"),
                    t("To show receipts here again, run 'eticket screens add' on the device, then start this "
                      "screen with 'eticket kiosk --claim' and the new link."), wrap_headline=True)
    return surface


def scene_error(state: State, size: tuple[int, int]) -> pygame.Surface:
    """A scene failed to draw: a plain message, never a blank screen."""
    t = translator(None if state is None else state.get("lang"))
    surface = pygame.Surface(size)
    surface.fill(BACKGROUND)
    _column(surface, surface.get_rect().inflate(-size[0] // 10, -size[1] // 4),
            [(t("Something went wrong"), 0.16, True), (t("Please ask at the counter."), 0.09, False)])
    return surface


SCENES: dict[str, Callable[[State, tuple[int, int]], pygame.Surface]] = {
    "connecting": scene_connecting,
    "idle": scene_idle,
    "pairing": scene_pairing,
    "ticket": scene_ticket,
    "wifi": scene_wifi,
    "screen-link": scene_screen_link,
    "downloaded": scene_downloaded,
    "sale": scene_sale,
    "error": scene_error,
    SCENE_SCREEN_REMOVED: scene_screen_removed,
}


NOTICE_BACKGROUND = (150, 0, 0)


def draw_notice(surface: pygame.Surface, state: dict[str, Any]) -> None:
    """Bands along the bottom for the shop owner, white on dark red: a refused settings file
    (``state["notice"]``), the storage's state (``state["storage"]``, :func:`storage_lines`) and a till just
    allowed to print (``state["till_bound"]``, :func:`till_bound_lines`), stacked.
    On the ticket scenes they are left out so the QR keeps its quiet zone."""
    if state.get("scene") in ("ticket", "wifi"):
        return
    t = translator(state.get("lang"))
    bands = []
    if state.get("notice"):
        bands.append((t("Settings not applied:"), str(state["notice"])))
    for lines in (storage_lines(state.get("storage"), t), till_bound_lines(state.get("till_bound"), t)):
        if lines is not None:
            bands.append(lines)
    w, h = surface.get_size()
    for n, lines in enumerate(bands):
        band = pygame.Rect(0, h - (n + 1) * (h // 6), w, h // 6)
        surface.fill(NOTICE_BACKGROUND, band)
        for i, text in enumerate(lines):
            line = _fit(text, w - w // 20, band.height // 3, bold=i == 0,
                        colors=((255, 255, 255), NOTICE_BACKGROUND))
            surface.blit(line, (w // 40, band.top + band.height // 12 + i * band.height // 2))


def render(state: State, size: tuple[int, int]) -> pygame.Surface:
    """Draw the scene for ``state`` (None: connecting) at ``size`` (width, height in pixels), with the
    shop owner's notice band when there is one.

    An unknown scene name draws the idle scene, so a newer appliance never blanks an older kiosk.
    """
    if state is None:
        return scene_connecting(None, size)
    surface = SCENES.get(str(state.get("scene")), scene_idle)(state, size)
    draw_notice(surface, state)
    return surface
