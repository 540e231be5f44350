"""ESC/POS bytes -> the receipt model (:mod:`appliance.escpos.model`): a push parser for print jobs.

Feed it the stream in any chunks (:meth:`Interpreter.feed` returns the status bytes a till expects back),
then :meth:`Interpreter.finish` gives the :class:`~appliance.escpos.model.Job`. Command lengths come from
one table (:mod:`appliance.escpos.commands`); character tables from :mod:`appliance.escpos.codepages`.
Behaviour follows Epson's ESC/POS Application Programming Guide (TM-T20/T88 class printers, standard mode).

Usage::

    interpreter = Interpreter()
    reply = interpreter.feed(chunk)     # send ``reply`` back to the till
    job = interpreter.finish()

Errors: :class:`JobTooLarge` (a ValueError) when a :class:`Limits` bound is passed. Anything else in the
bytes (unknown commands, damaged arguments, a stream cut short) becomes a warning, never an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from PIL import Image

from appliance.escpos.codepages import code_page_name, decode, table
from appliance.escpos.codes import TwoDCodes
from appliance.escpos.commands import COMMANDS, DLE, PREFIXES, Command
from appliance.escpos.model import (
    DEFAULT_LINE_DOTS,
    FONT_A_DOTS,
    FONT_B_DOTS,
    Align,
    Barcode,
    Element,
    Feed,
    Font,
    Hri,
    Job,
    Raster,
    Receipt,
    Span,
    Symbology,
    TextLine,
)
from appliance.escpos.status import status_reply

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on one job, so a hostile or broken stream cannot exhaust the appliance's memory.

    ``Limits()`` is what a counter needs: ``Limits(max_bytes=1 << 20)`` tightens one bound."""

    max_bytes: int = 16 * MIB
    """Bytes in the whole stream (a receipt with a logo is 2-20 KB; escpos-php's demo is 72 KB)."""
    max_receipts: int = 50
    """Receipts (cuts) in one job."""
    max_image_dots: int = 576 * 40_000
    """Dots of all images of the job together: 5 m of full-width 80 mm paper."""
    max_image_width: int = 4096
    """Dots across one image (paper is 576; wider images are clipped by printers, we keep them)."""
    max_image_height: int = 40_000
    """Dots down one image (joined stripes included): 5 m of paper (a 2 MB full-width image is 29 000)."""
    max_text_chars: int = 1_000_000
    """Printed characters in the job (about 20 000 lines of 48 columns)."""
    max_elements: int = 20_000
    """Elements (lines, images, codes, feeds) in one receipt."""
    max_warnings: int = 100
    """Warnings kept; the rest are counted in one last warning (not an error)."""


class JobTooLarge(ValueError):
    """The job passed one of its :class:`Limits`; ``limit`` names the field (e.g. ``"max_bytes"``)."""

    def __init__(self, limit: str, detail: str) -> None:
        super().__init__(f"print job too large: {limit} passed ({detail})")
        self.limit = limit


LF, CR, HT, FF, CAN, NUL = 0x0A, 0x0D, 0x09, 0x0C, 0x18, 0x00
DEFAULT_TAB_COLUMNS = 8
"""Default horizontal tab stops: every 8 characters."""
_CONTROL = re.compile(rb"[\x00-\x1f]")
ALIGNS: dict[int, Align] = {0: "left", 48: "left", 1: "center", 49: "center", 2: "right", 50: "right"}
HRIS: dict[int, Hri] = {0: "none", 48: "none", 1: "above", 49: "above", 2: "below", 50: "below",
                        3: "both", 51: "both"}
SYMBOLOGIES: dict[int, Symbology] = {
    0: "UPC-A", 1: "UPC-E", 2: "EAN13", 3: "EAN8", 4: "CODE39", 5: "ITF", 6: "CODABAR",
    65: "UPC-A", 66: "UPC-E", 67: "EAN13", 68: "EAN8", 69: "CODE39", 70: "ITF", 71: "CODABAR",
    72: "CODE93", 73: "CODE128",
}
"""``GS k m``: function A (m 0-6) and function B (m 65-73) symbologies."""
UNDERLINES = {0: 0, 48: 0, 1: 1, 49: 1, 2: 2, 50: 2}
"""``ESC - n`` -> underline thickness, dots."""
CUT_COMMANDS = {"GS V", "ESC i", "ESC m"}
SILENT = {
    "ESC SP", "ESC =", "ESC <", "ESC B", "ESC L", "ESC S", "ESC T", "ESC U", "ESC V", "ESC W", "ESC c",
    "ESC f", "ESC p", "ESC q", "ESC r", "GS $", "GS :", "GS E", "GS P", "GS T", "GS \\", "GS ^", "GS a",
    "GS b", "GS c", "GS g", "GS j", "GS z", "GS |", "FS !", "FS &", "FS -", "FS .", "FS C", "FS S", "FS W",
    "DLE ENQ", "DLE DC4", "ESC GS",
}
"""Commands that change nothing the model keeps (drawer, buzzer, panel, page mode, Kanji, speed...)."""


