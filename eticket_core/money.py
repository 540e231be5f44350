"""Amounts as the customer reads them: CLDR number and currency data (via Babel) per screen language, ISO 4217
currencies. The POS sends ``total`` as a plain decimal string (``"1234567.50"``, dot, no grouping) and ``currency``
as an ISO 4217 code (``appliance.intake``); the screen shows ``"1 234 567,50 €"`` in French.

The rules, with their sources:

- **Locale**: the screen language alone, in its CLDR default region (fr → France, it → Italy, de → Germany,
  es → Spain), except English: plain CLDR ``en`` is US English, which writes the US dollar as a bare ``$`` because
  it takes the dollar for the local money, so English uses ``en_001`` (CLDR's "World English": ``US$``, ``JP¥``).
  No language, or one the screen does not speak, is English, as for the screen's text (``eticket_core.i18n``).
- **Separators, grouping and symbol placement**: the locale's CLDR standard currency pattern and number symbols
  (``fr``: ``1 234 567,50 €`` with U+202F between groups and U+00A0 before the sign; ``en_001``: ``€1,234,567.50``).
  CLDR's ``minimumGroupingDigits`` (``es``: 2, so ``1500,00 €`` but ``12.345,00 €``), which Babel does not carry,
  is applied here from :data:`MIN_GROUPING_DIGITS`.
- **Minor units**: CLDR's currency fractions (ISO 4217 minor units): ``JPY`` has none (``1 500 JPY``), ``BHD``
  three, most currencies two. An amount with more decimals than its currency has is shown as given, never
  rounded (``"0.125"`` CHF → ``0,125 CHF``): the screen must show what the till charged, and a rounding here would
  hide a till's mistake (or a legitimate sub-unit price) from the customer. Trailing zeros beyond the minor units
  go (``"1500.00"`` JPY → ``1 500 JPY``).
- **Unambiguous symbols**: the locale's CLDR symbol, unless CLDR gives that same symbol to several currencies
  (:data:`AMBIGUOUS_SYMBOLS`: ``$`` is also CAD, AUD, MXN…, ``¥`` also CNY, ``£`` also GIP, FKP, SHP, SSP); then
  the ISO 4217 code stands in its place (German ``12,50 USD``, not ``12,50 $``). A code CLDR has no symbol for
  keeps its code (``XOF`` has one: ``F CFA``).
- **Spacing**: CLDR's ``currencySpacing`` (UTS #35 part 3, "Currencies"), which Babel does not apply either: a
  symbol that ends (or starts) with a letter next to a digit gets a no-break space (``CHF 1,234,567.50``).
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation, localcontext
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from babel import Locale

LOCALES = {"fr": "fr", "it": "it", "en": "en_001", "de": "de", "es": "es"}
"""Screen language (ISO 639-1, as ``eticket_core.i18n.LANGUAGES``) → CLDR locale used for its numbers."""
FALLBACK_LOCALE = "en_001"
"""Numbers for no language or an unknown one: English, like the screen's text."""
AMBIGUOUS_SYMBOLS = frozenset({"$", "£", "¥"})
"""Symbols that the five locales of :data:`LOCALES` give to a currency and that some CLDR locale gives to another
currency too (``tests/unit/test_money.py`` derives this set from the whole CLDR data shipped with Babel)."""
MIN_GROUPING_DIGITS = {"es": 2}
"""CLDR ``<minimumGroupingDigits>`` of those locales where it is not 1 (``common/main/es.xml``): a grouping
separator only once the leftmost group would have this many digits."""
GROUP_DIGITS = 3
"""Digits per group in the patterns of every locale of :data:`LOCALES` (``#,##0.00``)."""
NO_CURRENCY_PATTERN = "#,##0.00"
"""An amount without a currency: the locale's separators and two decimals at least (the common minor units)."""
CURRENCY_SPACE = "\u00a0"
"""CLDR root ``currencySpacing/insertBetween``: NO-BREAK SPACE."""
MAX_SHOWN_DIGITS = 100
"""Digits an amount may have written out in plain notation (``"1e5"`` has 6) to be formatted; a longer one
(intake allows 16; ``"1e999999"`` would be a million) is shown as given. Formatting runs in a decimal context
of this precision and more, so no digit of a shown amount is ever rounded away (Python's default context keeps
28 significant digits)."""
_DIGIT = re.compile(r"\d")


