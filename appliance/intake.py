"""Ticket metadata rules: total, currency and the POS's own reference."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import pycountry

from .errors import InvalidCurrency, InvalidReference, InvalidTotal

TOTAL_PATTERN = re.compile(r"-?(0|[1-9][0-9]{0,11})(\.[0-9]{1,4})?")
"""A plain decimal string: optional minus (refunds), up to 12 integer digits, up to 4 decimals. No
exponent, no thousands separator, no comma: the POS sends ``12.50``, the screen localises it."""
MAX_REFERENCE_CHARS = 128
NOT_CURRENCIES = frozenset({"XXX", "XTS", "XAU", "XAG", "XPD", "XPT", "XBA", "XBB", "XBC", "XBD", "XDR", "XSU", "XUA"})
"""ISO 4217 codes that are not money a shop takes: 'no currency', testing, precious metals, bond-market and
accounting units (ISO 4217 §6.2, the X codes)."""
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})
"""Control, format (bidi overrides, zero-width), private, surrogate, unassigned and line/paragraph
separators: nothing a person can read, and bidi controls can disguise text in logs and on screen."""


def printable_text(text: str) -> bool:
    """True when ``text`` holds only characters a person can read (no control, format or separator
    characters: Unicode general categories Cc, Cf, Co, Cs, Cn, Zl, Zp)."""
    return not any(unicodedata.category(ch) in _INVISIBLE_CATEGORIES for ch in text)


def name_fault(name: str, max_chars: int) -> str | None:
    """What is wrong with a name a person gives (a screen's) to be drawn on screens and listed, or None when
    it is fine. The shop name's rules (appliance.config ``name``): not blank, only visible characters
    (:func:`printable_text`: no newline, tab, bidi override or zero-width character), and at most
    ``max_chars`` characters (a longer name is refused, never cut)."""
    if not name.strip():
        return "must not be blank"
    if not printable_text(name):
        return ("must hold only visible characters: no control (newline, tab), format (bidi override, "
                "zero-width) or separator characters")
    if len(name) > max_chars:
        return f"is {len(name)} characters long; at most {max_chars} are allowed"
    return None


@dataclass(frozen=True, slots=True)
class TicketMeta:
    """Validated metadata: ``total`` decimal string, ``currency`` ISO 4217 alphabetic code, ``reference``."""

    total: str | None = None
    currency: str | None = None
    reference: str | None = None

    def fingerprint(self) -> str:
        """A stable text form, part of the idempotency fingerprint."""
        return f"{self.total or ''}\x1f{self.currency or ''}\x1f{self.reference or ''}"


def parse_meta(total: str | None, currency: str | None, reference: str | None) -> TicketMeta:
    """Validate the optional metadata fields; empty strings count as absent.

    Raises:
        InvalidTotal: not a decimal string as TOTAL_PATTERN describes.
        InvalidCurrency: not an ISO 4217 alphabetic code of money (``EUR``, ``CHF``…; ASCII, case-insensitive;
            not XXX, XTS, metals or units: NOT_CURRENCIES).
        InvalidReference: over 128 characters, or holding characters that are not printable (printable_text).
    """
    total = (total or "").strip() or None
    currency = (currency or "").strip() or None
    reference = (reference or "").strip() or None
    if total is not None and not TOTAL_PATTERN.fullmatch(total):
        raise InvalidTotal(
            f"total {total[:40]!r} is not a decimal amount; send it like '12.50' (dot as decimal separator)."
        )
    if currency is not None:
        code = currency.upper()
        if (not currency.isascii() or len(code) != 3 or not code.isalpha() or code in NOT_CURRENCIES
                or pycountry.currencies.get(alpha_3=code) is None):
            raise InvalidCurrency(f"currency {currency[:40]!r} is not an ISO 4217 code such as 'EUR'.")
        currency = code
    if reference is not None and (len(reference) > MAX_REFERENCE_CHARS or not printable_text(reference)):
        raise InvalidReference(
            f"ref must be at most {MAX_REFERENCE_CHARS} printable characters (got {len(reference)})."
        )
    return TicketMeta(total=total, currency=currency, reference=reference)
