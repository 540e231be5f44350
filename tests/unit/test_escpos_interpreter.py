"""The ESC/POS interpreter (bytes -> receipt model) against the samples real libraries and tills made.

Samples: ``../shared/samples/escpos/`` (escpos-php, python-escpos, escpos-buffer, netprinter captures) and
``../shared/samples/takepos/`` (Dolibarr TakePOS-style receipts made with escpos-php); facts checked come
from ``../shared/samples/README.md`` and the takepos ``.json`` descriptions."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pypdfium2 as pdfium
import pytest
import zxingcpp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from appliance.escpos.commands import COMMANDS
from appliance.escpos.convert import convert_receipts
from appliance.escpos.interpreter import Interpreter, JobTooLarge, Limits, interpret
from appliance.escpos.model import Barcode, Job, Pdf417, QrCode, Raster, Receipt, TextLine

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"
if not SAMPLES.is_dir():
    SAMPLES = Path("/work/shared/samples")
ESCPOS = SAMPLES / "escpos"
TAKEPOS = SAMPLES / "takepos"
ALL_SAMPLES = sorted(ESCPOS.glob("*.bin")) + sorted(TAKEPOS.glob("*.bin"))


def load(path: Path) -> bytes:
    return path.read_bytes()


def sample_job(name: str) -> Job:
    folder = TAKEPOS if (TAKEPOS / name).is_file() else ESCPOS
    return interpret(load(folder / name))


def elements(job: Job, kind: type) -> list:  # type: ignore[type-arg]
    return [e for r in job.receipts for e in r.elements if isinstance(e, kind)]


def lines(job: Job) -> list[str]:
    return [text for r in job.receipts for text in r.text_lines()]


def fed_in_chunks(data: bytes, size: int) -> Job:
    interpreter = Interpreter()
    for start in range(0, len(data), size):
        interpreter.feed(data[start:start + size])
    return interpreter.finish()


def raster_image(raster: Raster, quiet: int = 0, scale: int = 1) -> Image.Image:
    image = Image.new("L", (raster.width + 2 * quiet, raster.height + 2 * quiet), 255)
    pixels = image.load()
    assert pixels is not None
    for y in range(raster.height):
        for x in range(raster.width):
            if raster.pixel(x, y):
                pixels[x + quiet, y + quiet] = 0
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


# ------------------------------------------------------------------ samples


@pytest.mark.parametrize("path", ALL_SAMPLES, ids=lambda p: p.name)
def test_every_sample_interprets(path: Path) -> None:
    job = interpret(load(path))
    assert job.receipts and not job.truncated
    for raster in elements(job, Raster):
        assert len(raster.bits) == raster.row_bytes() * raster.height


def test_bakery() -> None:
    description = json.loads((TAKEPOS / "bakery.json").read_text())
    job = sample_job("bakery.bin")
    assert len(job.receipts) == 1 and job.receipts[0].cut
    text = lines(job)
    assert text[0] == "Boulangerie Dupré" and "12 rue des Écoles" in text
    assert any(line.startswith("Total TTC") and line.endswith("6,50") for line in text)
    assert any(line.startswith("Espèces") for line in text)
    (barcode,) = elements(job, Barcode)
    assert barcode.data == description["barcode"].encode() and barcode.symbology == "CODE39"
    title = job.receipts[0].elements[0]
    assert isinstance(title, TextLine) and title.align == "center"
    assert title.spans[0].bold and title.spans[0].width == 2 and title.spans[0].height == 2
    assert not job.warnings


def test_cafe_logo_font_b_logo_and_qr() -> None:
    description = json.loads((TAKEPOS / "cafe-logo.json").read_text())
    job = sample_job("cafe-logo.bin")
    assert len(job.receipts) == 1
    text_lines = [e for e in job.receipts[0].elements if isinstance(e, TextLine) and e.spans]
    assert all(span.font == "B" for line in text_lines for span in line.spans)
    assert description["lines"][1]["label"] == "Chocolat chaud à l'ancienne – grand"
    assert "Chocolat chaud à l'ancienne – grand" in lines(job)
    (qr,) = elements(job, QrCode)
    assert qr.data == description["qrcode"].encode()
    (logo,) = elements(job, Raster)
    png = Image.open(TAKEPOS / "logo.png").convert("L")
    assert (logo.width, logo.height) == png.size
    differing = sum(1 for y in range(logo.height) for x in range(logo.width)
                    if logo.pixel(x, y) != (png.getpixel((x, y)) < 128))  # type: ignore[operator]
    assert differing <= logo.width * logo.height // 100


def test_two_copies() -> None:
    job = sample_job("two-copies.bin")
    assert len(job.receipts) == 2 and all(r.cut for r in job.receipts)
    assert job.receipts[0].text_lines() == job.receipts[1].text_lines()
    assert "Épicerie Martin" in job.receipts[0].text_lines()
    converted = convert_receipts(job.receipts)
    assert converted.receipts == 1 and converted.copies == 1 and converted.total == "9.80"


def test_netprinter_receipt_one_logo_from_15_bands() -> None:
    job = sample_job("escpos-netprinter-xtd_receipt-with-qrcode.bin")
    assert len(job.receipts) == 1 and not job.receipts[-1].cut
    assert "Québec, G1G 1G1" in lines(job)
    (logo,) = elements(job, Raster)
    assert (logo.width, logo.height) == (360, 15 * 24)
    (qr,) = elements(job, QrCode)
    assert qr.data == b"You can readme from your smartphone" and qr.module_size == 3


def test_escpos_php_demo_has_14_receipts() -> None:
    job = sample_job("escpos-php_demo.bin")
    assert len(job.receipts) == 14 and all(r.cut for r in job.receipts)
    assert len(elements(job, QrCode)) == 3 and len(elements(job, Raster)) == 8
    assert [b.symbology for b in elements(job, Barcode)] == ["CODE39"]


def test_barcode_sample_nine_symbologies() -> None:
    job = sample_job("escpos-php_barcode.bin")
    assert {b.symbology for b in elements(job, Barcode)} == {
        "UPC-A", "UPC-E", "EAN13", "EAN8", "CODE39", "ITF", "CODABAR", "CODE93", "CODE128"}


def test_qr_and_pdf417_samples() -> None:
    qrs = elements(sample_job("escpos-php_qr-code.bin"), QrCode)
    assert len(qrs) == 19 and qrs[0].data == b"Testing 123"
    assert {q.error_correction for q in qrs} == {"L", "M", "Q", "H"}
    assert {q.module_size for q in qrs} >= {1, 2, 3, 4, 5, 10, 16}
    pdfs = elements(sample_job("escpos-php_pdf417-code.bin"), Pdf417)
    assert len(pdfs) == 24 and pdfs[0].data == b"Testing 123"
    (tm_t20,) = elements(sample_job("escpos-buffer_tm-t20_qrcode.bin"), QrCode)
    assert tm_t20.data == b"https://github.com/grandchef/escpos-buffer" and tm_t20.module_size == 4
    assert tm_t20.align == "center"


@pytest.mark.parametrize("name", ["escpos-php_graphics.bin", "escpos-php_bit-image.bin"])
def test_tux_images(name: str) -> None:
    rasters = elements(sample_job(name), Raster)
    assert len(rasters) == 4
    assert {r.width for r in rasters} <= {125, 128} and {r.height for r in rasters} == {148}
    assert [(r.scale_x, r.scale_y) for r in rasters] == [(1, 1), (2, 1), (1, 2), (2, 2)]
    assert rasters[0].bits == rasters[3].bits


def test_character_encodings() -> None:
    text = "\n".join(lines(sample_job("escpos-php_character-encodings.bin")))
    for pangram in ("jordbær med fløde", "Falsches Üben von Xylophonmusik quält jeden größeren Zwerg",
                    "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία", "El pingüino Wenceslao hizo kilómetros",
                    "Le cœur déçu mais l'âme plutôt naïve", "en canoë au delà des îles", "Kæmi ný öxi hér",
                    "Árvíztűrő tükörfúrógép", "Pchnąć w tę łódź jeża", "В чащах юга жил бы цитрус?",
                    "Pijamalı hasta, yağız şoföre çabucak güvendi", "Glāžšķūņa rūķīši", "Tiếng Việt"):
        assert pangram in text


def test_cmp20_qr_sent_as_a_picture_decodes() -> None:
    (raster,) = elements(sample_job("escpos-buffer_cmp-20_qrcode.bin"), Raster)
    assert raster.width == 148 and raster.height == 7 * 24
    found = zxingcpp.read_barcodes(raster_image(raster, quiet=16, scale=2))
    assert [b.format for b in found] == [zxingcpp.BarcodeFormat.QRCode]


@pytest.mark.parametrize("path", sorted(TAKEPOS.glob("*.bin")), ids=lambda p: p.name)
def test_takepos_end_to_end_pdf_text(path: Path) -> None:
    job = interpret(load(path))
    converted = convert_receipts(job.receipts)
    assert converted.pdf is not None
    document = pdfium.PdfDocument(converted.pdf)
    text = "".join(document[i].get_textpage().get_text_range() for i in range(len(document)))
    description = json.loads(path.with_suffix(".json").read_text())
    assert description["shop"]["name"] in text
    for item in description["lines"]:
        assert item["label"] in text
    assert converted.total == f"{description['total_ttc']:.2f}"


# ----------------------------------------------------------- status replies


def test_status_replies() -> None:
    assert Interpreter().feed(b"\x10\x04\x01") == b"\x12"
    assert Interpreter().feed(b"\x10\x04\x02\x10\x04\x03\x10\x04\x04") == b"\x12\x12\x12"
    assert Interpreter().feed(b"\x1dr\x01\x1dr2") == b"\x00\x00"
    assert Interpreter().feed(b"\x1dI\x01\x1dI\x02\x1dIC") == b"\x20\x02_TM-T20\x00"
    assert Interpreter().feed(b"\x10\x05\x01\x1da\xff") == b""


def test_status_query_split_across_feeds_answers_once() -> None:
    interpreter = Interpreter()
    assert interpreter.feed(b"Hello\x10") == b""
    assert interpreter.feed(b"\x04") == b""
    assert interpreter.feed(b"\x01\n") == b"\x12"
    assert interpreter.feed(b"") == b""
    assert interpreter.finish().receipts[0].text_lines() == ["Hello"]


def test_status_bytes_inside_image_data_are_not_answered() -> None:
    image = b"\x1dv0\x00\x03\x00\x02\x00" + b"\x10\x04\x01\x10\x04\x02"
    interpreter = Interpreter()
    assert interpreter.feed(image) == b""
    (raster,) = elements(interpreter.finish(), Raster)
    assert raster.bits == b"\x10\x04\x01\x10\x04\x02"


# ---------------------------------------------------------------- chunking


@pytest.mark.parametrize("size", [1, 7])
def test_chunked_feeding_gives_the_same_job(size: int) -> None:
    for path in ALL_SAMPLES:
        data = load(path)
        assert fed_in_chunks(data, size) == interpret(data), path.name


def test_big_image_is_parsed_once() -> None:
    rows = 2 * 1024 * 1024 // 72
    data = b"\x1dv0\x00" + (72).to_bytes(2, "little") + rows.to_bytes(2, "little") + b"\xaa" * (72 * rows)
    interpreter = Interpreter()
    calls = 0
    original = interpreter._parse

    def counting() -> None:
        nonlocal calls
        calls += 1
        original()

    interpreter._parse = counting  # type: ignore[method-assign]
    for start in range(0, len(data), 4096):
        interpreter.feed(data[start:start + 4096])
    assert calls <= 2
    (raster,) = elements(interpreter.finish(), Raster)
    assert (raster.width, raster.height) == (576, rows)


def test_stripes_join_into_one_raster() -> None:
    stripe = b"\x1dv0\x00\x02\x00\x18\x00" + b"\xf0\x0f" * 24
    job = interpret(b"\x1b@" + stripe * 5 + b"\x1dVA\x03")
    (raster,) = elements(job, Raster)
    assert (raster.width, raster.height) == (16, 120)
    separated = interpret(stripe + b"\n" + stripe)
    assert len(elements(separated, Raster)) == 2


# --------------------------------------------------------------- bad input


@pytest.mark.parametrize("path", [ESCPOS / "escpos-php_demo.bin", TAKEPOS / "cafe-logo.bin",
                                  ESCPOS / "escpos-php_pdf417-code.bin"], ids=lambda p: p.name)
def test_truncated_samples(path: Path) -> None:
    data = load(path)
    rng = random.Random(13)
    truncated = 0
    for cut in sorted(rng.sample(range(1, len(data)), 25)):
        job = interpret(data[:cut])
        truncated += job.truncated
        if job.truncated:
            assert any("ends inside a command" in w for w in job.warnings)
    assert truncated > 0


def test_huge_declared_image_raises_before_buffering() -> None:
    interpreter = Interpreter()
    with pytest.raises(JobTooLarge) as raised:
        interpreter.feed(b"\x1dv0\x00\xff\xff\xff\xff" + b"\x00" * 100)
    assert raised.value.limit == "max_bytes"


def test_too_much_text_raises() -> None:
    with pytest.raises(JobTooLarge):
        interpret(b"x" * (20 * 1024 * 1024))
    interpreter = Interpreter()
    with pytest.raises(JobTooLarge) as raised:
        for _ in range(40):
            interpreter.feed((b"y" * 999 + b"\n") * 1000)
    assert raised.value.limit == "max_text_chars"


def test_limits_on_receipts_and_images() -> None:
    with pytest.raises(JobTooLarge) as raised:
        interpret(b"x\x1dVA\x03" * 51)
    assert raised.value.limit == "max_receipts"
    with pytest.raises(JobTooLarge) as raised:
        interpret(b"\x1dv0\x00\x00\x04\x01\x00" + b"\x00" * 1024)
    assert raised.value.limit == "max_image_width"
    small = Limits(max_image_dots=1000)
    with pytest.raises(JobTooLarge):
        interpret(b"\x1dv0\x00\x10\x00\x10\x00" + b"\x00" * 256, small)


def test_unknown_commands_warn_without_text() -> None:
    job = interpret(b"Secret\x1d\x99 name\n\x1b\xfe\x1c(Z\x02\x00ab\n")
    assert job.receipts[0].text_lines() == ["Secret name", ""]
    assert job.warnings == ["unknown command GS 0x99 at byte 6", "unknown command ESC 0xFE at byte 14"]
    assert not any("Secret" in w for w in job.warnings)


def test_random_garbage() -> None:
    rng = random.Random(2024)
    for _ in range(30):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))
        try:
            job = interpret(data)
        except JobTooLarge:
            continue
        assert isinstance(job, Job)


def test_text_features() -> None:
    job = interpret(b"\x1b@a\tb\x1bD\x0a\x00\tc\n\x1b!\x38Big\x1b!\x00 small\n\x1bt\x10\x80 \x96\n"
                    b"\x1bR\x01@\x1b@@\r\n\x1bJ\x40\x1bd\x03")
    receipt = job.receipts[0]
    assert receipt.text_lines() == ["a       b c", "Big small", "€ –", "à@"]
    big = receipt.elements[1]
    assert isinstance(big, TextLine) and big.spans[0].bold and big.spans[0].width == 2
    assert not receipt.cut and [getattr(e, "dots", None) for e in receipt.elements[-2:]] == [64, 90]


# ------------------------------------------------------------------- fuzzing

COMMAND_KEYS = sorted(COMMANDS)


def _sized(head: bytes, body: bytes) -> bytes:
    return head + len(body).to_bytes(2, "little") + body


def command_stream() -> st.SearchStrategy[bytes]:
    """Random commands of the table with random arguments, plus well-formed length-bearing ones (2D codes,
    graphics, raster and column images) so the handlers behind the lengths run too."""
    command = st.tuples(st.sampled_from(COMMAND_KEYS), st.binary(max_size=12)).map(
        lambda pair: bytes(pair[0]) + pair[1])
    family = st.tuples(st.sampled_from([b"\x1d(k1", b"\x1d(k0", b"\x1d(L", b"\x1b(A", b"\x1c(A", b"\x1d(E"]),
                       st.binary(max_size=30)).map(lambda pair: _sized(pair[0][:3], pair[0][3:] + pair[1]))
    qr = st.binary(min_size=1, max_size=40).map(
        lambda data: _sized(b"\x1d(k", b"1P0" + data) + b"\x1d(k\x03\x001Q0")
    graphics = st.tuples(st.integers(1, 20), st.integers(1, 20), st.integers(1, 2), st.randoms()).map(
        lambda t: _sized(b"\x1d(L", b"0p0" + bytes([t[2], t[2]]) + b"1" + t[0].to_bytes(2, "little")
                         + t[1].to_bytes(2, "little") + t[3].randbytes((t[0] + 7) // 8 * t[1])) + b"\x1d(L\x02\x0002")
    raster = st.tuples(st.integers(0, 51), st.integers(0, 4), st.integers(0, 30), st.randoms()).map(
        lambda t: b"\x1dv0" + bytes([t[0], t[1], 0, t[2], 0]) + t[3].randbytes(t[1] * t[2]))
    band = st.tuples(st.sampled_from([0, 1, 32, 33]), st.integers(0, 20), st.randoms()).map(
        lambda t: b"\x1b*" + bytes([t[0], t[1], 0]) + t[2].randbytes(t[1] * (3 if t[0] >= 32 else 1)) + b"\n")
    text = st.binary(max_size=20).map(lambda b: bytes(c | 0x20 for c in b) + b"\n")
    return st.lists(st.one_of(command, family, qr, graphics, raster, band, text, st.just(b"\x1dVA\x03")),
                    max_size=25).map(b"".join)


def check_job(data: bytes, cuts: list[int]) -> None:
    try:
        whole: Job | None = interpret(data)
    except JobTooLarge:
        whole = None
    interpreter = Interpreter()
    try:
        previous = 0
        for cut in sorted(set(cuts)) + [len(data)]:
            interpreter.feed(data[previous:cut])
            previous = max(previous, cut)
        chunked: Job | None = interpreter.finish()
    except JobTooLarge:
        chunked = None
    assert chunked == whole
    if whole is not None:
        for raster in elements(whole, Raster):
            assert len(raster.bits) == raster.row_bytes() * raster.height


def _receipts_ok(receipts: list[Receipt]) -> bool:
    return all(r.prints_anything() for r in receipts)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=400), command_stream()), cuts=st.lists(st.integers(0, 400), max_size=8))
def test_fuzz_whole_equals_chunked(data: bytes, cuts: list[int]) -> None:
    check_job(data, [c for c in cuts if c <= len(data)])
    try:
        assert _receipts_ok(interpret(data).receipts)
    except JobTooLarge:
        pass


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=4000), command_stream()), cuts=st.lists(st.integers(0, 4000), max_size=30))
def test_fuzz_whole_equals_chunked_heavy(data: bytes, cuts: list[int]) -> None:
    check_job(data, [c for c in cuts if c <= len(data)])


def test_printer_information_replies() -> None:
    interpreter = Interpreter()
    assert interpreter.feed(b"\x1dIA\x1dIB\x1dID\x1dIE") == b"_1.00\x00_EPSON\x00_0000000000\x00_\x00"
    assert interpreter.feed(b"\x1bu\x00\x1bv\x10\x04\x07\x01\x1dI\x63") == b"\x00\x00"


def test_user_defined_characters_skipped_by_declared_length() -> None:
    glyph = b"\x1b&\x03AB" + (b"\x02" + b"\xff" * 6) * 2  # y=3, chars A..B, each x=2 columns
    job = interpret(b"\x1b%\x01" + glyph + b"AB\x1b?A\n")
    assert job.receipts[0].text_lines() == ["AB"]
    assert len(job.warnings) == 1 and "user-defined" in job.warnings[0]


def test_column_images_and_downloaded_image() -> None:
    band8 = b"\x1b*\x00\x03\x00\x80\x01\xff"  # 8-dot single density: 3 columns
    (raster,) = elements(interpret(b"\x1b3\x18" + band8 + b"\n" + band8 + b"\n\x1b2"), Raster)
    assert (raster.width, raster.height, raster.scale_x, raster.scale_y) == (3, 16, 2, 3)
    assert raster.pixel(0, 0) and not raster.pixel(0, 1) and raster.pixel(1, 7) and raster.pixel(2, 4)
    downloaded = b"\x1d*\x01\x01" + bytes([0x80] + [0] * 7) + b"\x1d/\x03"
    (image,) = elements(interpret(downloaded), Raster)
    assert (image.width, image.height, image.scale_x, image.scale_y) == (8, 8, 2, 2)
    assert image.pixel(0, 0) and not image.pixel(1, 0) and not image.pixel(0, 1)


def test_every_cut_form_ends_a_receipt() -> None:
    cuts = [b"\x1dV\x00", b"\x1dV\x01", b"\x1dV0", b"\x1dV1", b"\x1dVA\x05", b"\x1dVB\x00", b"\x1bi", b"\x1bm"]
    job = interpret(b"".join(b"line %d\n" % i + cut for i, cut in enumerate(cuts)) + b"tail")
    assert len(job.receipts) == len(cuts) + 1
    assert [r.cut for r in job.receipts] == [True] * len(cuts) + [False]
    assert job.receipts[-1].text_lines() == ["tail"]
    assert len(interpret(b"\x1dVA\x03\x1dVA\x03x\x1dVA\x03\n\x1dVA\x03").receipts) == 1
