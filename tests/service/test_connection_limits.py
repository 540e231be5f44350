"""Connections that hold a slot without saying anything (slowloris: half-sent request heads, TLS handshakes
never finished) are capped per client address and closed after the head deadline; the till, the kiosk and
phones keep getting answers (issue 10, "Dropped screen connections ... Slowloris").

Clients on loopback stand for LAN hosts: 127.0.0.1 is the device itself (the kiosk), every other 127.x
address another host (Linux routes all of 127/8 to ``lo``).
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from appliance.admission import (
    HEAD_TIMEOUT_SECONDS,
    MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_ADDRESS,
    RESERVED_CONNECTIONS,
    UNTRUSTED_BODY_SECONDS,
)
from appliance.web.framing import LINGER_SECONDS
from tests.conftest import Appliance, samples

HALF_HEAD = b"GET /healthz HTTP/1.1\r\nHost: device\r\nX-Slow: "
"""A request head that never ends."""
CLOSE_MARGIN_SECONDS = 5.0
"""Allowance on top of the head deadline for the server's timer and a loaded machine."""


def _connect(port: int, source: str, payload: bytes = b"") -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    if payload:
        sock.sendall(payload)
    return sock


def _tls(sock: socket.socket) -> ssl.SSLSocket:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the pinned certificate does not matter here
    return ctx.wrap_socket(sock)


def _trickle_until_closed(sock: socket.socket, seconds: float, pause: float = 0.5) -> tuple[str, float]:
    """Send one body byte every ``pause`` seconds for up to ``seconds``; return what the server sent and
    when it closed the connection (seconds from the start; inf: still open at the end)."""
    started, answer = time.monotonic(), ""
    while time.monotonic() - started < seconds:
        try:
            sock.sendall(b"x")
        except OSError:  # closed (a reset on a write after the server's FIN)
            return answer, time.monotonic() - started
        state = _state(sock, pause)
        if state == "closed":
            return answer, time.monotonic() - started
        if state != "open":
            answer += state
    return answer, float("inf")


def _state(sock: socket.socket, wait: float) -> str:
    """'open' if nothing arrives within ``wait`` seconds, 'closed' on EOF or reset, else the first bytes."""
    sock.settimeout(wait)
    try:
        data = sock.recv(4096)
    except TimeoutError:
        return "open"
    except ConnectionError:
        return "closed"
    return data.decode(errors="replace") if data else "closed"


@contextlib.contextmanager
def _sockets() -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    try:
        yield held
    finally:
        for sock in held:
            sock.close()


def _client(source: str, **kwargs: object) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source, **kwargs), timeout=10)  # type: ignore[arg-type]


def _ticket(appliance: Appliance, pos_token: str, client: httpx.Client | None = None) -> httpx.Response:
    client = client or appliance.api
    return client.post(appliance.api_url + "/api/v1/tickets", content=samples("pdf")[0].read_bytes(),
                       headers={"Authorization": f"Bearer {pos_token}", "Content-Type": "application/pdf"})


