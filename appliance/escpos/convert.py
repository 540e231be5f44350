"""Receipts of one print job -> what the intake needs: one PDF (a page per distinct receipt) and a total.

A till often prints the customer's receipt and the shop's copy in one job: a receipt equal to an earlier
one of the job (same text lines, same images and codes) is the copy and is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.escpos.model import Element, Feed, Receipt, TextLine
from appliance.escpos.render import render_pdf_with_warnings
from appliance.escpos.total import DEFAULT_TOTAL_LABELS, find_total


@dataclass
class Converted:
    """The outcome of a conversion.

    ``pdf``: the PDF bytes, None when no receipt prints anything; ``total``: a plain decimal string
    (``appliance.intake.TOTAL_PATTERN``) or None when no label line held an amount; ``receipts``: pages in
    the PDF; ``copies``: receipts dropped as copies; ``warnings``: what could not be rendered faithfully or
    was ambiguous (never the receipt's text)."""

    pdf: bytes | None
    total: str | None
    receipts: int
    copies: int
    warnings: list[str] = field(default_factory=list)


def _styled(line: TextLine) -> tuple[object, ...]:
    """A line's text with its alignment and each run's style (trailing spaces ignored): two sections of a
    job that print the same words in other styles (escpos-php's demo: emphasis, then double-strike) differ."""
    spans = [(s.text, s.bold, s.underline, s.width, s.height, s.font, s.invert) for s in line.spans]
    while spans and not spans[-1][0].rstrip():
        spans.pop()
    if spans:
        spans[-1] = (spans[-1][0].rstrip(), *spans[-1][1:])
    return (line.align, tuple(spans))


def _signature(receipt: Receipt) -> tuple[list[tuple[object, ...]], list[Element]]:
    lines = [_styled(e) for e in receipt.elements if isinstance(e, TextLine)]
    while lines and not lines[-1][1]:
        lines.pop()
    while lines and not lines[0][1]:
        lines.pop(0)
    others: list[Element] = [e for e in receipt.elements if not isinstance(e, (TextLine, Feed))]
    return lines, others


def merge_receipts(receipts: list[Receipt]) -> tuple[list[Receipt], int]:
    """Drop the shop's copies: receipts whose text lines with their styles and alignment (trailing spaces and
    leading/trailing blank lines ignored) and images/codes (compared as model values) equal an earlier
    receipt's of the same list. Receipts that print nothing are dropped too (not counted). Returns (kept
    receipts in order, copies dropped)."""
    kept: list[Receipt] = []
    seen: list[tuple[list[tuple[object, ...]], list[Element]]] = []
    copies = 0
    for receipt in receipts:
        if not receipt.prints_anything():
            continue
        signature = _signature(receipt)
        if signature in seen:
            copies += 1
            continue
        seen.append(signature)
        kept.append(receipt)
    return kept, copies


def convert_receipts(receipts: list[Receipt], paper_mm: int | None = None,
                     labels: tuple[str, ...] = DEFAULT_TOTAL_LABELS) -> Converted:
    """Merge copies (:func:`merge_receipts`), render the rest (:func:`appliance.escpos.render.
    render_pdf_with_warnings`, ``paper_mm`` 80, 58 or None to guess) and find the total
    (:func:`appliance.escpos.total.find_total` with ``labels``): the first receipt's that has one; a later
    receipt with another total adds a warning. ``pdf`` is None when nothing prints.

    Raises ValueError for a bad ``paper_mm`` and FontMissing without fonts-dejavu-core."""
    kept, copies = merge_receipts(receipts)
    if not kept:
        return Converted(pdf=None, total=None, receipts=0, copies=copies, warnings=[])
    pdf, warnings = render_pdf_with_warnings(kept, paper_mm)
    total: str | None = None
    for index, receipt in enumerate(kept):
        found = find_total(receipt.text_lines(), labels)
        if found is None:
            continue
        if total is None:
            total = found
        elif found != total:
            warnings.append(f"receipt {index + 1} of the job has another total; the first receipt's is used")
    return Converted(pdf=pdf, total=total, receipts=len(kept), copies=copies, warnings=warnings)
