"""Decide whether a body is a receipt PDF a customer's phone can open.

Two well-kept engines look at each document: qpdf (through pikepdf) for the file structure, encryption,
page tree and embedded code, and PDFium (through pypdfium2, the engine of Chromium's viewer) for what a
viewer would show. Work is bounded before any engine walks the document: a receipt has few pages and few
objects, so a PDF that claims a million pages in 9 KB is refused, not expanded.

PDFium is not thread-safe (pypdfium2's documentation), so every check holds one process-wide lock; checks
therefore run one at a time, each bounded by the limits below.
"""

from __future__ import annotations

import io
import threading

import pikepdf
import pypdfium2 as pdfium

from .errors import (
    NotAPdf,
    PasswordProtectedPdf,
    PdfTooComplex,
    PdfWithJavaScript,
    PdfWithLaunchAction,
    PdfWithoutPages,
    PdfWithoutUsablePage,
    UnreadablePdf,
)
from .pdfinfo import PdfInfo

__all__ = ["PdfInfo", "check_pdf"]

PDF_MAGIC = b"%PDF-"
HEADER_SEARCH_BYTES = 1024
"""ISO 32000-1 §7.5.2 puts the header first; readers (and Acrobat) accept it within the first 1024 bytes."""
MIN_PAGE_SIDE_PT = 5.0
"""A page side under 5 pt (1.8 mm) cannot hold readable text: such a page is degenerate (a broken page tree)."""
MAX_PAGE_SIDE_PT = 14_400.0
"""ISO 32000-1 Annex C.2: the largest page is 14,400 by 14,400 units (200 inches); larger claims (a MediaBox of
1e30) are not a page a phone can show."""
QPDF_DROPPED_OBJECT = "treating object as null because of error during parsing: "
"""The start of qpdf's warning for an object it could not parse (e.g. a number beyond 64 bits) and dropped."""
MAX_PAGES = 500
"""More pages than any till receipt or invoice; counted by walking the page tree, repeats included."""
MAX_OBJECTS = 50_000
"""Indirect objects; real receipts have tens to a few thousand."""
MAX_PAGE_TREE_DEPTH = 64
"""Nesting of /Pages nodes; real files use 1 to 4 levels."""
MAX_PAGE_TREE_VISITS = 4 * MAX_PAGES
"""Page-tree nodes visited, repeats included: bounds trees of empty /Pages nodes shared many times over."""

_PDFIUM_LOCK = threading.Lock()
_S_JAVASCRIPT = pikepdf.Name("/JavaScript")
_S_LAUNCH = pikepdf.Name("/Launch")


def check_pdf(data: bytes) -> PdfInfo:
    """Accept ``data`` as a receipt PDF or raise the :class:`~appliance.errors.RejectedPdf` naming the fault.

    A PDF encrypted with an owner password only opens without a password and is accepted (ISO 32000-1
    §7.6.3.1: the permissions it sets are for the viewer to honour). Blocking; call from a worker thread.

    Raises:
        NotAPdf: no ``%PDF-`` header within the first 1024 bytes.
        UnreadablePdf: truncated, damaged beyond recovery, or a page tree that loops.
        PasswordProtectedPdf: a user password is needed to open it.
        PdfWithoutPages: the page tree is empty.
        PdfTooComplex: more than MAX_PAGES pages, MAX_OBJECTS objects or MAX_PAGE_TREE_DEPTH levels.
        PdfWithJavaScript: a JavaScript action, a ``/JS`` entry, a JavaScript name tree or an XFA form,
            wherever it sits (direct or indirect, nested in any dictionary or array).
        PdfWithLaunchAction: a ``/Launch`` action.
        PdfWithoutUsablePage: no page with both sides of 5 to 14,400 pt that PDFium can load, or every page
            object was dropped as unparsable (a MediaBox of 1e30); the message says which.
    """
    if PDF_MAGIC not in data[:HEADER_SEARCH_BYTES]:
        raise NotAPdf("The body is not a PDF: it has no '%PDF-' header. Send the receipt as a PDF file.")
    with _PDFIUM_LOCK:
        pages = _check_structure(data)
        first = _first_usable_page(data, pages)
    return PdfInfo(pages=pages, first_page_pt=first)


def _check_structure(data: bytes) -> int:
    try:
        doc = pikepdf.open(io.BytesIO(data))
    except pikepdf.PasswordError as exc:
        raise PasswordProtectedPdf(
            "The PDF needs a password to open, so the customer could not read it. Send it without a user password."
        ) from exc
    except (pikepdf.PdfError, RecursionError) as exc:
        # qpdf could not find or rebuild the cross-reference table: truncated upload, wrong file.
        raise UnreadablePdf("The PDF cannot be opened: it is truncated or damaged.") from exc
    with doc:
        try:
            objects = len(doc.objects)
            if objects > MAX_OBJECTS:
                raise PdfTooComplex(f"The PDF has {objects} objects; a receipt has far fewer (limit {MAX_OBJECTS}).")
            pages = _count_pages(doc)
            if pages == 0:
                _refuse_dropped_pages(doc)
                raise PdfWithoutPages("The PDF has no pages.")
            _refuse_active_content(doc)
        except (pikepdf.PdfError, RecursionError, TypeError, ValueError) as exc:
            raise UnreadablePdf("The PDF's structure is damaged and cannot be read.") from exc
    return pages


