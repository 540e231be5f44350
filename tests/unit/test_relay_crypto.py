"""Receipt tokens, sealing and request signatures (relay.crypto)."""

from __future__ import annotations

import time

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from relay.crypto import (
    BadSignature,
    BadToken,
    Signer,
    new_token,
    parse_token,
    unb64u,
    valid_rid,
    verify_request,
)


def _key() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def test_token_shape_carries_issue_time_and_128_random_bits() -> None:
    tokens = {new_token(1_800_000_000) for _ in range(1000)}
    assert len(tokens) == 1000
    for token in tokens:
        assert len(token) == 28 and parse_token(token).issued == 1_800_000_000
        assert len(unb64u(token)) == 21


@pytest.mark.parametrize("bad", ["", "x" * 27, "x" * 29, "!" * 28, "AAAA" * 7, "A" * 27 + "="])
def test_malformed_tokens_are_refused(bad: str) -> None:
    with pytest.raises(BadToken):
        parse_token(bad)


def test_seal_opens_only_with_its_token_and_is_deterministic_per_token() -> None:
    token = new_token()
    keys = parse_token(token)
    sealed = keys.seal(b"%PDF-1.7 receipt")
    assert keys.seal(b"%PDF-1.7 receipt") == sealed  # a retried upload is byte-identical
    assert b"receipt" not in sealed and valid_rid(keys.rid)
    assert parse_token(token).open(sealed) == b"%PDF-1.7 receipt"
    with pytest.raises(InvalidTag):
        parse_token(new_token()).open(sealed)
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(InvalidTag):
        keys.open(bytes(tampered))


def test_signed_request_verifies_and_names_each_fault() -> None:
    signer = Signer(_key())
    headers = {k.lower(): v for k, v in signer.headers("PUT", "/api/v1/receipts/x", b"body", expires=99).items()}
    assert verify_request("PUT", "/api/v1/receipts/x", headers, b"body") == signer.relay_id
    with pytest.raises(BadSignature, match="does not verify"):
        verify_request("PUT", "/api/v1/receipts/y", headers, b"body")
    with pytest.raises(BadSignature, match="does not verify"):
        verify_request("PUT", "/api/v1/receipts/x", headers, b"other")
    with pytest.raises(BadSignature, match="does not verify"):
        verify_request("PUT", "/api/v1/receipts/x", {**headers, "eticket-expires": "100"}, b"body")
    with pytest.raises(BadSignature, match="Eticket-Date"):
        verify_request("PUT", "/api/v1/receipts/x", headers, b"body", now=time.time() + 3600)
    with pytest.raises(BadSignature, match="Eticket-Signature"):
        verify_request("PUT", "/api/v1/receipts/x", {k: v for k, v in headers.items() if k != "eticket-signature"},
                       b"body")
    with pytest.raises(BadSignature, match="P-256|DER"):
        verify_request("PUT", "/api/v1/receipts/x", {**headers, "eticket-key": "AAAA"}, b"body")


def test_published_vectors_match_the_code_and_the_formulas() -> None:
    """docs/relay-vectors.json, recomputed from the formulas in docs/protocol.md §9 with plain cryptography."""
    import hashlib
    import json
    from pathlib import Path

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    from relay.crypto import b64u, signing_payload

    v = json.loads((Path(__file__).resolve().parents[2] / "docs" / "relay-vectors.json").read_text())
    raw = bytes.fromhex(v["token_bytes"])
    assert b64u(raw) == v["token"] and int.from_bytes(raw[1:5], "big") == v["issued"]

    def hkdf(info: bytes, n: int) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=n, salt=None, info=info).derive(raw)

    assert b64u(hkdf(b"eticket/v1 receipt-id", 32)) == v["rid"]
    assert hkdf(b"eticket/v1 key", 32).hex() == v["key"] and hkdf(b"eticket/v1 nonce", 12).hex() == v["nonce"]
    sealed = AESGCM(bytes.fromhex(v["key"])).encrypt(bytes.fromhex(v["nonce"]), bytes.fromhex(v["pdf"]),
                                                     v["aad"].encode())
    assert sealed.hex() == v["sealed"] and parse_token(v["token"]).seal(bytes.fromhex(v["pdf"])) == sealed
    key = ec.derive_private_key(int(v["device_private_key_scalar"], 16), ec.SECP256R1())
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert b64u(spki) == v["eticket_key"] and b64u(hashlib.sha256(spki).digest()) == v["relay_id"]
    r = v["request"]
    payload = "\n".join(["eticket-relay-v1", r["method"], r["path"], r["eticket_date"], r["eticket_expires"],
                         hashlib.sha256(sealed).hexdigest()]).encode()
    assert payload.decode() == v["signing_payload"]
    assert signing_payload(r["method"], r["path"], r["eticket_date"], r["eticket_expires"], sealed) == payload
    headers = {"eticket-key": v["eticket_key"], "eticket-date": r["eticket_date"],
               "eticket-expires": r["eticket_expires"], "eticket-signature": v["eticket_signature"]}
    assert verify_request("PUT", r["path"], headers, sealed, now=int(r["eticket_date"])) == v["relay_id"]


