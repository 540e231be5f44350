#!/usr/bin/env python3
"""Write the sample receipts a newcomer sends to a device: ``samples/receipt.pdf`` (for ``eticket send``) and
``samples/receipt.escpos`` (the same receipt as a till prints it: ESC/POS for TakePOS's connector or port 9100).

A French *ticket de caisse* from a made-up bakery (total 12.50 EUR, TVA 5,5 %), one 80 mm page, text in the
standard Helvetica font (one of the 14 fonts every PDF reader has, ISO 32000-1 §9.6.2.2: nothing embedded),
WinAnsi-encoded so that accents and the euro sign work. Written with pikepdf (already a dependency of the
appliance's PDF check), uncompressed and with a document ID derived from the content, so the bytes are the
same on every run: the committed files are this script's output (a test checks it).

The ESC/POS job is what escpos-php sends for such a receipt on an 80 mm printer (48 columns of font A): ESC @,
code page 19 (CP858, which has ``€``), centred double-size bold name, lines padded to 48 columns, a feed and a
partial cut (Epson ESC/POS command reference: ESC @, ESC t, ESC a, ESC E, GS !, GS V).

    .venv/bin/python scripts/sample-receipt.py                  # rewrites both samples
    .venv/bin/python scripts/sample-receipt.py OUT.pdf          # writes OUT.pdf
    .venv/bin/python scripts/sample-receipt.py OUT.escpos       # writes OUT.escpos
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pikepdf

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "samples" / "receipt.pdf"
DEFAULT_ESCPOS_OUTPUT = REPO / "samples" / "receipt.escpos"
COLUMNS = 48
"""Characters per line of font A on 80 mm paper."""
PT_PER_MM = 72 / 25.4
PAGE_WIDTH_PT = round(80 * PT_PER_MM)
"""A till roll is 80 mm wide."""
MARGIN_PT = 12
LINE_PT = 13
FONT_PT = 9
TITLE_PT = 13
CHAR_WIDTH_PT = FONT_PT * 0.6
"""Rough Helvetica advance, only to right-align amounts (digits are 0.556 em wide in Helvetica)."""

SHOP = "BOULANGERIE MARTIN"
HEADER = ["12 rue des Exemples, 75000 Paris", "Ticket d'exemple eTicket", "01/12/2026 10:42   Ticket n° 0042"]
ITEMS = [("2 x Baguette tradition", "2,40"), ("1 x Croissant", "1,10"), ("1 x Pain au chocolat", "1,30"),
         ("1 x Tarte aux pommes", "7,70")]
TOTAL = ("TOTAL TTC", "12,50 €")
TAX = [("TVA 5,5 %  base HT 11,85", "0,65"), ("Carte bancaire", "12,50 €")]
FOOTER = ["Merci de votre visite !"]


def _text(s: str) -> bytes:
    """A PDF literal string in WinAnsiEncoding (ISO 32000-1 Annex D; cp1252 for these characters)."""
    raw = s.encode("cp1252")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


Line = tuple[str, str | None, bool]
"""(text, right-aligned amount or None, bold)."""


def _lines() -> list[Line]:
    lines: list[Line] = [(SHOP, None, True)]
    lines += [(h, None, False) for h in HEADER] + [("-" * 40, None, False)]
    lines += [(label, amount, False) for label, amount in ITEMS] + [("-" * 40, None, False)]
    lines += [(TOTAL[0], TOTAL[1], True)] + [(label, amount, False) for label, amount in TAX]
    return lines + [("", None, False)] + [(f, None, False) for f in FOOTER]


def _content(lines: list[Line], height: int) -> bytes:
    """The page's content stream: one ``BT … ET`` text object per line, top down."""
    out: list[bytes] = []
    y = height - MARGIN_PT - TITLE_PT
    for label, amount, bold in lines:
        size = TITLE_PT if bold and amount is None else FONT_PT
        font = b"/F2" if bold else b"/F1"
        if label:
            out.append(b"BT %s %d Tf %d %d Td %s Tj ET" % (font, size, MARGIN_PT, y, _text(label)))
        if amount is not None:
            x = PAGE_WIDTH_PT - MARGIN_PT - round(len(amount) * CHAR_WIDTH_PT)
            out.append(b"BT %s %d Tf %d %d Td %s Tj ET" % (font, size, x, y, _text(amount)))
        y -= LINE_PT + (4 if size == TITLE_PT else 0)
    return b"\n".join(out) + b"\n"


def _page_height(lines: int) -> int:
    """Points: margins, the title's extra gap, one LINE_PT per line."""
    return 2 * MARGIN_PT + TITLE_PT + 4 + lines * LINE_PT


def build() -> bytes:
    """The receipt's bytes (deterministic)."""
    pdf = pikepdf.new()
    fonts = pikepdf.Dictionary(
        F1=pikepdf.Dictionary(Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica,
                              Encoding=pikepdf.Name.WinAnsiEncoding),
        F2=pikepdf.Dictionary(Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1,
                              BaseFont=pikepdf.Name("/Helvetica-Bold"), Encoding=pikepdf.Name.WinAnsiEncoding),
    )
    lines = _lines()
    height = _page_height(len(lines))
    page = pikepdf.Dictionary(
        Type=pikepdf.Name.Page,
        MediaBox=[0, 0, PAGE_WIDTH_PT, height],
        Resources=pikepdf.Dictionary(Font=fonts),
        Contents=pdf.make_stream(_content(lines, height)),
    )
    pdf.pages.append(pikepdf.Page(page))
    pdf.docinfo["/Title"] = f"{SHOP} - ticket d'exemple"
    buffer = io.BytesIO()
    pdf.save(buffer, deterministic_id=True, compress_streams=False, object_stream_mode=pikepdf.ObjectStreamMode.disable,
             qdf=False, linearize=False)
    return buffer.getvalue()


def build_escpos() -> bytes:
    """The same receipt as an ESC/POS print job (deterministic)."""
    esc, gs = b"\x1b", b"\x1d"

    def text(s: str) -> bytes:
        return s.encode("cp858")

    out = [esc + b"@", esc + b"t" + bytes([19])]
    for label, amount, bold in _lines():
        if bold and amount is None:  # the shop's name
            out += [esc + b"a\x01", esc + b"E\x01", gs + b"!\x11", text(label), b"\n",
                    gs + b"!\x00", esc + b"E\x00", esc + b"a\x00"]
            continue
        if label.startswith("-"):
            label = "-" * COLUMNS
        line = label if amount is None else label + " " * max(1, COLUMNS - len(label) - len(amount)) + amount
        out += [esc + b"E\x01", text(line), esc + b"E\x00", b"\n"] if bold else [text(line), b"\n"]
    out += [b"\n" * 3, gs + b"V\x42\x00"]
    return b"".join(out)


def main(argv: list[str]) -> int:
    """Write the receipt to ``argv[0]`` (by its suffix, .pdf or .escpos; default both samples)."""
    targets = [Path(a) for a in argv] or [DEFAULT_OUTPUT, DEFAULT_ESCPOS_OUTPUT]
    for out in targets:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(build_escpos() if out.suffix == ".escpos" else build())
        print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
