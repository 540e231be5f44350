"""A relay's operator is not trusted (docs/security.md, "The relay"): what the device and ``eticket relay
check-page`` do with a hostile one, and edges of the relay's own routes found by trying to break them."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.crypto import Signer, new_secret, parse_token
from relay.page import PAGE_SHA256
from tests.conftest import ETICKET, REPO, Appliance, wait_for
from tests.relay.conftest import RelayProc
from tests.relay.test_blind_page import PDF, _key_pem

MiB = 1 << 20


class Hostile(BaseHTTPRequestHandler):
    """A relay that answers ``/healthz`` as a blind relay and ``/r`` as its ``mode`` says: ``bomb`` (gzip
    unpacking to 200 MiB), ``huge`` (300 MiB, no length), ``slow`` (a byte every 4 s), ``v1`` (a relay
    without blind links)."""

    mode = "bomb"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/healthz":
            body = json.dumps({"status": "ok", "links": [1] if self.mode == "v1" else [1, 2]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Connection", "close")
        try:
            if self.mode == "bomb":
                packer = zlib.compressobj(9, zlib.DEFLATED, 31)
                self.send_header("Content-Encoding", "gzip")
                self.end_headers()
                zeros = bytes(MiB)
                for _ in range(200):
                    self.wfile.write(packer.compress(zeros))
                self.wfile.write(packer.flush())
            elif self.mode == "huge":
                self.end_headers()
                chunk = b"<p>" + b"x" * (MiB - 3)
                for _ in range(300):
                    self.wfile.write(chunk)
            elif self.mode == "slow":
                self.end_headers()
                for _ in range(30):
                    self.wfile.write(b"<")
                    self.wfile.flush()
                    time.sleep(4)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def hostile() -> Iterator[tuple[str, type[Hostile]]]:
    handler = type("HostileRelay", (Hostile,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def _peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM), MiB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


def _check_page(*args: str, timeout: float = 60) -> tuple[int, str, float, float]:
    """Run ``eticket relay check-page ARGS``: (exit code, output, peak RSS MiB, seconds)."""
    started = time.monotonic()
    proc = subprocess.Popen([*ETICKET, "relay", "check-page", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=REPO, text=True)
    peak = 0.0
    while proc.poll() is None and time.monotonic() - started < timeout:
        peak = max(peak, _peak_rss_mib(proc.pid))
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    output = proc.communicate()[0]
    return proc.returncode, output, peak, time.monotonic() - started


@pytest.mark.parametrize("mode", ["bomb", "huge"])
def test_check_page_reads_a_bounded_page_from_a_hostile_relay(hostile: tuple[str, type[Hostile]],
                                                                mode: str) -> None:
    """A page that unpacks to 200 MiB, or 300 MiB of page, is not read whole (before: 1 GiB of memory)."""
    url, handler = hostile
    handler.mode = mode
    code, output, peak, _ = _check_page(url)
    assert code == 1, output
    assert "NOT the published eTicket download page" in output
    assert peak < 120, f"check-page peaked at {peak:.0f} MiB"


def test_check_page_gives_up_on_a_slow_relay(hostile: tuple[str, type[Hostile]]) -> None:
    """A relay trickling its page a byte at a time cannot hold the command past its 15 s deadline (httpx's
    timeout bounds each read, not the exchange)."""
    url, handler = hostile
    handler.mode = "slow"
    code, output, _, took = _check_page(url)
    assert code == 2 and "no complete answer within 15 s" in output, output
    assert took < 25


def test_check_page_takes_the_page_or_a_whole_link_without_printing_its_secret(relay_factory: Any) -> None:
    from relay.crypto import new_token

    relay: RelayProc = relay_factory()
    secret, token = new_secret(), new_token()
    for given in (relay.url, relay.url + "/r", relay.url + "/r/", f"{relay.url}/r#{secret}",
                  f"{relay.url}/r/{token}", f"{relay.url}/r%23{secret}",
                  relay.url.replace("://", f"://user:{secret}@") + "/r"):
        code, output, _, _ = _check_page(given)
        assert code == 0 and "serves the published" in output, (given, output)
        assert secret not in output and token not in output and "/r/r" not in output


@pytest.mark.parametrize("mode", ["bomb", "huge"])
def test_a_device_checks_a_hostile_relays_page_within_its_memory(
        appliance_factory: Any, hostile: tuple[str, type[Hostile]], mode: str) -> None:
    """The device reads its relay's page at start (healthz ``relay.page``): a hostile one is 'different',
    and reading it costs the device no more than a page's worth (a 512 MB board: before, 1 GiB)."""
    url, handler = hostile
    handler.mode = mode
    device: Appliance = appliance_factory("--relay-url", url)
    assert device.proc is not None

    def relay_state() -> dict[str, Any]:
        return dict(httpx.get(device.url + "/healthz").json()["relay"])
    wait_for(lambda: relay_state()["page"] == "different", 30, "the device's verdict on the relay's page")
    assert relay_state()["blind_links"] is True
    assert _peak_rss_mib(device.proc.pid) < 250
    assert "not this release's" in device.logs()


