"""``Accept`` weights (RFC 9110 §12.5.1): which answer a client prefers."""

from __future__ import annotations

import pytest

from eticket_core.negotiation import media_quality


@pytest.mark.parametrize(("accept", "media_type", "quality"), [
    (None, "text/html", 1.0),  # no Accept: anything goes
    ("TEXT/HTML", "text/html", 1.0),
    ("text/html;q=0", "text/html", 0.0),
    ("text/*;q=0.5, text/html;q=0.2", "text/html", 0.2),  # the most specific range counts, not the highest
    ("text/*;q=0.5", "text/plain", 0.5),
    ("*/*;q=0.8", "application/json", 0.8),
    ("application/json", "application/problem+json", 0.0),
    ("text/html;q=abc", "text/html", 0.0),  # a malformed weight refuses
    ("text/html;q=1.5", "text/html", 0.0),
    ("text/html;level=1;q=0.7", "text/html", 0.7),
])
def test_the_most_specific_matching_range_gives_the_weight(accept: str | None, media_type: str,
                                                           quality: float) -> None:
    assert media_quality(accept, media_type) == quality
