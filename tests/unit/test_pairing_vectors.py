"""docs/pairing-vectors.json is what the code does, and the documented SPAKE2 formulas hold."""

from __future__ import annotations

import hashlib
import hmac
import json

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.pairing.vectors import build
from tests.conftest import REPO

ORDER = 2**252 + 27742317777372353535851937790883648493  # Ed25519 subgroup order L (RFC 8032)


def test_published_vectors_match_the_code() -> None:
    assert json.loads((REPO / "docs" / "pairing-vectors.json").read_text()) == build()


def test_the_documented_formulas_reproduce_the_vectors() -> None:
    v = build()
    pw = bytes.fromhex(v["password_bytes"])
    # w = int_be(HKDF-SHA256(pw, salt="", info="SPAKE2 pw", 48 bytes)) mod L
    okm = HKDF(algorithm=hashes.SHA256(), length=48, salt=b"", info=b"SPAKE2 pw").derive(pw)
    assert (int.from_bytes(okm, "big") % ORDER).to_bytes(32, "little").hex() == v["w"]
    # messages: side byte + 32-byte point
    assert v["msg_a"][:2] == "41" and v["msg_b"][:2] == "42" and len(v["msg_a"]) == 66
    # key = SHA-256(SHA-256(pw) || SHA-256(idA) || SHA-256(idB) || X || Y || K)
    transcript = (hashlib.sha256(pw).digest() + hashlib.sha256(v["id_a"].encode()).digest()
                  + hashlib.sha256(v["id_b"].encode()).digest() + bytes.fromhex(v["msg_a"])[1:]
                  + bytes.fromhex(v["msg_b"])[1:] + bytes.fromhex(v["K"]))
    assert hashlib.sha256(transcript).hexdigest() == v["spake2_key"]
    # HKDF binding to the transcript and the pin (ASCII), then the confirmations
    info = (b"eticket pairing v1" + hashlib.sha256(bytes.fromhex(v["msg_a"])).digest()
            + hashlib.sha256(bytes.fromhex(v["msg_b"])).digest() + v["pin"].encode("ascii"))
    okm = HKDF(algorithm=hashes.SHA256(), length=96, salt=None, info=info).derive(bytes.fromhex(v["spake2_key"]))
    assert (okm[:32].hex(), okm[32:64].hex(), okm[64:].hex()) == (v["k_pos"], v["k_device"], v["k_seal"])
    assert hmac.new(okm[:32], b"pos", hashlib.sha256).hexdigest() == v["confirm_pos"]
    assert hmac.new(okm[32:64], b"device", hashlib.sha256).hexdigest() == v["confirm_device"]
