"""Decide whether a body is a receipt PDF a customer's phone can open.

Two well-kept engines look at each document: qpdf (through pikepdf) for the file structure, encryption and
embedded code, and PDFium (through pypdfium2, the engine of Chromium's viewer) for what a viewer would show.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pikepdf
import pypdfium2 as pdfium

from .errors import (
    NotAPdf,
    PasswordProtectedPdf,
    PdfWithJavaScript,
    PdfWithoutPages,
    PdfWithoutUsablePage,
    UnreadablePdf,
)

PDF_MAGIC = b"%PDF-"
HEADER_SEARCH_BYTES = 1024
"""ISO 32000-1 §7.5.2 puts the header first; readers (and Acrobat) accept it within the first 1024 bytes."""

MIN_PAGE_SIDE_PT = 5.0
"""A page side under 5 pt (1.8 mm) cannot hold readable text: such a page is degenerate (a broken page tree)."""

_JAVASCRIPT = pikepdf.Name("/JavaScript")


@dataclass(frozen=True, slots=True)
class PdfInfo:
    """What the check learnt: ``pages`` (count), ``first_page_pt`` (width, height in points, 1/72 inch)."""

    pages: int
    first_page_pt: tuple[float, float]


def check_pdf(data: bytes) -> PdfInfo:
    """Accept ``data`` as a receipt PDF or raise the :class:`~appliance.errors.RejectedPdf` naming the fault.

    A PDF encrypted with an owner password only opens without a password and is accepted (ISO 32000-1
    §7.6.3.1: the permissions it sets are for the viewer to honour).

    Raises:
        NotAPdf: no ``%PDF-`` header within the first 1024 bytes.
        UnreadablePdf: truncated or damaged beyond recovery.
        PasswordProtectedPdf: a user password is needed to open it.
        PdfWithoutPages: the page tree is empty.
        PdfWithJavaScript: any JavaScript action (``/S /JavaScript``, ``/JS``) or document-level script.
        PdfWithoutUsablePage: no page with both sides of at least 5 pt that PDFium can load.
    """
    if PDF_MAGIC not in data[:HEADER_SEARCH_BYTES]:
        raise NotAPdf("The body is not a PDF: it has no '%PDF-' header. Send the receipt as a PDF file.")
    try:
        doc = pikepdf.open(io.BytesIO(data))
    except pikepdf.PasswordError as exc:
        raise PasswordProtectedPdf(
            "The PDF needs a password to open, so the customer could not read it. Send it without a user password."
        ) from exc
    except pikepdf.PdfError as exc:
        # qpdf could not find or rebuild the cross-reference table: truncated upload, wrong file.
        raise UnreadablePdf("The PDF cannot be opened: it is truncated or damaged.") from exc
    with doc:
        if len(doc.pages) == 0:
            raise PdfWithoutPages("The PDF has no pages.")
        if _has_javascript(doc):
            raise PdfWithJavaScript("The PDF carries JavaScript; a receipt must not carry code.")
    return _usable_pages(data)


def _has_javascript(doc: pikepdf.Pdf) -> bool:
    """True if any object is a JavaScript action or the document has a JavaScript name tree.

    Walks every indirect object (object streams included), so actions hidden in annotations, form fields,
    ``/OpenAction`` or ``/AA`` are found wherever they sit.
    """
    names = doc.Root.get("/Names")
    if isinstance(names, pikepdf.Dictionary) and "/JavaScript" in names:
        return True
    for obj in doc.objects:
        if isinstance(obj, pikepdf.Dictionary) and (obj.get("/S") == _JAVASCRIPT or "/JS" in obj):
            return True
    return False


def _usable_pages(data: bytes) -> PdfInfo:
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise UnreadablePdf(f"The PDF cannot be opened by a viewer ({exc}).") from exc
    try:
        sizes: list[tuple[float, float]] = []
        for index in range(len(pdf)):
            page = pdf[index]
            try:
                sizes.append(page.get_size())
            finally:
                page.close()
    finally:
        pdf.close()
    usable = [s for s in sizes if min(s) >= MIN_PAGE_SIDE_PT]
    if not usable:
        raise PdfWithoutUsablePage(
            "No page of the PDF can be shown: its page tree is broken or its pages are degenerate "
            f"(sizes in points: {', '.join(f'{w:.1f}x{h:.1f}' for w, h in sizes[:4]) or 'none'})."
        )
    return PdfInfo(pages=len(sizes), first_page_pt=usable[0])
