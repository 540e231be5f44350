"""Bad input against the relay, and a hostile relay against the device: clear refusals, nothing lost, nothing
stalled. (Findings of a security review, kept as regressions.)"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import sqlite3
import threading
import time
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from relay.crypto import Signer, b64u, new_token, parse_token, signing_payload
from tests.conftest import Appliance, free_port, samples, wait_for
from tests.relay.conftest import RelayProc
from tests.relay.test_relay_e2e import _new_key_pem


def _put(relay: RelayProc, signer: Signer, keys_token: str | None = None, body: bytes = b"sealed",
         expires: int | None = None, **override: str | bytes) -> httpx.Response:
    keys = parse_token(keys_token or new_token())
    path = f"/api/v1/receipts/{keys.rid}"
    headers: dict[str, str | bytes] = {**signer.headers("PUT", path, body, expires=expires or int(time.time()) + 600)}
    headers.update(override)
    return httpx.put(relay.url + path, content=body, headers=headers)


def test_malformed_numbers_are_client_errors_never_500(relay_factory: object) -> None:
    relay: RelayProc = relay_factory()  # type: ignore[operator]
    signer = Signer(_new_key_pem())
    assert _put(relay, signer, **{"Eticket-Date": "²".encode("latin-1")}).status_code == 401
    assert _put(relay, signer, **{"Eticket-Date": "9" * 5000}).status_code == 401
    keys = parse_token(new_token())
    path = f"/api/v1/receipts/{keys.rid}"
    for expires in ("²", "9" * 5000, "-5"):  # correctly signed, so the relay gets as far as reading it
        date = str(int(time.time()))
        signature = signer._key.sign(signing_payload("PUT", path, date, expires, b"x"), ec.ECDSA(hashes.SHA256()))
        headers = {"Eticket-Key": b64u(signer.spki), "Eticket-Date": date, "Eticket-Signature": b64u(signature),
                   "Eticket-Expires": expires.encode("latin-1")}
        r = httpx.put(relay.url + path, content=b"x", headers=headers)
        assert r.status_code == 400 and "Eticket-Expires" in r.json()["detail"], (expires, r.status_code)
    assert "Traceback" not in relay.logs()


def test_unsigned_upload_is_refused_before_its_body_is_read(relay_factory: object) -> None:
    relay: RelayProc = relay_factory()  # type: ignore[operator]
    rid = parse_token(new_token()).rid
    with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as sock:
        sock.sendall(f"PUT /api/v1/receipts/{rid} HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\n\r\n".encode())
        answer = sock.recv(4096).decode()  # no body sent: the answer must come anyway
    assert answer.startswith("HTTP/1.1 401"), answer[:200]


def test_a_re_encoded_key_is_the_same_device_for_blocks(relay_factory: object) -> None:
    relay: RelayProc = relay_factory()  # type: ignore[operator]
    pem = _new_key_pem()
    signer = Signer(pem)
    assert relay.admin("block", signer.relay_id).returncode == 0
    key = serialization.load_pem_private_key(pem, password=None)
    point = key.public_key().public_bytes(serialization.Encoding.X962,  # type: ignore[union-attr]
                                          serialization.PublicFormat.CompressedPoint)
    compressed_spki = bytes.fromhex("3039301306072a8648ce3d020106082a8648ce3d030107032200") + point
    signer.spki = compressed_spki  # same key, other DER encoding
    r = _put(relay, signer)
    assert r.status_code == 403 and r.json()["type"].endswith("/device-blocked")


def test_an_operator_blocks_a_device_whose_id_starts_with_a_dash(relay_factory: object) -> None:
    """One relay id in 64 starts with "-" (base64url): pasted from the log after ``relay block``, it was taken
    for an option ("the following arguments are required: device"), and this suite failed that way at random."""
    relay: RelayProc = relay_factory()  # type: ignore[operator]
    signer = Signer(_new_key_pem())
    while not signer.relay_id.startswith("-"):
        signer = Signer(_new_key_pem())
    blocked = relay.admin("block", signer.relay_id, "--reason", "test")
    assert blocked.returncode == 0 and f"blocked {signer.relay_id}" in blocked.stdout, blocked.stderr
    r = _put(relay, signer)
    assert r.status_code == 403 and r.json()["type"].endswith("/device-blocked")
    unblocked = relay.admin("unblock", signer.relay_id)  # takes effect within 10 s (each replica's cache)
    assert unblocked.returncode == 0 and f"unblocked {signer.relay_id}" in unblocked.stdout, unblocked.stderr


def test_quota_holds_under_concurrent_uploads(relay_factory: object) -> None:
    relay: RelayProc = relay_factory("--quota-receipts", "3")  # type: ignore[operator]
    signer = Signer(_new_key_pem())
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda _: _put(relay, signer).status_code, range(12)))
    assert codes.count(201) == 3, codes
    assert set(codes) <= {201, 429}


def test_valid_links_are_served_past_the_miss_limit_and_sweeps_leave_410(relay_factory: object) -> None:
    relay: RelayProc = relay_factory("--miss-limit", "3")  # type: ignore[operator]
    signer = Signer(_new_key_pem())
    token = new_token()
    keys = parse_token(token)
    assert _put(relay, signer, token, body=keys.seal(b"%PDF-1.4 ok"), expires=int(time.time()) + 4).status_code == 201
    for _ in range(5):
        httpx.get(relay.url + "/r/" + new_token(time.time() - 9 * 86_400))
    assert httpx.get(relay.url + "/r/" + new_token(time.time() - 9 * 86_400)).status_code == 429
    assert httpx.get(f"{relay.url}/r/{token}").content == b"%PDF-1.4 ok"  # a real receipt is still served
    time.sleep(4.5)
    assert relay.admin("sweep").stdout.startswith("deleted 1")
    # After the sweep the link still says "expired", not "on its way" (a tombstone).
    gone = httpx.get(f"{relay.url}/r/{token}", headers={"Accept": "text/html"})
    assert gone.status_code in (410, 429) and "on its way" not in gone.text


def test_a_link_answers_a_page_only_to_a_client_weighing_html_first(relay_factory: object) -> None:
    """RFC 9110 §12.5.1: ``text/html;q=0`` used to get the HTML page (a substring test), ``TEXT/HTML`` not."""
    relay: RelayProc = relay_factory()  # type: ignore[operator]
    for accept, html in (("TEXT/HTML", True), ("text/html;q=0", False), ("*/*", False),
                         ("text/html,*/*;q=0.8", True)):
        r = httpx.get(f"{relay.url}/r/{new_token()}", headers={"Accept": accept})  # not arrived yet
        assert r.status_code == (200 if html else 404), accept  # the "on its way" page, or 404 pending
        assert r.headers["content-type"].startswith("text/html" if html else "application/problem+json"), accept


def test_a_damaged_object_is_a_clear_500_and_does_not_stop_the_sweep(relay_factory: object) -> None:
    relay: RelayProc = relay_factory()  # type: ignore[operator]
    signer = Signer(_new_key_pem())
    damaged, expiring = new_token(), new_token()
    for token, expires in ((damaged, 3600), (expiring, 4)):
        keys = parse_token(token)
        r = _put(relay, signer, token, body=keys.seal(b"%PDF-1.4"), expires=int(time.time()) + expires)
        assert r.status_code == 201
    (Path(relay.storage) / "r" / parse_token(damaged).rid).write_bytes(b"\x00\x00")
    (Path(relay.storage) / "q" / "stray").write_bytes(b"")
    r = httpx.get(f"{relay.url}/r/{damaged}")
    assert r.status_code == 500 and r.json()["type"].endswith("/receipt-damaged")
    time.sleep(4.5)
    swept = relay.admin("sweep")
    assert swept.returncode == 0 and swept.stdout.startswith("deleted 2"), swept.stdout + swept.stderr
    assert not (Path(relay.storage) / "r" / parse_token(expiring).rid).exists()


def test_admin_commands_refuse_a_storage_that_does_not_exist(relay_factory: object, tmp_path: Path) -> None:
    relay: RelayProc = relay_factory(start=False)  # type: ignore[operator]
    relay.storage = str(tmp_path / "nowhere")
    result = relay.admin("block", b64u(b"x" * 32))
    assert result.returncode != 0 and "no relay storage" in result.stderr
    assert not (tmp_path / "nowhere").exists()


class HostileRelay:
    """A relay that misbehaves on purpose: ``mode`` picks the answer; it counts the requests it got."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mode = "huge"
        self.requests: list[str] = []
        self._sock = socket.create_server(("127.0.0.1", self.port))
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), b"0"))
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests.append(head.split(b" ")[1].decode())
                if self.mode == "huge":  # a 2 GB error body announced, streamed slowly
                    conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 2000000000\r\n\r\n")
                    for _ in range(9600):  # 600 MiB unless the device stops reading
                        conn.sendall(b"x" * 65536)
                elif self.mode == "retry0":
                    conn.sendall(b"HTTP/1.1 429 Slow down\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n")
                elif self.mode == "nested":  # "stored", with the id buried 2000 levels deep
                    body = b'{"rid": ' + b"[" * 2000 + b"]" * 2000 + b"}"
                    conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                elif self.mode == "nested-status":  # uploads are acknowledged; status answers nest 2000 deep
                    target = head.split(b" ")[1]
                    body = (b'{"rid": "' + target.rsplit(b"/", 1)[1] + b'"}' if target.startswith(b"/api/v1/receipts/")
                            else b'{"downloaded": ' + b"[" * 2000 + b"]" * 2000 + b"}")
                    conn.sendall(b"HTTP/1.1 " + (b"201 Created" if body.startswith(b'{"rid"') else b"200 OK") +
                                 b"\r\nContent-Type: application/json\r\nContent-Length: " +
                                 str(len(body)).encode() + b"\r\n\r\n" + body)
                elif self.mode == "inject":
                    body = json.dumps({"detail": "x\n2026-01-01 ERROR forged line \x1b[31m"}).encode()
                    conn.sendall(b"HTTP/1.1 400 Bad\r\nContent-Type: application/problem+json\r\n"
                                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            except OSError:
                pass

    def close(self) -> None:
        self._stop = True
        self._sock.close()


def _outbox(app: Appliance) -> list[tuple[str, int, float, str | None]]:
    db = sqlite3.connect(f"file:{app.data_dir / 'eticket.sqlite3'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT state, attempts, next_attempt_at, last_error FROM outbox").fetchall()
    finally:
        db.close()


def test_a_hostile_relay_cannot_stall_flood_or_forge_the_device(appliance_factory: object) -> None:
    hostile = HostileRelay()
    try:
        app: Appliance = appliance_factory("--relay-url", f"http://127.0.0.1:{hostile.port}")  # type: ignore[operator]
        token = app.pair()
        pdf = samples("pdf")[0].read_bytes()

        def send() -> None:
            r = app.api.post("/api/v1/tickets", content=pdf,
                             headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"})
            assert r.status_code == 201

        send()  # the relay answers with an endless error body
        wait_for(lambda: "500" in str(httpx.get(app.url + "/healthz").json()["relay"]["last_error"]), 20,
                 "the 500 recorded")
        rss_kib = int(next(line.split()[1] for line in Path(f"/proc/{app.proc.pid}/status").read_text().splitlines()
                           if line.startswith("VmRSS")))  # type: ignore[union-attr]
        assert rss_kib < 400 * 1024, f"the device read the relay's huge reply: RSS {rss_kib} KiB"

        hostile.mode = "retry0"  # "Retry-After: 0" must not become a tight loop
        before = len(hostile.requests)
        send()
        time.sleep(5)
        assert len(hostile.requests) - before <= 6, len(hostile.requests) - before
        assert all(row[2] != float("inf") for row in _outbox(app))

        hostile.mode = "inject"
        send()
        wait_for(lambda: any(row[0] == "failed" for row in _outbox(app)), 20, "the refusal")
        assert "\nforged" not in app.logs() and "\x1b" not in app.logs()
        assert "\x1b" not in json.dumps(httpx.get(app.url + "/healthz").json())
        # The POS API was never held up.
        started = time.monotonic()
        send()
        assert time.monotonic() - started < 5
    finally:
        hostile.close()


def _put_from(relay: RelayProc, signer: Signer, body: bytes, source: str = "127.0.0.1",
              headers: dict[str, str] | None = None) -> httpx.Response:
    """A signed upload of ``body`` sent from the loopback address ``source`` (127.0.0.0/8 are all ours)."""
    rid = parse_token(new_token()).rid
    path = f"/api/v1/receipts/{rid}"
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source)) as client:
        return client.put(relay.url + path, content=body, headers={
            **signer.headers("PUT", path, body, expires=int(time.time()) + 600), **(headers or {})})


