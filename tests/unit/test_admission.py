"""Who counts as a trusted client for the connection reserve (appliance/admission.py)."""

from __future__ import annotations

from appliance.admission import MAX_TRUSTED_ADDRESSES, TRUSTED_ADDRESS_SECONDS, Admission, client_host


def test_addresses_are_counted_as_the_client_sees_them() -> None:
    assert client_host(("::ffff:192.168.1.20", 5000, 0, 0)) == "192.168.1.20"  # dual-stack listener
    assert client_host(("fe80::1%eth0", 5000, 0, 2)) == "fe80::1"
    assert client_host(("192.168.1.20", 5000)) == "192.168.1.20"
    assert client_host("") == ""  # a Unix socket


def test_a_till_is_trusted_for_a_day_after_its_last_token_and_the_device_always() -> None:
    now = [1000.0]
    admission = Admission(clock=lambda: now[0])
    assert admission.trusted("127.0.0.1") and admission.trusted("::1")
    assert not admission.trusted("127.0.0.2") and not admission.trusted("192.168.1.30")
    admission.trust("::ffff:192.168.1.30")
    assert admission.trusted("192.168.1.30")
    now[0] += TRUSTED_ADDRESS_SECONDS + 1
    assert not admission.trusted("192.168.1.30")


def test_the_trusted_set_is_bounded_and_forgets_the_least_recent() -> None:
    admission = Admission()
    for n in range(MAX_TRUSTED_ADDRESSES + 5):
        admission.trust(f"10.0.{n // 250}.{n % 250}")
    assert not admission.trusted("10.0.0.0")
    assert admission.trusted(f"10.0.{(MAX_TRUSTED_ADDRESSES + 4) // 250}.{(MAX_TRUSTED_ADDRESSES + 4) % 250}")
