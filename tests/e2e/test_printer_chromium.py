"""The TakePOS connector from a real browser: headless Chromium runs a till page on another origin that
shows the sale on the customer display and posts the receipt as TakePOS does (``"invoice=" + data``,
form-encoded, from the till's browser). Over plain HTTP, and over HTTPS as docs/protocol.md §12.2 recommends
for an ``https://`` Dolibarr (the device's certificate accepted once: Chromium told to trust its key); an
https page posting to the device's plain-HTTP port is blocked as mixed content, as the docs say."""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import SAMPLES, Appliance, free_port, wait_for
from tests.e2e.chromium import chromium

PAGE = """<!doctype html><meta charset="utf-8"><title>till</title><body><script>
function call(method, url, body, done) {
  var xhr = new XMLHttpRequest();
  xhr.open(method, url);
  if (body !== null) xhr.setRequestHeader("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8");
  xhr.onload = function () { done(xhr.status + " " + xhr.responseText); };
  xhr.onerror = function () { done("blocked"); };
  xhr.send(body);
}
var server = "%(server)s";
call("GET", server + "/display/index.php?text=" + encodeURIComponent("%(display)s"), null, function (shown) {
  call("POST", server + "/printer/index.php", "invoice=" + "%(invoice)s", function (printed) {
    document.title = "done";
    document.body.setAttribute("data-shown", shown);
    document.body.setAttribute("data-printed", printed);
  });
});
</script>"""


def _self_signed(directory: Path) -> tuple[Path, Path, bytes]:
    """A certificate for 127.0.0.1 (the till page's own HTTPS server): cert path, key path, SPKI DER."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dolibarr.test")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "page.pem", directory / "page.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path, cert.public_key().public_bytes(serialization.Encoding.DER,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo)


def _spki_hash(spki_der: bytes) -> str:
    return base64.b64encode(hashlib.sha256(spki_der).digest()).decode()


class _Page:
    """A till page server on its own origin (another port: another origin)."""

    def __init__(self, tls: tuple[Path, Path] | None) -> None:
        self.html = ""
        page = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                body = page.html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory, mdns_loopback: None) -> Iterator[Appliance]:
    app = Appliance(data_dir=tmp_path_factory.mktemp("chromium-till") / "data", port=free_port())
    app.start()
    assert app.admin("POST", "/printers?address=127.0.0.1").status_code == 200
    yield app
    app.stop()


def _run_till_page(browser: object, page_server: _Page, server: str) -> dict[str, str]:
    job = (SAMPLES / "takepos" / "bakery.bin").read_bytes()
    page_server.html = PAGE % {"server": server, "display": "Baguette tradition  " + "2,60".rjust(20),
                               "invoice": base64.urlsafe_b64encode(job).decode().rstrip("=")}
    context = browser.new_context(ignore_https_errors=False)  # type: ignore[attr-defined]
    try:
        page = context.new_page()
        page.goto(page_server.url)
        page.wait_for_function("document.title === 'done'", timeout=30_000)
        return {"shown": page.get_attribute("body", "data-shown"), "printed": page.get_attribute("body",
                                                                                                 "data-printed")}
    finally:
        context.close()


def test_a_till_page_on_another_origin_prints_over_plain_http(device: Appliance) -> None:
    page_server = _Page(tls=None)
    try:
        with chromium() as browser:
            rows = device.ticket_rows()
            result = _run_till_page(browser, page_server, device.url)
    finally:
        page_server.close()
    assert result["shown"].startswith("200 ") and "Baguette tradition" in result["shown"]
    assert result["printed"].startswith("200 ") and '"total":"6.50"' in result["printed"], result
    wait_for(lambda: device.ticket_rows() == rows + 1, 10, "the page's receipt stored")
    assert device.display()["scene"] == "ticket"


def test_an_https_till_page_prints_to_the_devices_https_port_once_its_certificate_is_accepted(
        device: Appliance, tmp_path: Path) -> None:
    cert, key, page_spki = _self_signed(tmp_path)
    device_spki = x509.load_pem_x509_certificate(device.cert_pem().encode()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    trusted = f"--ignore-certificate-errors-spki-list={_spki_hash(page_spki)},{_spki_hash(device_spki)}"
    # Names, not 127.0.0.1: browsers exempt loopback addresses from mixed-content blocking, a LAN device is not
    names = "--host-resolver-rules=MAP dolibarr.test 127.0.0.1, MAP device.test 127.0.0.1"
    page_server = _Page(tls=(cert, key))
    page_server.url = page_server.url.replace("127.0.0.1", "dolibarr.test")
    try:
        with chromium(trusted, names) as browser:
            rows = device.ticket_rows()
            over_https = _run_till_page(browser, page_server, f"https://device.test:{device.api_port}")
            mixed = _run_till_page(browser, page_server, f"http://device.test:{device.port}")
    finally:
        page_server.close()
    assert over_https["printed"].startswith("200 "), over_https
    wait_for(lambda: device.ticket_rows() == rows + 1, 10, "the https page's receipt stored")
    assert mixed == {"shown": "blocked", "printed": "blocked"}, mixed  # mixed content, as the docs say
    assert device.ticket_rows() == rows + 1
