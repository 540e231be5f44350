"""Amounts read as the customer's language writes them (CLDR via Babel): separators, grouping, symbol placement,
minor units, unambiguous symbols; never a rounded amount.

In the expected strings ``_`` stands for U+00A0 NO-BREAK SPACE and ``~`` for U+202F NARROW NO-BREAK SPACE (CLDR's
French group separator), so the table stays readable."""

from __future__ import annotations

from collections import defaultdict

import pycountry
import pytest
from babel import Locale, localedata

from eticket_core.money import AMBIGUOUS_SYMBOLS, LOCALES, format_money


def _cldr(text: str) -> str:
    return text.replace("_", "\u00a0").replace("~", "\u202f")


AMOUNTS = ("1234567.5", "0", "-4.20", "104.90")
"""Large with grouping, zero, a refund (intake accepts a minus: ``appliance.intake.TOTAL_PATTERN``), a sale."""
TABLE = {
    ("fr", "EUR"): ("1~234~567,50_€", "0,00_€", "-4,20_€", "104,90_€"),
    ("fr", "USD"): ("1~234~567,50_$US", "0,00_$US", "-4,20_$US", "104,90_$US"),
    ("fr", "GBP"): ("1~234~567,50_£GB", "0,00_£GB", "-4,20_£GB", "104,90_£GB"),
    ("fr", "CHF"): ("1~234~567,50_CHF", "0,00_CHF", "-4,20_CHF", "104,90_CHF"),
    ("fr", "JPY"): ("1~234~567,5_JPY", "0_JPY", "-4,2_JPY", "104,9_JPY"),
    ("it", "EUR"): ("1.234.567,50_€", "0,00_€", "-4,20_€", "104,90_€"),
    ("it", "USD"): ("1.234.567,50_USD", "0,00_USD", "-4,20_USD", "104,90_USD"),
    ("it", "GBP"): ("1.234.567,50_GBP", "0,00_GBP", "-4,20_GBP", "104,90_GBP"),
    ("it", "CHF"): ("1.234.567,50_CHF", "0,00_CHF", "-4,20_CHF", "104,90_CHF"),
    ("it", "JPY"): ("1.234.567,5_JPY", "0_JPY", "-4,2_JPY", "104,9_JPY"),
    ("en", "EUR"): ("€1,234,567.50", "€0.00", "-€4.20", "€104.90"),
    ("en", "USD"): ("US$1,234,567.50", "US$0.00", "-US$4.20", "US$104.90"),
    ("en", "GBP"): ("GBP_1,234,567.50", "GBP_0.00", "-GBP_4.20", "GBP_104.90"),
    ("en", "CHF"): ("CHF_1,234,567.50", "CHF_0.00", "-CHF_4.20", "CHF_104.90"),
    ("en", "JPY"): ("JP¥1,234,567.5", "JP¥0", "-JP¥4.2", "JP¥104.9"),
    ("de", "EUR"): ("1.234.567,50_€", "0,00_€", "-4,20_€", "104,90_€"),
    ("de", "USD"): ("1.234.567,50_USD", "0,00_USD", "-4,20_USD", "104,90_USD"),
    ("de", "GBP"): ("1.234.567,50_GBP", "0,00_GBP", "-4,20_GBP", "104,90_GBP"),
    ("de", "CHF"): ("1.234.567,50_CHF", "0,00_CHF", "-4,20_CHF", "104,90_CHF"),
    ("de", "JPY"): ("1.234.567,5_JPY", "0_JPY", "-4,2_JPY", "104,9_JPY"),
    ("es", "EUR"): ("1.234.567,50_€", "0,00_€", "-4,20_€", "104,90_€"),
    ("es", "USD"): ("1.234.567,50_US$", "0,00_US$", "-4,20_US$", "104,90_US$"),
    ("es", "GBP"): ("1.234.567,50_GBP", "0,00_GBP", "-4,20_GBP", "104,90_GBP"),
    ("es", "CHF"): ("1.234.567,50_CHF", "0,00_CHF", "-4,20_CHF", "104,90_CHF"),
    ("es", "JPY"): ("1.234.567,5_JPY", "0_JPY", "-4,2_JPY", "104,9_JPY"),
}


@pytest.mark.parametrize("lang, currency", sorted(TABLE), ids=lambda v: str(v))
def test_amounts_in_every_screen_language_and_currency(lang: str, currency: str) -> None:
    """Decimal separator, grouping, symbol place and minor units as CLDR gives them; JPY has no minor units, so
    a yen amount with decimals shows them as sent instead of being rounded."""
    shown = [format_money(amount, currency, lang) for amount in AMOUNTS]
    assert shown == [_cldr(text) for text in TABLE[lang, currency]]