def _stored_bytes(relay: RelayProc) -> int:
    return sum(p.stat().st_size for p in (Path(relay.storage) / "r").iterdir())


def test_throwaway_keys_from_one_network_cannot_store_past_its_quota(relay_factory: object) -> None:
    """An attacker makes a fresh device key per upload (keys are free): 40 keys, 1 MB each, from one address,
    claiming other addresses in X-Forwarded-For. The network's quota holds whatever the keys; a shop on another
    address is not affected."""
    relay: RelayProc = relay_factory(  # type: ignore[operator]
        "--quota-receipts", "5", "--network-quota-receipts", "6", "--network-quota-bytes", "4500000",
        "--new-devices-per-network", "1000", "--forwarded-allow-ips", "127.0.0.9")
    body = b"x" * 1_000_000
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: _put_from(relay, Signer(_new_key_pem()), body, headers={
            "X-Forwarded-For": f"198.51.100.{i}"}), range(40)))
    codes = [r.status_code for r in answers]
    assert codes.count(201) == 4, codes  # 4 MB of the 4.5 MB allowed
    refused = [r for r in answers if r.status_code != 201]
    assert all(r.status_code == 429 and r.json()["type"].endswith("/network-quota-exceeded") for r in refused)
    assert "network" in refused[0].json()["detail"] and 0 < int(refused[0].headers["retry-after"]) <= 86_400
    assert _stored_bytes(relay) < 4_500_000
    # The receipt count holds too (small receipts), and another network still gets its own quota.
    small = [_put_from(relay, Signer(_new_key_pem()), b"y").status_code for _ in range(4)]
    assert small == [201, 201, 429, 429], small
    assert _put_from(relay, Signer(_new_key_pem()), body, source="127.0.0.2").status_code == 201
    assert "Traceback" not in relay.logs()


