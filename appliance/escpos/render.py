"""Receipt model -> PDF: one page per receipt, a roll of 80 mm or 58 mm paper, text as real (searchable,
selectable) text in an embedded, subset DejaVu Sans Mono, images as 1-bit images, codes redrawn as vectors.

Coordinates are printer dots (8 dots per mm, :data:`appliance.escpos.model.DOTS_PER_MM`): the canvas is
scaled so one unit is one dot (0.125 mm). Libraries: reportlab (canvas, TTF fonts, graphics.barcode),
segno (QR), pdf417gen (PDF417 codewords), pillow (raster images).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from appliance.escpos.model import (
    DOTS_PER_MM,
    FONT_A_DOTS,
    FONT_B_DOTS,
    PAPER_58MM_DOTS,
    PAPER_80MM_DOTS,
    Align,
    Barcode,
    Element,
    Feed,
    Pdf417,
    QrCode,
    Raster,
    Receipt,
    Span,
    TextLine,
)

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_REGULAR = "EticketMono"
FONT_BOLD = "EticketMono-Bold"
FONT_FILES = {FONT_REGULAR: "DejaVuSansMono.ttf", FONT_BOLD: "DejaVuSansMono-Bold.ttf"}
MONO_ADVANCE_EM = 1233 / 2048
"""DejaVu Sans Mono's advance width, em (every glyph)."""
POINTS_PER_DOT = 72 / 25.4 / DOTS_PER_MM
TOP_BOTTOM_DOTS = 4 * DOTS_PER_MM
MAX_PAGE_POINTS = 14_400
"""The largest page side a PDF reader must show (ISO 32000-1 Annex C.2: 200 inches); the intake's PDF check
refuses larger pages, so a longer receipt continues on a next page (about 1,300 lines of font A a page)."""
PAPERS = {80: (80 * DOTS_PER_MM, PAPER_80MM_DOTS), 58: (58 * DOTS_PER_MM, PAPER_58MM_DOTS)}
"""Paper width in mm -> (page width, printable width), dots; the margins are the difference halved."""
REPORTLAB_BARCODES = {
    "UPC-A": "UPCA", "EAN13": "EAN13", "EAN8": "EAN8", "CODE39": "Standard39", "ITF": "I2of5",
    "CODABAR": "Codabar", "CODE93": "Standard93", "CODE128": "Code128",
}
"""Model symbology -> reportlab.graphics.barcode name (UPC-E has none: printed as text)."""


class FontMissing(RuntimeError):
    """DejaVu Sans Mono is not installed."""


def _register_fonts() -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    registered = pdfmetrics.getRegisteredFontNames()
    for name, file in FONT_FILES.items():
        if name in registered:
            continue
        path = FONT_DIR / file
        if not path.is_file():
            raise FontMissing(f"font {path} is missing: install Debian's package fonts-dejavu-core")
        pdfmetrics.registerFont(TTFont(name, str(path)))


def _cell(span: Span) -> tuple[int, int]:
    width, height = FONT_A_DOTS if span.font == "A" else FONT_B_DOTS
    return width * span.width, height * span.height


def guess_paper_mm(receipts: list[Receipt]) -> int:
    """58 when every text line fits 32 font-A / 42 font-B columns (a span of width w counts w columns a
    character) and no image, code or print width is wider than 384 dots; else 80."""
    for receipt in receipts:
        if receipt.print_width is not None and receipt.print_width > PAPER_58MM_DOTS:
            return 80
        for element in receipt.elements:
            if isinstance(element, TextLine):
                if element.print_width is not None and element.print_width > PAPER_58MM_DOTS:
                    return 80
                # columns in font-A units: a font-B column is 32/42 of one
                cols_a = sum(len(s.text) * s.width for s in element.spans if s.font == "A")
                cols_b = sum(len(s.text) * s.width for s in element.spans if s.font != "A")
                if cols_a / 32 + cols_b / 42 > 1:
                    return 80
            elif isinstance(element, Raster):
                if element.width * element.scale_x > PAPER_58MM_DOTS:
                    return 80
            elif isinstance(element, (QrCode, Pdf417, Barcode)):
                try:
                    if _element_width(element) > PAPER_58MM_DOTS:
                        return 80
                except ValueError:  # a code no symbol can hold: not drawn (a warning when rendered)
                    continue
    return 58