def test_the_french_screen_writes_a_french_amount() -> None:
    """The amount a French shop sees, as in the issue: "104,90 €", not "104.90 €"."""
    assert format_money("104.90", "EUR", "fr") == "104,90\u00a0€"
    assert format_money("1500", "JPY", "en") == "JP¥1,500"  # not "1500.00 ¥"
    assert format_money("1234567.50", "CHF", "de") == "1.234.567,50\u00a0CHF"  # not "1234567.50 CHF"


@pytest.mark.parametrize("lang", sorted(LOCALES))
@pytest.mark.parametrize("currency", ["USD", "JPY", "CAD", "AUD", "MXN", "CNY", "GBP", "NZD"])
def test_no_currency_is_shown_with_a_symbol_that_another_currency_shares(lang: str, currency: str) -> None:
    """A bare "$" or "¥" never appears: the customer could not tell US from Canadian dollars, yen from yuan."""
    text = format_money("12.5", currency, lang)
    assert text.replace("\u00a0", " ").strip("0123456789.,- ") not in AMBIGUOUS_SYMBOLS, text


def test_the_ambiguous_symbols_are_those_cldr_gives_to_several_currencies() -> None:
    """AMBIGUOUS_SYMBOLS is exactly the set of symbols that one of the five screen locales uses for a current
    ISO 4217 currency (pycountry) and that some CLDR locale (all 1100+ shipped with Babel) uses for another."""
    owners: defaultdict[str, set[str]] = defaultdict(set)
    for identifier in localedata.locale_identifiers():
        for code, symbol in Locale.parse(identifier).currency_symbols.items():
            owners[symbol].add(code)
    current = {c.alpha_3 for c in pycountry.currencies}
    shared = {symbol for name in LOCALES.values() for code, symbol in Locale.parse(name).currency_symbols.items()
              if code in current and symbol != code and len(owners[symbol]) > 1}
    assert shared == AMBIGUOUS_SYMBOLS


@pytest.mark.parametrize("total, currency, lang, shown", [
    ("0.125", "CHF", "fr", "0,125_CHF"),      # a sub-unit price is shown, not rounded to 0,12 or 0,13
    ("1500.5", "JPY", "fr", "1~500,5_JPY"),   # yen have no minor units; the half is still on the ticket
    ("1500.00", "JPY", "de", "1.500_JPY"),    # zeros beyond the minor units are not money: dropped
    ("12.5", "BHD", "en", "BHD_12.500"),      # three minor units (ISO 4217)
    ("1500", "XOF", "fr", "1~500_F~CFA"),     # CLDR's own symbol, no minor units
    ("12", "SEK", "en", "SEK_12.00"),         # a code CLDR English has no symbol for keeps its code
    ("12", "QQQ", "it", "12,00_QQQ"),         # an unknown code too
    ("12.5", "eur", "fr", "12,50_€"),         # case of the code
    ("-0.00", "EUR", "fr", "0,00_€"),         # a negative zero is no refund
])
def test_minor_units_and_codes(total: str, currency: str, lang: str, shown: str) -> None:
    assert format_money(total, currency, lang) == _cldr(shown)


def test_spanish_groups_only_from_five_digits() -> None:
    """CLDR es: minimumGroupingDigits 2 (Babel does not apply it; format_money does)."""
    assert format_money("1500", "EUR", "es") == _cldr("1500,00_€")
    assert format_money("-9999.99", "EUR", "es") == _cldr("-9999,99_€")
    assert format_money("12345", "EUR", "es") == _cldr("12.345,00_€")
    assert format_money("1500", "EUR", "de") == _cldr("1.500,00_€")


def test_no_total_no_currency_no_language() -> None:
    assert format_money(None, "EUR", "fr") == "" and format_money("", "EUR", "fr") == ""
    assert format_money("7", None, "fr") == "7,00" and format_money("1234.5", None, "en") == "1,234.50"
    assert format_money("12.5", "EUR", None) == "€12.50" == format_money("12.5", "EUR", "pt")  # English
    assert format_money("12,50", "EUR", "fr") == "12,50 EUR"  # not a decimal (intake refuses it): as given


def test_huge_or_very_precise_totals_are_never_rounded_and_never_raise() -> None:
    """A screen must always show something, and never an amount the till did not send: a 60-decimal total
    used to be cut to Python's 28 significant digits, and 60 integer digits or ``1e999999`` raised
    InvalidOperation (the renderer would crash on a ticket intake has not checked, e.g. from an older device)."""
    sixty = "1" * 60
    assert format_money(sixty, "EUR", "en") == "€" + ",".join(["111"] * 20) + ".00"
    decimals = "0." + "123456789" * 6 + "123456"
    assert format_money(decimals, "CHF", "it") == _cldr(decimals.replace(".", ",") + "_CHF")
    assert format_money(decimals, None, "en") == decimals
    assert format_money("1e999999", "EUR", "fr") == "1e999999 EUR"  # a million digits: shown as given
    assert format_money("-1e-999999", "EUR", "fr") == "-1e-999999 EUR"
    assert format_money("9" * 101, None, "de") == "9" * 101
