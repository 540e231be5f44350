"""What a PDF check learnt about a receipt, in a module of its own: the appliance reads it from the check
workers' answers without importing the PDF engines (qpdf and PDFium stay in the workers: about 11 MiB)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PdfInfo:
    """What the check learnt: ``pages`` (count), ``first_page_pt`` (first usable page's width, height in
    points, 1/72 inch)."""

    pages: int
    first_page_pt: tuple[float, float]
