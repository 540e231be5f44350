"""The blind download page (``GET /r``): one self-contained HTML file, the same bytes on every relay.

The page reads the receipt's secret from the URL's fragment, derives the object id and key in the browser
(WebCrypto HKDF and AES-GCM, as :mod:`relay.crypto` defines them), fetches ``/o/<rid>`` and hands the PDF over.
Its policy allows exactly its own inline script and style (CSP Level 3 hash sources) and requests to its own
origin; nothing else can load or run. Because the bytes never vary, anyone can compare what a relay serves with
the published :data:`PAGE_SHA256` (``eticket relay check-page URL``, docs/security.md).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from importlib.resources import files

PAGE: bytes = files(__package__).joinpath("receipt.html").read_bytes()
"""The page's exact bytes."""
PAGE_SHA256: str = hashlib.sha256(PAGE).hexdigest()
"""The SHA-256 of :data:`PAGE`, hex: what docs/security.md publishes for this release."""


def _inline_hashes(tag: str) -> str:
    bodies = re.findall(rf"<{tag}>(.*?)</{tag}>".encode(), PAGE, flags=re.S)
    if not bodies:
        raise RuntimeError(f"the receipt page has no inline <{tag}>")
    return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b).digest()).decode()}'" for b in bodies)


CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src {_inline_hashes('script')}; style-src {_inline_hashes('style')}; "
    "connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""Only the page's own inline script and style run (by hash), requests go to its own origin only."""

PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "public, max-age=3600",
    "Referrer-Policy": "no-referrer",
    "ETag": f'"{PAGE_SHA256[:32]}"',
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
"""Response headers of ``GET /r``, also the ones docs/relay.md has nginx send when it serves the file itself."""

PAGE_FETCH_LIMIT = 1 << 20
"""Bytes of a served page read by :func:`async_fetch_page`: more is not the published page (it has 16 KiB)."""


@dataclass(frozen=True)
class ServedPage:
    """What a relay answered on ``GET /r``: ``status``, ``headers`` (httpx.Headers), ``sha256`` (hex, of the
    bytes read), ``faults`` (sentences naming what differs from the published page; empty when it is the one)."""

    status: int
    headers: object
    sha256: str
    faults: tuple[str, ...]


async def async_fetch_page(client: object, relay_url: str, *, expect: str | None = None,
                           deadline: float = 15.0) -> ServedPage:
    """Fetch ``relay_url + "/r"`` as a phone would (no secret: the fragment never leaves a browser) with
    ``client`` (an ``httpx.AsyncClient``) and compare it with the published page: SHA-256 (``expect``, else
    :data:`PAGE_SHA256`) and, when ``expect`` is not given, the Content-Security-Policy.

    Bounded against a hostile relay: at most :data:`PAGE_FETCH_LIMIT` bytes are read, never decompressed
    (identity is asked for; an encoded answer is a fault), no redirect is followed, and the whole exchange
    ends after ``deadline`` seconds. Raises ``httpx.HTTPError`` or ``TimeoutError`` when the relay cannot be
    reached or is too slow."""
    import asyncio

    expected = (expect or PAGE_SHA256).lower()
    async with asyncio.timeout(deadline):
        async with client.stream("GET", relay_url.rstrip("/") + "/r",  # type: ignore[attr-defined]
                                 headers={"Accept": "text/html", "Accept-Encoding": "identity"},
                                 follow_redirects=False) as response:
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > PAGE_FETCH_LIMIT:
                    break
    faults = []
    if response.status_code != 200:
        faults.append(f"answers HTTP {response.status_code}")
    if len(body) > PAGE_FETCH_LIMIT:
        faults.append(f"serves a page larger than {PAGE_FETCH_LIMIT} bytes")
        del body[PAGE_FETCH_LIMIT:]
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        faults.append(f"sends it encoded (Content-Encoding: {encoding}) although identity was asked for")
    sha256 = hashlib.sha256(body).hexdigest()
    if sha256 != expected:
        faults.append(f"serves a page whose SHA-256 is {sha256}, not {expected}")
    csp = response.headers.get("content-security-policy", "")
    if csp != CONTENT_SECURITY_POLICY and not expect:
        faults.append(f"sends another Content-Security-Policy: {csp or '(none)'}")
    return ServedPage(response.status_code, response.headers, sha256, tuple(faults))