def _column_image(data: bytes, columns: int, column_bytes: int) -> bytes:
    """Column-format bit image (each column ``column_bytes`` bytes top to bottom, MSB on top) -> rows.
    Returns ``column_bytes * 8`` rows of ``(columns + 7) // 8`` bytes (row-major, MSB first, 1 = black).

    The column data read as a 1-bit image ``column_bytes * 8`` wide and ``columns`` high is the picture
    mirrored on its diagonal: pillow transposes it (bits keep their values)."""
    if not columns or not column_bytes:
        return b""
    image = Image.frombytes("1", (column_bytes * 8, columns), data[:columns * column_bytes])
    return image.transpose(Image.Transpose.TRANSPOSE).tobytes()


@dataclass
class _Style:
    bold_e: bool = False
    bold_g: bool = False
    underline: int = 0
    width: int = 1
    height: int = 1
    font: Font = "A"
    invert: bool = False
    upside_down: bool = False

    def span(self, text: str) -> Span:
        return Span(text, bold=self.bold_e or self.bold_g, underline=self.underline, width=self.width,
                    height=self.height, font=self.font, invert=self.invert, upside_down=self.upside_down)


@dataclass
class _Settings:
    """What ``ESC @`` resets."""

    style: _Style = field(default_factory=_Style)
    align: Align = "left"
    line_dots: int = DEFAULT_LINE_DOTS
    left_margin: int = 0
    print_width: int | None = None
    code_page: int = 0
    international: int = 0
    tabs: tuple[int, ...] = tuple(range(DEFAULT_TAB_COLUMNS, 256, DEFAULT_TAB_COLUMNS))
    barcode_height: int = 162
    barcode_module: int = 3
    hri: Hri = "none"
    hri_font: Font = "A"


@dataclass
class _OpenImage:
    """The last image of the receipt while later stripes/bands may still join it."""

    raster: Raster
    bits: bytearray
    kind: str


