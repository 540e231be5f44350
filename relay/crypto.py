"""Receipt secrets, sealing and signed requests shared by the device and the relay.

A receipt's secret (the capability the customer's QR carries) is 21 bytes, unpadded base64url (28 characters).
Two versions exist (docs/protocol.md §9.1):

* **v2, blind** (current): the link is ``<relay>/r#<secret>``. The secret sits in the URL's fragment, which
  browsers never send (RFC 3986 §3.5); the relay's download page derives the object id and key in the browser
  and decrypts there, so the relay only ever stores and serves ciphertext::

      0x02 | issued (3 bytes, Unix hours, big-endian) | 16 random bytes (128 bits, OS CSPRNG) | check (1 byte)

  ``check`` is the first byte of HKDF(first 20 bytes, info ``eticket/v2 check``): a link altered on its way
  (a mangled copy, a typo) is told from an unknown one before anything is fetched (255 in 256 alterations).
* **v1, deprecated**: the link is ``<relay>/r/<token>``; the relay derives the key from the path and decrypts
  for the phone. Kept only so links already handed out keep working until they expire::

      0x01 | issued (4 bytes, Unix seconds, big-endian) | 16 random bytes

The issue time is not secret (the relay sees when an upload arrives anyway); it lets a stateless relay tell
"on its way" from "expired" from "unknown" without any record of secrets it has not seen.

From the 21 bytes, HKDF-SHA256 (RFC 5869; no salt; IKM = the 21 bytes) derives, with ``V`` = ``v1`` or ``v2``
and ``ID`` = ``receipt-id`` (v1) or ``object-id`` (v2):

* ``eticket/V ID``    -> 32 bytes: the receipt id (``rid``, base64url, 43 characters): the object's name;
* ``eticket/V key``   -> 32 bytes: the AES-256-GCM key;
* ``eticket/V nonce`` -> 12 bytes: the GCM nonce. Each secret seals exactly one receipt, so a fixed
  nonce per key is safe (NIST SP 800-38D §8: a (key, nonce) pair is never used for two plaintexts), and a
  retried upload is byte-identical, which makes uploads idempotent.

Sealed receipt: ``AES-256-GCM(key, nonce, pdf, aad=b"eticket/V " + rid)`` (ciphertext || 16-byte tag).
The rid in the AAD stops a sealed receipt from being served under another id. ``docs/blind-link-vectors.json``
holds test vectors that this module, the relay and the download page (``relay/page/receipt.html``) all pass.

Signed requests (device -> relay): ECDSA P-256 with SHA-256 (FIPS 186-5) by the device's key over::

    eticket-relay-v1 \\n METHOD \\n PATH \\n DATE \\n EXPIRES \\n hex(SHA-256(body))

sent as headers ``Eticket-Key`` (the public key, DER SubjectPublicKeyInfo, base64url), ``Eticket-Date``
(Unix seconds), ``Eticket-Expires`` (Unix seconds, uploads only, else empty) and ``Eticket-Signature`` (DER
signature, base64url). The device's relay id is base64url(SHA-256(SubjectPublicKeyInfo)).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import struct
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TOKEN_VERSION = 1
"""The deprecated v1 token (``/r/<token>``, decrypted by the relay)."""
SECRET_VERSION = 2
"""The blind v2 secret (``/r#<secret>``, decrypted by the phone)."""
TOKEN_BYTES = 21
TOKEN_CHARS = 28
RANDOM_BYTES = 16
SIGNATURE_CONTEXT = "eticket-relay-v1"
CLOCK_SKEW_SECONDS = 300
"""A signed request's ``Eticket-Date`` may differ from the relay's clock by this much (replay window)."""
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")


def unix_seconds(text: str) -> int | None:
    """``text`` as Unix seconds if it is 1–12 ASCII digits, else None (no superscripts, signs or spaces)."""
    return int(text) if _UNIX_SECONDS.fullmatch(text) else None


class BadToken(ValueError):
    """Not a relay token (wrong length, alphabet or version)."""


class BadSignature(ValueError):
    """A signed request whose key, date or signature does not verify; the message says which."""


def b64u(data: bytes) -> str:
    """Unpadded base64url (RFC 4648 §5)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    """Inverse of :func:`b64u`; raises ValueError on anything but canonical unpadded base64url."""
    if not text or "=" in text or any(c not in _B64U for c in text):
        raise ValueError("not base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64u(data) != text:
        raise ValueError("not canonical base64url")
    return data


_B64U = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def new_token(now: float | None = None) -> str:
    """A v1 token (deprecated: the relay decrypts it) issued at ``now`` (Unix seconds): 28 characters, 128
    random bits. Devices make :func:`new_secret` links; this stays for tests of links already handed out."""
    issued = int(time.time() if now is None else now)
    return b64u(bytes([TOKEN_VERSION]) + struct.pack(">I", issued) + os.urandom(RANDOM_BYTES))


def new_secret(now: float | None = None) -> str:
    """A fresh v2 secret issued at ``now`` (Unix seconds, kept to the hour): 28 characters, 128 random bits,
    for the link ``<relay>/r#<secret>`` (:func:`link`)."""
    hours = int((time.time() if now is None else now) // 3600)
    body = bytes([SECRET_VERSION]) + hours.to_bytes(3, "big") + os.urandom(RANDOM_BYTES)
    return b64u(body + _hkdf(body, b"eticket/v2 check", 1))


def link(relay_url: str, secret: str) -> str:
    """The customer's URL for a receipt published to ``relay_url``: ``<relay>/r#<secret>`` for a v2 secret,
    ``<relay>/r/<token>`` for a v1 token (stored before devices made v2 links)."""
    base = relay_url.rstrip("/")
    return f"{base}/r#{secret}" if parse_token(secret).version == SECRET_VERSION else f"{base}/r/{secret}"


@dataclass(frozen=True, slots=True)
class TokenKeys:
    """What a secret opens: ``version`` (1 or 2), ``issued`` (Unix seconds; v2: the start of its hour),
    ``rid`` (the object's name), ``key`` and ``nonce``."""

    issued: int
    rid: str
    key: bytes
    nonce: bytes
    version: int = TOKEN_VERSION

    @property
    def aad(self) -> bytes:
        """The GCM associated data: ``eticket/v1 <rid>`` or ``eticket/v2 <rid>``."""
        return f"eticket/v{self.version} {self.rid}".encode()

    def seal(self, pdf: bytes) -> bytes:
        """The sealed receipt (ciphertext and tag) for ``pdf``."""
        return AESGCM(self.key).encrypt(self.nonce, pdf, self.aad)

    def open(self, sealed: bytes) -> bytes:
        """The PDF inside ``sealed``. Raises :class:`cryptography.exceptions.InvalidTag` if it was altered or
        sealed under another secret."""
        return AESGCM(self.key).decrypt(self.nonce, sealed, self.aad)


def _hkdf(token_bytes: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(token_bytes)


def token_version(token: str) -> int | None:
    """The version byte of a 28-character base64url secret (1 or 2 for ours), without deriving anything;
    None if it is not one."""
    if len(token) != TOKEN_CHARS:
        return None
    try:
        return unb64u(token)[0]
    except ValueError:
        return None


def parse_token(token: str) -> TokenKeys:
    """Derive ``rid``, key and nonce from a v1 token or a v2 secret. Raises :class:`BadToken` naming the
    fault: not 28 base64url characters, an unknown version, or (v2) a check byte that does not match."""
    if len(token) != TOKEN_CHARS:
        raise BadToken("a receipt secret has 28 characters")
    try:
        raw = unb64u(token)
    except ValueError as exc:
        raise BadToken("a receipt secret is base64url") from exc
    if len(raw) != TOKEN_BYTES or raw[0] not in (TOKEN_VERSION, SECRET_VERSION):
        raise BadToken("unknown secret version")
    if raw[0] == TOKEN_VERSION:
        issued = struct.unpack(">I", raw[1:5])[0]
        return TokenKeys(issued=issued, rid=b64u(_hkdf(raw, b"eticket/v1 receipt-id", 32)),
                         key=_hkdf(raw, b"eticket/v1 key", 32), nonce=_hkdf(raw, b"eticket/v1 nonce", 12))
    if _hkdf(raw[:20], b"eticket/v2 check", 1) != raw[20:]:
        raise BadToken("the secret's check byte does not match: the link was altered")
    return TokenKeys(issued=int.from_bytes(raw[1:4], "big") * 3600,
                     rid=b64u(_hkdf(raw, b"eticket/v2 object-id", 32)), key=_hkdf(raw, b"eticket/v2 key", 32),
                     nonce=_hkdf(raw, b"eticket/v2 nonce", 12), version=SECRET_VERSION)


def valid_rid(rid: str) -> bool:
    """True for a well-formed receipt id (43 base64url characters, 32 bytes)."""
    if len(rid) != 43:
        return False
    try:
        return len(unb64u(rid)) == 32
    except ValueError:
        return False



def signing_payload(method: str, path: str, date: str, expires: str, body: bytes) -> bytes:
    """The bytes a device signs for a request (see the module docstring)."""
    return "\n".join([SIGNATURE_CONTEXT, method.upper(), path, date, expires,
                      hashlib.sha256(body).hexdigest()]).encode()


def device_relay_id(spki_der: bytes) -> str:
    """A device's id on a relay: base64url(SHA-256(DER SubjectPublicKeyInfo)), 43 characters. Hash the
    canonical (uncompressed-point) encoding: :func:`canonical_spki`."""
    return b64u(hashlib.sha256(spki_der).digest())


def canonical_spki(public: ec.EllipticCurvePublicKey) -> bytes:
    """The DER SubjectPublicKeyInfo with the point uncompressed (91 bytes for P-256), whatever encoding the
    key arrived in, so one key has one relay id (a compressed re-encoding cannot dodge a block or a quota)."""
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class Signer:
    """Signs relay requests with a device's EC P-256 private key (PEM file, PKCS#8)."""

    def __init__(self, key_pem: bytes) -> None:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("the device key must be an EC P-256 key")
        self._key = key
        self.spki = canonical_spki(key.public_key())
        self.relay_id = device_relay_id(self.spki)

    def headers(self, method: str, path: str, body: bytes, expires: int | None = None,
                now: float | None = None) -> dict[str, str]:
        """The ``Eticket-*`` headers that sign ``method path`` with ``body``."""
        date = str(int(time.time() if now is None else now))
        exp = "" if expires is None else str(int(expires))
        signature = self._key.sign(signing_payload(method, path, date, exp, body), ec.ECDSA(hashes.SHA256()))
        headers = {"Eticket-Key": b64u(self.spki), "Eticket-Date": date, "Eticket-Signature": b64u(signature)}
        if exp:
            headers["Eticket-Expires"] = exp
        return headers


def precheck_headers(headers: dict[str, str], now: float | None = None) -> ec.EllipticCurvePublicKey:
    """The checks that need no body: the three headers present, the key an EC P-256 public key (DER SPKI,
    unpadded base64url), the date within ±CLOCK_SKEW_SECONDS. Run before reading a body, so unsigned or stale
    requests cost nothing. Returns the public key; raises :class:`BadSignature` naming the fault."""
    for name in ("eticket-key", "eticket-date", "eticket-signature"):
        if name not in headers:
            raise BadSignature(f"missing header {name.title()}: relay requests must be signed by the device")
    try:
        public = serialization.load_der_public_key(unb64u(headers["eticket-key"]))
    except ValueError as exc:
        raise BadSignature("Eticket-Key is not an unpadded base64url DER public key") from exc
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise BadSignature("Eticket-Key must be an EC P-256 public key")
    date = unix_seconds(headers["eticket-date"])
    if date is None or abs(date - (time.time() if now is None else now)) > CLOCK_SKEW_SECONDS:
        raise BadSignature(f"Eticket-Date must be Unix seconds within {CLOCK_SKEW_SECONDS} s of the relay's clock")
    return public


def verify_request(method: str, path: str, headers: dict[str, str], body: bytes,
                   now: float | None = None) -> str:
    """Check a signed request; return the device's relay id.

    ``headers`` maps lower-case names to values. Raises :class:`BadSignature` naming the fault: a missing
    header, a key that is not P-256, a date outside ±CLOCK_SKEW_SECONDS, or a signature that does not verify.
    """
    public = precheck_headers(headers, now)
    date, signature_text = headers["eticket-date"], headers["eticket-signature"]
    try:
        public.verify(unb64u(signature_text), signing_payload(method, path, date, headers.get("eticket-expires", ""),
                                                              body), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError) as exc:
        raise BadSignature("Eticket-Signature does not verify for this request and body") from exc
    return device_relay_id(canonical_spki(public))
