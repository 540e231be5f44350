"""The sale's total from a receipt's text lines: the amount on the line of a total label.

Receipts print amounts the local way ("6,50", "1 234,50", "1.234,50", "1,234.50", "6.50 EUR", "€ 6.50");
:func:`find_total` returns the plain decimal string :data:`appliance.intake.TOTAL_PATTERN` accepts.
"""

from __future__ import annotations

import re

DEFAULT_TOTAL_LABELS = ("Total TTC", "TOTAL TTC", "Net à payer", "A PAYER", "À PAYER", "Total", "TOTAL",
                        "Gesamt", "Summe", "Totale", "Importe total")
"""Labels tried in order (case-insensitive): the more specific first (TakePOS prints Total HT, Total TVA,
Total TTC; "Total" alone must not take the HT line)."""

SUBTOTAL_WORDS = frozenset({"ht", "tva", "vat", "tax", "taxe", "taxes", "mwst", "ust", "net", "netto", "iva",
                            "excl", "hors", "sans", "brutto", "articles", "article", "items", "qty"})
"""Words that, right after a label, make the line a subtotal or a count, not the total."""
CURRENCY_WORDS = frozenset({"eur", "euro", "euros", "chf", "usd", "gbp", "fr", "frs", "ttc", "dû", "du"})

_NUMBER = re.compile(r"(?<![\d.,])(-\s?)?"
                     r"(\d{1,3}(?:[ \u00a0\u202f.,'’]\d{3})+(?:[.,]\d{1,4})?|\d+(?:[.,]\d{1,4})?)"
                     r"(-)?(?![\d])")
_MAX_INT_DIGITS = 12


def _label_regex(label: str) -> re.Pattern[str]:
    words = [re.escape(word) for word in label.split()]
    return re.compile(r"\s*" + r"\s+".join(words) + r"(?![\w])", re.IGNORECASE)


def parse_amount(text: str) -> str | None:
    """The last number in ``text`` as a plain decimal string ("1.234,50" -> "1234.50", "-3,20" ->
    "-3.20", "3,20-" -> "-3.20"), or None when there is none or it has over 12 integer digits.

    The last of "." and "," followed by 1, 2 or 4 digits is the decimal separator; a separator followed by
    exactly three digits is a thousands separator (receipts print cents) unless both kinds appear."""
    matches = list(_NUMBER.finditer(text))
    if not matches:
        return None
    match = matches[-1]
    negative = bool(match.group(1) or match.group(3))
    body = match.group(2)
    decimals = ""
    last = max(body.rfind("."), body.rfind(","))
    if last >= 0 and (len(body) - last - 1 != 3 or ("." in body and "," in body)):
        decimals = body[last + 1:]
        body = body[:last]
    integer = re.sub(r"\D", "", body)
    if not integer:
        return None
    integer = str(int(integer))
    if len(integer) > _MAX_INT_DIGITS:
        return None
    result = integer + ("." + decimals if decimals else "")
    return ("-" if negative else "") + result


def _amount_after(line: str, label: str, strict: bool) -> str | None:
    match = _label_regex(label).match(line)
    if match is None:
        return None
    rest = line[match.end():]
    amount = parse_amount(rest)
    if amount is None:
        return None
    words = [w.strip(":.()[]").lower() for w in re.findall(r"[^\W\d_]+\.?", rest)]
    words = [w for w in words if w]
    if words and words[0] in SUBTOTAL_WORDS:
        return None
    if strict and any(w not in CURRENCY_WORDS for w in words):
        return None
    return amount


def find_total(lines: list[str], labels: tuple[str, ...] = DEFAULT_TOTAL_LABELS) -> str | None:
    """The amount on the first line starting (after spaces) with a label, labels tried in order.

    Labels match case-insensitively and as whole words ("Total" does not match "Totalement"), and a label
    followed by a subtotal word ("Total HT", "Total TVA", "TOTAL NET") does not take that line. A first pass
    wants nothing but a currency between label and amount ("Total TTC : 6,50 EUR"); a second pass accepts
    other words ("Total (3 articles) 6,50" is still refused by its count word, "TOTAL CB 6,50" accepted).
    The amount is the line's last number (:func:`parse_amount`). Returns a string matching
    ``appliance.intake.TOTAL_PATTERN`` ("6.50", "-3.20", "1234.50") or None.
    """
    for strict in (True, False):
        for label in labels:
            for line in lines:
                amount = _amount_after(line, label, strict)
                if amount is not None:
                    return amount
    return None