def test_a_device_makes_v1_links_for_a_relay_without_blind_links(
        appliance_factory: Any, hostile: tuple[str, type[Hostile]]) -> None:
    """An older relay (healthz without link version 2) gets v1 links, which it can open, and the device
    says why in its log and /healthz."""
    url, handler = hostile
    handler.mode = "v1"
    device: Appliance = appliance_factory("--relay-url", url)
    wait_for(lambda: httpx.get(device.url + "/healthz").json()["relay"]["blind_links"] is False, 30,
             "the device's view of an old relay")
    token = device.pair()
    answer = device.api.post("/api/v1/tickets", content=PDF, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/pdf"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["url"].startswith(url + "/r/") and "#" not in answer.json()["url"]
    assert "serves only v1 links" in device.logs()


# --- the relay's own routes ------------------------------------------------------------------------------

def _put(base: str, rid: str, sealed: bytes, *, key: bytes | None = None, expires: int | None = None,
         extra: list[tuple[str, str]] | None = None) -> httpx.Response:
    path = f"/api/v1/receipts/{rid}"
    headers = Signer(key or _key_pem()).headers("PUT", path, sealed, expires=expires or int(time.time()) + 3600)
    return httpx.put(base + path, content=sealed, headers=[*headers.items(), *(extra or [])])


def test_one_receipt_id_is_stored_once_when_two_devices_race_for_it(relay_factory: Any) -> None:
    """Two devices uploading one id at once: one 201, the other 409, and the record describes the bytes
    stored (before: often both 201, one receipt lost, the record pointing at the other's bytes)."""
    relay: RelayProc = relay_factory()
    for _ in range(6):
        rid = parse_token(new_secret()).rid
        bodies = [os.urandom(40_000), os.urandom(40_000)]
        keys = [_key_pem(), _key_pem()]
        with concurrent.futures.ThreadPoolExecutor(2) as pool:  # two shops (the relay trusts a local proxy)
            answers = list(pool.map(
                lambda body, key, shop, rid=rid: _put(relay.url, rid, body, key=key,
                                                      extra=[("X-Forwarded-For", shop)]),
                bodies, keys, ("10.0.0.1", "10.0.1.1")))
        assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
        stored = httpx.get(f"{relay.url}/o/{rid}")
        winner = bodies[[a.status_code for a in answers].index(201)]
        assert stored.content == winner
        assert stored.headers["etag"] == f'"{hashlib.sha256(winner).hexdigest()}"'


def test_a_signed_header_sent_twice_is_refused(relay_factory: Any) -> None:
    """The signature covers one Eticket-Expires; a second one (a proxy's, an attacker's) must not set the
    stored expiry (before: the first was stored, the last was checked)."""
    relay: RelayProc = relay_factory()
    rid = parse_token(new_secret()).rid
    answer = _put(relay.url, rid, b"sealed", extra=[("Eticket-Expires", str(int(time.time()) + 60))])
    assert answer.status_code == 400 and "eticket-expires appears more than once" in answer.json()["detail"]
    assert httpx.get(f"{relay.url}/o/{rid}").status_code == 404


def test_a_repeated_upload_answers_the_stored_expiry(relay_factory: Any) -> None:
    relay: RelayProc = relay_factory()
    rid, key = parse_token(new_secret()).rid, _key_pem()
    first = _put(relay.url, rid, b"sealed bytes", key=key, expires=int(time.time()) + 7200)
    assert first.status_code == 201
    again = _put(relay.url, rid, b"sealed bytes", key=key, expires=int(time.time()) + 600)
    assert again.status_code == 200 and again.json()["expires"] == first.json()["expires"]


@pytest.mark.parametrize("size", [50_000, 3 * MiB], ids=["inline", "streamed"])
def test_range_and_conditional_requests_follow_rfc_9110(relay_factory: Any, size: int) -> None:
    """Small objects (read on the event loop) and large ones (streamed from the file) answer alike."""
    relay: RelayProc = relay_factory()
    rid = parse_token(new_secret()).rid
    sealed = os.urandom(size)
    assert _put(relay.url, rid, sealed).status_code == 201
    url = f"{relay.url}/o/{rid}"
    etag = httpx.get(url).headers["etag"]
    digits = "9" * 5000
    for header, status, body in [
        ("bytes=5-2", 200, sealed),  # invalid (last < first): ignored, §14.2
        (f"bytes={digits}-", 416, b""), (f"bytes=0-{digits}", 206, sealed), (f"bytes=-{digits}", 206, sealed),
        ("bytes=-0", 416, b""), (f"bytes={size - 3}-{size + 10}", 206, sealed[-3:]), ("bytes=1-1", 206, sealed[1:2]),
    ]:
        answer = httpx.get(url, headers={"Range": header})
        assert answer.status_code == status, (header, answer.status_code, answer.text[:200])
        assert answer.content == body, header
        if status == 416:
            assert answer.headers["content-range"] == f"bytes */{size}"
            assert "immutable" not in answer.headers.get("cache-control", "")
    for tags in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        assert httpx.get(url, headers={"If-None-Match": tags}).status_code == 304, tags
    assert httpx.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


def test_the_page_answers_conditional_requests_and_a_trailing_slash_without_redirect(relay_factory: Any) -> None:
    relay: RelayProc = relay_factory()
    page = httpx.get(relay.url + "/r")
    for tags in (page.headers["etag"], f"W/{page.headers['etag']}", f'"x", {page.headers["etag"]}', "*"):
        assert httpx.get(relay.url + "/r", headers={"If-None-Match": tags}).status_code == 304, tags
    # /r/#secret still opens the page, and no redirect is built from a Host header (it could lose https).
    slash = httpx.get(relay.url + "/r/", headers={"Host": "evil.example"})
    assert slash.status_code == 200 and hashlib.sha256(slash.content).hexdigest() == PAGE_SHA256
    assert httpx.get(f"{relay.url}/o/{parse_token(new_secret()).rid}/", headers={"Host": "evil.example"}
                     ).status_code == 404


def test_storage_directories_are_private_at_every_level(relay_factory: Any) -> None:
    """Quota ledgers hold client networks and device ids: no directory but the root and ``o/`` may be
    listed by another user, whatever the umask (before: ``q/``, ``n/`` and their parents were 0755)."""
    relay: RelayProc = relay_factory()
    assert _put(relay.url, parse_token(new_secret()).rid, b"sealed").status_code == 201
    storage = Path(relay.storage)
    relay.stop()  # as an earlier release left them: listable ledgers
    for ledger in (storage / "q", storage / "n", *(storage / "n").iterdir()):
        ledger.chmod(0o755)
    relay.start()
    directories = [p for p in storage.rglob("*") if p.is_dir() and p != storage / "o"]
    assert directories and all(p.stat().st_mode & 0o077 == 0 for p in directories), \
        [(str(p.relative_to(storage)), oct(p.stat().st_mode & 0o777)) for p in directories
         if p.stat().st_mode & 0o077]


def _held_upload(relay: RelayProc, shop: str, declared: int, sent: int) -> Any:
    """A raw connection that starts a signed-looking upload from ``shop`` (X-Forwarded-For: the relay trusts
    a local proxy), declares ``declared`` body bytes, sends ``sent`` of them and stalls."""
    import socket

    path = f"/api/v1/receipts/{parse_token(new_secret()).rid}"
    headers = Signer(_key_pem()).headers("PUT", path, b"not the body", expires=int(time.time()) + 3600)
    sock = socket.create_connection(("127.0.0.1", relay.port))
    head = [f"PUT {path} HTTP/1.1", f"Host: 127.0.0.1:{relay.port}", f"Content-Length: {declared}",
            f"X-Forwarded-For: {shop}", *(f"{k}: {v}" for k, v in headers.items())]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + bytes(sent))
    return sock


