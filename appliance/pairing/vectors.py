"""Worked example (test vectors) of typed-code pairing, for POS vendors implementing docs/protocol.md §2.2.

    python -m appliance.pairing.vectors > docs/pairing-vectors.json

Randomness is replaced by fixed values so that every intermediate can be checked; tests regenerate the file
and also recompute the SPAKE2 key from the documented formula.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

from spake2 import SPAKE2_A, SPAKE2_B
from spake2.parameters.ed25519 import ParamsEd25519

from ._spake import ID_POS, LABEL, NONCE_BYTES, confirmation, derive

CODE = "ABCD2345"
DEVICE_ID = "et-0123456789abcdef"
PIN = "o-C5i2iWSUIDrXC5WFqut0y_fdKNbQI4tKRWd-DOj2c"
GRANT = {"token": "T" * 43, "pos_id": "pos-000000000000", "device_id": DEVICE_ID}
NONCE = bytes(range(NONCE_BYTES))


def _entropy(label: bytes) -> Any:
    """The 64 bytes spake2 draws for its random scalar, fixed: SHA-512(label)."""
    return lambda n: hashlib.sha512(label).digest()[:n]


def build() -> dict[str, Any]:
    """Every value of one exchange, hex-encoded (points: 32-byte Ed25519 encodings, RFC 8032 §5.1.2)."""
    group = ParamsEd25519.group
    pw = CODE.encode()
    a = SPAKE2_A(pw, idA=ID_POS, idB=DEVICE_ID.encode(), entropy_f=_entropy(b"pos"))
    b = SPAKE2_B(pw, idA=ID_POS, idB=DEVICE_ID.encode(), entropy_f=_entropy(b"device"))
    msg_a, msg_b = a.start(), b.start()
    key_a, key_b = a.finish(msg_b), b.finish(msg_a)
    assert key_a == key_b
    w = group.password_to_scalar(pw)
    # K = x * (Y - w*N), recomputed here with the group's own operations
    y_elem = group.bytes_to_element(msg_b[1:])
    k_elem = y_elem.add(ParamsEd25519.N.scalarmult(-w)).scalarmult(a.xy_scalar)
    keys = derive(key_a, msg_a, msg_b, PIN)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    sealed = NONCE + AESGCM(keys.seal).encrypt(NONCE, json.dumps(GRANT).encode(), LABEL)
    return {
        "code": CODE, "password_bytes": pw.hex(), "id_a": ID_POS.decode(), "id_b": DEVICE_ID, "pin": PIN,
        "M": ParamsEd25519.M.to_bytes().hex(), "N": ParamsEd25519.N.to_bytes().hex(),
        "w": group.scalar_to_bytes(w).hex(), "w_encoding": "little-endian 32 bytes (as Ed25519 scalars)",
        "x": group.scalar_to_bytes(a.xy_scalar).hex(), "y": group.scalar_to_bytes(b.xy_scalar).hex(),
        "msg_a": msg_a.hex(), "msg_b": msg_b.hex(), "K": k_elem.to_bytes().hex(), "spake2_key": key_a.hex(),
        "k_pos": keys.pos_confirm.hex(), "k_device": keys.device_confirm.hex(), "k_seal": keys.seal.hex(),
        "confirm_pos": confirmation(keys.pos_confirm, b"pos").hex(),
        "confirm_device": confirmation(keys.device_confirm, b"device").hex(),
        "grant_json": json.dumps(GRANT), "nonce": NONCE.hex(), "sealed": sealed.hex(),
    }


if __name__ == "__main__":
    json.dump(build(), sys.stdout, indent=2)
    sys.stdout.write("\n")