class Interpreter:
    """A push parser: ESC/POS bytes in, :class:`~appliance.escpos.model.Job` out.

    :meth:`feed` takes any chunking of the stream (a command split across feeds waits until its declared
    length is buffered, and is parsed once); :meth:`finish` ends it. Not thread-safe; one per job.
    Raises :class:`JobTooLarge` from :meth:`feed`/:meth:`finish` when a :class:`Limits` bound is passed;
    after that the interpreter must be dropped."""

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        self._buffer = bytearray()
        self._base = 0
        """Stream offset of ``_buffer[0]``."""
        self._received = 0
        self._need = 0
        self._replies = bytearray()
        self._job = Job()
        self._receipt = Receipt()
        self._settings = _Settings()
        self._line: list[tuple[Span, list[str]]] = []
        """The line buffer: (style as an empty span, text pieces) runs; joined when the line prints (so a
        line arriving a byte at a time is not copied at every byte)."""
        self._line_chars = 0
        self._band_pending = False
        self._open: _OpenImage | None = None
        self._image_dots = 0
        self._text_chars = 0
        self._warned_tables: set[int] = set()
        self._dropped_warnings = 0
        self._warned_user = False
        self._graphics: dict[int, tuple[int, int, bytes, int, int]] = {}
        """``GS ( L`` fn 112 colour -> (width, height, bits, scale_x, scale_y)."""
        self._downloaded: tuple[int, int, bytes] | None = None
        self._two_d_codes = TwoDCodes()
        self._finished = False

    # ----------------------------------------------------------------- stream
    def feed(self, data: bytes) -> bytes:
        """Consume the next bytes of the stream; returns the replies to status queries they completed
        (``DLE EOT``, ``GS r``, ``GS I``, ``ESC u``/``ESC v``: :mod:`appliance.escpos.status`), b"" mostly.

        Raises JobTooLarge; RuntimeError after :meth:`finish`."""
        if self._finished:
            raise RuntimeError("feed() after finish()")
        if self._received + len(data) > self.limits.max_bytes:
            raise JobTooLarge("max_bytes", f"more than {self.limits.max_bytes} bytes")
        self._received += len(data)
        self._buffer += data
        if len(self._buffer) >= self._need:
            self._parse()
        replies = bytes(self._replies)
        self._replies.clear()
        return replies

    def finish(self) -> Job:
        """End the stream: bytes left inside an unfinished command set ``Job.truncated`` (with a warning);
        text not yet ended by LF is printed as a last line; what follows the last cut and prints anything
        is a last receipt with ``cut=False``. Raises JobTooLarge."""
        if not self._finished:
            self._finished = True
            if self._buffer:
                self._job.truncated = True
                self._warn(f"job ends inside a command at byte {self._base} ({len(self._buffer)} bytes left)")
                self._buffer.clear()
            if self._line:
                self._print_line()
            self._end_receipt(cut=False)
            if self._dropped_warnings:
                self._job.warnings.append(f"{self._dropped_warnings} more warnings not kept")
        return self._job

    def _parse(self) -> None:
        buffer = self._buffer
        end = len(buffer)
        pos = 0
        self._need = 0
        while pos < end:
            byte = buffer[pos]
            if byte >= 0x20:
                match = _CONTROL.search(buffer, pos)
                stop = end if match is None else match.start()
                self._text(bytes(buffer[pos:stop]))
                pos = stop
                continue
            if byte not in PREFIXES:
                self._control(byte)
                pos += 1
                continue
            if end - pos < 2:
                self._need = 2
                break
            command = COMMANDS.get((byte, buffer[pos + 1]))
            if command is None:
                if byte != DLE:
                    self._warn(f"unknown command {PREFIXES[byte]} 0x{buffer[pos + 1]:02X} at byte {self._base + pos}")
                    pos += 2
                else:
                    pos += 1
                continue
            total = command.measure(buffer, pos, end)
            if total > end - pos:
                if self._base + pos + total > self.limits.max_bytes:
                    raise JobTooLarge("max_bytes", f"{command.name} at byte {self._base + pos} declares {total} bytes")
                self._need = total
                break
            self._execute(command, bytes(buffer[pos:pos + total]), self._base + pos)
            pos += total
        del buffer[:pos]
        self._base += pos

    # ------------------------------------------------------------- messages
    def _warn(self, message: str) -> None:
        if len(self._job.warnings) < self.limits.max_warnings:
            self._job.warnings.append(message)
        else:
            self._dropped_warnings += 1

    # ------------------------------------------------------------ building
    def _append(self, element: Element) -> None:
        self._close_image()
        if len(self._receipt.elements) >= self.limits.max_elements:
            raise JobTooLarge("max_elements", f"more than {self.limits.max_elements} elements in a receipt")
        self._receipt.elements.append(element)

    def _close_image(self) -> None:
        if self._open is not None:
            self._open.raster.bits = bytes(self._open.bits)
            self._open = None

    def _end_receipt(self, cut: bool) -> None:
        self._close_image()
        self._band_pending = False
        receipt = self._receipt
        receipt.cut = cut
        if receipt.prints_anything():
            if len(self._job.receipts) >= self.limits.max_receipts:
                raise JobTooLarge("max_receipts", f"more than {self.limits.max_receipts} receipts")
            self._job.receipts.append(receipt)
        self._receipt = Receipt(print_width=self._settings.print_width)

    def _text(self, raw: bytes) -> None:
        settings = self._settings
        if settings.code_page not in self._warned_tables and max(raw) >= 0x80:
            if not table(settings.code_page, settings.international).known:
                self._warned_tables.add(settings.code_page)
                self._warn(f"code page {settings.code_page} ({code_page_name(settings.code_page)}) not "
                           "supported: its characters 0x80-0xFF print as '?'")
        self._add_chars(decode(raw, settings.code_page, settings.international))

    def _add_chars(self, text: str) -> None:
        self._text_chars += len(text)
        if self._text_chars > self.limits.max_text_chars:
            raise JobTooLarge("max_text_chars", f"more than {self.limits.max_text_chars} characters")
        style = self._settings.style.span("")
        if self._line and self._line[-1][0] == style:
            self._line[-1][1].append(text)
        else:
            self._line.append((style, [text]))
        self._line_chars += len(text)

    def _print_line(self, line_dots: int | None = None) -> None:
        settings = self._settings
        spans = [replace(style, text="".join(pieces)) for style, pieces in self._line]
        self._append(TextLine(spans, align=settings.align,
                              line_dots=settings.line_dots if line_dots is None else line_dots,
                              left_margin=settings.left_margin, print_width=settings.print_width))
        self._line = []
        self._line_chars = 0

    def _flush_text(self) -> None:
        """Print text waiting in the line buffer (before an image or code, or at a cut)."""
        if self._line:
            self._print_line()

    def _control(self, byte: int) -> None:
        if byte == LF:
            if self._band_pending and not self._line:
                self._band_pending = False
                return
            self._band_pending = False
            self._print_line()
        elif byte == HT:
            column = self._line_chars
            stop = next((tab for tab in self._settings.tabs if tab > column), None)
            if stop is not None:
                self._add_chars(" " * (stop - column))
        elif byte == FF:
            self._flush_text()
        elif byte == CAN:
            self._line = []
            self._line_chars = 0
        # NUL, CR and other control bytes: nothing to print

    def _add_image(self, width: int, height: int, bits: bytes, kind: str, scale_x: int = 1,
                   scale_y: int = 1) -> None:
        """Append an image; joins the previous one when it is of the same ``kind`` (``"raster"`` for
        ``GS v 0`` stripes, ``"band:m"`` for ``ESC *`` bands), width, scales and alignment and nothing
        printed between them."""
        limits = self.limits
        if width > limits.max_image_width:
            raise JobTooLarge("max_image_width", f"an image {width} dots wide")
        self._image_dots += width * height
        if self._image_dots > limits.max_image_dots:
            raise JobTooLarge("max_image_dots", f"more than {limits.max_image_dots} image dots")
        self._flush_text()
        align = self._settings.align
        opened = self._open
        if (opened is not None and self._receipt.elements and self._receipt.elements[-1] is opened.raster
                and opened.kind == kind and opened.raster.width == width and opened.raster.align == align
                and opened.raster.scale_x == scale_x and opened.raster.scale_y == scale_y):
            if opened.raster.height + height > limits.max_image_height:
                raise JobTooLarge("max_image_height", f"an image more than {limits.max_image_height} dots high")
            opened.bits += bits
            opened.raster.height += height
            return
        if height > limits.max_image_height:
            raise JobTooLarge("max_image_height", f"an image {height} dots high")
        raster = Raster(width=width, height=height, bits=b"", align=align, scale_x=scale_x, scale_y=scale_y)
        self._append(raster)
        self._open = _OpenImage(raster, bytearray(bits), kind)

    def _add_code(self, element: Element) -> None:
        self._flush_text()
        self._append(element)

    # ------------------------------------------------------------ commands
    def _execute(self, command: Command, data: bytes, offset: int) -> None:
        name = command.name
        if name in SILENT:
            return
        if name in CUT_COMMANDS:
            self._flush_text()
            self._end_receipt(cut=True)
            return
        handler = _HANDLERS.get(name)
        if handler is None:
            self._warn(f"skipped command {name} at byte {offset}")
            return
        handler(self, data, offset)

    def _reset(self, data: bytes, offset: int) -> None:
        self._settings = _Settings()

    def _select_modes(self, data: bytes, offset: int) -> None:  # ESC ! n
        n = data[2]
        style = self._settings.style
        style.font = "B" if n & 0x01 else "A"
        style.bold_e = bool(n & 0x08)
        style.height = 2 if n & 0x10 else 1
        style.width = 2 if n & 0x20 else 1
        style.underline = 1 if n & 0x80 else 0

    def _bold(self, data: bytes, offset: int) -> None:  # ESC E n / ESC G n
        if data[1] == 0x45:
            self._settings.style.bold_e = bool(data[2] & 1)
        else:
            self._settings.style.bold_g = bool(data[2] & 1)

    def _underline(self, data: bytes, offset: int) -> None:  # ESC - n
        style = self._settings.style
        style.underline = UNDERLINES.get(data[2], style.underline)

    def _size(self, data: bytes, offset: int) -> None:  # GS ! n
        n = data[2]
        self._settings.style.width = (n >> 4 & 7) + 1
        self._settings.style.height = (n & 7) + 1

    def _font(self, data: bytes, offset: int) -> None:  # ESC M n
        self._settings.style.font = "A" if data[2] in (0, 48) else "B"

    def _align(self, data: bytes, offset: int) -> None:  # ESC a n
        self._settings.align = ALIGNS.get(data[2], self._settings.align)

    def _line_spacing(self, data: bytes, offset: int) -> None:  # ESC 2 / ESC 3 n
        self._settings.line_dots = DEFAULT_LINE_DOTS if data[1] == 0x32 else data[2]

    def _print_feed_lines(self, data: bytes, offset: int) -> None:  # ESC d n
        n = data[2]
        self._band_pending = False
        if self._line:
            self._print_line()
            n -= 1
        if n > 0:
            self._append(Feed(n * self._settings.line_dots))

    def _print_feed_dots(self, data: bytes, offset: int) -> None:  # ESC J n
        n = data[2]
        if self._band_pending and not self._line:
            self._band_pending = False
            return
        self._band_pending = False
        if self._line:
            self._print_line(line_dots=n)
        elif n:
            self._append(Feed(n))

    def _reverse_feed(self, data: bytes, offset: int) -> None:  # ESC e n / ESC K n: print, no feed back
        self._flush_text()

    def _left_margin(self, data: bytes, offset: int) -> None:  # GS L nL nH
        self._settings.left_margin = data[2] | data[3] << 8

    def _print_width(self, data: bytes, offset: int) -> None:  # GS W nL nH
        width = data[2] | data[3] << 8
        self._settings.print_width = width
        self._receipt.print_width = width

    def _cell_width(self) -> int:
        style = self._settings.style
        return (FONT_A_DOTS[0] if style.font == "A" else FONT_B_DOTS[0]) * style.width

    def _absolute_position(self, data: bytes, offset: int) -> None:  # ESC $ nL nH: spaces up to there
        column = (data[2] | data[3] << 8) // self._cell_width()
        if column > self._line_chars:
            self._add_chars(" " * min(column - self._line_chars, 255))

    def _relative_position(self, data: bytes, offset: int) -> None:  # ESC \ nL nH (signed)
        dots = data[2] | data[3] << 8
        if dots < 0x8000:
            spaces = dots // self._cell_width()
            if spaces:
                self._add_chars(" " * min(spaces, 255))

    def _upside_down(self, data: bytes, offset: int) -> None:  # ESC { n
        self._settings.style.upside_down = bool(data[2] & 1)

    def _invert(self, data: bytes, offset: int) -> None:  # GS B n
        self._settings.style.invert = bool(data[2] & 1)

    def _code_page(self, data: bytes, offset: int) -> None:  # ESC t n
        self._settings.code_page = data[2]

    def _international(self, data: bytes, offset: int) -> None:  # ESC R n
        self._settings.international = data[2]

    def _tabs(self, data: bytes, offset: int) -> None:  # ESC D n1..nk NUL
        if data[-1] != 0:
            self._warn(f"damaged ESC D at byte {offset}")
            return
        stops: list[int] = []
        for column in data[2:-1]:
            if stops and column <= stops[-1]:
                break
            stops.append(column)
        self._settings.tabs = tuple(stops)

    def _user_characters(self, data: bytes, offset: int) -> None:  # ESC % / ESC & / ESC ? / FS 2 / FS ?
        if not self._warned_user:
            self._warned_user = True
            self._warn(f"user-defined characters ({PREFIXES[data[0]]} {chr(data[1])} at byte {offset}) print "
                       "as the standard ones")

    def _reply(self, data: bytes, offset: int) -> None:  # DLE EOT, GS r, GS I, ESC u, ESC v
        self._replies += status_reply(data)

    # images
    def _raster(self, data: bytes, offset: int) -> None:  # GS v 0 m xL xH yL yH d
        m = data[3]
        row_bytes = data[4] | data[5] << 8
        height = data[6] | data[7] << 8
        if data[2] not in (0x30, 0x00) or not row_bytes or not height:
            if data[2] not in (0x30, 0x00):
                self._warn(f"unknown command GS v 0x{data[2]:02X} at byte {offset}")
            return
        self._add_image(row_bytes * 8, height, data[8:], "raster", 2 if m & 1 else 1, 2 if m & 2 else 1)

    def _bit_image(self, data: bytes, offset: int) -> None:  # ESC * m nL nH d
        m = data[2]
        columns = data[3] | data[4] << 8
        if not columns:
            return
        column_bytes = 3 if m in (32, 33) else 1
        if columns > self.limits.max_image_width:
            raise JobTooLarge("max_image_width", f"an image {columns} dots wide")
        bits = _column_image(data[5:], columns, column_bytes)
        scale_x = 1 if m in (1, 33) else 2
        scale_y = 1 if column_bytes == 3 else 3
        self._add_image(columns, column_bytes * 8, bits, f"band:{m}", scale_x, scale_y)
        self._band_pending = True

    def _define_downloaded(self, data: bytes, offset: int) -> None:  # GS * x y d
        x, y = data[2], data[3]
        if x * 8 > self.limits.max_image_width:
            raise JobTooLarge("max_image_width", f"an image {x * 8} dots wide")
        self._downloaded = (x * 8, y * 8, _column_image(data[4:], x * 8, y) if x and y else b"")

    def _print_downloaded(self, data: bytes, offset: int) -> None:  # GS / m
        if self._downloaded is None or not self._downloaded[0] or not self._downloaded[1]:
            self._warn(f"GS / at byte {offset} prints no downloaded image")
            return
        width, height, bits = self._downloaded
        m = data[2]
        self._add_image(width, height, bits, "downloaded", 2 if m & 1 else 1, 2 if m & 2 else 1)

    def _nv_image(self, data: bytes, offset: int) -> None:  # FS p / FS q
        if data[1] == 0x70:
            self._warn(f"NV image (FS p at byte {offset}) not printed: its bitmap is stored in the printer")

    def _graphics_function(self, data: bytes, offset: int, body: bytes) -> None:
        """``GS ( L`` / ``GS 8 L`` with ``body`` = m fn [parameters]."""
        if len(body) < 2:
            return
        fn = body[1]
        if fn == 112 and len(body) >= 10:  # store raster graphics: a bx by c xL xH yL yH d
            bx, by, colour = body[3], body[4], body[5]
            width = body[6] | body[7] << 8
            height = body[8] | body[9] << 8
            size = (width + 7) // 8 * height
            if width > self.limits.max_image_width:
                raise JobTooLarge("max_image_width", f"an image {width} dots wide")
            if len(body) - 10 < size or not width or not height:
                self._warn(f"damaged graphics data at byte {offset}")
                return
            self._graphics[colour] = (width, height, body[10:10 + size], 2 if bx == 2 else 1, 2 if by == 2 else 1)
        elif fn in (2, 50):  # print the stored graphics
            if not self._graphics:
                return
            planes = list(self._graphics.values())
            width, height, bits, scale_x, scale_y = planes[0]
            if len(planes) > 1:
                merged = bytearray(bits)
                for other in planes[1:]:
                    if other[0] == width and other[1] == height:
                        for index, byte in enumerate(other[2]):
                            merged[index] |= byte
                bits = bytes(merged)
            self._graphics.clear()
            self._add_image(width, height, bits, "graphics", scale_x, scale_y)
        elif fn in (69, 85, 113, 67, 68, 83, 84):
            self._warn(f"graphics function {fn} at byte {offset} not supported (NV, download or column graphics)")

    def _gs_paren(self, data: bytes, offset: int) -> None:  # GS ( x pL pH ...
        kind = data[2]
        body = data[5:]
        if kind == 0x4C:
            self._graphics_function(data, offset, body)
        elif kind == 0x6B:
            self._two_d(body, offset)
        # GS ( A, C, D, E, H, K, M, N, P, Q, ...: settings and tests, nothing printed

    def _gs_8(self, data: bytes, offset: int) -> None:  # GS 8 L p1..p4 ...
        if len(data) < 7:
            self._warn(f"unknown command GS 8 0x{data[2] if len(data) > 2 else 0:02X} at byte {offset}")
            return
        self._graphics_function(data, offset, data[7:])

    def _esc_paren(self, data: bytes, offset: int) -> None:  # ESC ( A buzzer, ESC ( Y ...
        return

    def _fs_paren(self, data: bytes, offset: int) -> None:  # FS ( A / C / E / L / e
        return

    # codes
    def _barcode_setting(self, data: bytes, offset: int) -> None:
        settings = self._settings
        n = data[2]
        if data[1] == 0x68:  # GS h
            if n:
                settings.barcode_height = n
        elif data[1] == 0x77:  # GS w
            if 1 <= n <= 6:
                settings.barcode_module = n
            elif 68 <= n <= 76:
                settings.barcode_module = n - 66
        elif data[1] == 0x48:  # GS H
            settings.hri = HRIS.get(n, settings.hri)
        else:  # GS f
            settings.hri_font = "B" if n in (1, 49) else "A"

    def _barcode(self, data: bytes, offset: int) -> None:  # GS k
        m = data[2]
        if m <= 6:
            if data[-1] != 0:
                self._warn(f"damaged GS k at byte {offset}: no NUL after the data")
                return
            payload = data[3:-1]
        else:
            payload = data[4:]
        symbology = SYMBOLOGIES.get(m)
        if symbology is None:
            self._warn(f"barcode type {m} (GS k at byte {offset}) not supported")
            return
        if not payload:
            return
        settings = self._settings
        self._add_code(Barcode(symbology, payload, height=settings.barcode_height,
                               module_width=settings.barcode_module, hri=settings.hri,
                               hri_font=settings.hri_font, align=settings.align))

    def _two_d(self, body: bytes, offset: int) -> None:  # GS ( k body = cn fn [params]
        if len(body) < 2:
            return
        cn, fn = body[0], body[1]
        if cn not in (48, 49):
            if fn == 81:
                self._warn(f"2D code cn={cn} at byte {offset} not supported")
            return
        code = self._two_d_codes.function(cn, fn, body[2:], self._settings.align)
        if code is not None:
            self._add_code(code)