def _refuse_dropped_pages(doc: pikepdf.Pdf) -> None:
    """Raise :class:`PdfWithoutUsablePage` when the page tree is empty only because qpdf dropped a page
    object it could not parse (a MediaBox of ``1e30`` written as a 31-digit integer overflows 64 bits): the
    PDF had pages, none of them readable."""
    for warning in doc.get_warnings():
        _, found, detail = str(warning).partition(QPDF_DROPPED_OBJECT)
        if found:
            raise PdfWithoutUsablePage(
                f"No page of the PDF can be read: an object of its page tree is damaged ({detail[:120]}), so "
                f"no page is left; a page size out of range? Page sides are {MIN_PAGE_SIDE_PT:g} to "
                f"{MAX_PAGE_SIDE_PT:g} pt."
            )


def _count_pages(doc: pikepdf.Pdf) -> int:
    """Count leaf pages by walking /Root /Pages ourselves, refusing bombs before qpdf or PDFium expand them.

    A page referenced from several places counts each time (that is how a viewer shows it).
    """
    root = doc.trailer.get("/Root")
    tree = root.get("/Pages") if isinstance(root, pikepdf.Dictionary) else None
    if not isinstance(tree, pikepdf.Dictionary):
        raise UnreadablePdf("The PDF has no page tree (/Root /Pages).")
    count = visits = 0
    stack: list[tuple[pikepdf.Object, int, frozenset[tuple[int, int]]]] = [(tree, 0, frozenset())]
    while stack:
        node, depth, ancestors = stack.pop()
        visits += 1
        if visits > MAX_PAGE_TREE_VISITS:
            raise PdfTooComplex("The PDF's page tree is far larger than a receipt's.")
        if not isinstance(node, pikepdf.Dictionary):
            continue  # null or junk where a page should be: PDFium skips it too
        kids = node.get("/Kids")
        if node.get("/Type") == pikepdf.Name.Pages or isinstance(kids, pikepdf.Array):
            if depth >= MAX_PAGE_TREE_DEPTH:
                raise PdfTooComplex(f"The PDF's page tree is nested over {MAX_PAGE_TREE_DEPTH} levels deep.")
            key = node.objgen
            if key != (0, 0) and key in ancestors:
                raise UnreadablePdf("The PDF's page tree loops back on itself.")
            if not isinstance(kids, pikepdf.Array):
                continue
            if len(kids) > MAX_PAGES:
                raise PdfTooComplex(f"The PDF has more than {MAX_PAGES} pages; a receipt has far fewer.")
            inner = ancestors | {key}
            stack.extend((kid, depth + 1, inner) for kid in kids)
        else:
            count += 1
            if count > MAX_PAGES:
                raise PdfTooComplex(f"The PDF has more than {MAX_PAGES} pages; a receipt has far fewer.")
    return count


def _refuse_active_content(doc: pikepdf.Pdf) -> None:
    """Visit every dictionary and array once (indirect objects from the object table, direct ones nested
    inside them) and refuse JavaScript, XFA and Launch actions."""
    names = doc.Root.get("/Names")
    if isinstance(names, pikepdf.Dictionary) and "/JavaScript" in names:
        raise PdfWithJavaScript("The PDF carries document-level JavaScript; a receipt must not carry code.")
    stack: list[pikepdf.Object] = [doc.trailer, *doc.objects]
    while stack:
        obj = stack.pop()
        children: list[pikepdf.Object]
        if isinstance(obj, pikepdf.Stream):
            children = list(obj.stream_dict.values())
        elif isinstance(obj, pikepdf.Dictionary):
            children = list(obj.values())
            action = obj.get("/S")
            if action == _S_JAVASCRIPT or "/JS" in obj:
                raise PdfWithJavaScript("The PDF carries JavaScript; a receipt must not carry code.")
            if "/XFA" in obj:
                raise PdfWithJavaScript("The PDF carries an XFA form, which runs scripts; send a plain PDF.")
            if action == _S_LAUNCH:
                raise PdfWithLaunchAction("The PDF asks the viewer to launch a program; a receipt must not.")
        elif isinstance(obj, pikepdf.Array):
            children = list(obj)
        else:
            continue
        # Direct children only: indirect ones are in doc.objects and visited once from there.
        stack.extend(v for v in children if isinstance(v, pikepdf.Dictionary | pikepdf.Array) and not v.is_indirect)


def _first_usable_page(data: bytes, pages: int) -> tuple[float, float]:
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise UnreadablePdf(f"The PDF cannot be opened by a viewer ({exc}).") from exc
    sizes: list[tuple[float, float]] = []
    try:
        for index in range(min(len(pdf), pages, MAX_PAGES)):
            try:
                page = pdf[index]
            except pdfium.PdfiumError:
                continue  # a broken page; another may still be usable
            try:
                width, height = page.get_size()
                size = (float(width), float(height))
            finally:
                page.close()
            if MIN_PAGE_SIDE_PT <= min(size) and max(size) <= MAX_PAGE_SIDE_PT:
                return size
            sizes.append(size)
    finally:
        pdf.close()
    listed = ", ".join(f"{w:.1f}x{h:.1f}" if max(w, h) < 1e6 else f"{w:.3g}x{h:.3g}" for w, h in sizes[:4])
    if sizes and all(max(size) > MAX_PAGE_SIDE_PT for size in sizes):
        raise PdfWithoutUsablePage(
            f"No page of the PDF can be shown: its page size is out of range (sizes in points: {listed}; a page "
            f"side is at most {MAX_PAGE_SIDE_PT:g} pt, 200 inches, ISO 32000-1 Annex C.2)."
        )
    raise PdfWithoutUsablePage(
        "No page of the PDF can be shown: its page tree is broken or its pages are degenerate "
        f"(sizes in points: {listed or 'none loadable'}; a page side must be {MIN_PAGE_SIDE_PT:g} to "
        f"{MAX_PAGE_SIDE_PT:g} pt)."
    )
