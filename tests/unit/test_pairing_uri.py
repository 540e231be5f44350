"""The pairing URI carries everything a POS needs and nothing is lost in the round trip."""

from __future__ import annotations

import pytest

from appliance.pairing import (
    CODE_ALPHABET,
    PairingWindow,
    build_pairing_uri,
    normalise_code,
    parse_pairing_uri,
)


def test_round_trip_with_awkward_names() -> None:
    uri = build_pairing_uri(device_id="et-00ff", address="[fe80::1]:8443", code="ABCD2345", name="Café & Co/1")
    assert parse_pairing_uri(uri) == {"v": "1", "id": "et-00ff", "addr": "[fe80::1]:8443", "code": "ABCD2345",
                                      "name": "Café & Co/1"}


@pytest.mark.parametrize("uri", ["https://example.com/pair?id=x", "eticket://pair?id=x&addr=y", "", "eticket://other?id=1"])
def test_bad_uris_are_refused(uri: str) -> None:
    with pytest.raises(ValueError):
        parse_pairing_uri(uri)


def test_codes_use_the_unambiguous_alphabet_and_normalise() -> None:
    window = PairingWindow(device_id="et-1", address="127.0.0.1:1", name="x", ttl_seconds=60)
    assert len(window.code) == 8 and set(window.code) <= set(CODE_ALPHABET)
    assert window.display_code.replace("-", "") == window.code
    assert normalise_code(" " + window.display_code.lower() + " ") == window.code
    assert window.check(window.display_code.lower())
