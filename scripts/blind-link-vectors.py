#!/usr/bin/env python3
"""Write docs/blind-link-vectors.json: test vectors for receipt secrets (docs/protocol.md §9.1).

Fixed inputs (no randomness), so the file is the same on every run; the device and relay code
(relay/crypto.py) and the download page (relay/page/receipt.html, run in Chromium) must all reproduce it:
tests/unit/test_relay_vectors.py and tests/relay/test_blind_page.py.

    .venv/bin/python scripts/blind-link-vectors.py [OUT]
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from relay.crypto import _hkdf, b64u, parse_token  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "blind-link-vectors.json"


def v2_secret(hours: int, seed: bytes) -> str:
    body = bytes([2]) + hours.to_bytes(3, "big") + hashlib.sha256(seed).digest()[:16]
    return b64u(body + _hkdf(body, b"eticket/v2 check", 1))


def vector(secret: str, plaintext: bytes) -> dict[str, object]:
    keys = parse_token(secret)
    return {"secret": secret, "version": keys.version, "issued": keys.issued, "rid": keys.rid,
            "key": keys.key.hex(), "nonce": keys.nonce.hex(), "aad": keys.aad.decode(),
            "plaintext": plaintext.hex(), "sealed": keys.seal(plaintext).hex()}


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    good = [
        vector(v2_secret(0, b"zero"), b""),
        vector(v2_secret(492_000, b"eticket vector 1"), b"%PDF-1.7\n% a receipt\n"),
        vector(v2_secret(0xFFFFFF, b"eticket vector 2"), bytes(range(256))),
    ]
    legacy = b64u(bytes([1]) + (1_767_225_600).to_bytes(4, "big") + hashlib.sha256(b"v1").digest()[:16])
    altered = list(good[1]["secret"])  # type: ignore[arg-type]
    altered[10] = "A" if altered[10] != "A" else "B"
    document = {
        "about": "eTicket receipt secrets: HKDF-SHA256 derivations and AES-256-GCM sealing (docs/protocol.md §9.1). "
                 "Byte strings are hex; secrets are unpadded base64url.",
        "valid": good,
        "deprecated_v1": [vector(legacy, b"%PDF-1.4 v1")],
        "invalid": [
            {"secret": "".join(altered), "why": "check byte does not match (one character altered)"},
            {"secret": good[1]["secret"][:27], "why": "27 characters"},  # type: ignore[index]
            {"secret": "A" + "=" * 27, "why": "not base64url"},
            {"secret": b64u(bytes([3]) + bytes(20)), "why": "unknown version 3"},
        ],
    }
    out.write_text(json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    main()
