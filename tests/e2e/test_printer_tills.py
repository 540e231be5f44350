"""Real till software prints to the device: escpos-php (what Dolibarr vendors) through the TakePOS-like till
``../shared/clients/takepos-receipt.php`` over TCP and over the connector, python-escpos's network printer,
and every ESC/POS sample over a raw socket. For each the customer scans the QR drawn by the kiosk, and the
downloaded PDF holds the receipt's lines with their accents and amounts; the logo matches its PNG by pixels."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pikepdf
import pypdfium2 as pdfium
import pytest
from PIL import Image

from tests.conftest import SAMPLES, Appliance, decode_qr_png, free_port, require, run_cli, wait_for
from tests.service.test_printer import send_job

CLIENTS = SAMPLES.parent / "clients"
TAKEPOS = SAMPLES / "takepos"
TILL = CLIENTS / "takepos-receipt.php"


def _php() -> str:
    php = shutil.which("php")
    require(php is not None, "Debian's php-cli is not installed (make test installs it as root)")
    assert php is not None
    modules = subprocess.run([php, "-m"], capture_output=True, text=True, check=True).stdout.lower().split()
    require("intl" in modules and "gd" in modules, "php-intl and php-gd are needed by escpos-php")
    return php


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory, mdns_loopback: None) -> tuple[Appliance, int]:
    """One device with a printer port; 127.0.0.1 is allowed to print."""
    port = free_port()
    root = tmp_path_factory.mktemp("printer")
    app = Appliance(data_dir=root / "data", port=free_port(), extra=["--printer-listen", f"127.0.0.1:{port}"])
    app.start()
    assert app.admin("POST", "/printers?address=127.0.0.1").status_code == 200
    yield app, port
    app.stop()


def _text(pdf: bytes) -> str:
    doc = pdfium.PdfDocument(pdf)
    return "\n".join(doc[i].get_textpage().get_text_range() for i in range(len(doc)))


def _new_ticket(app: Appliance, rows: int, tmp_path: Path, name: str) -> tuple[dict[str, object], bytes]:
    """Wait for the job's ticket; decode its QR from the kiosk's own drawing of the screen; download it."""
    wait_for(lambda: app.ticket_rows() > rows, 20, f"{name}: the job stored as a ticket")
    shot = tmp_path / f"{name}.png"
    env = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1", "HOME": str(tmp_path)}
    run_cli("kiosk", "--data-dir", str(app.data_dir), "--size", "800x480", "--snapshot", str(shot), env=env)
    (url,) = decode_qr_png(shot)
    state = app.display()
    ticket = dict(state["ticket"])  # type: ignore[arg-type]
    assert url == ticket["url"], name
    phone = httpx.get(url)
    assert phone.status_code == 200 and phone.headers["content-type"] == "application/pdf", name
    return ticket, phone.content


def _logo_matches(pdf: bytes, png: Path) -> float:
    """The share of the PNG's dots (black where darker than half) that differ from the PDF's largest image."""
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        images = [pikepdf.PdfImage(raw).as_pil_image() for page in doc.pages for raw in page.get_images().values()]
    assert images, "the PDF holds no image"
    image = max(images, key=lambda i: i.width * i.height).convert("L")
    logo = Image.open(png).convert("L")
    assert image.width >= logo.width and image.height >= logo.height, (image.size, logo.size)
    differ = sum((image.getpixel((x, y)) < 128) != (logo.getpixel((x, y)) < 128)  # type: ignore[operator]
                 for y in range(logo.height) for x in range(logo.width))
    return differ / (logo.width * logo.height)


@pytest.mark.parametrize("logo_mode", ["graphics", "bitImage", "bitImageColumnFormat"])
def test_escpos_php_over_tcp_the_cafe_receipt_with_its_logo(device: tuple[Appliance, int], tmp_path: Path,
                                                            logo_mode: str) -> None:
    """Dolibarr's 'receipt printer' method: its server opens TCP to port 9100 (escpos-php's
    NetworkPrintConnector); the logo as GS ( L, GS v 0 or ESC * columns, font B, 42 columns, QR, drawer."""
    app, port = device
    receipt = json.loads((TAKEPOS / "cafe-logo.json").read_text())
    receipt["logo_mode"] = logo_mode
    (tmp_path / "r.json").write_text(json.dumps(receipt))
    shutil.copy(TAKEPOS / "logo.png", tmp_path / "logo.png")
    rows = app.ticket_rows()
    subprocess.run([_php(), str(TILL), str(tmp_path / "r.json"), "--to", f"tcp:127.0.0.1:{port}"], check=True,
                   timeout=30)
    ticket, pdf = _new_ticket(app, rows, tmp_path, logo_mode)
    text = _text(pdf)
    for line in ("Café de la Gare", "Chocolat chaud à l'ancienne – grand", "Carte bancaire", "7,70"):
        assert line in text, (line, text)
    assert (ticket["total"], ticket["currency"]) == ("7.70", "EUR")
    assert _logo_matches(pdf, TAKEPOS / "logo.png") < 0.02


def test_escpos_php_over_the_connector_with_the_customer_display(device: tuple[Appliance, int],
                                                                 tmp_path: Path) -> None:
    """The 'TakePOS connector' method: the display call while the sale goes on, then invoice=<base64url>
    posted to /printer/index.php; the bakery's receipt, then the shop copy job (two copies, one page)."""
    app, _ = device
    php = _php()
    subprocess.run([php, str(TILL), "--display", "Baguette tradition|2,60", "--to", f"connector:{app.url}"],
                   check=True, timeout=30)
    state = app.display()
    assert state["scene"] == "sale" and [line.strip() for line in state["sale"]["lines"]] == [  # type: ignore[index]
        "Baguette tradition", "2,60"]
    for name, encoding, printer in (("bakery", "b64url", "1"), ("two-copies", "b64", "2")):
        rows = app.ticket_rows()
        subprocess.run([php, str(TILL), str(TAKEPOS / f"{name}.json"), "--to", f"connector:{app.url}",
                        "--encoding", encoding, "--printer", printer], check=True, timeout=30)
        ticket, pdf = _new_ticket(app, rows, tmp_path, name)
        text = _text(pdf)
        if name == "bakery":
            assert "Boulangerie Dupré" in text and "12 rue des Écoles" in text and "Espèces" in text
            assert ticket["total"] == "6.50"
        else:
            assert len(pdfium.PdfDocument(pdf)) == 1, "the shop's copy is dropped"
            assert "Épicerie Martin" in text and "Miel de lavande 500 g" in text and ticket["total"] == "9.80"


def test_python_escpos_network_printer(device: tuple[Appliance, int], tmp_path: Path) -> None:
    """python-escpos's Network printer (another till library), with its own code-page choice for accents and
    the euro sign, a QR and a barcode."""
    from escpos.printer import Network

    app, port = device
    rows = app.ticket_rows()
    printer = Network("127.0.0.1", port=port, timeout=10, profile="TM-T88V")
    printer.open()
    printer.set(align="center", bold=True, double_height=True)
    printer.textln("Fromagerie Lefèvre")
    printer.set(align="left", normal_textsize=True)
    printer.textln("Comté 18 mois      12,40 €")
    printer.textln("Total TTC          12,40 €")
    printer.qr("https://example.invalid/r/42", size=4)
    printer.barcode("4006381333931", "EAN13")
    printer.cut()
    printer.close()
    ticket, pdf = _new_ticket(app, rows, tmp_path, "python-escpos")
    text = _text(pdf)
    assert "Fromagerie Lefèvre" in text and "Comté 18 mois 12,40 €" in text  # pdfium joins runs of spaces
    assert ticket["total"] == "12.40"


def test_every_escpos_sample_over_a_raw_socket_becomes_a_receipt(device: tuple[Appliance, int]) -> None:
    """Every ESC/POS sample (many tills and vendor dialects) is a ticket whose PDF opens; the ones with
    known text keep it (netprinter-xtd's Québec through CP437, the demo's 14 receipts as pages)."""
    app, port = device
    expected = {"escpos-netprinter-xtd_receipt-with-qrcode.bin": "Québec",
                "escpos-php_receipt-with-logo.bin": "ExampleMart Ltd.",
                "esc-pos-preview-tools_minimal.bin": "Hello, World!"}
    seen: set[object] = set()
    samples = sorted((SAMPLES / "escpos").glob("*.bin"))
    assert len(samples) >= 17
    for sample in samples:
        rows = app.ticket_rows()
        send_job(port, sample.read_bytes())
        wait_for(lambda: app.ticket_rows() > rows, 30, f"{sample.name} stored")  # noqa: B023
        wait_for(lambda: (app.display()["ticket"] or {}).get("id") not in seen, 5, "its QR on screen")  # noqa: B023
        ticket = app.display()["ticket"]
        seen.add(ticket["id"])  # type: ignore[index]
        pdf = httpx.get(str(ticket["url"])).content  # type: ignore[index]
        assert pdf.startswith(b"%PDF"), sample.name
        if sample.name in expected:
            assert expected[sample.name] in _text(pdf), sample.name
        if sample.name == "escpos-php_demo.bin":
            assert len(pdfium.PdfDocument(pdf)) >= 10, "the demo's receipts are pages of one PDF"