@lru_cache(maxsize=8)
def _locale(lang: str | None) -> Locale:
    """Babel's locale for ``lang``. Babel is imported here, on the first amount, not when a process starts:
    ≈ 3-4 MB RSS for the module, then ≈ 5 MB for CLDR's root and the first language, ≈ 1 MB more for each other
    one (measured on x86_64, Babel 2.19); processes that never show an amount never pay it."""
    from babel import Locale

    return Locale.parse(LOCALES.get(lang or "", FALLBACK_LOCALE))


def _spaced(text: str, shown: str) -> str:
    """CLDR ``currencySpacing`` (root: currencyMatch ``[[:^S:]&[:^Z:]]``, surroundingMatch ``[[:digit:]]``):
    a no-break space between a digit and a symbol whose facing character is neither a symbol nor a space."""
    at = text.find(shown)
    if at < 0 or not shown:
        return text
    end = at + len(shown)
    if end < len(text) and _DIGIT.match(text[end]) and unicodedata.category(shown[-1])[0] not in "SZ":
        text = text[:end] + CURRENCY_SPACE + text[end:]
    if at > 0 and _DIGIT.match(text[at - 1]) and unicodedata.category(shown[0])[0] not in "SZ":
        text = text[:at] + CURRENCY_SPACE + text[at:]
    return text


def format_money(total: str | None, currency: str | None, lang: str | None) -> str:
    """The amount ``total`` (a decimal string, e.g. ``"104.90"``, ``"-4.20"`` for a refund) in ``currency``
    (an ISO 4217 code, or None) as the screen language ``lang`` (fr, it, en, de, es; None or another: English)
    writes it, with CLDR data through Babel; the rules are in this module's docstring. No total: ``""``. A total
    that is not a decimal (intake never lets one through) is shown as given, followed by the currency code.

    >>> format_money("104.90", "EUR", "fr")
    '104,90\\xa0€'
    >>> format_money("1234567.5", "CHF", "en")
    'CHF\\xa01,234,567.50'
    >>> format_money("1500", "JPY", "fr")
    '1\\u202f500\\xa0JPY'
    >>> format_money("12.5", "USD", "de")
    '12,50\\xa0USD'
    >>> format_money("-4.2", "USD", "en")
    '-US$4.20'
    >>> format_money("0.125", "CHF", "it")
    '0,125\\xa0CHF'
    >>> format_money("7", None, "es")
    '7,00'
    >>> format_money("1e999999", "EUR", "fr")  # over MAX_SHOWN_DIGITS digits: as given
    '1e999999 EUR'

    Raises nothing: a screen must always show something.
    """
    if not total:
        return ""
    try:
        amount = Decimal(total)
    except InvalidOperation:
        amount = Decimal("NaN")
    as_given = f"{total} {currency or ''}".strip()
    if not amount.is_finite():
        return as_given
    exponent = int(amount.as_tuple().exponent)
    if max(amount.adjusted() + 1, 1) + max(-exponent, 0) > MAX_SHOWN_DIGITS:
        return as_given
    try:
        with localcontext(prec=MAX_SHOWN_DIGITS + GROUP_DIGITS + 4):  # room for the minor units' zeros
            return _formatted(amount, currency, lang)
    except (ArithmeticError, ValueError):  # not expected within MAX_SHOWN_DIGITS; a screen shows something
        return as_given


def _formatted(amount: Decimal, currency: str | None, lang: str | None) -> str:
    """:func:`format_money` of a finite ``amount`` of at most MAX_SHOWN_DIGITS digits."""
    if amount.is_zero():
        amount = amount.copy_abs()  # "-0.00" from a till is nothing owed either way: no minus sign on screen
    locale = _locale(lang)
    grouping = abs(amount) >= 10 ** (GROUP_DIGITS + MIN_GROUPING_DIGITS.get(str(locale.language), 1) - 1)
    from babel.numbers import format_currency, format_decimal, get_currency_symbol

    if not currency:
        return format_decimal(amount, format=NO_CURRENCY_PATTERN, locale=locale, decimal_quantization=False,
                              group_separator=grouping)
    code = currency.upper()
    shown = get_currency_symbol(code, locale)
    pattern = None
    if shown in AMBIGUOUS_SYMBOLS:
        pattern = str(locale.currency_formats["standard"].pattern).replace("¤", "¤¤")
        shown = code
    text = format_currency(amount, code, format=pattern, locale=locale, currency_digits=True,
                           decimal_quantization=False, group_separator=grouping)
    return _spaced(text, shown)
