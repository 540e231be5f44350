"""DNS-SD advertisement, seen from a separate python-zeroconf instance on loopback."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

import httpx
from zeroconf import IPVersion, ServiceBrowser, ServiceStateChange, Zeroconf

from appliance.client import DiscoveredDevice, discover
from tests.conftest import Appliance

SERVICE = "_eticket._tcp.local."


def test_txt_record_and_paired_flag(appliance: Appliance) -> None:
    (device,) = [d for d in discover(3.0, ["127.0.0.1"]) if d.port == appliance.api_port]
    assert device.id.startswith("et-") and device.version == "1" and device.path == "/api/v1"
    assert device.paired is False and device.addresses == ["127.0.0.1"]
    assert device.tls and device.fingerprint == httpx.get(appliance.url + "/healthz").json()["fingerprint"]
    appliance.pair()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        (device,) = [d for d in discover(1.0, ["127.0.0.1"], device_id=device.id) if d.port == appliance.api_port]
        if device.paired:
            break
    assert device.paired is True


def test_goodbye_on_shutdown_and_same_id_after_restart(appliance: Appliance) -> None:
    (before,) = [d for d in discover(3.0, ["127.0.0.1"]) if d.port == appliance.api_port]
    removed = threading.Event()
    zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)

    def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if name == before.instance and state_change is ServiceStateChange.Removed:
            removed.set()

    browser = ServiceBrowser(zc, SERVICE, handlers=[on_change])
    try:
        time.sleep(1.5)
        appliance.stop()
        # A goodbye (TTL 0) removes it at once; without one it would linger for the record TTL (75 s+).
        assert removed.wait(5), "no mDNS goodbye on shutdown"
    finally:
        browser.cancel()
        zc.close()
    appliance.start()
    (after,) = [d for d in discover(3.0, ["127.0.0.1"], device_id=before.id) if d.port == appliance.api_port]
    assert after.id == before.id


def _long_name() -> str:
    """A French shop name of 63 characters (the most the settings allow) and 70 UTF-8 bytes (accents and
    guillemets take two): unique per run, so that no other appliance on this loopback holds it."""
    name = f"La Pâtisserie {secrets.token_hex(2)} « Au Pain Doré » près de l'Église St-Étienne"
    assert len(name) == 63 and len(name.encode()) == 70
    return name


def _found(appliance: Appliance) -> DiscoveredDevice:
    (device,) = [d for d in discover(3.0, ["127.0.0.1"]) if d.port == appliance.api_port]
    return device


def test_a_long_shop_name_is_cut_to_63_bytes_for_dns_sd_and_shown_whole(appliance_factory: Any) -> None:
    """This is a shop with a long French name: the appliance starts, POS find it under the name cut on a
    character boundary to fit one DNS label (RFC 6763 §4.1.1), and the screens show the whole name."""
    name = _long_name()
    appliance = appliance_factory("--name", name)
    device = _found(appliance)
    assert len(device.name.encode()) <= 63 and name.startswith(device.name) and len(device.name) >= 55
    assert device.name == name.encode()[:63].decode("utf-8", "ignore").strip()
    assert appliance.display()["shop"] == name
    assert httpx.get(appliance.url + "/healthz").status_code == 200


def test_two_devices_with_the_same_long_name_are_both_found(appliance_factory: Any) -> None:
    """This is a shop with two counters named alike: the second takes "<name cut> (2)" (RFC 6763 Appendix
    D), still within 63 bytes, instead of failing to start."""
    name = _long_name()
    first, second = appliance_factory("--name", name), appliance_factory("--name", name)
    names = {_found(first).name, _found(second).name}
    cut = name.encode()[:63].decode("utf-8", "ignore").strip()
    assert cut in names and len(names) == 2
    (renamed,) = names - {cut}
    assert renamed.endswith(" (2)") and len(renamed.encode()) <= 63 and name.startswith(renamed[:-4])
    assert first.display()["shop"] == second.display()["shop"] == name
