"""The relay at HTTP's edges, over raw sockets and real requests on loopback: ambiguous framing (RFC 9112
§6.1), JSON nested too deep, 405 with ``Allow`` (RFC 9110 §15.5.6)."""

from __future__ import annotations

import httpx

from relay.crypto import Signer
from tests.relay.conftest import RelayProc
from tests.relay.test_relay_e2e import _new_key_pem
from tests.service.test_http_edges import exchange


def test_content_length_with_transfer_encoding_is_refused_and_the_connection_closed(relay_factory: object) -> None:
    """The relay sits behind a reverse proxy (``--forwarded-allow-ips``): exactly where smuggling works."""
    relay: RelayProc = relay_factory()  # type: ignore[operator]
    probe = (b"POST /api/v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    answer, closed = exchange(("127.0.0.1", relay.port), probe)
    assert answer.startswith(b"HTTP/1.1 400 ") and answer.count(b"HTTP/1.1") == 1, answer[:300]
    assert closed
    assert httpx.get(relay.url + "/healthz").status_code == 200
    assert "Traceback" not in relay.logs()


def _status(relay: RelayProc, signer: Signer, body: bytes) -> httpx.Response:
    path = "/api/v1/status"
    return httpx.post(relay.url + path, content=body, headers=signer.headers("POST", path, body))


def test_deeply_nested_json_is_a_400_naming_the_depth_limit(relay_factory: object) -> None:
    """A signed status poll whose body nests 8000 levels (it fits the 16 KiB limit) was a 500."""
    relay: RelayProc = relay_factory()  # type: ignore[operator]
    signer = Signer(_new_key_pem())
    r = _status(relay, signer, b'{"ids": ' + b"[" * 8000 + b"]" * 8000 + b"}")
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json", r.text[:300]
    problem = r.json()
    assert problem["type"].endswith("/json-too-deep") and problem["max_depth"] == 32, problem
    r = _status(relay, signer, b"[" * 100_000 + b"]" * 100_000)  # over the body limit: refused by size first
    assert r.status_code == 413 and r.json()["type"].endswith("/too-large")
    assert _status(relay, signer, b'{"ids": []}').json() == {"downloaded": {}}  # still serving
    assert "Traceback" not in relay.logs()


def test_405_names_the_allowed_methods(relay_factory: object) -> None:
    relay: RelayProc = relay_factory()  # type: ignore[operator]
    for method, path, allow in (("PUT", "/healthz", "GET, HEAD"), ("DELETE", "/r/abc", "GET, HEAD"),
                                ("GET", "/api/v1/status", "POST"), ("POST", "/api/v1/receipts/x", "PUT")):
        r = httpx.request(method, relay.url + path)
        assert r.status_code == 405 and r.headers.get("allow") == allow, (method, path, r.headers)
        assert r.json()["type"].endswith("/method-not-allowed")
