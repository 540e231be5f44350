"""Screen text in the shop's language: gettext catalogues in ``eticket_core/locale`` (fr, it, de, es; English is
the source). Written by ``scripts/translations.py``."""

from __future__ import annotations

import gettext
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

LOCALE_DIR = Path(__file__).with_name("locale")
LANGUAGES = ("fr", "it", "en", "de", "es")
"""ISO 639-1 codes the screen speaks; anything else falls back to English."""
DOMAIN = "eticket"


@lru_cache(maxsize=8)
def translator(lang: str | None) -> Callable[[str], str]:
    """``gettext`` for ``lang`` (None or unknown: English, the source text)."""
    if not lang or lang not in LANGUAGES or lang == "en":
        return lambda text: text
    return gettext.translation(DOMAIN, localedir=LOCALE_DIR, languages=[lang], fallback=True).gettext
