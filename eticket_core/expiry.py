"""How long something shown on a screen stays valid (a pairing code, a screen link): the time left until an
RFC 3339 UTC instant, and the whole minutes a screen says ("This code expires in 9 min"). Shared by the kiosk's
scenes and the web screen so both count the same way."""

from __future__ import annotations

import math
from datetime import datetime

SECONDS_PER_MINUTE = 60


def seconds_left(until: object, now: object) -> float | None:
    """Seconds from ``now`` (Unix seconds) to ``until`` (RFC 3339 UTC, e.g. ``"2026-11-29T10:10:00Z"``); None
    when either is missing or malformed, or the time is past."""
    if not isinstance(until, str) or not isinstance(now, (int, float)):
        return None
    try:
        seconds = datetime.fromisoformat(until).timestamp() - now
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def minutes_shown(seconds: float) -> int:
    """The whole minutes a screen shows for ``seconds`` left, rounded up (59 s: "1 min"; 600 s: "10 min")."""
    return math.ceil(seconds / SECONDS_PER_MINUTE)