def test_new_device_keys_per_network_are_limited_but_known_devices_keep_uploading(relay_factory: object) -> None:
    """A client that makes keys to dodge a block or a device quota gets only a few new keys a day from its
    network; devices that already stored receipts go on as before, from any address."""
    relay: RelayProc = relay_factory("--new-devices-per-network", "3")  # type: ignore[operator]
    signers = [Signer(_new_key_pem()) for _ in range(40)]
    codes = [_put_from(relay, signer, b"sealed").status_code for signer in signers]
    assert codes[:3] == [201] * 3 and set(codes[3:]) == {429}, codes
    refused = _put_from(relay, signers[10], b"sealed").json()
    assert refused["type"].endswith("/too-many-new-devices") and "new device keys" in refused["detail"]
    assert all(_put_from(relay, signer, b"more").status_code == 201 for signer in signers[:3])
    assert _put_from(relay, signers[0], b"moved", source="127.0.0.3").status_code == 201  # known: not new there
    assert _put_from(relay, signers[10], b"sealed", source="127.0.0.3").status_code == 201  # that network's own


def _poll_request(relay: RelayProc, signer: Signer, rids: list[str], wait: float) -> bytes:
    body = json.dumps({"ids": rids}).encode()
    headers = {**signer.headers("POST", "/api/v1/status", body), "Content-Type": "application/json",
               "Content-Length": str(len(body)), "Host": "relay"}
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"POST /api/v1/status?wait={wait:g} HTTP/1.1\r\n{head}\r\n".encode() + body


