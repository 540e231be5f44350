"""The ESC/POS renderer (receipt model -> PDF), the total finder and the copy merger (issue 13).

PDFs are checked the way a customer's phone would meet them: page size read back with pikepdf, text
extracted with pypdfium2, codes rasterised with pypdfium2 and decoded with zxing-cpp."""

from __future__ import annotations

import io

import pikepdf
import pypdfium2 as pdfium
import pytest
import zxingcpp

from appliance.escpos import render
from appliance.escpos.convert import convert_receipts, merge_receipts
from appliance.escpos.model import Barcode, Feed, Pdf417, QrCode, Raster, Receipt, Span, TextLine
from appliance.escpos.render import POINTS_PER_DOT, guess_paper_mm, render_pdf, render_pdf_with_warnings
from appliance.escpos.total import DEFAULT_TOTAL_LABELS, find_total, parse_amount
from appliance.intake import TOTAL_PATTERN

MM = 72 / 25.4


def line(text: str, **style: object) -> TextLine:
    return TextLine([Span(text, **style)])  # type: ignore[arg-type]


def takepos() -> Receipt:
    return Receipt([
        line("Boulangerie Dupré", bold=True, width=2, height=2),
        line("12 rue de la Gare, 69000 Lyon"),
        TextLine([Span("Chocolat chaud à l'ancienne – grand")], align="left"),
        line("Prix: 6,50 € — Кофе Ж, λόγος ─┼─"),
        line("Total HT      6,16"),
        line("Total TVA     0,34"),
        TextLine([Span("Total TTC     6,50", bold=True)], align="right"),
    ], cut=True)


def media_box(pdf: bytes) -> list[float]:
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        return [float(v) for v in doc.pages[0].MediaBox]


def page_text(pdf: bytes, index: int = 0) -> str:
    text: str = pdfium.PdfDocument(pdf)[index].get_textpage().get_text_range()
    return text


def decode(pdf: bytes, scale: float = 4) -> list[tuple[object, str]]:
    image = pdfium.PdfDocument(pdf)[0].render(scale=scale).to_pil()
    return [(b.format, b.text) for b in zxingcpp.read_barcodes(image)]


def test_page_width_80_and_58_and_height_is_the_content() -> None:
    pdf80 = render_pdf([takepos()], paper_mm=80, title="Ticket 42")
    box = media_box(pdf80)
    assert box[2] - box[0] == pytest.approx(80 * MM, abs=0.01)
    pdf58 = render_pdf([takepos()], paper_mm=58)
    box58 = media_box(pdf58)
    assert box58[2] - box58[0] == pytest.approx(58 * MM, abs=0.01)
    # 7 lines: the double-height title (48 dots) and six lines of 30 dots, plus 4 mm top and bottom
    assert box[3] - box[1] == pytest.approx((48 + 6 * 30 + 64) * POINTS_PER_DOT, abs=0.01)
    with pikepdf.open(io.BytesIO(pdf80)) as doc:
        assert str(doc.docinfo["/Title"]) == "Ticket 42"
        assert "/JavaScript" not in str(doc.Root.keys()) and "/OpenAction" not in doc.Root


def test_two_receipts_two_pages() -> None:
    pdf = render_pdf([takepos(), Receipt([line("Carte bancaire")])], paper_mm=80)
    assert len(pdfium.PdfDocument(pdf)) == 2
    assert "Carte bancaire" in page_text(pdf, 1)


def test_paper_guess() -> None:
    assert guess_paper_mm([Receipt([line("x" * 32)])]) == 58
    assert guess_paper_mm([Receipt([line("x" * 33)])]) == 80
    assert guess_paper_mm([Receipt([line("x" * 42, font="B")])]) == 58
    assert guess_paper_mm([Receipt([line("x" * 43, font="B")])]) == 80
    assert guess_paper_mm([Receipt([line("x" * 17, width=2)])]) == 80
    assert guess_paper_mm([Receipt([Raster(400, 8, bytes(50 * 8))])]) == 80
    assert guess_paper_mm([Receipt([line("x"), TextLine([], print_width=576)])]) == 80
    box = media_box(render_pdf([Receipt([line("Merci !")])]))
    assert box[2] - box[0] == pytest.approx(58 * MM, abs=0.01)


