"""Drawing a QR code crisply: whole pixels per module and a quiet zone of at least 4 modules."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import pygame
import segno

QUIET_ZONE_MODULES = 4
"""ISO/IEC 18004:2015 §5.3.8: the quiet zone is 4 modules wide on every side."""
ERROR_LEVEL = "m"
"""Level M (15 % recovery), raised by segno when the size allows: resists glare and a dirty screen."""
DARK = (0, 0, 0)
LIGHT = (255, 255, 255)


@dataclass(frozen=True, slots=True)
class QrPlacement:
    """Where a QR landed: ``rect`` includes the quiet zone; ``module_px`` pixels per module; ``modules``
    symbol width without quiet zone (21 for version 1)."""

    rect: pygame.Rect
    module_px: int
    modules: int


@lru_cache(maxsize=8)
def _symbol(text: str) -> tuple[tuple[bool, ...], ...]:
    code = segno.make_qr(text, error=ERROR_LEVEL, boost_error=True)
    return tuple(tuple(bool(v) for v in row) for row in code.matrix)


def qr_matrix(text: str) -> list[list[bool]]:
    """The QR symbol for ``text`` (never Micro QR), as rows of dark (True) / light modules, no border."""
    return [list(row) for row in _symbol(text)]


def qr_span(text: str) -> int:
    """Modules across the QR for ``text`` with its quiet zone on both sides (29 for version 1)."""
    return len(_symbol(text)) + 2 * QUIET_ZONE_MODULES


def draw_qr(surface: pygame.Surface, text: str, area: pygame.Rect, max_side_px: int | None = None) -> QrPlacement:
    """Draw the largest QR for ``text`` that fits ``area`` with whole-pixel modules, centred in it; with
    ``max_side_px``, no wider than that (quiet zone included) unless even one pixel per module would not fit.

    Raises:
        ValueError: ``area`` cannot hold the symbol at one pixel per module.
    """
    matrix = _symbol(text)
    modules = len(matrix)
    span = modules + 2 * QUIET_ZONE_MODULES
    module_px = min(area.width, area.height) // span
    if module_px < 1:
        raise ValueError(f"{area.width}x{area.height} px cannot hold a {modules}-module QR code")
    if max_side_px is not None:
        module_px = max(1, min(module_px, max_side_px // span))
    side = span * module_px
    rect = pygame.Rect(0, 0, side, side)
    rect.center = area.center
    surface.fill(LIGHT, rect)
    origin_x = rect.x + QUIET_ZONE_MODULES * module_px
    origin_y = rect.y + QUIET_ZONE_MODULES * module_px
    for y, row in enumerate(matrix):
        x = 0
        while x < modules:  # one rectangle per horizontal run of dark modules
            if row[x]:
                start = x
                while x < modules and row[x]:
                    x += 1
                surface.fill(DARK, (origin_x + start * module_px, origin_y + y * module_px,
                                    (x - start) * module_px, module_px))
            else:
                x += 1
    return QrPlacement(rect=rect, module_px=module_px, modules=modules)
