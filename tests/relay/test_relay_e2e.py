"""Device and relay as real processes on loopback: publishing, outages, restarts, refusals, privacy."""

from __future__ import annotations

import contextlib
import functools
import json
import socket
import threading
import time
from pathlib import Path

import httpx

from relay.crypto import Signer, new_token, parse_token
from tests.conftest import Appliance, fetch_link, free_port, link_secret, samples, wait_for
from tests.relay.conftest import RelayProc

PDFS = [p for p in samples("pdf") if "password" not in p.name and "encrypt" not in p.name]


def _send(app: Appliance, token: str, pdf: bytes) -> dict[str, str]:
    r = app.api.post("/api/v1/tickets", content=pdf,
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"})
    assert r.status_code == 201, r.text
    body: dict[str, str] = r.json()
    return body


def _relay_status(app: Appliance) -> dict[str, object]:
    status: dict[str, object] = httpx.get(app.url + "/healthz").json()["relay"]
    return status


def _device_signer(app: Appliance) -> Signer:
    return Signer((app.data_dir / "tls" / "key.pem").read_bytes())


def test_happy_path_qr_points_at_the_relay_and_serves_the_same_bytes_then_the_screen_says_downloaded(
    appliance_factory: object, relay_factory: object
) -> None:
    relay: RelayProc = relay_factory()  # type: ignore[operator]
    app: Appliance = appliance_factory("--relay-url", relay.url)  # type: ignore[operator]
    token = app.pair()
    pdf = PDFS[0].read_bytes()
    sent = _send(app, token, pdf)
    assert sent["url"].startswith(relay.url + "/r#")  # a blind link: the secret never reaches the relay
    assert len(sent["url"]) == len(relay.url + "/r/") + 28  # as long as the v1 links (small panels' QR)
    assert app.display()["ticket"]["url"] == sent["url"]  # type: ignore[index]
    wait_for(lambda: _relay_status(app)["sent"] == 1, 15, "the upload")
    got = fetch_link(sent["url"])
    assert got.status_code == 200 and got.headers["content-type"] == "application/pdf"
    assert got.content == pdf
    wait_for(lambda: app.display()["scene"] == "downloaded", 10, "the downloaded scene from the relay's notice")
    status = _relay_status(app)
    assert status["pending"] == 0 and status["last_error"] is None
    admin = app.admin("GET", "/status").json()
    assert admin["relay"]["sent"] == 1 and admin["relay"]["relay_id"] == _device_signer(app).relay_id


def test_relay_down_at_sale_time_qr_shown_anyway_then_same_url_serves_same_bytes(
    appliance_factory: object, relay_factory: object
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app: Appliance = appliance_factory("--relay-url", url)  # type: ignore[operator]
    token = app.pair()
    pdf = PDFS[1].read_bytes()
    started = time.monotonic()
    sent = _send(app, token, pdf)
    assert time.monotonic() - started < 5  # the POS is never held up by the relay (generous bound)
    assert app.display()["scene"] == "ticket" and app.display()["ticket"]["url"] == sent["url"]  # type: ignore[index]
    wait_for(lambda: _relay_status(app)["last_error"] is not None, 10, "the failed attempt in /healthz")
    status = _relay_status(app)
    assert status["pending"] == 1 and "unreachable" in str(status["last_error"])
    relay: RelayProc = relay_factory(port=port)  # type: ignore[operator]
    wait_for(lambda: _relay_status(app)["sent"] == 1, 60, "the upload once the relay is back")
    assert fetch_link(sent["url"]).content == pdf
    assert relay.url == url


def test_device_restarted_with_uploads_queued_publishes_them_all(
    appliance_factory: object, relay_factory: object, tmp_path: Path
) -> None:
    port = free_port()
    app: Appliance = appliance_factory("--relay-url", f"http://127.0.0.1:{port}")  # type: ignore[operator]
    token = app.pair()
    pdfs = [p.read_bytes() for p in PDFS[:3]]
    sent = [_send(app, token, pdf) for pdf in pdfs]
    assert _relay_status(app)["pending"] == 3
    app.kill9()  # a power cut with three receipts not yet published
    relay_factory(port=port)  # type: ignore[operator]
    app.start()
    wait_for(lambda: _relay_status(app)["sent"] == 3, 60, "the queued uploads after the restart")
    for body, pdf in zip(sent, pdfs, strict=True):
        assert fetch_link(body["url"]).content == pdf


def test_tampered_foreign_and_replayed_uploads(appliance_factory: object, relay_factory: object) -> None:
    relay: RelayProc = relay_factory()  # type: ignore[operator]
    app: Appliance = appliance_factory("--relay-url", relay.url)  # type: ignore[operator]
    token = app.pair()
    pdf = PDFS[0].read_bytes()
    sent = _send(app, token, pdf)
    wait_for(lambda: _relay_status(app)["sent"] == 1, 15, "the upload")
    keys = parse_token(link_secret(sent["url"]))
    signer = _device_signer(app)
    path = f"/api/v1/receipts/{keys.rid}"
    sealed = keys.seal(pdf)
    expires = int(time.time()) + 3600

    # A replay of the device's own upload (same bytes, same signature): harmless, nothing changes.
    headers = signer.headers("PUT", path, sealed, expires=expires)
    replay = httpx.put(relay.url + path, content=sealed, headers=headers)
    assert replay.status_code == 200, replay.text

    # Tampered in transit: the signature no longer matches the body.
    tampered = bytearray(sealed)
    tampered[10] ^= 1
    r = httpx.put(relay.url + path, content=bytes(tampered), headers=headers)
    assert r.status_code == 401 and r.json()["type"].endswith("/bad-signature")

    # Unsigned: refused, naming the missing header.
    r = httpx.put(relay.url + path, content=sealed)
    assert r.status_code == 401 and "Eticket-Key" in r.json()["detail"]

    # Another device (its own valid key) tries to overwrite the receipt: conflict, receipt intact.
    other = Signer(_new_key_pem())
    fake = b"%PDF-1.4 forged"
    r = httpx.put(relay.url + path, content=fake, headers=other.headers("PUT", path, fake, expires=expires))
    assert r.status_code == 409 and r.json()["type"].endswith("/receipt-conflict")
    assert fetch_link(sent["url"]).content == pdf

    # A stale signature (a replay captured long ago) is refused.
    old = signer.headers("PUT", path, sealed, expires=expires, now=time.time() - 3600)
    r = httpx.put(relay.url + path, content=sealed, headers=old)
    assert r.status_code == 401 and "Eticket-Date" in r.json()["detail"]


def _new_key_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def test_pending_expired_unknown_and_rate_limited_links(relay_factory: object) -> None:
    relay: RelayProc = relay_factory("--miss-limit", "5")  # type: ignore[operator]
    html = {"Accept": "text/html"}
    pending = httpx.get(relay.url + "/r/" + new_token(), headers=html)
    assert pending.status_code == 200 and "on its way" in pending.text
    assert "http-equiv=refresh" in pending.text and "<script" not in pending.text
    assert pending.headers["cache-control"] == "no-store"
    expired = httpx.get(relay.url + "/r/" + new_token(time.time() - 40 * 86_400))
    assert expired.status_code == 410 and expired.json()["type"].endswith("/expired")
    unknown = httpx.get(relay.url + "/r/" + new_token(time.time() - 10 * 86_400))
    assert unknown.status_code == 404
    for _ in range(3):
        assert httpx.get(relay.url + "/r/not-a-token-at-all-xxxxxxxxx").status_code == 404
    limited = httpx.get(relay.url + "/r/" + new_token(time.time() - 10 * 86_400))
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    assert limited.json()["type"].endswith("/too-many-misses")


def test_an_uploaded_receipt_expires_with_410(relay_factory: object) -> None:
    relay: RelayProc = relay_factory()  # type: ignore[operator]
    token = new_token()
    keys = parse_token(token)
    signer = Signer(_new_key_pem())
    sealed = keys.seal(b"%PDF-1.4 short-lived")
    path = f"/api/v1/receipts/{keys.rid}"
    r = httpx.put(relay.url + path, content=sealed, headers=signer.headers("PUT", path, sealed,
                                                                            expires=int(time.time()) + 4))
    assert r.status_code == 201, r.text
    assert httpx.get(f"{relay.url}/r/{token}").content == b"%PDF-1.4 short-lived"
    time.sleep(5)
    assert httpx.get(f"{relay.url}/r/{token}").status_code == 410


def test_quota_and_operator_block_are_clear_problems_and_show_on_the_device(
    appliance_factory: object, relay_factory: object
) -> None:
    relay: RelayProc = relay_factory("--quota-receipts", "1")  # type: ignore[operator]
    app: Appliance = appliance_factory("--relay-url", relay.url)  # type: ignore[operator]
    token = app.pair()
    _send(app, token, PDFS[0].read_bytes())
    wait_for(lambda: _relay_status(app)["sent"] == 1, 15, "the first upload")
    _send(app, token, PDFS[1].read_bytes())
    wait_for(lambda: "quota" in str(_relay_status(app)["last_error"]), 15, "the quota refusal")
    assert _relay_status(app)["pending"] == 1  # kept, retried after the quota resets

    device = _device_signer(app).relay_id
    blocked = relay.admin("block", device, "--reason", "abuse")
    assert blocked.returncode == 0, blocked.stderr
    keys = parse_token(new_token())
    path = f"/api/v1/receipts/{keys.rid}"

    def upload() -> httpx.Response:
        return httpx.put(relay.url + path, content=b"x", headers=_device_signer(app).headers(
            "PUT", path, b"x", expires=int(time.time()) + 60))

    wait_for(lambda: upload().status_code == 403, 15, "the block to reach the relay (cached up to 10 s)")
    assert upload().json()["type"].endswith("/device-blocked")
    assert relay.admin("unblock", device).returncode == 0
    bad = relay.admin("block", "nonsense")
    assert bad.returncode == 2 and "43" in bad.stderr


def test_storage_and_logs_hold_no_plaintext_and_no_token(appliance_factory: object, relay_factory: object) -> None:
    relay: RelayProc = relay_factory()  # type: ignore[operator]
    app: Appliance = appliance_factory("--relay-url", relay.url)  # type: ignore[operator]
    pos = app.pair()
    pdfs = [p.read_bytes() for p in PDFS[:4]]
    tokens = []
    for pdf in pdfs:
        url = _send(app, pos, pdf)["url"]
        tokens.append(link_secret(url))
        fetch_link(url)  # maybe "on its way", maybe the PDF
    wait_for(lambda: _relay_status(app)["sent"] == 4, 20, "the uploads")
    for url_token, pdf in zip(tokens, pdfs, strict=True):
        assert fetch_link(f"{relay.url}/r#{url_token}").content == pdf
    stored = b"".join(p.read_bytes() for p in Path(relay.storage).rglob("*") if p.is_file())
    assert stored, "the relay stored nothing"
    assert b"%PDF" not in stored
    for pdf in pdfs:
        for offset in range(0, len(pdf) - 64, max(1, len(pdf) // 8)):
            assert pdf[offset:offset + 64] not in stored
    texts = [stored.decode("latin-1"), relay.logs(), app.logs()]
    for url_token in tokens:
        for text in texts:
            assert url_token not in text
    assert json.dumps(pos) not in relay.logs()


def _downloaded_at(app: Appliance) -> dict[str, float | None]:
    import sqlite3

    db = sqlite3.connect(f"file:{app.data_dir / 'eticket.sqlite3'}?mode=ro", uri=True)
    try:
        return {str(i): at for i, at in db.execute("SELECT id, downloaded_at FROM tickets")}
    finally:
        db.close()


def _sent_is(app: Appliance, count: int) -> bool:
    return _relay_status(app)["sent"] == count


class PollWatch:
    """A byte-forwarding TCP proxy in front of the real relay that watches the device's status polls: how many
    are open at once (request sent, answer not yet come) and how many the device abandoned (closed the
    connection before the answer: a relay may go on counting those against the device's limit)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.open = self.max_open = self.abandoned = self.polls = 0
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            state = {"polling": False}
            threading.Thread(target=self._up, args=(client, upstream, state), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, state), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket, state: dict[str, bool]) -> None:
        try:
            while data := client.recv(65536):
                if data.startswith(b"POST /api/v1/status"):
                    with self._lock:
                        state["polling"] = True
                        self.polls += 1
                        self.open += 1
                        self.max_open = max(self.max_open, self.open)
                upstream.sendall(data)
        except OSError:
            pass
        with self._lock:
            if state["polling"]:
                state["polling"] = False
                self.open -= 1
                self.abandoned += 1
        for sock in (upstream, client):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _down(self, upstream: socket.socket, client: socket.socket, state: dict[str, bool]) -> None:
        try:
            while data := upstream.recv(65536):
                with self._lock:
                    if state["polling"] and data.startswith(b"HTTP/1.1 "):
                        state["polling"] = False
                        self.open -= 1
                client.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._sock.close()


def test_a_burst_of_receipts_stays_within_the_relays_poll_limit_and_every_download_is_noticed(
    appliance_factory: object, relay_factory: object
) -> None:
    """A busy counter: while the device long-polls for one receipt, three more are sold in a burst (twice).
    The device never has more than the relay's 2 status polls per device open and never abandons one (a relay
    may go on counting it), the relay never answers 429, every receipt reaches the relay, and the device hears
    of every download."""
    relay: RelayProc = relay_factory()  # type: ignore[operator]
    watch = PollWatch(relay.port)
    try:
        app: Appliance = appliance_factory("--relay-url", watch.url)  # type: ignore[operator]
        token = app.pair()
        sent = [_send(app, token, PDFS[0].read_bytes())]
        wait_for(lambda: _relay_status(app)["sent"] == 1, 15, "the first upload")
        wait_for(lambda: watch.open == 1, 5, "the long poll for it")
        for round_ in range(2):
            sent += [_send(app, token, pdf.read_bytes()) for pdf in PDFS[1:4]]
            wait_for(functools.partial(_sent_is, app, len(sent)), 20, f"burst {round_} uploaded")
            time.sleep(1.5)
        for body in sent:
            assert fetch_link(body["url"]).status_code == 200
        wait_for(lambda: all(at is not None for at in _downloaded_at(app).values()), 30,
                 "the device to hear of every download from the relay")
        assert app.display()["scene"] == "downloaded"
        assert watch.max_open <= 2 and watch.abandoned == 0, vars(watch)
        assert watch.polls >= 3, vars(watch)  # it did ask again for the receipts of the bursts
    finally:
        watch.close()
    assert '"POST /api/v1/status" 429' not in relay.logs()
    assert "download status query failed" not in app.logs()
    assert _relay_status(app)["last_error"] is None
