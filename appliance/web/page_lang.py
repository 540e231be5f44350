"""The language of the device's own web pages (screen pairing, "screen paired", the receipt pages, ``/screen``
without a key, the home page): the browser's ``Accept-Language`` when it names one of the five screen
languages, else the device's language (config ``language``).

Why the browser first: these pages are read by whoever holds the browser (a shop owner pairing a tablet,
a customer whose link failed), and a browser set to German says so; the device's language is the shop's
choice for the counter screen and the fallback for every other browser. The counter screen itself
(``/screen`` with a key) always speaks the display state's language, as the kiosk does.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from eticket_core.i18n import LANGUAGES as PAGE_LANGUAGES
from eticket_core.negotiation import weighted

from .auth import appliance_of


def accepted_languages(header: str) -> list[str]:
    """The language ranges of an ``Accept-Language`` header (RFC 9110 §12.5.4), most preferred first:
    ``"de-CH,fr;q=0.8,*;q=0.1"`` → ``["de-CH", "fr", "*"]``. Ranges with ``q=0`` (refused) and malformed
    weights are left out; equal weights keep the header's order; ``en_US`` (a POSIX locale name, as some
    clients send) is read as ``en-US``. Header cut at MAX_NEGOTIATION_HEADER_CHARS."""
    ranges = [(-weight, index, tag.replace("_", "-")) for index, (tag, weight) in enumerate(weighted(header))
              if weight > 0]
    return [tag for _, _, tag in sorted(ranges)]


def page_language(request: Request) -> str:
    """``fr``, ``it``, ``en``, ``de`` or ``es`` for this request: the first range of the browser's
    ``Accept-Language`` that names one of them (``de-AT`` counts as ``de``; matching by Babel's
    ``negotiate_locale``), else the device's ``language`` setting."""
    preferred = [tag for tag in accepted_languages(request.headers.get("accept-language", "")) if tag != "*"]
    from babel.core import negotiate_locale  # on the first page asked for: a device never serving one skips it

    chosen = negotiate_locale(preferred, PAGE_LANGUAGES, sep="-", aliases={})
    if chosen is not None:
        return chosen.split("-")[0].lower()
    return str(appliance_of(request).settings.language)


def page_translator(request: Request) -> tuple[str, Callable[[str], str]]:
    """``(lang, gettext)`` for this request's page (:func:`page_language`)."""
    from eticket_core.i18n import translator

    lang = page_language(request)
    return lang, translator(lang)
