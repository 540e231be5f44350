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