# Slow (waits out the real head deadline): `make test-slow`, in CI too.
@pytest.mark.slow
def test_one_slow_client_is_capped_and_closed_after_the_head_deadline(appliance: Appliance,
                                                                      pos_token: str) -> None:
    attacker = "127.0.0.2"
    with _sockets() as plain, _sockets() as tls:
        for _ in range(MAX_CONNECTIONS_PER_ADDRESS + 8):
            plain.append(_connect(appliance.port, attacker, HALF_HEAD))
            tls.append(_connect(appliance.api_port, attacker))  # TCP only: the handshake never starts
        # Beyond the per-address cap the device says no at once: a 503 problem, or (TLS) a closed socket.
        extra = [_state(s, 2) for s in plain[MAX_CONNECTIONS_PER_ADDRESS:]]
        assert all(s.startswith("HTTP/1.1 503") and "too-many-connections" in s for s in extra), extra[0]
        assert {_state(s, 2) for s in tls[MAX_CONNECTIONS_PER_ADDRESS:]} == {"closed"}
        started = time.monotonic()

        # Meanwhile the till sends a receipt and a phone downloads it.
        sent = _ticket(appliance, pos_token)
        assert sent.status_code == 201, sent.text
        with _client("127.0.0.3") as phone:
            assert phone.get(sent.json()["url"]).status_code == 200

        # The held ones are closed once the head deadline passes, without a byte of answer.
        held = plain[:MAX_CONNECTIONS_PER_ADDRESS] + tls[:MAX_CONNECTIONS_PER_ADDRESS]
        assert _state(held[0], 1) == "open"  # held until the deadline, not refused
        deadline = started + HEAD_TIMEOUT_SECONDS + CLOSE_MARGIN_SECONDS
        states = [_state(s, max(0.1, deadline - time.monotonic())) for s in held]
        assert set(states) == {"closed"}, states
    # And the slots are free again: the same address is served as usual.
    with _client("127.0.0.2") as again:
        assert again.get(appliance.url + "/healthz").status_code == 200


# Slow (waits out the real head deadline): `make test-slow`, in CI too.
@pytest.mark.slow
def test_a_slow_head_on_a_kept_alive_connection_gets_its_own_deadline(appliance: Appliance) -> None:
    with _sockets() as held:
        sock = _connect(appliance.port, "127.0.0.4", b"GET /healthz HTTP/1.1\r\nHost: device\r\n\r\n")
        held.append(sock)
        answer = _state(sock, 5)
        while "}" not in answer:  # the JSON body may come in a second segment
            answer += _state(sock, 5)
        assert answer.startswith("HTTP/1.1 200")
        sock.sendall(HALF_HEAD)  # the next request starts (uvicorn's keep-alive timer stops) but never ends
        started = time.monotonic()
        assert _state(sock, HEAD_TIMEOUT_SECONDS + CLOSE_MARGIN_SECONDS) == "closed"
        assert time.monotonic() - started >= HEAD_TIMEOUT_SECONDS - 1


@pytest.mark.parametrize("listener", ["http", "https"])
def test_many_slow_addresses_fill_the_pool_but_trusted_clients_get_through(appliance: Appliance, pos_token: str,
                                                                           listener: str) -> None:
    """Attackers on many addresses take every ordinary slot; the kiosk (the device itself), the paired
    till and a paired screen (addresses that presented their token before) still get through, while a
    new phone is refused with a 503 until the attackers' heads time out."""
    port = appliance.port if listener == "http" else appliance.api_port
    till, tablet = "127.0.0.60", "127.0.0.61"
    screen = {"Authorization": f"Bearer {appliance.screen_token()}"}
    verify = appliance.ssl_context()
    with _client(till, verify=verify) as till_client, _client(tablet) as tablet_client:
        assert _ticket(appliance, pos_token, till_client).status_code == 201  # trusted from now on
        assert tablet_client.get(appliance.url + "/api/v1/display", headers=screen).status_code == 200
        general = MAX_CONNECTIONS - RESERVED_CONNECTIONS
        with _sockets() as held:
            for n in range(general):
                source = f"127.0.1.{n // MAX_CONNECTIONS_PER_ADDRESS + 1}"
                held.append(_connect(port, source, HALF_HEAD if listener == "http" else b""))
            assert _state(held[0], 0.5) == "open"  # (the last few were refused: the till's and the tablet's
            # kept-alive connections count too)
            with _client("127.0.0.62", verify=verify) as phone:
                if listener == "http":
                    refused = phone.get(appliance.url + "/healthz")
                    assert refused.status_code == 503 and refused.headers["retry-after"]
                    assert json.loads(refused.text)["type"].endswith("/too-many-connections")
                else:
                    with pytest.raises(httpx.TransportError):
                        phone.get(appliance.api_url + "/healthz")
            if listener == "http":
                assert appliance.display()["scene"] in ("ticket", "idle")  # the kiosk, from 127.0.0.1
                with tablet_client.stream("GET", appliance.url + "/api/v1/display/stream", headers=screen) as r:
                    assert r.status_code == 200
                    assert next(r.iter_lines()).startswith("id: ")
            else:
                assert _ticket(appliance, pos_token, till_client).status_code == 201
                assert _ticket(appliance, pos_token).status_code == 201  # from the device itself


