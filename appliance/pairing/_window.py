"""The pairing window: while open, the screen shows a QR (URI with a 128-bit secret and the certificate pin)
and a short code for people to type. Both are single-use, short-lived and replaced after wrong attempts."""

from __future__ import annotations

import hmac
import secrets
import time
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlencode, urlsplit

CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
"""30 symbols without look-alikes (0/O, 1/I/L) or U: what a person reads off a screen and types."""
CODE_LENGTH = 8
"""8 symbols of 30 = 39 bits. Only usable through SPAKE2 (online guessing only), bounded by MAX_WRONG_CODES
per code, the lockout and the code's lifetime."""
SECRET_BYTES = 16
"""The QR's secret: 128 bits from the OS CSPRNG."""
MAX_WRONG_CODES = 5
"""After this many wrong attempts (code or secret) both are replaced and pairing locks for LOCKOUT_SECONDS."""
LOCKOUT_SECONDS = 60.0
URI_SCHEME = "eticket"
PROTOCOL_VERSION = "1"


def new_code() -> str:
    """A fresh code of CODE_LENGTH symbols from the OS CSPRNG."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(text: str) -> str:
    """Upper-case, drop spaces and dashes: ``"abcd-efgh"`` -> ``"ABCDEFGH"``."""
    return "".join(ch for ch in text.upper() if ch not in " -")


def build_pairing_uri(*, device_id: str, address: str, secret: str, fingerprint: str, name: str) -> str:
    """``eticket://pair?v=1&id=<device id>&addr=<host:port>&fp=<cert pin>&s=<secret>&name=<shop>``
    (docs/protocol.md §2)."""
    query = urlencode({"v": PROTOCOL_VERSION, "id": device_id, "addr": address, "fp": fingerprint, "s": secret,
                       "name": name})
    return f"{URI_SCHEME}://pair?{query}"


def parse_pairing_uri(uri: str) -> dict[str, str]:
    """Parse a scanned pairing URI into ``{"v", "id", "addr", "fp", "s", "name"}``.

    Raises:
        ValueError: not an ``eticket://pair`` URI, or a required field (id, addr, fp, s) is missing.
    """
    parts = urlsplit(uri.strip())
    if parts.scheme != URI_SCHEME or parts.netloc != "pair":
        raise ValueError("not an eticket pairing URI (expected eticket://pair?...)")
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    missing = [k for k in ("id", "addr", "fp", "s") if not query.get(k)]
    if missing:
        raise ValueError(f"pairing URI lacks {', '.join(missing)}")
    query.setdefault("v", PROTOCOL_VERSION)
    query.setdefault("name", "")
    return query


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PairingWindow:
    """The current code and secret, their expiry, the wrong-attempt count and the lockout.

    Not thread-safe: used on the event loop only.
    """

    def __init__(self, *, device_id: str, address: str, name: str, fingerprint: str, ttl_seconds: float,
                 closes_at: float | None = None) -> None:
        self._device_id = device_id
        self.address = address
        self._name = name
        self._fingerprint = fingerprint
        self._ttl = ttl_seconds
        self.closes_at = closes_at
        """None: open until a POS pairs (first pairing); else Unix time when the window closes by itself."""
        self.code = ""
        self.secret = ""
        self.expires_at = 0.0
        self.wrong_attempts = 0
        self.locked_until = 0.0
        self.renew()

    def renew(self) -> None:
        """Replace code and secret by fresh ones with a full lifetime."""
        self.code = new_code()
        self.secret = secrets.token_urlsafe(SECRET_BYTES)
        self.expires_at = time.time() + self._ttl
        self.wrong_attempts = 0

    @property
    def expired(self) -> bool:
        """True once the code's lifetime is over."""
        return time.time() >= self.expires_at

    @property
    def closed(self) -> bool:
        """True once a time-limited window has run out."""
        return self.closes_at is not None and time.time() >= self.closes_at

    def locked_for(self) -> float:
        """Seconds left in the lockout (0 when not locked)."""
        return max(0.0, self.locked_until - time.time())

    @property
    def display_code(self) -> str:
        """The code as shown on screen, in two groups: ``ABCD-EFGH``."""
        half = CODE_LENGTH // 2
        return f"{self.code[:half]}-{self.code[half:]}"

    @property
    def uri(self) -> str:
        """The pairing URI shown as a QR."""
        return build_pairing_uri(device_id=self._device_id, address=self.address, secret=self.secret,
                                 fingerprint=self._fingerprint, name=self._name)

    def screen_state(self) -> dict[str, object]:
        """What the pairing scene shows: ``{"uri", "code", "expires_at", "locked_until"}`` (ISO times or None).
        ``expires_at``: when this code and QR stop working (their lifetime, or the window's end if sooner)."""
        locked = self.locked_for() > 0
        ends = self.expires_at if self.closes_at is None else min(self.expires_at, self.closes_at)
        return {"uri": self.uri, "code": self.display_code, "expires_at": _iso(ends),
                "locked_until": _iso(self.locked_until) if locked else None}

    def check_secret(self, secret: str) -> bool:
        """Compare a QR secret in constant time (the caller counts a wrong one with :meth:`count_wrong`)."""
        return not self.expired and hmac.compare_digest(secret.encode(), self.secret.encode())

    def count_wrong(self) -> bool:
        """Count one wrong attempt; return True if that replaced the code and started a lockout."""
        self.wrong_attempts += 1
        if self.wrong_attempts >= MAX_WRONG_CODES:
            self.renew()
            self.locked_until = time.time() + LOCKOUT_SECONDS
            return True
        return False