def test_text_is_real_and_searchable() -> None:
    text = page_text(render_pdf([takepos()], paper_mm=80))
    for needle in ("Boulangerie Dupré", "Total TTC", "6,50", "Chocolat chaud à l'ancienne – grand", "€", "Ж",
                   "λόγος", "─┼─", "Кофе"):
        assert needle in text


def test_bold_double_width_underline_invert_keep_text() -> None:
    receipt = Receipt([TextLine([Span("Grand ", width=2, height=2, bold=True), Span("Total", underline=2),
                                 Span(" 6,50", invert=True)], align="center")])
    assert "Grand Total 6,50" in page_text(render_pdf([receipt], paper_mm=80))


def test_wrapping_at_48_and_32_columns() -> None:
    receipt = Receipt([line("".join(chr(ord("a") + i % 26) for i in range(60)))])
    rows80 = page_text(render_pdf([receipt], paper_mm=80)).split()
    assert [len(r) for r in rows80] == [48, 12]
    rows58 = page_text(render_pdf([receipt], paper_mm=58)).split()
    assert [len(r) for r in rows58] == [32, 28]
    wide = page_text(render_pdf([Receipt([line("x" * 30, width=2)])], paper_mm=80)).split()
    assert [len(r) for r in wide] == [24, 6]
    font_b = page_text(render_pdf([Receipt([line("y" * 70, font="B")])], paper_mm=80)).split()
    assert [len(r) for r in font_b] == [64, 6]


@pytest.mark.parametrize(("code", "expected"), [
    (QrCode(b"https://eticket.example/t/7f3a9c", module_size=4, error_correction="M"),
     (zxingcpp.BarcodeFormat.QRCode, "https://eticket.example/t/7f3a9c")),
    (Barcode("CODE128", b"{BTK-2026-0042", height=80, module_width=2, hri="below"),
     (zxingcpp.BarcodeFormat.Code128, "TK-2026-0042")),
    (Barcode("EAN13", b"4006381333931", height=100, module_width=3, hri="below", align="center"),
     (zxingcpp.BarcodeFormat.EAN13, "4006381333931")),
    (Pdf417(b"TICKET 42 TOTAL 6.50 EUR", module_width=2, row_height=3),
     (zxingcpp.BarcodeFormat.PDF417, "TICKET 42 TOTAL 6.50 EUR")),
])
def test_codes_decode(code: QrCode | Barcode | Pdf417, expected: tuple[object, str]) -> None:
    pdf, warnings = render_pdf_with_warnings([Receipt([line("Code"), Feed(24), code, Feed(24)])], paper_mm=80)
    assert warnings == []
    assert expected in decode(pdf)


def test_unsupported_barcode_prints_text_and_warns() -> None:
    pdf, warnings = render_pdf_with_warnings([Receipt([Barcode("UPC-E", b"01234565")])], paper_mm=80)
    assert "01234565" in page_text(pdf)
    assert len(warnings) == 1 and "UPC-E" in warnings[0]