def _element_width(element: QrCode | Pdf417 | Barcode) -> float:
    if isinstance(element, QrCode):
        import segno

        qr = segno.make(element.data, error=element.error_correction.lower(), micro=False)
        return float(qr.symbol_size(border=0)[0] * element.module_size)
    if isinstance(element, Pdf417):
        codes = _pdf417_codes(element)
        return float((len(codes[0]) * 17 + 1) * element.module_width)
    drawing = _barcode_drawing(element)
    return 0.0 if drawing is None else float(drawing.width)


@dataclass
class _Layout:
    page_width: int
    printable: int
    margin: int


class _Renderer:
    def __init__(self, layout: _Layout, warnings: list[str]) -> None:
        self.layout = layout
        self.warnings = warnings
        self.ops: list[Any] = []
        self.y = 0.0

    # --- layout helpers ---------------------------------------------------------------------------------
    def _x(self, align: Align, width: float, left: float, avail: float) -> float:
        if align == "center":
            return left + max(0.0, (avail - width) / 2)
        if align == "right":
            return left + max(0.0, avail - width)
        return left

    # --- elements ---------------------------------------------------------------------------------------
    def element(self, element: Element) -> None:
        if isinstance(element, TextLine):
            self.text_line(element)
        elif isinstance(element, Feed):
            self.y += max(0, element.dots)
        elif isinstance(element, Raster):
            self.raster(element)
        elif isinstance(element, (Barcode, QrCode, Pdf417)):
            draw = {Barcode: self.barcode, QrCode: self.qr, Pdf417: self.pdf417}[type(element)]
            try:
                draw(element)  # type: ignore[operator]
            except ValueError as exc:  # data no symbol of that kind can hold (segno, pdf417gen): skipped
                self.warnings.append(f"{type(element).__name__} not drawn: {str(exc)[:120]}")

    def text_line(self, line: TextLine, avail_override: float | None = None) -> None:
        left = float(self.layout.margin + line.left_margin)
        width = line.print_width if line.print_width is not None else self.layout.printable - line.left_margin
        avail = float(max(1, min(width, self.layout.printable - line.left_margin)))
        if avail_override is not None:
            avail = avail_override
        # split into printed rows: (span, text) chunks not wider than avail
        rows: list[list[tuple[Span, str]]] = [[]]
        used = 0.0
        for span in line.spans:
            cw, _ = _cell(span)
            chunk = ""
            for char in span.text:
                if used + cw > avail and (used > 0 or chunk):
                    if chunk:
                        rows[-1].append((span, chunk))
                    rows.append([])
                    chunk, used = "", 0.0
                chunk += char
                used += cw
            if chunk:
                rows[-1].append((span, chunk))
        for row in rows:
            row_width = sum(_cell(s)[0] * len(t) for s, t in row)
            text_h = max((_cell(s)[1] for s, _ in row), default=0)
            height = max(line.line_dots, text_h)
            x = self._x(line.align, row_width, left, avail)
            baseline = self.y + text_h
            for span, text in row:
                cw, ch = _cell(span)
                self.ops.append(("text", x, baseline, span, text))
                x += cw * len(text)
            self.y += height

    def raster(self, raster: Raster) -> None:
        if raster.width <= 0 or raster.height <= 0:
            return
        size = raster.row_bytes() * raster.height
        bits = raster.bits[:size].ljust(size, b"\0")
        img = Image.frombytes("1", (raster.row_bytes() * 8, raster.height), bits)
        # pillow's "1" has 1 = white: invert; a grey image of 0/255 (reportlab writes "1" as RGB)
        img = img.crop((0, 0, raster.width, raster.height)).convert("L").point(lambda v: 255 - v)
        width = float(raster.width * raster.scale_x)
        height = float(raster.height * raster.scale_y)
        avail = float(self.layout.printable)
        if width > avail:  # clipped to the paper: keep the left part
            keep = max(1, int(avail // raster.scale_x))
            img = img.crop((0, 0, keep, raster.height))
            width = float(keep * raster.scale_x)
        x = self._x(raster.align, width, float(self.layout.margin), avail)
        self.ops.append(("image", x, self.y, width, height, img))
        self.y += height

    def qr(self, code: QrCode) -> None:
        import segno

        qr = segno.make(code.data, error=code.error_correction.lower(), micro=False, boost_error=False)
        matrix = qr.matrix
        size = len(matrix) * code.module_size
        x0 = self._x(code.align, size, float(self.layout.margin), float(self.layout.printable))
        rects = []
        for r, row in enumerate(matrix):
            for c, dark in enumerate(row):
                if dark:
                    rects.append((x0 + c * code.module_size, self.y + r * code.module_size,
                                  code.module_size, code.module_size))
        self.ops.append(("rects", rects))
        self.y += size

    def pdf417(self, code: Pdf417) -> None:
        from pdf417gen.rendering import modules

        codes = _pdf417_codes(code, self.layout.printable)
        mw = code.module_width
        mh = code.module_width * code.row_height
        width = (len(codes[0]) * 17 + 1) * mw
        x0 = self._x(code.align, width, float(self.layout.margin), float(self.layout.printable))
        rects = [(x0 + cx * mw, self.y + ry * mh, mw, mh) for cx, ry in modules(codes)]
        self.ops.append(("rects", rects))
        self.y += len(codes) * mh

    def barcode(self, code: Barcode) -> None:
        data = _barcode_value(code)
        drawing = _barcode_drawing(code)
        hri_span = Span(data, font=code.hri_font)
        if drawing is None:
            self.warnings.append(f"barcode {code.symbology} not drawn (printed as text): unsupported or invalid data")
            self.text_line(TextLine([hri_span], align=code.align, line_dots=0))
            return
        if not _check_digit_ok(code):
            self.warnings.append(f"barcode {code.symbology}: wrong check digit, drawn with the right one")
        if code.hri in ("above", "both"):
            self.text_line(TextLine([hri_span], align=code.align, line_dots=0))
        width = float(drawing.width)
        x = self._x(code.align, width, float(self.layout.margin), float(self.layout.printable))
        self.ops.append(("drawing", x, self.y, drawing))
        self.y += float(drawing.height)
        if code.hri in ("below", "both"):
            self.text_line(TextLine([hri_span], align=code.align, line_dots=0))


def _pdf417_codes(code: Pdf417, max_width: int = PAPER_80MM_DOTS) -> list[list[int]]:
    """Codeword rows; automatic columns (0) start at 6 (4 for short data) and shrink to fit ``max_width``.
    Columns the till fixed shrink too when the data would make fewer than 3 rows (PDF417's minimum, ISO/IEC
    15438 §5.6: a printer narrows the symbol the same way rather than print nothing).

    Raises ValueError when no column count can hold the data (over PDF417's 90 rows x 30 columns)."""
    import pdf417gen

    level = code.error_level if code.error_level is not None and 0 <= code.error_level <= 8 else 2
    data: Any = code.data
    fixed = 1 <= code.columns <= 30
    columns = code.columns if fixed else 6 if len(code.data) > 40 else 4
    while True:
        try:
            codes: list[list[int]] = pdf417gen.encode(data, columns=columns, security_level=level)
        except ValueError:
            if columns <= 1:
                raise
            columns -= 1  # too few rows for this many columns (or too many for too few: fails at 1 too)
            continue
        # start, left indicator, data columns, right indicator, stop: 17 modules each, stop 18
        if fixed or columns <= 1 or (len(codes[0]) * 17 + 1) * code.module_width <= max_width:
            return codes
        columns -= 1


def _check_digit_ok(code: Barcode) -> bool:
    """False when a UPC-A/EAN13/EAN8 carries its check digit and it is wrong (reportlab redraws it right)."""
    digits = {"UPC-A": 12, "EAN13": 13, "EAN8": 8}.get(code.symbology)
    value = _barcode_value(code)
    if digits is None or len(value) != digits or not value.isdigit():
        return True
    body = [int(c) for c in value[:-1]]
    weighted = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - weighted % 10) % 10 == int(value[-1])


def _barcode_value(code: Barcode) -> str:
    text = code.data.decode("latin-1")
    if code.symbology == "CODE128" and len(text) >= 2 and text[0] == "{" and text[1] in "ABC":
        text = text[2:]
    return text


def _barcode_drawing(code: Barcode) -> Any | None:
    """A reportlab Drawing in dots (bars only, no HRI), or None when reportlab refuses the data."""
    name = REPORTLAB_BARCODES.get(code.symbology)
    if name is None:
        return None
    from reportlab.graphics.barcode import createBarcodeDrawing

    value = _barcode_value(code)
    options: dict[str, Any] = {"barWidth": float(code.module_width), "barHeight": float(code.height),
                               "humanReadable": False}
    if name in ("UPCA", "EAN13", "EAN8"):
        digits = {"UPCA": 11, "EAN13": 12, "EAN8": 7}[name]
        if not value.isdigit() or len(value) not in (digits, digits + 1):
            return None
        options["quiet"] = False
    else:
        options["quiet"] = False
        if name in ("Standard39", "Standard93"):
            options["checksum"] = False
            options["stop"] = True
            value = value.strip("*") if name == "Standard39" else value
        if name == "I2of5":
            options["checksum"] = False
            if not value.isdigit():
                return None
        if name == "Codabar":
            options["checksum"] = False
    try:
        drawing = createBarcodeDrawing(name, value=value, **options)
        if getattr(drawing, "width", 0) <= 0:
            return None
        # reportlab validates lazily: force an encoding now
        buf = io.BytesIO()
        from reportlab.graphics import renderPDF

        renderPDF.drawToFile(drawing, buf)
    except Exception:  # noqa: BLE001 - reportlab raises assorted errors for refused data
        return None
    return drawing


def _extent(op: Any) -> tuple[float, float]:
    """Top and bottom of a drawing operation, dots from the content's top."""
    kind = op[0]
    if kind == "text":
        cell_h = _cell(op[3])[1]
        return op[2] - cell_h, op[2]
    if kind == "image":
        return op[2], op[2] + op[4]
    if kind == "rects":
        rects = op[1] or [(0, 0, 0, 0)]
        return min(r[1] for r in rects), max(r[1] + r[3] for r in rects)
    return op[2], op[2] + float(op[3].height)


def _shifted(op: Any, dy: float) -> Any:
    """``op`` moved up by ``dy`` dots."""
    kind = op[0]
    if kind == "text":
        return (kind, op[1], op[2] - dy, *op[3:])
    if kind == "rects":
        return (kind, [(x, y - dy, w, h) for x, y, w, h in op[1]])
    return (kind, op[1], op[2] - dy, *op[3:])


def _pages(ops: list[Any], content_h: float) -> list[tuple[list[Any], float]]:
    """Split a receipt's operations into pages of at most MAX_PAGE_POINTS, between two operations (a line,
    an image or a code is never cut): ``[(ops moved to their page's top, content height)]``."""
    room = MAX_PAGE_POINTS / POINTS_PER_DOT - 2 * TOP_BOTTOM_DOTS
    if content_h <= room:
        return [(ops, content_h)]
    pages: list[tuple[list[Any], float]] = []
    start, bottom = 0.0, 0.0
    current: list[Any] = []
    for op in ops:
        top, end = _extent(op)
        if end - start > room and current and top > start:
            pages.append(([_shifted(o, start) for o in current], bottom - start))
            start, current = top, []
        current.append(op)
        bottom = max(bottom, end)
    pages.append(([_shifted(o, start) for o in current], max(content_h, bottom) - start))
    return pages


def _draw(canvas: Any, layout: _Layout, ops: list[Any], content_h: float) -> None:
    from reportlab.graphics import renderPDF
    from reportlab.lib.utils import ImageReader

    page_h = content_h + 2 * TOP_BOTTOM_DOTS

    def flip(y: float) -> float:
        return page_h - TOP_BOTTOM_DOTS - y

    canvas.scale(POINTS_PER_DOT, POINTS_PER_DOT)
    for op in ops:
        kind = op[0]
        if kind == "text":
            _, x, baseline, span, text = op
            cw, ch = _cell(span)
            base_w, base_h = FONT_A_DOTS if span.font == "A" else FONT_B_DOTS
            size = base_w / MONO_ADVANCE_EM
            font = FONT_BOLD if span.bold else FONT_REGULAR
            width = cw * len(text)
            descent = base_h * 0.22 * span.height
            if span.invert:
                canvas.setFillGray(0)
                canvas.rect(x, flip(baseline), width, ch, stroke=0, fill=1)
                canvas.setFillGray(1)
            canvas.saveState()
            canvas.translate(x, flip(baseline) + descent)
            # glyphs of DejaVu Mono are about 1.17 em tall with descent: fill the cell height
            canvas.scale(span.width, span.height * (base_h / (size * 1.17)))
            text_obj = canvas.beginText(0, 0)
            text_obj.setFont(font, size)
            text_obj.textOut(text)
            canvas.drawText(text_obj)
            canvas.restoreState()
            canvas.setFillGray(0)
            if span.underline:
                thick = max(1, min(2, span.underline))
                canvas.setStrokeGray(1 if span.invert else 0)
                canvas.setLineWidth(thick)
                uy = flip(baseline) + descent - thick
                canvas.line(x, uy, x + width, uy)
                canvas.setStrokeGray(0)
        elif kind == "image":
            _, x, y, width, height, img = op
            canvas.drawImage(ImageReader(img), x, flip(y) - height, width, height)
        elif kind == "rects":
            canvas.setFillGray(0)
            path = canvas.beginPath()
            for x, y, w, h in op[1]:
                path.rect(x, flip(y) - h, w, h)
            canvas.drawPath(path, stroke=0, fill=1)
        elif kind == "drawing":
            _, x, y, drawing = op
            renderPDF.draw(drawing, canvas, x, flip(y) - drawing.height)


def render_pdf_with_warnings(receipts: list[Receipt], paper_mm: int | None = None,
                             title: str | None = None) -> tuple[bytes, list[str]]:
    """Render receipts to a PDF, one page per receipt (a receipt longer than MAX_PAGE_POINTS continues on
    the next pages), and say what could not be drawn faithfully.

    ``paper_mm``: 80 (576 printable dots = 72 mm, 4 mm margins) or 58 (384 dots = 48 mm, 5 mm margins);
    None guesses once for all receipts (:func:`guess_paper_mm`). Page height is the content plus 4 mm at
    top and bottom. ``title`` becomes the PDF's Title metadata. Returns (PDF bytes, warnings), e.g.
    ``"barcode UPC-E not drawn (printed as text): ..."``.

    Raises ValueError for another ``paper_mm`` and FontMissing when DejaVu Sans Mono
    (``fonts-dejavu-core``) is not installed.
    """
    from reportlab.pdfgen.canvas import Canvas

    _register_fonts()
    if paper_mm is None:
        paper_mm = guess_paper_mm(receipts)
    if paper_mm not in PAPERS:
        raise ValueError(f"paper_mm must be 80 or 58, not {paper_mm!r}")
    page_width, printable = PAPERS[paper_mm]
    layout = _Layout(page_width, printable, (page_width - printable) // 2)
    warnings: list[str] = []
    out = io.BytesIO()
    canvas = Canvas(out, pageCompression=1, invariant=1, initialFontName=FONT_REGULAR)
    if title:
        canvas.setTitle(title)
    canvas.setCreator("eTicket")
    for receipt in receipts or [Receipt()]:
        renderer = _Renderer(layout, warnings)
        for element in receipt.elements:
            renderer.element(element)
        for ops, content_h in _pages(renderer.ops, max(renderer.y, 1.0)):
            canvas.setPageSize((page_width * POINTS_PER_DOT, (content_h + 2 * TOP_BOTTOM_DOTS) * POINTS_PER_DOT))
            _draw(canvas, layout, ops, content_h)
            canvas.showPage()
    canvas.save()
    return out.getvalue(), warnings


def render_pdf(receipts: list[Receipt], paper_mm: int | None = None, title: str | None = None) -> bytes:
    """:func:`render_pdf_with_warnings` without the warnings: the PDF bytes."""
    return render_pdf_with_warnings(receipts, paper_mm, title)[0]
