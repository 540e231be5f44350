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