def test_upload_bodies_held_at_once_are_bounded_for_all_clients_together(relay_factory: Any) -> None:
    """A body is read whole before its signature can be checked; uploads from many networks at once cannot
    make the relay hold more than its upload buffer (here 8 MiB; before: 16 forged 20 MiB uploads from four
    addresses took the relay from 100 to 437 MB). Bytes count as they arrive, so heads that declare large
    bodies and send nothing hold nothing; one network holds at most a quarter; past the buffer, 429 with
    Retry-After; then uploads go on."""
    relay: RelayProc = relay_factory("--upload-buffer-mib", "8")
    key = _key_pem()

    def upload(shop: str, size: int) -> httpx.Response:
        return _put(relay.url, parse_token(new_secret()).rid, os.urandom(size), key=key,
                    extra=[("X-Forwarded-For", shop)])
    idle = [_held_upload(relay, f"10.{n}.0.1", 20 * MiB, 0) for n in (1, 2, 3)]
    assert upload("10.9.0.1", MiB).status_code == 201  # declared 60 MiB, sent nothing: nothing held
    greedy = _held_upload(relay, "10.5.0.1", 4 * MiB, 2 * MiB + 256 * 1024)  # over one network's quarter
    greedy.settimeout(10)
    assert b" 429 " in greedy.recv(4096).split(b"\r\n")[0]
    held = [_held_upload(relay, f"10.{n}.0.1", 4 * MiB, 2 * MiB - 128 * 1024) for n in (1, 2, 3, 4)]
    time.sleep(1)
    refused = upload("10.9.0.2", MiB)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "5", refused.text
    assert "too many uploads at once" in refused.json()["detail"]
    for sock in idle + held + [greedy]:
        sock.close()
    wait_for(lambda: upload("10.9.0.2", MiB).status_code == 201, 10, "an upload once the held ones went away",
             interval=0.5)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_ranges_of_large_objects_are_streamed(relay_factory: Any) -> None:
    """Sixteen readers that ask a 20 MiB object for ``bytes=0-`` and never read cost the relay no more than
    those asking without Range (a range read whole into memory took it from 93 to 641 MB); If-Range with
    another tag gets the whole object (RFC 9110 §13.1.5), leading zeros are numbers."""
    import socket

    relay: RelayProc = relay_factory()
    assert relay.proc is not None
    rid = parse_token(new_secret()).rid
    sealed = os.urandom(20 * MiB)
    assert _put(relay.url, rid, sealed).status_code == 201
    url = f"{relay.url}/o/{rid}"
    etag = httpx.get(url, headers={"Range": "bytes=0-0"}).headers["etag"]
    before = _rss_mib(relay.proc.pid)
    readers = []
    for _ in range(16):
        sock = socket.create_connection(("127.0.0.1", relay.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET /o/{rid} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-\r\n\r\n".encode())
        readers.append(sock)
    time.sleep(2)
    grown = _rss_mib(relay.proc.pid) - before
    for sock in readers:
        sock.close()
    assert grown < 60, f"the relay grew by {grown:.0f} MiB"
    other = httpx.get(url, headers={"Range": "bytes=0-1", "If-Range": '"another"'})
    assert other.status_code == 200 and len(other.content) == len(sealed)
    same = httpx.get(url, headers={"Range": "bytes=0-1", "If-Range": etag})
    assert same.status_code == 206 and same.content == sealed[:2]
    zeros = httpx.get(url, headers={"Range": "bytes=" + "0" * 25 + "1-" + "0" * 25 + "2"})
    assert zeros.status_code == 206 and zeros.content == sealed[1:3]
