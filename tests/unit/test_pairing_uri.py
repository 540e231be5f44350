"""The pairing URI carries everything a POS needs; SPAKE2 pairs on the right code and channel only."""

from __future__ import annotations

import pytest

from appliance.pairing import (
    CODE_ALPHABET,
    DeviceSide,
    PairingWindow,
    PosSide,
    build_pairing_uri,
    normalise_code,
    parse_pairing_uri,
)


def test_round_trip_with_awkward_names() -> None:
    uri = build_pairing_uri(device_id="et-00ff", address="[fe80::1]:8443", secret="s3cr3t_-x", fingerprint="F" * 43,
                            name="Café & Co/1")
    assert parse_pairing_uri(uri) == {"v": "1", "id": "et-00ff", "addr": "[fe80::1]:8443", "s": "s3cr3t_-x",
                                      "fp": "F" * 43, "name": "Café & Co/1"}


@pytest.mark.parametrize("uri", ["https://example.com/pair?id=x", "eticket://pair?id=x&addr=y&s=1", "",
                                 "eticket://other?id=1"])
def test_bad_uris_are_refused(uri: str) -> None:
    with pytest.raises(ValueError):
        parse_pairing_uri(uri)


def test_codes_and_secrets() -> None:
    window = PairingWindow(device_id="et-1", address="127.0.0.1:1", name="x", fingerprint="f", ttl_seconds=60)
    assert len(window.code) == 8 and set(window.code) <= set(CODE_ALPHABET)
    assert window.display_code.replace("-", "") == window.code
    assert normalise_code(" " + window.display_code.lower() + " ") == window.code
    assert len(window.secret) >= 22  # 128 bits
    assert window.check_secret(window.secret) and not window.check_secret(window.secret + "x")
    old = window.secret
    for _ in range(4):
        assert not window.count_wrong()
    assert window.count_wrong() and window.secret != old and window.locked_for() > 0


def _exchange(device_code: str, pos_code: str, device_pin: str, pos_pin: str) -> dict[str, object]:
    device = DeviceSide(device_code, "et-1")
    pos = PosSide(pos_code, "et-1")
    device.receive(pos.msg_a, device_pin)
    confirm = pos.receive(device.msg_b, pos_pin)
    if not device.check(confirm):
        raise PermissionError("device refused the confirmation")
    mine, sealed = device.seal({"token": "T"})
    return pos.open(mine, sealed)


def test_spake2_pairs_with_the_same_code_on_the_same_channel() -> None:
    assert _exchange("ABCD2345", "ABCD2345", "pin", "pin") == {"token": "T"}


def test_spake2_refuses_a_wrong_code() -> None:
    with pytest.raises(PermissionError):
        _exchange("ABCD2345", "ABCD2346", "pin", "pin")


def test_spake2_refuses_a_relay_with_another_certificate() -> None:
    """Right code, but the POS's TLS saw the relay's certificate: the device refuses, no token leaves."""
    with pytest.raises(PermissionError):
        _exchange("ABCD2345", "ABCD2345", "device-pin", "relay-pin")