def test_blind_link_vectors_match_the_formulas_and_the_code() -> None:
    """docs/blind-link-vectors.json, recomputed from docs/protocol.md §9.1 with plain cryptography, and by
    relay.crypto (what the device seals with); the page passes the same file in Chromium (test_blind_page)."""
    import json
    from pathlib import Path

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    from relay.crypto import BadToken, b64u, unb64u

    doc = json.loads((Path(__file__).resolve().parents[2] / "docs" / "blind-link-vectors.json").read_text())
    for v in doc["valid"]:
        raw = unb64u(v["secret"])

        def hkdf(info: bytes, n: int, ikm: bytes = raw) -> bytes:
            return HKDF(algorithm=hashes.SHA256(), length=n, salt=None, info=info).derive(ikm)

        assert raw[0] == 2 and hkdf(b"eticket/v2 check", 1, raw[:20]) == raw[20:]
        assert int.from_bytes(raw[1:4], "big") * 3600 == v["issued"]
        assert b64u(hkdf(b"eticket/v2 object-id", 32)) == v["rid"]
        assert hkdf(b"eticket/v2 key", 32).hex() == v["key"] and hkdf(b"eticket/v2 nonce", 12).hex() == v["nonce"]
        assert v["aad"] == "eticket/v2 " + v["rid"]
        sealed = AESGCM(bytes.fromhex(v["key"])).encrypt(bytes.fromhex(v["nonce"]), bytes.fromhex(v["plaintext"]),
                                                         v["aad"].encode())
        assert sealed.hex() == v["sealed"]
        keys = parse_token(v["secret"])
        assert (keys.version, keys.issued, keys.rid) == (2, v["issued"], v["rid"])
        assert keys.seal(bytes.fromhex(v["plaintext"])) == sealed and keys.open(sealed) == bytes.fromhex(v["plaintext"])
    for v in doc["invalid"]:
        with pytest.raises(BadToken):
            parse_token(v["secret"])


def test_new_secrets_are_v2_links_as_long_as_v1_links() -> None:
    from relay.crypto import link, new_secret, new_token, token_version

    secret, token = new_secret(1_800_000_000), new_token(1_800_000_000)
    assert len(secret) == len(token) == 28 and token_version(secret) == 2 and token_version(token) == 1
    keys = parse_token(secret)
    assert keys.issued == 1_800_000_000 // 3600 * 3600 and keys.version == 2
    assert link("https://relay.example/", secret) == "https://relay.example/r#" + secret
    assert link("https://relay.example", token) == "https://relay.example/r/" + token
    assert len(link("https://relay.example", secret)) == len(link("https://relay.example", token))
    assert len({new_secret()[5:26] for _ in range(200)}) == 200  # the random part differs every time
    assert parse_token(new_token()).key != parse_token(secret).key


def test_a_blind_link_makes_the_same_qr_as_a_v1_link() -> None:
    """Small panels depend on the QR's size (README, first-scan bench): the customer screen's QR of a blind
    link has the same version, hence module count, as the v1 link it replaces, for the example relay's URL."""
    import segno

    from kiosk.qr import ERROR_LEVEL
    from relay.crypto import link, new_secret, new_token

    for relay in ("https://relay.example.org", "https://r.eticket.example.com"):
        for _ in range(20):
            blind, old = link(relay, new_secret()), link(relay, new_token())
            assert len(blind) == len(old)
            assert (segno.make_qr(blind, error=ERROR_LEVEL, boost_error=True).version
                    == segno.make_qr(old, error=ERROR_LEVEL, boost_error=True).version)
