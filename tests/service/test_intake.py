"""Intake over real HTTP: bad input is refused with a problem detail naming the fault, nothing is stored,
and the service keeps serving."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Appliance, samples

GOOD = samples("pdf")
PROBLEM = "application/problem+json"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _post(
    app: Appliance, token: str, body: bytes, content_type: str = "application/pdf", **kw: object
) -> httpx.Response:
    headers = {**_auth(token), "Content-Type": content_type, **kw.pop("headers", {})}  # type: ignore[dict-item]
    return app.api.post("/api/v1/tickets", content=body, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]


def _assert_problem(r: httpx.Response, status: int, slug: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    problem = r.json()
    assert problem["type"].endswith("/" + slug), problem
    assert problem["status"] == status and problem["title"] and problem["detail"]


@pytest.mark.parametrize("pdf", samples("pdf-bad"), ids=lambda p: p.name)
def test_each_bad_sample_is_refused_and_nothing_is_stored(appliance: Appliance, pos_token: str, pdf: Path) -> None:
    from tests.unit.test_pdfcheck import EXPECTED_REFUSAL

    r = _post(appliance, pos_token, pdf.read_bytes())
    _assert_problem(r, 422, EXPECTED_REFUSAL[pdf.name].slug)
    assert appliance.ticket_rows() == 0
    assert appliance.display()["scene"] == "idle"
    assert httpx.get(appliance.url + "/healthz").json()["status"] == "ok"


@pytest.mark.parametrize(
    "content_type, body, status, slug",
    [
        ("text/plain", b"%PDF-1.4 hello", 415, "unsupported-media-type"),
        ("application/json", b"{}", 415, "unsupported-media-type"),
        ("application/pdf", b"", 400, "empty-body"),
        ("application/pdf", b"PK\x03\x04 this is a zip", 422, "not-a-pdf"),
    ],
)
def test_wrong_content_type_and_empty_body(appliance: Appliance, pos_token: str, content_type: str, body: bytes,
                                           status: int, slug: str) -> None:
    _assert_problem(_post(appliance, pos_token, body, content_type), status, slug)
    assert appliance.ticket_rows() == 0


@pytest.mark.parametrize(
    "params, slug",
    [
        ({"total": "12,50"}, "invalid-total"),
        ({"total": "1e3"}, "invalid-total"),
        ({"total": "abc"}, "invalid-total"),
        ({"currency": "EURO"}, "invalid-currency"),
        ({"currency": "XYZ"}, "invalid-currency"),
        ({"ref": "x" * 200}, "invalid-reference"),
    ],
)
def test_malformed_metadata(appliance: Appliance, pos_token: str, params: dict[str, str], slug: str) -> None:
    r = _post(appliance, pos_token, GOOD[0].read_bytes(), params=params)
    _assert_problem(r, 422, slug)
    assert appliance.ticket_rows() == 0


def test_body_over_the_limit_is_refused_from_its_declared_length(appliance_factory: object) -> None:
    """A 10 GB upload announced by Content-Length is refused at once, without reading it."""
    app: Appliance = appliance_factory("--max-body-bytes", "100000")  # type: ignore[operator]
    token = app.pair()
    with socket.create_connection(("127.0.0.1", app.api_port)) as raw, \
            app.ssl_context().wrap_socket(raw) as sock:
        sock.sendall(
            b"POST /api/v1/tickets HTTP/1.1\r\nHost: x\r\nContent-Type: application/pdf\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\nContent-Length: 10000000000\r\n\r\n%PDF-1.4\n"
        )
        sock.settimeout(5)
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    assert b"too-large" in head or b"problem+json" in head
    assert app.ticket_rows() == 0


def test_chunked_body_over_the_limit_is_cut_off(appliance_factory: object) -> None:
    app: Appliance = appliance_factory("--max-body-bytes", "100000")  # type: ignore[operator]
    token = app.pair()

    def chunks() -> Iterator[bytes]:
        yield b"%PDF-1.4\n"
        for _ in range(100):
            yield b"0" * 10_000

    r = app.api.post("/api/v1/tickets", content=chunks(),
                   headers={**_auth(token), "Content-Type": "application/pdf"})
    _assert_problem(r, 413, "too-large")
    assert r.headers["connection"] == "close"  # the rest of the body is unread: the client must not reuse this
    assert app.ticket_rows() == 0
    small = _post(app, token, GOOD[0].read_bytes())
    assert small.status_code == 201


def test_multipart_with_metadata(appliance: Appliance, pos_token: str) -> None:
    pdf = GOOD[1].read_bytes()
    r = appliance.api.post("/api/v1/tickets", headers=_auth(pos_token),
                   files={"file": ("r.pdf", pdf, "application/pdf")},
                   data={"total": "7.20", "currency": "chf", "ref": "A-1"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["total"], body["currency"], body["ref"]) == ("7.20", "CHF", "A-1")
    assert httpx.get(body["url"]).content == pdf
    missing = appliance.api.post("/api/v1/tickets", headers=_auth(pos_token), data={"total": "1"},
                         files={"other": ("r.pdf", pdf, "application/pdf")})
    _assert_problem(missing, 400, "missing-file")


def test_a_multipart_body_without_its_closing_boundary_is_named(appliance: Appliance, pos_token: str) -> None:
    """This is an upload cut short (or a POS that never writes the last boundary): the refusal says the
    multipart body is malformed and why (it was missing-file, though the POS did send a ``file`` part)."""
    pdf = GOOD[0].read_bytes()
    head = (b'--B\r\nContent-Disposition: form-data; name="file"; filename="r.pdf"\r\n'
            b"Content-Type: application/pdf\r\n\r\n" + pdf)
    for body in (head, head + b"\r\n--B\r\n", head + b"\r\n--B"):
        r = _post(appliance, pos_token, body, "multipart/form-data; boundary=B")
        _assert_problem(r, 400, "bad-multipart")
        assert "--B--" in r.json()["detail"]
    assert _post(appliance, pos_token, head + b"\r\n--B--\r\n", "multipart/form-data; boundary=B").status_code == 201
    assert appliance.ticket_rows() == 1


def test_every_pos_endpoint_needs_a_valid_token(appliance: Appliance, pos_token: str) -> None:
    pdf = GOOD[0].read_bytes()
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic dXNlcjpwdw=="}):
        r = appliance.api.post("/api/v1/tickets", content=pdf,
                       headers={**headers, "Content-Type": "application/pdf"})
        _assert_problem(r, 401, "unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")
        _assert_problem(appliance.api.delete("/api/v1/display", headers=headers), 401, "unauthorized")
        _assert_problem(httpx.get(appliance.url + "/api/v1/display", headers=headers), 401, "unauthorized")
    # A POS token is not a screen token: the stream carries capability URLs.
    _assert_problem(httpx.get(appliance.url + "/api/v1/display/stream", headers=_auth(pos_token)), 401,
                    "unauthorized")
    assert appliance.ticket_rows() == 0


def test_idempotency_key_never_makes_a_second_ticket(appliance: Appliance, pos_token: str) -> None:
    """A POS that retries after a timeout gets the same ticket, not a second one."""
    pdf = GOOD[0].read_bytes()
    first = _post(appliance, pos_token, pdf, params={"total": "3.10"}, headers={"Idempotency-Key": "sale-42"})
    again = _post(appliance, pos_token, pdf, params={"total": "3.10"}, headers={"Idempotency-Key": "sale-42"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert appliance.ticket_rows() == 1
    other = _post(appliance, pos_token, GOOD[1].read_bytes(), headers={"Idempotency-Key": "sale-42"})
    _assert_problem(other, 422, "idempotency-key-reused")
    new = _post(appliance, pos_token, pdf, headers={"Idempotency-Key": "sale-43"})
    assert new.status_code == 201 and new.json()["id"] != first.json()["id"]
    assert appliance.ticket_rows() == 2


def test_a_reused_idempotency_key_with_another_lang_is_refused(appliance: Appliance, pos_token: str) -> None:
    """A POS reusing a sale's key for another customer's language would otherwise be told the second
    ticket (in German) was made, while the screen showed the first one in French."""
    pdf = GOOD[0].read_bytes()
    key = {"Idempotency-Key": "sale-lang"}
    first = _post(appliance, pos_token, pdf, params={"total": "1.50", "lang": "fr"}, headers=key)
    assert first.status_code == 201, first.text
    same = _post(appliance, pos_token, pdf, params={"total": "1.50", "lang": "fr"}, headers=key)
    assert same.status_code == 201 and same.headers["idempotent-replayed"] == "true"
    _assert_problem(_post(appliance, pos_token, pdf, params={"total": "1.50", "lang": "de"}, headers=key),
                    422, "idempotency-key-reused")
    assert appliance.ticket_rows() == 1


@pytest.mark.parametrize("query", ["total=1.5&currency=EUR&currency=USD", "total=1.5&total=2", "lang=fr&lang=de",
                                   "ref=a&ref=b"])
def test_a_field_sent_twice_is_refused_naming_it(appliance: Appliance, pos_token: str, query: str) -> None:
    """Which of two totals or currencies the POS meant is unknowable: refused, not the last one guessed."""
    field = query.rsplit("&", 1)[1].split("=")[0]
    r = _post(appliance, pos_token, GOOD[0].read_bytes(), params=httpx.QueryParams(query))
    _assert_problem(r, 422, "invalid-ticket")
    assert repr(field) in r.json()["detail"]
    files = {"file": ("r.pdf", GOOD[0].read_bytes(), "application/pdf")}
    data: dict[str, list[str]] = {}
    for pair in query.split("&"):
        name, value = pair.split("=")
        data.setdefault(name, []).append(value)
    r = appliance.api.post("/api/v1/tickets", headers=_auth(pos_token), files=files, data=data, timeout=30)
    _assert_problem(r, 422, "invalid-ticket")
    assert appliance.ticket_rows() == 0


def test_download_headers_unknown_and_expired(appliance_factory: object) -> None:
    app: Appliance = appliance_factory("--retention-seconds", "2")  # type: ignore[operator]
    token = app.pair()
    pdf = GOOD[0].read_bytes()
    body = _post(app, token, pdf).json()
    r = httpx.get(body["url"])
    assert r.status_code == 200 and r.content == pdf
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "set-cookie" not in r.headers

    token_part = body["url"].rsplit("/", 1)[1]
    assert len(token_part) >= 22  # >= 128 bits in URL-safe base64
    unknown = httpx.get(app.url + "/r/" + "A" * 43)
    _assert_problem(unknown, 404, "not-found")
    page = httpx.get(app.url + "/r/" + "A" * 43, headers={"Accept": "text/html"})
    assert page.status_code == 404 and "<script" not in page.text

    time.sleep(2.5)
    _assert_problem(httpx.get(body["url"]), 410, "expired")
    assert httpx.get(body["url"], headers={"Accept": "text/html"}).status_code == 410


def test_display_follows_tickets_and_clears(appliance_factory: object) -> None:
    app: Appliance = appliance_factory("--display-timeout", "1.5")  # type: ignore[operator]
    token = app.pair()
    assert app.display()["scene"] == "idle"
    body = _post(app, token, GOOD[0].read_bytes(), params={"total": "9.99", "currency": "EUR"}).json()
    state = app.display()
    assert state["scene"] == "ticket" and state["ticket"]["url"] == body["url"]  # type: ignore[index]
    assert state["ticket"]["total"] == "9.99"  # type: ignore[index]
    time.sleep(2.0)
    assert app.display()["scene"] == "idle"
    _post(app, token, GOOD[0].read_bytes())
    assert app.display()["scene"] == "ticket"
    assert app.api.delete("/api/v1/display", headers=_auth(token)).status_code == 204
    assert app.display()["scene"] == "idle"


def test_no_token_or_secret_in_the_logs(appliance: Appliance) -> None:
    code = appliance.pairing_code()
    secret = appliance.pairing_secret()
    token = appliance.pair()
    body = _post(appliance, token, GOOD[0].read_bytes()).json()
    httpx.get(body["url"])
    httpx.get(appliance.url + "/r/" + body["url"].rsplit("/", 1)[1] + "x")
    logs = appliance.logs()
    capability = body["url"].rsplit("/", 1)[1]
    assert "/r/<redacted>" in logs
    for hidden in (capability, token, code, code.replace("-", ""), secret, appliance.screen_token()):
        assert hidden not in logs


def test_hostile_input_found_by_the_breaker_gets_problem_details(appliance: Appliance, pos_token: str) -> None:
    """Regressions from an adversarial review: each of these once got a 500, a crash or a leak."""
    from tests.unit.test_pdfcheck import _page_bomb

    bomb = _post(appliance, pos_token, _page_bomb(100_000))
    _assert_problem(bomb, 422, "pdf-too-complex")
    # Malformed multipart: no boundary, two file parts.
    _assert_problem(_post(appliance, pos_token, b"--x\r\n", "multipart/form-data"), 400, "bad-multipart")
    two = appliance.api.post("/api/v1/tickets", headers=_auth(pos_token),
                     files=[("file", ("a.pdf", GOOD[0].read_bytes(), "application/pdf")),
                            ("file", ("b.pdf", GOOD[0].read_bytes(), "application/pdf"))])
    _assert_problem(two, 400, "bad-multipart")
    # Invisible characters in the reference, and codes that are not money.
    _assert_problem(_post(appliance, pos_token, GOOD[0].read_bytes(), params={"ref": "R-1\u202e"}), 422,
                    "invalid-reference")
    for code in ("XXX", "XAU", "ıdr"):
        _assert_problem(_post(appliance, pos_token, GOOD[0].read_bytes(), params={"currency": code}), 422,
                        "invalid-currency")
    assert appliance.ticket_rows() == 0
    assert httpx.head(appliance.url + "/healthz").status_code == 200


def test_pairing_bodies_that_once_crashed(appliance: Appliance) -> None:
    deep = appliance.api.post("/api/v1/pair", content=b"[" * 4000)
    _assert_problem(deep, 400, "json-too-deep")
    forged = appliance.api.post("/api/v1/pair",
                                json={"secret": appliance.pairing_secret(), "name": "x\n2026-11-29 INFO forged"})
    _assert_problem(forged, 400, "bad-pairing-request")


def test_odd_spellings_of_a_capability_path_never_reach_the_log(appliance: Appliance, pos_token: str) -> None:
    body = _post(appliance, pos_token, GOOD[0].read_bytes()).json()
    token = body["url"].rsplit("/", 1)[1]
    assert httpx.head(body["url"]).status_code == 200
    for path in (f"//r/{token}", f"/R/{token}", f"/r/./{token}", f"/r%2F{token}", f"/x/{token}/y"):
        with socket.create_connection(("127.0.0.1", appliance.port)) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            sock.settimeout(5)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 ") and token.encode() not in answer.split(b"\r\n\r\n", 1)[1]
    time.sleep(0.3)
    logs = appliance.logs()
    assert token not in logs and token[:16] not in logs


def test_control_characters_in_paths_cannot_forge_log_lines(appliance: Appliance) -> None:
    httpx.get(appliance.url + "/x%0aINFO/a%1b[2J%00")  # short segments: not redacted, so escaped
    time.sleep(0.3)
    logs = appliance.logs()
    assert "\nINFO/" not in logs
    bad = [line for line in logs.splitlines() if "\x1b" in line or "\x00" in line]
    assert not bad and "\\x0a" in logs, bad


def test_the_screen_thanks_the_customer_when_the_phone_downloads(appliance_factory: object) -> None:
    app: Appliance = appliance_factory()  # type: ignore[operator]
    token = app.pair()
    body = _post(app, token, GOOD[0].read_bytes(), params={"lang": "de"}).json()
    state = app.display()
    assert state["scene"] == "ticket" and state["lang"] == "de" and state["ticket"]["valid_days"] == 30  # type: ignore[index]
    assert httpx.head(body["url"]).status_code == 200  # a HEAD (link preview) is not a download
    assert app.display()["scene"] == "ticket"
    assert httpx.get(body["url"]).status_code == 200
    assert app.display()["scene"] == "downloaded"
    _assert_problem(_post(app, token, GOOD[0].read_bytes(), params={"lang": "klingon"}), 422, "invalid-ticket")