@pytest.mark.parametrize("listener", ["http", "https"])
def test_a_body_trickled_behind_a_quick_answer_does_not_hold_the_connection(appliance: Appliance,
                                                                            listener: str) -> None:
    """Slowloris through the body: the endpoint answers without reading the announced megabyte, the client
    trickles it a byte at a time. The connection ends soon after the answer instead of staying open for as
    long as the bytes come (it used to: 14 addresses × 16 such connections shut out every new phone)."""
    port = appliance.port if listener == "http" else appliance.api_port
    with _sockets() as held:
        sock = _connect(port, "127.0.0.70")
        if listener == "https":
            sock = _tls(sock)
        held.append(sock)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: device\r\nContent-Length: 1000000\r\n\r\n")
        answer, closed_after = _trickle_until_closed(sock, LINGER_SECONDS + CLOSE_MARGIN_SECONDS + 5)
        assert answer.startswith("HTTP/1.1 200") and '"status"' in answer, answer[:300]
        assert closed_after <= LINGER_SECONDS + CLOSE_MARGIN_SECONDS, "still open while the body trickled in"


# Slow (waits out the real body deadline and a slow till upload): `make test-slow`, in CI too.
@pytest.mark.slow
def test_an_untrusted_slow_body_gets_408_soon_while_the_tills_slow_upload_passes(appliance: Appliance,
                                                                                 pos_token: str) -> None:
    """An unauthenticated pairing request whose body trickles in is answered ``408 request-timeout`` after
    UNTRUSTED_BODY_SECONDS (it held its slot for the API's 60 s before); at the same time a till on a new
    address (not trusted until its token is seen) sends its receipt just as slowly, and it is accepted."""
    pdf = samples("pdf")[0].read_bytes()
    slow_seconds = UNTRUSTED_BODY_SECONDS + 3
    till: dict[str, object] = {}

    def upload() -> None:
        sock = _tls(_connect(appliance.api_port, "127.0.0.72"))
        with sock:
            sock.sendall(b"POST /api/v1/tickets HTTP/1.1\r\nHost: device\r\nContent-Type: application/pdf\r\n"
                         b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n" % (pos_token.encode(), len(pdf)))
            pieces = 10
            for n in range(pieces):
                sock.sendall(pdf[n * len(pdf) // pieces:(n + 1) * len(pdf) // pieces])
                time.sleep(slow_seconds / pieces)
            till["answer"] = _state(sock, 10)

    uploader = threading.Thread(target=upload)
    uploader.start()
    with _sockets() as held:
        sock = _tls(_connect(appliance.api_port, "127.0.0.71"))
        held.append(sock)
        sock.sendall(b"POST /api/v1/pair HTTP/1.1\r\nHost: device\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 4000\r\n\r\n{")
        answer, closed_after = _trickle_until_closed(sock, UNTRUSTED_BODY_SECONDS + CLOSE_MARGIN_SECONDS + 5, 1.0)
    uploader.join()
    assert answer.startswith("HTTP/1.1 408") and "/request-timeout" in answer, answer[:300]
    assert UNTRUSTED_BODY_SECONDS - 1 <= closed_after <= UNTRUSTED_BODY_SECONDS + CLOSE_MARGIN_SECONDS, closed_after
    assert str(till.get("answer", "")).startswith("HTTP/1.1 201"), till
    log = appliance.logs()
    assert '"POST /api/v1/pair" 408' in log and "refused: the body did not arrive within" in log, log[-3000:]
    assert "Traceback" not in log