def test_raster_pixels() -> None:
    width, height, block = 64, 48, 8
    rows = bytearray()
    for y in range(height):
        for bx in range(width // 8):
            rows.append(0xFF if (bx + y // block) % 2 == 0 else 0x00)
    raster = Raster(width, height, bytes(rows), scale_x=2, scale_y=1)
    pdf = render_pdf([Receipt([Feed(16), raster])], paper_mm=80)
    px_per_dot = 2
    image = pdfium.PdfDocument(pdf)[0].render(scale=px_per_dot / POINTS_PER_DOT).to_pil().convert("L")
    left, top = 32, 32 + 16  # margin, top space + feed (dots)
    wrong = 0
    total = 0
    for y in range(height):
        for x in range(width * 2):
            if y % block in (0, block - 1) or x % (2 * block) in (0, 2 * block - 1):
                continue  # block edges: the rasteriser may round the image's place by a pixel
            black = (x // 2 // block + y // block) % 2 == 0
            value = image.getpixel((int((left + x + 0.5) * px_per_dot), int((top + y + 0.5) * px_per_dot)))
            assert isinstance(value, int)
            wrong += (value < 128) != black
            total += 1
    assert wrong / total < 0.01
    # nothing black around it
    assert image.getpixel((int((left + 2 * width + 8) * px_per_dot), int((top + 4) * px_per_dot))) == 255


def test_raster_clipped_to_paper() -> None:
    raster = Raster(800, 8, b"\xff" * 100 * 8)
    pdf = render_pdf([Receipt([raster])], paper_mm=58)
    assert media_box(pdf)[2] == pytest.approx(58 * MM, abs=0.01)


@pytest.mark.parametrize(("text", "amount"), [
    ("6,50", "6.50"), ("1 234,50", "1234.50"), ("1.234,50", "1234.50"), ("1,234.50", "1234.50"),
    ("6.50 EUR", "6.50"), ("€ 6.50", "6.50"), ("-3,20", "-3.20"), ("3,20-", "-3.20"), ("Qté 2  x 3,25", "3.25"),
])
def test_parse_amount(text: str, amount: str) -> None:
    assert parse_amount(text) == amount
    assert TOTAL_PATTERN.fullmatch(amount)


def test_find_total() -> None:
    assert find_total(["Total HT      6,16", "Total TVA     0,34", "Total TTC     6,50"]) == "6.50"
    assert find_total(["TOTAL HT 6,16", "TVA 20% 0,34", "TOTAL        6,50"]) == "6.50"
    assert find_total(["Sous-total 9,00", "  TOTAL : 7,80 EUR"]) == "7.80"
    assert find_total(["Totalement 5,00", "Gesamt EUR 7,10"]) == "7.10"
    assert find_total(["TOTAL 3 articles", "A PAYER  12,00"]) == "12.00"
    assert find_total(["Avoir", "TOTAL -3,20"]) == "-3.20"
    assert find_total(["Merci de votre visite"]) is None
    assert find_total(["Total"]) is None
    assert find_total(["Summe 4,00"], ("Summe",)) == "4.00"
    assert "Total TTC" in DEFAULT_TOTAL_LABELS


def test_merge_receipts_drops_the_copy() -> None:
    other = Receipt([line("Ticket carte bancaire"), line("MONTANT 6,50 EUR")], cut=True)
    kept, copies = merge_receipts([takepos(), takepos(), other, Receipt([Feed(30)])])
    assert copies == 1
    assert [r.text_lines()[0] for r in kept] == ["Boulangerie Dupré", "Ticket carte bancaire"]


def test_convert_receipts() -> None:
    converted = convert_receipts([takepos(), takepos()], 80, DEFAULT_TOTAL_LABELS)
    assert converted.pdf is not None and converted.pdf.startswith(b"%PDF")
    assert (converted.total, converted.receipts, converted.copies) == ("6.50", 1, 1)
    empty = convert_receipts([Receipt([Feed(10)])], None, DEFAULT_TOTAL_LABELS)
    assert empty.pdf is None and empty.receipts == 0


def test_missing_font_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "FONT_FILES", {"EticketMonoAbsent": "DejaVuSansMono-Absent.ttf"})
    with pytest.raises(render.FontMissing, match="fonts-dejavu-core"):
        render_pdf([Receipt([line("x")])], paper_mm=80)


def test_pdf417_automatic_columns_fit_58mm() -> None:
    data = b"SALE 2026-12-02 TICKET 000042 TOTAL 6.50 EUR SHOP BOULANGERIE DUPRE LYON"
    pdf = render_pdf([Receipt([Feed(24), Pdf417(data, module_width=3), Feed(24)])], paper_mm=58)
    assert (zxingcpp.BarcodeFormat.PDF417, data.decode()) in decode(pdf)


def test_wrong_check_digit_warns() -> None:
    _, warnings = render_pdf_with_warnings([Receipt([Barcode("EAN13", b"4006381333932")])], paper_mm=80)
    assert len(warnings) == 1 and "check digit" in warnings[0]
    _, warnings = render_pdf_with_warnings([Receipt([Barcode("UPC-A", b"036000291452"),
                                                     Barcode("EAN8", b"96385074")])], paper_mm=80)
    assert warnings == []


@pytest.mark.parametrize(("symbology", "data", "expected"), [
    ("UPC-A", b"036000291452", "036000291452"), ("EAN8", b"96385074", "96385074"),
    ("CODE39", b"ABC123", "ABC123"), ("ITF", b"12345670", "12345670"), ("CODABAR", b"A40156B", "A40156B"),
    ("CODE93", b"TEST93", "TEST93"), ("CODE128", b"{C123456", "123456"),
])
def test_other_symbologies_decode(symbology: str, data: bytes, expected: str) -> None:
    code = Barcode(symbology, data, height=80, module_width=3)  # type: ignore[arg-type]
    pdf, warnings = render_pdf_with_warnings([Receipt([Feed(24), code, Feed(24)])], paper_mm=80)
    assert warnings == []
    texts = [text for _, text in decode(pdf, scale=3)]
    assert expected in texts or "0" + expected in texts  # zxing reports UPC-A as EAN-13


def char_box_dots(pdf: bytes, index: int) -> tuple[float, float, float, float]:
    page = pdfium.PdfDocument(pdf)[0]
    left, bottom, right, top = page.get_textpage().get_charbox(index)
    return left / POINTS_PER_DOT, bottom / POINTS_PER_DOT, right / POINTS_PER_DOT, top / POINTS_PER_DOT


def test_alignment_and_margins() -> None:
    # 80 mm: printable from dot 32 to 608; "ABCD" is 48 dots of font A
    right = render_pdf([Receipt([TextLine([Span("ABCD")], align="right")])], paper_mm=80)
    assert char_box_dots(right, 3)[2] == pytest.approx(608, abs=3)
    center = render_pdf([Receipt([TextLine([Span("ABCD")], align="center")])], paper_mm=80)
    assert char_box_dots(center, 0)[0] == pytest.approx(32 + 264, abs=3)
    margin = render_pdf([Receipt([TextLine([Span("ABCD")], left_margin=60)])], paper_mm=80)
    assert char_box_dots(margin, 0)[0] == pytest.approx(92, abs=3)


def test_line_spacing() -> None:
    tall = media_box(render_pdf([Receipt([TextLine([Span("a")], line_dots=60)] * 3)], paper_mm=80))
    tight = media_box(render_pdf([Receipt([TextLine([Span("a")], line_dots=10)] * 3)], paper_mm=80))
    assert tall[3] == pytest.approx((3 * 60 + 64) * POINTS_PER_DOT, abs=0.01)
    assert tight[3] == pytest.approx((3 * 24 + 64) * POINTS_PER_DOT, abs=0.01)  # at least the font's height


def test_a_receipt_longer_than_a_pdf_page_continues_on_the_next_pages_with_every_line() -> None:
    """PDF readers need not show a page side over 200 inches (ISO 32000-1 Annex C.2) and the intake's PDF
    check refuses one: 1,500 lines are two pages, no line lost or cut."""
    from appliance.pdfcheck import check_pdf

    receipt = Receipt([line(f"Article {i:05d}                      12,50 EUR") for i in range(1500)], cut=True)
    pdf = render_pdf([receipt], paper_mm=80)
    assert check_pdf(pdf).pages == 2
    doc = pdfium.PdfDocument(pdf)
    heights = [doc[i].get_size()[1] for i in range(len(doc))]
    assert max(heights) <= 14_400
    text = page_text(pdf, 0) + page_text(pdf, 1)
    assert [f"Article {i:05d}" in text for i in range(1500)] == [True] * 1500