def test_a_devices_newer_poll_ends_its_older_ones_and_abandoned_polls_free_their_slot(
    relay_factory: object
) -> None:
    """Devices from before this fix cancel a long poll and open another at each upload: the relay must not hold
    the abandoned ones against the device's limit of 2, and a device's new poll answers its older one at once."""
    relay: RelayProc = relay_factory()  # type: ignore[operator]
    signer = Signer(_new_key_pem())
    token = new_token()
    keys = parse_token(token)
    assert _put(relay, signer, token, body=keys.seal(b"%PDF-1.4 x")).status_code == 201
    for _ in range(4):  # open a poll and walk away, four times
        with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as sock:
            sock.sendall(_poll_request(relay, signer, [keys.rid], 20))
            time.sleep(0.2)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as older:
        older.sendall(_poll_request(relay, signer, [keys.rid], 20))
        time.sleep(0.3)
        newer = concurrent.futures.ThreadPoolExecutor(1).submit(
            httpx.post, relay.url + "/api/v1/status?wait=20", content=json.dumps({"ids": [keys.rid]}).encode(),
            headers=_signed_status_headers(signer, [keys.rid]), timeout=30)
        answer = _read_response(older)
        assert answer.startswith("HTTP/1.1 200") and answer.endswith('{"downloaded":{}}'), answer
        assert time.monotonic() - started < 10  # answered when the newer poll came, not after its 20 s
        assert httpx.get(f"{relay.url}/r/{token}").status_code == 200
        reply = newer.result()
    assert reply.status_code == 200 and keys.rid in reply.json()["downloaded"], reply.text
    assert '"POST /api/v1/status" 429' not in relay.logs()


