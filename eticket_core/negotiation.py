"""Content negotiation by weight (RFC 9110 §12.4.2 quality values): which of two answers a client prefers
(``Accept``, §12.5.1; the device's pages and the relay's) and the ranges of ``Accept-Language`` (§12.5.4,
used by ``appliance.web.page_lang``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.requests import Request

MAX_NEGOTIATION_HEADER_CHARS = 512
"""Longer ``Accept``/``Accept-Language`` headers are cut here before parsing (browsers send well under 300)."""


def weighted(header: str) -> list[tuple[str, float]]:
    """``(value, q)`` of each element of a comma-separated header with quality values (RFC 9110 §12.4.2), in
    the header's order, parameters other than ``q`` dropped: ``"text/html;level=1, */*;q=0.8"`` →
    ``[("text/html", 1.0), ("*/*", 0.8)]``. A malformed or out-of-range weight counts as ``q=0`` (refused);
    empty elements are skipped. Values keep their case."""
    found: list[tuple[str, float]] = []
    for item in header[:MAX_NEGOTIATION_HEADER_CHARS].split(","):
        value, _, params = item.strip().partition(";")
        value = value.strip()
        weight = 1.0
        for param in params.split(";"):
            name, _, text = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(text.strip())
                except ValueError:
                    weight = 0.0
                if not 0 <= weight <= 1:  # also NaN
                    weight = 0.0
        if value:
            found.append((value, weight))
    return found


def media_quality(accept: str | None, media_type: str) -> float:
    """How much an ``Accept`` header (RFC 9110 §12.5.1) wants ``media_type`` (``type/subtype``), 0 to 1:
    the weight of the most specific range that matches (``text/html`` over ``text/*`` over ``*/*``; types
    compared case-insensitively, media-range parameters ignored); 0 when none matches; 1 when there is no
    ``Accept`` header at all (any type is acceptable)."""
    if accept is None or not accept.strip():
        return 1.0
    kind, _, sub = media_type.lower().partition("/")
    best: tuple[int, float] = (-1, 0.0)  # (specificity, q)
    for value, weight in weighted(accept):
        range_kind, _, range_sub = value.lower().partition("/")
        if (range_kind, range_sub) == (kind, sub):
            specificity = 2
        elif (range_kind, range_sub) == (kind, "*"):
            specificity = 1
        elif (range_kind, range_sub) == ("*", "*"):
            specificity = 0
        else:
            continue
        if specificity > best[0]:
            best = (specificity, weight)
    return best[1]


def prefers(request: Request, media_type: str, *, over: str) -> bool:
    """True when the request's ``Accept`` wants ``media_type`` and weighs it above ``over`` (RFC 9110
    §12.5.1): ``text/html`` for a browser's ``text/html,…,*/*;q=0.8``, not for ``*/*``, ``TEXT/HTML;q=0`` or
    no ``Accept`` (a tie keeps ``over``, the API answer)."""
    accept = request.headers.get("accept")
    wanted = media_quality(accept, media_type)
    return wanted > 0 and wanted > media_quality(accept, over)
