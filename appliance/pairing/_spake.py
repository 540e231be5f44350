"""Pairing by typed code with SPAKE2, bound to the TLS certificate each side sees.

SPAKE2 (Abdalla–Pointcheval 2005; the ``spake2`` package, as magic-wormhole uses it) turns the short code
into a strong shared key without revealing anything an eavesdropper or an active attacker could test offline:
each guess costs one online attempt, and the device allows MAX_WRONG_CODES before a new code and a lockout.

Channel binding: both sides derive their keys from the SPAKE2 key, the transcript and the SHA-256 pin of
the TLS certificate *they* see — the device its own, the POS the one its connection presented. A relay with
its own certificate therefore ends up with keys that differ on the two sides: the device's check of the
POS's confirmation fails, no token is released, and the POS never trusts the relay's certificate.

Messages (docs/protocol.md §2.2)::

    POS -> device  {"msg": b64(SPAKE2 A message)}
    device -> POS  {"session": id, "msg": b64(SPAKE2 B message)}
    POS -> device  {"confirm": b64(HMAC(k_pos, "pos"))}
    device -> POS  {"confirm": b64(HMAC(k_dev, "device")), "sealed": b64(nonce || AES-256-GCM(k_seal, grant))}

where ``(k_pos, k_dev, k_seal) = HKDF-SHA256(spake_key, info = LABEL || msg_a || msg_b || pin)``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spake2 import SPAKE2_A, SPAKE2_B

LABEL = b"eticket pairing v1"
ID_POS = b"eticket-pos"
NONCE_BYTES = 12


def b64e(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64d(text: str) -> bytes:
    """Decode unpadded base64url. Raises ValueError."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Keys:
    """Keys derived after SPAKE2, bound to the transcript and the certificate pin."""

    pos_confirm: bytes
    device_confirm: bytes
    seal: bytes


def derive(spake_key: bytes, msg_a: bytes, msg_b: bytes, pin: str) -> Keys:
    """HKDF-SHA256 (RFC 5869) of the SPAKE2 key into three 32-byte keys; ``pin`` is the certificate's
    fingerprint as this side sees it (appliance.identity.fingerprint_der)."""
    info = LABEL + hashlib.sha256(msg_a).digest() + hashlib.sha256(msg_b).digest() + pin.encode()
    okm = HKDF(algorithm=hashes.SHA256(), length=96, salt=None, info=info).derive(spake_key)
    return Keys(pos_confirm=okm[:32], device_confirm=okm[32:64], seal=okm[64:])


def confirmation(key: bytes, role: bytes) -> bytes:
    """HMAC-SHA256(key, role): proves knowledge of the key without revealing it."""
    return hmac.new(key, role, hashlib.sha256).digest()


class DeviceSide:
    """The device's half of one exchange. Raises ValueError on a malformed message."""

    def __init__(self, code: str, device_id: str) -> None:
        self._spake = SPAKE2_B(code.encode(), idA=ID_POS, idB=device_id.encode())
        self.msg_b = self._spake.start()
        self.keys: Keys | None = None

    def receive(self, msg_a: bytes, pin: str) -> None:
        """Take the POS's message and derive the keys (with the device's own pin)."""
        try:
            key = self._spake.finish(msg_a)
        except Exception as exc:  # spake2 raises SPAKEError, ValueError, NotOnCurve (a bare Exception), ...
            raise ValueError("malformed SPAKE2 message") from exc
        self.keys = derive(key, msg_a, self.msg_b, pin)

    def check(self, pos_confirm: bytes) -> bool:
        """True if the POS derived the same keys (same code, same certificate)."""
        assert self.keys is not None
        return hmac.compare_digest(pos_confirm, confirmation(self.keys.pos_confirm, b"pos"))

    def seal(self, grant: dict[str, Any]) -> tuple[bytes, bytes]:
        """``(device confirmation, nonce || AES-GCM ciphertext of the JSON grant)``."""
        assert self.keys is not None
        nonce = os.urandom(NONCE_BYTES)
        sealed = nonce + AESGCM(self.keys.seal).encrypt(nonce, json.dumps(grant).encode(), LABEL)
        return confirmation(self.keys.device_confirm, b"device"), sealed


class PosSide:
    """The POS's half of one exchange."""

    def __init__(self, code: str, device_id: str) -> None:
        self._spake = SPAKE2_A(code.encode(), idA=ID_POS, idB=device_id.encode())
        self.msg_a = self._spake.start()
        self.keys: Keys | None = None

    def receive(self, msg_b: bytes, pin_seen: str) -> bytes:
        """Take the device's message; return our confirmation. ``pin_seen``: the certificate our TLS saw.

        Raises:
            ValueError: a malformed message (not a point of the group, wrong side, reflected).
        """
        try:
            key = self._spake.finish(msg_b)
        except Exception as exc:  # as in DeviceSide.receive
            raise ValueError("malformed SPAKE2 message from the device") from exc
        self.keys = derive(key, self.msg_a, msg_b, pin_seen)
        return confirmation(self.keys.pos_confirm, b"pos")

    def open(self, device_confirm: bytes, sealed: bytes) -> dict[str, Any]:
        """Check the device's confirmation and open the grant.

        Raises:
            ValueError: the device could not prove the same keys, or the grant was tampered with.
        """
        assert self.keys is not None
        if not hmac.compare_digest(device_confirm, confirmation(self.keys.device_confirm, b"device")):
            raise ValueError("the device's confirmation does not match: wrong code or not the same channel")
        try:
            plain = AESGCM(self.keys.seal).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], LABEL)
        except Exception as exc:  # cryptography raises InvalidTag
            raise ValueError("the sealed grant does not open") from exc
        grant: dict[str, Any] = json.loads(plain)
        return grant