_HANDLERS = {
    "ESC @": Interpreter._reset, "ESC !": Interpreter._select_modes, "ESC E": Interpreter._bold,
    "ESC G": Interpreter._bold, "ESC -": Interpreter._underline, "GS !": Interpreter._size,
    "ESC M": Interpreter._font, "ESC a": Interpreter._align, "ESC 2": Interpreter._line_spacing,
    "ESC 3": Interpreter._line_spacing, "ESC d": Interpreter._print_feed_lines,
    "ESC J": Interpreter._print_feed_dots, "ESC e": Interpreter._reverse_feed, "ESC K": Interpreter._reverse_feed,
    "GS L": Interpreter._left_margin, "GS W": Interpreter._print_width, "ESC $": Interpreter._absolute_position,
    "ESC \\": Interpreter._relative_position, "ESC {": Interpreter._upside_down, "GS B": Interpreter._invert,
    "ESC t": Interpreter._code_page, "ESC R": Interpreter._international, "ESC D": Interpreter._tabs,
    "ESC %": Interpreter._user_characters, "ESC &": Interpreter._user_characters,
    "ESC ?": Interpreter._user_characters, "FS 2": Interpreter._user_characters,
    "FS ?": Interpreter._user_characters,
    "DLE EOT": Interpreter._reply, "GS r": Interpreter._reply, "GS I": Interpreter._reply,
    "ESC u": Interpreter._reply, "ESC v": Interpreter._reply,
    "GS v 0": Interpreter._raster, "ESC *": Interpreter._bit_image, "GS *": Interpreter._define_downloaded,
    "GS /": Interpreter._print_downloaded, "FS p": Interpreter._nv_image, "FS q": Interpreter._nv_image,
    "GS (": Interpreter._gs_paren, "GS 8": Interpreter._gs_8, "ESC (": Interpreter._esc_paren,
    "FS (": Interpreter._fs_paren,
    "GS h": Interpreter._barcode_setting, "GS w": Interpreter._barcode_setting,
    "GS H": Interpreter._barcode_setting, "GS f": Interpreter._barcode_setting, "GS k": Interpreter._barcode,
}
"""Command name -> handler ``(interpreter, command bytes, stream offset)``."""


def interpret(data: bytes, limits: Limits = Limits()) -> Job:
    """The :class:`~appliance.escpos.model.Job` of a whole stream (replies to status queries dropped).
    Raises JobTooLarge."""
    interpreter = Interpreter(limits)
    interpreter.feed(data)
    return interpreter.finish()


__all__ = ["Interpreter", "JobTooLarge", "Limits", "interpret"]
