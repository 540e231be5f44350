"""DNS-SD advertisement, seen from a separate python-zeroconf instance on loopback."""

from __future__ import annotations

import threading
import time

import httpx
from zeroconf import IPVersion, ServiceBrowser, ServiceStateChange, Zeroconf

from appliance.client import discover
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


def test_a_neighbour_with_a_txt_value_that_is_not_utf8_does_not_hide_the_device(
        appliance: Appliance, cli_env: dict[str, str]) -> None:
    """Another device on the LAN announces ``_eticket._tcp`` with a TXT value that is not UTF-8 (b"\\xff\\xfe"):
    ``eticket discover`` and ``eticket pair --device`` skip it with a warning and still find ours."""
    import json
    import socket

    from zeroconf import ServiceInfo

    from tests.conftest import run_cli

    zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    bad = ServiceInfo(SERVICE, f"Broken neighbour.{SERVICE}", port=9,
                      addresses=[socket.inet_aton("127.0.0.1")],
                      properties={b"id": b"et-neighbour", b"v": b"1", b"fp": b"\xff\xfe"})
    zc.register_service(bad)
    try:
        found = run_cli("discover", "--json", "--timeout", "3", "--mdns-interfaces", "127.0.0.1", env=cli_env)
        ours = [d for d in json.loads(found.stdout) if d["port"] == appliance.api_port]
        assert len(ours) == 1 and ours[0]["id"].startswith("et-")
        assert "et-neighbour" not in found.stdout and "UTF-8" in found.stderr
        paired = run_cli("pair", "--code", appliance.pairing_code(), "--device", ours[0]["id"], "--timeout", "3",
                         "--mdns-interfaces", "127.0.0.1", env=cli_env)
        assert f"paired with {ours[0]['id']}" in paired.stdout
    finally:
        zc.unregister_service(bad)
        zc.close()