def _read_response(sock: socket.socket) -> str:
    """One HTTP/1.1 response with a Content-Length, read whole from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096) or b"\r\n\r\n"
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), b"0"))
    while len(body) < length and (chunk := sock.recv(4096)):
        body += chunk
    return (head + b"\r\n\r\n" + body).decode()


def _signed_status_headers(signer: Signer, rids: list[str]) -> dict[str, str]:
    body = json.dumps({"ids": rids}).encode()
    return {**signer.headers("POST", "/api/v1/status", body), "Content-Type": "application/json"}


def test_behind_a_trusted_proxy_each_shop_address_has_its_own_network_quota(relay_factory: object) -> None:
    """The relay behind a reverse proxy on the same machine (the default --forwarded-allow-ips 127.0.0.1): the
    quota follows the address the proxy puts in X-Forwarded-For, so one shop reaching its quota does not stop
    the others that come through the same proxy."""
    relay: RelayProc = relay_factory("--network-quota-receipts", "2")  # type: ignore[operator]
    shop_a, shop_b = {"X-Forwarded-For": "198.51.100.1"}, {"X-Forwarded-For": "2001:db8:0:7::5"}
    codes = [_put_from(relay, Signer(_new_key_pem()), b"s", headers=shop_a).status_code for _ in range(3)]
    assert codes == [201, 201, 429], codes
    codes = [_put_from(relay, Signer(_new_key_pem()), b"s", headers=shop_b).status_code for _ in range(2)]
    assert codes == [201, 201], codes
    same_64 = {"X-Forwarded-For": "2001:db8:0:7:ffff::9"}  # the same IPv6 line: the same network
    assert _put_from(relay, Signer(_new_key_pem()), b"s", headers=same_64).status_code == 429
