"""The pairing window: one short-lived, single-use code at a time, shown as a QR (a URI) and as text."""

from __future__ import annotations

import hmac
import secrets
import time
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlencode, urlsplit

CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
"""30 symbols without look-alikes (0/O, 1/I/L) or U: what a person reads off a screen and types."""
CODE_LENGTH = 8
"""8 symbols of 30 = 39 bits. Brute force is bounded by MAX_WRONG_CODES per code and the code's lifetime."""
MAX_WRONG_CODES = 5
"""After this many wrong attempts the code is replaced by a fresh one."""
URI_SCHEME = "eticket"
PROTOCOL_VERSION = "1"


def new_code() -> str:
    """A fresh code of CODE_LENGTH symbols from the OS CSPRNG."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(text: str) -> str:
    """Upper-case, drop spaces and dashes: ``"abcd-efgh"`` -> ``"ABCDEFGH"``."""
    return "".join(ch for ch in text.upper() if ch not in " -")


def build_pairing_uri(*, device_id: str, address: str, code: str, name: str) -> str:
    """``eticket://pair?v=1&id=<device id>&addr=<host:port>&code=<code>&name=<shop>`` (docs/protocol.md)."""
    query = urlencode({"v": PROTOCOL_VERSION, "id": device_id, "addr": address, "code": code, "name": name})
    return f"{URI_SCHEME}://pair?{query}"


def parse_pairing_uri(uri: str) -> dict[str, str]:
    """Parse a scanned pairing URI into ``{"v", "id", "addr", "code", "name"}``.

    Raises:
        ValueError: not an ``eticket://pair`` URI, or a required field (id, addr, code) is missing.
    """
    parts = urlsplit(uri.strip())
    if parts.scheme != URI_SCHEME or parts.netloc != "pair":
        raise ValueError("not an eticket pairing URI (expected eticket://pair?...)")
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    missing = [k for k in ("id", "addr", "code") if not query.get(k)]
    if missing:
        raise ValueError(f"pairing URI lacks {', '.join(missing)}")
    query.setdefault("v", PROTOCOL_VERSION)
    query.setdefault("name", "")
    return query


class PairingWindow:
    """One pairing code with its expiry, wrong-attempt count and single use.

    Not thread-safe: used on the event loop only.
    """

    def __init__(self, *, device_id: str, address: str, name: str, ttl_seconds: float) -> None:
        self._device_id = device_id
        self._address = address
        self._name = name
        self._ttl = ttl_seconds
        self.code = ""
        self.expires_at = 0.0
        self.wrong_attempts = 0
        self.renew()

    def renew(self) -> None:
        """Replace the code by a fresh one with a full lifetime."""
        self.code = new_code()
        self.expires_at = time.time() + self._ttl
        self.wrong_attempts = 0

    @property
    def expired(self) -> bool:
        """True once the code's lifetime is over."""
        return time.time() >= self.expires_at

    @property
    def display_code(self) -> str:
        """The code as shown on screen, in two groups: ``ABCD-EFGH``."""
        half = CODE_LENGTH // 2
        return f"{self.code[:half]}-{self.code[half:]}"

    @property
    def uri(self) -> str:
        """The pairing URI shown as a QR."""
        return build_pairing_uri(device_id=self._device_id, address=self._address, code=self.code, name=self._name)

    @property
    def expires_at_iso(self) -> str:
        """Expiry as RFC 3339 UTC."""
        return datetime.fromtimestamp(self.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def check(self, code: str) -> bool:
        """Compare ``code`` in constant time. A wrong code counts; the fifth one renews the code."""
        ok = not self.expired and hmac.compare_digest(normalise_code(code).encode(), self.code.encode())
        if not ok:
            self.wrong_attempts += 1
            if self.wrong_attempts >= MAX_WRONG_CODES:
                self.renew()
        return ok
