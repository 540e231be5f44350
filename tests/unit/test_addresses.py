"""Which address goes into customer URLs and the pairing QR (appliance.discovery.pick_lan_ipv4)."""

from __future__ import annotations

from appliance.discovery import pick_lan_ipv4

LO = {"lo": ["127.0.0.1"]}


def test_only_loopback_gives_none_so_the_caller_falls_back_to_127() -> None:
    assert pick_lan_ipv4(LO) is None
    assert pick_lan_ipv4({}) is None


def test_an_ipv4_link_local_address_is_used_before_a_dhcp_lease() -> None:
    """The image's network config gives eth0 a 169.254/16 address first: phones on the same link reach it."""
    assert pick_lan_ipv4({**LO, "eth0": ["169.254.7.9"]}) == "169.254.7.9"


def test_a_lease_is_preferred_to_link_local_and_a_private_to_a_public_address() -> None:
    assert pick_lan_ipv4({**LO, "eth0": ["169.254.7.9", "192.168.1.20"]}) == "192.168.1.20"
    assert pick_lan_ipv4({**LO, "eth0": ["169.254.7.9"], "wlan0": ["10.0.0.5"]}) == "10.0.0.5"
    assert pick_lan_ipv4({**LO, "eth0": ["81.2.69.160"], "wlan0": ["10.0.0.5"]}) == "10.0.0.5"
    assert pick_lan_ipv4({**LO, "eth0": ["169.254.7.9"], "wwan0": ["100.64.3.4"]}) == "100.64.3.4"  # CGNAT


def test_an_unplugged_interface_counts_only_when_nothing_else_is_there() -> None:
    both = {**LO, "eth0": ["192.168.1.20"], "wlan0": ["169.254.3.3"]}
    assert pick_lan_ipv4(both, no_carrier={"eth0"}) == "169.254.3.3"
    assert pick_lan_ipv4({**LO, "eth0": ["192.168.1.20"]}, no_carrier={"eth0"}) == "192.168.1.20"


def test_the_address_in_use_stays_while_it_is_as_good_as_any() -> None:
    two = {**LO, "eth0": ["192.168.1.20"], "wlan0": ["192.168.1.30"]}
    assert pick_lan_ipv4(two) == "192.168.1.20"
    assert pick_lan_ipv4(two, current="192.168.1.30") == "192.168.1.30"
    assert pick_lan_ipv4({**LO, "eth0": ["169.254.7.9", "192.168.1.20"]}, current="169.254.7.9") == "192.168.1.20"
    assert pick_lan_ipv4(two, current="192.168.9.9") == "192.168.1.20"  # gone: the first one again
