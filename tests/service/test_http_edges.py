"""HTTP at its edges, against a real ``eticket serve`` over raw sockets on loopback: ambiguous framing
(RFC 9112 §6.1), bodies that never complete, 405 with ``Allow`` (RFC 9110 §15.5.6), JSON nested too deep."""

from __future__ import annotations

import re
import socket
import ssl
import time

import httpx

from tests.conftest import Appliance, wait_for

LOG_LINE = re.compile(r"^\S+ \S+ (INFO|WARNING|ERROR|DEBUG|CRITICAL) (uvicorn|eticket\.access).*$", re.MULTILINE)
"""A line of the HTTP layer's loggers (uvicorn's and our access log); tracebacks continue without this prefix."""


def exchange(host_port: tuple[str, int], data: bytes, tls: bool = False, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send ``data`` on a fresh connection; return everything the server sent and whether it closed the
    connection (False: it was still open ``timeout`` seconds after the last byte)."""
    sock = socket.create_connection(host_port, timeout=timeout)
    if tls:  # the pinned certificate does not matter for framing
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        sock = ctx.wrap_socket(sock)
    with sock:
        sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            return answer, False
        return answer, True


def http_lines(appliance: Appliance, since: int) -> tuple[list[str], str]:
    """The HTTP layer's log lines written after character offset ``since`` (but the health checks of the
    fixture and of these tests, whose lines may land late), and all text after it."""
    text = appliance.logs()[since:]
    return [m.group(0) for m in LOG_LINE.finditer(text) if '"GET /healthz"' not in m.group(0)], text


def test_content_length_with_transfer_encoding_is_refused_and_the_connection_closed(appliance: Appliance) -> None:
    """A request smuggling probe: both framings at once. A proxy in front that reads Content-Length would
    see one request, we (by Transfer-Encoding) a second one hidden in the body: refuse, close, answer
    nothing more on that connection."""
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    probe = (b"POST /screen/claim/abc HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled)
    since = len(appliance.logs())
    answer, closed = exchange(("127.0.0.1", appliance.port), probe)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert b"Content-Length and Transfer-Encoding" in answer
    assert answer.count(b"HTTP/1.1") == 1, answer  # the smuggled request got no answer
    assert closed, "the connection stayed open after a request with both Content-Length and Transfer-Encoding"
    wait_for(lambda: http_lines(appliance, since)[0], 5, "the refusal's log line")
    lines, text = http_lines(appliance, since)
    assert len(lines) == 1 and "Transfer-Encoding" in lines[0] and "/screen/claim" in lines[0], lines
    assert "Traceback" not in text
    assert httpx.get(appliance.url + "/healthz").status_code == 200


def test_a_client_that_aborts_mid_body_leaves_one_log_line(appliance: Appliance) -> None:
    """A till whose Wi-Fi drops while it sends: one line in the journal, no ERROR traceback, still serving."""
    since = len(appliance.logs())
    sock = socket.create_connection(("127.0.0.1", appliance.api_port), timeout=5)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with ctx.wrap_socket(sock) as tls:
        tls.sendall(b"POST /api/v1/pair HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100\r\n\r\n{\"secr")
    wait_for(lambda: http_lines(appliance, since)[0], 10, "the aborted request's log line")
    lines, text = http_lines(appliance, since)
    assert "Traceback" not in text and " ERROR " not in text, text[:3000]
    assert len(lines) == 1 and "/api/v1/pair" in lines[0] and "disconnected" in lines[0], lines
    assert httpx.get(appliance.url + "/healthz").status_code == 200


def test_a_malformed_chunked_body_gets_400_and_one_log_line(appliance: Appliance) -> None:
    """A POS whose HTTP library writes a bad chunk header: a 400 naming the fault, one line, still serving."""
    since = len(appliance.logs())
    answer, closed = exchange(
        ("127.0.0.1", appliance.api_port),
        b"POST /api/v1/pair HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", tls=True)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"illegal chunk header" in answer, answer[:300]
    assert closed
    wait_for(lambda: http_lines(appliance, since)[0], 10, "the malformed request's log line")
    lines, text = http_lines(appliance, since)
    assert "Traceback" not in text and " ERROR " not in text, text[:3000]
    assert len(lines) == 1 and "/api/v1/pair" in lines[0] and "chunk" in lines[0], lines
    assert appliance.api.get("/healthz").status_code == 200


def test_405_names_the_allowed_methods(appliance: Appliance) -> None:
    """RFC 9110 §15.5.6: a 405 MUST carry ``Allow``; a client learns what it may do instead."""
    r = httpx.put(appliance.url + "/healthz")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD", r.headers
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/method-not-allowed") and "GET, HEAD" in r.json()["detail"]
    r = appliance.api.post("/api/v1/display")  # the POS API port has only DELETE here
    assert r.status_code == 405 and r.headers["allow"] == "DELETE", r.headers
    r = httpx.post(appliance.url + "/api/v1/display")  # the screens' port only GET
    assert r.status_code == 405 and r.headers["allow"] == "GET", r.headers


def test_405_lists_the_methods_of_every_route_on_the_path(appliance_factory: object) -> None:
    """Without TLS one app serves both the screens' GET and the POS's DELETE of /api/v1/display."""
    plain: Appliance = appliance_factory("--no-tls")  # type: ignore[operator]
    r = httpx.post(plain.url + "/api/v1/display")
    assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET", r.headers


def test_deeply_nested_json_is_a_400_naming_the_depth_limit(appliance: Appliance) -> None:
    """Pairing bodies are JSON: nesting is refused by a named limit, before any parser recursion."""
    nested = b'{"secret": ' + b"[" * 2000 + b"]" * 2000 + b"}"  # under the 4096-byte pairing limit
    r = appliance.api.post("/api/v1/pair", content=nested, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"].endswith("/json-too-deep") and problem["max_depth"] == 32, problem
    assert "2001 levels" in problem["detail"], problem
    assert appliance.display()["scene"] == "pairing"  # nothing counted as a wrong attempt, still pairing


MALFORMED_HEADS = {
    "a non-numeric Content-Length": b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "two different Content-Lengths": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                      b"Content-Length: 6\r\n\r\n"),
    "an unknown Transfer-Encoding": b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
    "no Host": b"GET /healthz HTTP/1.1\r\n\r\n",
    "a header line without a colon": b"GET /healthz HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
    "a NUL in a header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "a bad request line": b"GET /healthz HTTP/1.1 extra\r\nHost: x\r\n\r\n",
}


def test_every_malformed_head_gets_a_400_naming_the_fault(appliance: Appliance) -> None:
    """docs/protocol.md §4: malformed framing is answered ``400 Invalid HTTP request received: <fault>.``,
    not a silently closed connection (a POS vendor debugging an HTTP library needs the reason); one log line
    each."""
    since = len(appliance.logs())
    for what, head in MALFORMED_HEADS.items():
        for port, tls in ((appliance.port, False), (appliance.api_port, True)):
            answer, closed = exchange(("127.0.0.1", port), head, tls=tls)
            assert answer.startswith(b"HTTP/1.1 400 "), (what, tls, answer[:300])
            assert b"Invalid HTTP request received: " in answer, (what, answer)
            assert closed, what
    wait_for(lambda: len(http_lines(appliance, since)[0]) >= 2 * len(MALFORMED_HEADS), 5, "one line per request")
    lines, text = http_lines(appliance, since)
    assert len(lines) == 2 * len(MALFORMED_HEADS) and all(" 400 refused: " in line for line in lines), lines
    assert "Traceback" not in text


def test_a_bad_chunk_for_an_endpoint_that_answers_without_reading_is_one_400_and_one_line(
        appliance: Appliance) -> None:
    """The endpoint (here /healthz) holds the request when its chunk turns out malformed: the HTTP layer's 400
    is the only answer, the endpoint's own is dropped without an 'Exception in ASGI application'."""
    since = len(appliance.logs())
    answer, closed = exchange(("127.0.0.1", appliance.port),
                              b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ") and b"illegal chunk header" in answer, answer[:300]
    assert answer.count(b"HTTP/1.1") == 1 and closed, answer
    wait_for(lambda: "refused: illegal chunk header" in appliance.logs()[since:], 5, "the refusal's log line")
    time.sleep(0.5)  # the endpoint's own attempt to answer would be logged by now
    text = appliance.logs()[since:]
    assert text.count("refused: illegal chunk header") == 1, text[:3000]
    assert "Exception in ASGI application" not in text and "Traceback" not in text, text[:3000]
