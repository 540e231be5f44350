"""The receipt model: what an ESC/POS print job says, independent of bytes and of PDF.

The interpreter (:mod:`appliance.escpos.interpreter`) turns the bytes a till sends into a :class:`Job`; the
renderer (:mod:`appliance.escpos.render`) turns each :class:`Receipt` of it into a PDF. Units are printer
dots at 203 dpi (8 dots per mm, Epson's TM-T20/T88 resolution): font A is 12 x 24 dots, font B 9 x 17.

A job is what one connection (port 9100) or one ``invoice`` form field (the TakePOS connector) carried.
A cut (``GS V``) ends a receipt; bytes after the last cut make a last receipt with ``cut=False`` when they
print anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Align = Literal["left", "center", "right"]
Font = Literal["A", "B"]
Hri = Literal["none", "above", "below", "both"]

DOTS_PER_MM = 8
"""203 dpi thermal heads: 8 dots per millimetre."""
FONT_A_DOTS = (12, 24)
"""Width and height of a font A cell, dots (48 columns on 576 dots: 80 mm paper, 72 mm printable)."""
FONT_B_DOTS = (9, 17)
"""Width and height of a font B cell, dots (64 columns on 576 dots, 42 on 384)."""
PAPER_80MM_DOTS = 576
PAPER_58MM_DOTS = 384
DEFAULT_LINE_DOTS = 30
"""``ESC 2``: the default line spacing, 1/6 inch (about 30 dots at 180 dpi units Epson uses; 4.23 mm)."""


@dataclass(frozen=True, slots=True)
class Span:
    """A run of text printed with one style. ``text`` is Unicode (decoded through the code page in force)."""

    text: str
    bold: bool = False
    """``ESC E`` / ``ESC G`` (double-strike prints the same) / ``ESC !`` bit 3."""
    underline: int = 0
    """0, 1 or 2 dots (``ESC -``, ``ESC !`` bit 7)."""
    width: int = 1
    """Character width multiplier 1-8 (``GS !`` high nibble + 1, ``ESC !`` bit 5 gives 2)."""
    height: int = 1
    """Character height multiplier 1-8 (``GS !`` low nibble + 1, ``ESC !`` bit 4 gives 2)."""
    font: Font = "A"
    """``ESC M`` / ``ESC !`` bit 0; fonts C and beyond print as B."""
    invert: bool = False
    """``GS B``: white on black."""
    upside_down: bool = False
    """``ESC {``: kept for fidelity; the renderer may print it upright."""


@dataclass(slots=True)
class TextLine:
    """One printed line: what was buffered up to LF (or ``ESC d``/``ESC J``, which print the buffer first).

    Lines are not wrapped by the interpreter: the renderer wraps at the paper's columns, as the printer does.
    An empty ``spans`` list is a blank line (a bare LF)."""

    spans: list[Span]
    align: Align = "left"
    """``ESC a`` in force when the line was printed (0/48 left, 1/49 centre, 2/50 right)."""
    line_dots: int = DEFAULT_LINE_DOTS
    """Line spacing in force (``ESC 2`` default, ``ESC 3 n`` n dots); a line is at least as tall as its text."""
    left_margin: int = 0
    """``GS L``, dots."""
    print_width: int | None = None
    """``GS W``, dots; None: the whole paper."""

    @property
    def text(self) -> str:
        """The line's characters, styles dropped."""
        return "".join(span.text for span in self.spans)


@dataclass(slots=True)
class Raster:
    """A monochrome image: raster (``GS v 0``), column bit image (``ESC *``, bands joined), graphics
    (``GS ( L`` / ``GS 8 L`` store then print), or a downloaded NV/bit image when printed.

    ``bits`` is row-major, one bit per dot, most significant bit first, each row padded to whole bytes
    (``(width + 7) // 8`` bytes a row); 1 is black. ``scale_x``/``scale_y`` are the double-width/height modes."""

    width: int
    height: int
    bits: bytes
    align: Align = "left"
    scale_x: int = 1
    scale_y: int = 1

    def row_bytes(self) -> int:
        """Bytes per row: ``(width + 7) // 8``."""
        return (self.width + 7) // 8

    def pixel(self, x: int, y: int) -> bool:
        """True when dot (x, y) is black (0 <= x < width, 0 <= y < height)."""
        byte = self.bits[y * self.row_bytes() + x // 8]
        return bool(byte & (0x80 >> (x % 8)))


Symbology = Literal["UPC-A", "UPC-E", "EAN13", "EAN8", "CODE39", "ITF", "CODABAR", "CODE93", "CODE128"]


@dataclass(slots=True)
class Barcode:
    """A 1D barcode (``GS k``, function A m=0-6 or B m=65-73); ``data`` as the till sent it (for CODE128
    including its ``{A``/``{B``/``{C`` code-set prefixes, which the renderer interprets)."""

    symbology: Symbology
    data: bytes
    height: int = 162
    """``GS h``, dots (Epson default 162)."""
    module_width: int = 3
    """``GS w``, dots per narrow bar (2-6)."""
    hri: Hri = "none"
    """``GS H``: where the human-readable digits go."""
    hri_font: Font = "A"
    align: Align = "left"


@dataclass(slots=True)
class QrCode:
    """A QR code (``GS ( k`` cn=49: fn 65 model, 67 module size, 69 error correction, 80 store, 81 print)."""

    data: bytes
    module_size: int = 3
    """Dots per module (fn 67, 1-16)."""
    error_correction: Literal["L", "M", "Q", "H"] = "L"
    model: int = 2
    align: Align = "left"


@dataclass(slots=True)
class Pdf417:
    """A PDF417 symbol (``GS ( k`` cn=48: fn 65 columns, 66 rows, 67 module width, 68 row height, 69 error
    correction, 70 options (truncated), 80 store, 81 print)."""

    data: bytes
    columns: int = 0
    """Data columns, 0 = automatic."""
    rows: int = 0
    """Rows, 0 = automatic."""
    module_width: int = 3
    row_height: int = 3
    """Row height as a multiple of the module width."""
    error_level: int | None = None
    """0-8, None = automatic (fn 69 m=48 or ratio form)."""
    truncated: bool = False
    align: Align = "left"


@dataclass(slots=True)
class Feed:
    """Vertical space with nothing printed, dots (``ESC J n``, ``ESC d n`` lines of the current spacing
    beyond the line it printed, ``ESC e`` reverse feeds are ignored)."""

    dots: int


Element = TextLine | Raster | Barcode | QrCode | Pdf417 | Feed


@dataclass(slots=True)
class Receipt:
    """What was printed between two cuts (or from the job's start, or up to its end)."""

    elements: list[Element] = field(default_factory=list)
    cut: bool = False
    """Ended by a cut (``GS V``, ``ESC i``/``ESC m``); False for the bytes after the last cut."""
    print_width: int | None = None
    """``GS W`` last set in this receipt, dots; the renderer takes the paper from its settings otherwise."""

    def text_lines(self) -> list[str]:
        """Every text line's characters, in order (for totals, copies and tests)."""
        return [element.text for element in self.elements if isinstance(element, TextLine)]

    def prints_anything(self) -> bool:
        """True when the receipt holds a visible element (non-blank text, an image, a code)."""
        return any(not isinstance(e, (TextLine, Feed)) or (isinstance(e, TextLine) and e.text.strip())
                   for e in self.elements)


@dataclass(slots=True)
class Job:
    """Everything one connection or connector post printed, split at cuts."""

    receipts: list[Receipt] = field(default_factory=list)
    """Receipts that print anything, in order (blank ones between two cuts are dropped)."""
    warnings: list[str] = field(default_factory=list)
    """One line per skipped command or damaged argument, e.g. ``"unknown command ESC 0x99 at byte 120"``:
    what the appliance logs (never the job's text: receipts are the customer's)."""
    truncated: bool = False
    """The bytes ended inside a command (its declared length ran past the end)."""
