"""Sealed receipts as static objects: ``GET /o/<rid>`` on the relay itself and through the nginx deployment of
docs/relay.md (real nginx, real relay, real Chromium on loopback)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.crypto import Signer, link, new_secret, new_token, parse_token
from tests.conftest import wait_for
from tests.relay.conftest import RelayProc
from tests.relay.nginx import Nginx, start_nginx
from tests.relay.test_blind_page import PDF, Phone, _key_pem, browser  # noqa: F401 (the browser fixture)


def _upload(base: str, secret: str, pdf: bytes, lifetime: int = 3600) -> bytes:
    keys = parse_token(secret)
    sealed = keys.seal(pdf)
    path = f"/api/v1/receipts/{keys.rid}"
    r = httpx.put(base + path, content=sealed,
                  headers=Signer(_key_pem()).headers("PUT", path, sealed, expires=int(time.time()) + lifetime))
    assert r.status_code == 201, r.text
    return sealed


def _object_semantics(base: str, relay: RelayProc) -> None:
    """What any deployment must answer for objects: bytes, ETag, caching, Range, 304, misses."""
    secret = new_secret()
    sealed = _upload(base, secret, PDF)
    rid = parse_token(secret).rid
    got = httpx.get(f"{base}/o/{rid}")
    assert got.status_code == 200 and got.content == sealed
    assert got.headers["content-type"] == "application/octet-stream"
    assert "immutable" in got.headers["cache-control"] and "max-age=86400" in got.headers["cache-control"]
    etag = got.headers["etag"]
    part = httpx.get(f"{base}/o/{rid}", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == sealed[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(sealed)}"
    assert httpx.get(f"{base}/o/{rid}", headers={"If-None-Match": etag}).status_code == 304
    head = httpx.head(f"{base}/o/{rid}")
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(sealed)
    # Misses come from the relay: pending (with the link's issue time), expired, unknown; never cached.
    waiting = parse_token(new_secret())
    pending = httpx.get(f"{base}/o/{waiting.rid}", params={"issued": waiting.issued})
    assert pending.status_code == 404 and pending.json()["pending"] is True
    assert pending.headers["retry-after"] == "3" and pending.headers["cache-control"] == "no-store"
    old = parse_token(new_secret(time.time() - 40 * 86_400))
    assert httpx.get(f"{base}/o/{old.rid}", params={"issued": old.issued}).status_code == 410
    unknown = httpx.get(f"{base}/o/{waiting.rid}")
    assert unknown.status_code == 404 and "pending" not in unknown.json()
    assert httpx.get(f"{base}/o/{'x' * 10}").status_code == 404
    # A receipt that expired is gone even before the sweep deletes its file.
    short = new_secret()
    _upload(base, short, PDF, lifetime=2)
    time.sleep(3)
    assert httpx.get(f"{relay.url}/o/{parse_token(short).rid}").status_code == 410


def test_the_relay_serves_objects_with_etag_range_and_caching(relay_factory: Any) -> None:
    relay: RelayProc = relay_factory()
    _object_semantics(relay.url, relay)
    secret = new_secret()
    sealed = _upload(relay.url, secret, PDF)
    url = f"{relay.url}/o/{parse_token(secret).rid}"
    tail = httpx.get(url, headers={"Range": "bytes=-16"})  # the GCM tag
    assert tail.status_code == 206 and tail.content == sealed[-16:]
    assert httpx.get(url, headers={"Range": f"bytes={len(sealed) - 4}-"}).content == sealed[-4:]
    beyond = httpx.get(url, headers={"Range": f"bytes={len(sealed)}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(sealed)}"
    for ignored in ("bytes=0-1,5-6", "items=0-1", "bytes=-"):
        whole = httpx.get(url, headers={"Range": ignored})
        assert whole.status_code == 200 and whole.content == sealed, ignored
    # The objects directory: plain files a web server can read, not list; the rest private to the relay.
    storage = Path(relay.storage)
    assert storage.stat().st_mode & 0o777 == 0o711 and (storage / "o").stat().st_mode & 0o777 == 0o711
    files = list((storage / "o").iterdir())
    assert files and all(f.stat().st_mode & 0o777 == 0o644 for f in files)
    assert all(p.stat().st_mode & 0o077 == 0 for p in (storage / "r").rglob("*"))


def test_v1_links_still_open_and_a_v2_secret_is_never_used_in_a_path(relay_factory: Any) -> None:
    """Links handed out before blind links (``/r/<token>``) keep working; a v2 secret put in the v1 path is
    refused without being used (the relay would otherwise decrypt with it)."""
    relay: RelayProc = relay_factory()
    token = new_token()
    _upload(relay.url, token, b"%PDF-1.4 old link")
    assert httpx.get(f"{relay.url}/r/{token}").content == b"%PDF-1.4 old link"
    secret = new_secret()
    _upload(relay.url, secret, b"%PDF-1.4 new link")
    assert httpx.get(f"{relay.url}/r/{secret}").status_code == 404
    assert "r/" + secret not in relay.logs()


def test_download_notice_marks_only_stored_receipts(relay_factory: Any) -> None:
    relay: RelayProc = relay_factory()
    secret = new_secret()
    _upload(relay.url, secret, PDF)
    rid = parse_token(secret).rid
    assert httpx.post(f"{relay.url}/api/v1/downloaded/{rid}").status_code == 204
    assert (Path(relay.storage) / "d" / rid).is_file()
    assert httpx.post(f"{relay.url}/api/v1/downloaded/{parse_token(new_secret()).rid}").status_code == 404
    assert httpx.post(f"{relay.url}/api/v1/downloaded/nonsense").status_code == 404


@pytest.fixture
def deployment(relay_factory: Any, tmp_path: Path) -> Iterator[tuple[RelayProc, Nginx]]:
    relay: RelayProc = relay_factory()
    nginx = start_nginx(tmp_path / "nginx", Path(relay.storage), f"127.0.0.1:{relay.port}")
    yield relay, nginx
    nginx.stop()


def test_nginx_in_front_serves_the_objects_itself(deployment: tuple[RelayProc, Nginx]) -> None:
    relay, nginx = deployment
    _object_semantics(nginx.url, relay)
    misses = relay.logs().count('"GET /o/<redacted>" 404')
    rid = parse_token(new_secret()).rid  # a miss through nginx is answered by the relay
    assert httpx.get(f"{nginx.url}/o/{rid}", params={"issued": int(time.time())}).json()["pending"] is True
    wait_for(lambda: relay.logs().count('"GET /o/<redacted>" 404') == misses + 1, 5, "the relay's log line")


def test_a_phone_through_nginx_gets_the_pdf_from_nginx_and_the_relay_hears_the_notice(
    deployment: tuple[RelayProc, Nginx], browser: Any  # noqa: F811 (the fixture)
) -> None:
    relay, nginx = deployment
    secret = new_secret()
    _upload(nginx.url, secret, PDF)
    rid = parse_token(secret).rid
    before = relay.logs().count("GET /o/")
    phone = Phone(browser)
    try:
        data, _name = phone.download(link(nginx.url, secret))
    finally:
        phone.close()
    assert hashlib.sha256(data).digest() == hashlib.sha256(PDF).digest()
    assert f"GET /o/{rid}" in nginx.access_log.read_text()  # served by nginx from the storage directory…
    assert relay.logs().count("GET /o/") == before           # …not by the relay (its log: /o/<redacted>)
    assert (Path(relay.storage) / "d" / rid).is_file()       # the notice reached the relay
