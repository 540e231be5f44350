"""DNS-SD advertisement, seen from a separate python-zeroconf instance on loopback."""

from __future__ import annotations

import secrets
import socket
import struct
import threading
import time
from typing import Any

import dns.exception
import dns.name
import dns.rdatatype
import httpx
import pytest
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


def _advertised(appliance: Appliance, device_id: str) -> list[DiscoveredDevice]:
    """The devices on loopback mDNS with ``appliance``'s API port and ``device_id``: exactly this appliance.
    Several test runs share loopback mDNS, and another run's device (or its stale record) may have the same
    port, so the port alone does not pick ours."""
    return [d for d in discover(3.0, ["127.0.0.1"], device_id=device_id)
            if d.port == appliance.api_port and d.id == device_id]


def test_goodbye_on_shutdown_and_same_id_after_restart(appliance: Appliance) -> None:
    """The device says goodbye when it stops and comes back under the same id. Beside it, another device on
    the same port (as another test run's, sharing loopback mDNS) must not be taken for it."""
    from zeroconf import ServiceInfo

    device_id = str(httpx.get(appliance.url + "/healthz").json()["device_id"])
    assert device_id.startswith("et-")
    zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    neighbour = ServiceInfo(SERVICE, f"Other run {secrets.token_hex(3)}.{SERVICE}", port=appliance.api_port,
                            addresses=[socket.inet_aton("127.0.0.1")],
                            properties={b"id": b"et-" + secrets.token_hex(8).encode(), b"v": b"1"})
    zc.register_service(neighbour)
    try:
        _goodbye_and_restart(appliance, device_id, zc)
    finally:
        zc.unregister_service(neighbour)
        zc.close()


def _goodbye_and_restart(appliance: Appliance, device_id: str, zc: Zeroconf) -> None:
    found = _advertised(appliance, device_id)
    assert len(found) == 1, f"{device_id} on port {appliance.api_port} not advertised once: {found}"
    before = found[0]
    removed = threading.Event()

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
    appliance.start()
    # The same id, in /healthz and in the new announcement (a new id would find nothing here).
    assert httpx.get(appliance.url + "/healthz").json()["device_id"] == device_id
    after = _advertised(appliance, device_id)
    assert len(after) == 1, (before, after)


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


# Slow (two devices and mDNS conflict rounds, about 10 s): `make test-slow`, in CI too.
@pytest.mark.slow
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


MDNS_GROUP, MDNS_PORT = "224.0.0.251", 5353  # RFC 6762 §3


def _ptr_answers(packet: bytes) -> list[tuple[dns.name.Name, dns.name.Name]]:
    """(owner, target) of each PTR answer of an mDNS packet, names read by dnspython (``from_wire`` follows
    compression pointers). dnspython's whole-message parser is not used: it refuses the compressed names
    that mDNS allows in NSEC records (RFC 6762 §18.14)."""
    questions, answers = struct.unpack("!4x2H4x", packet[:12])
    offset = 12
    for _ in range(questions):
        offset += dns.name.from_wire(packet, offset)[1] + 4  # name, type, class
    found = []
    for _ in range(answers):
        owner, used = dns.name.from_wire(packet, offset)
        rtype, length = struct.unpack("!H6xH", packet[offset + used:offset + used + 10])
        offset += used + 10
        if rtype == dns.rdatatype.PTR:
            found.append((owner, dns.name.from_wire(packet, offset)[0]))
        offset += length
    return found


def _announced_instances(token: str, start: Any, timeout: float = 15.0) -> list[dns.name.Name]:
    """Call ``start()``, then read the multicast mDNS packets on loopback (a listener of our own beside the
    appliance's, as any other browser on the link) until a PTR for ``_eticket._tcp.local.`` names an instance
    naming ``token`` (in any label); returns those PTR targets as a standard DNS parser reads them."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("", MDNS_PORT))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                    socket.inet_aton(MDNS_GROUP) + socket.inet_aton("127.0.0.1"))
    sock.settimeout(0.5)
    service = dns.name.from_text(SERVICE)
    found: list[dns.name.Name] = []
    try:
        start()
        deadline = time.monotonic() + timeout
        while not found and time.monotonic() < deadline:
            try:
                packet = sock.recv(9000)
            except TimeoutError:
                continue
            try:
                answers = _ptr_answers(packet)
            except (dns.exception.DNSException, struct.error):  # another sender's packet we cannot read
                continue
            found += [target for owner, target in answers if owner == service and token in target.to_text()]
    finally:
        sock.close()
    return found


def test_a_name_with_a_full_stop_is_one_label_for_every_browser(appliance_factory: Any) -> None:
    """This is "Boulangerie St. Martin": zeroconf would send the dot as a label break, and avahi or Bonjour
    would see an instance "Boulangerie St" of a type " Martin._eticket._tcp". The instance must be one label
    (RFC 6763 §4.1), looking the same; the screens show the name as typed."""
    token = secrets.token_hex(2)
    name = f"Boulangerie St. Martin {token}"
    started: list[Appliance] = []
    targets = _announced_instances(token, lambda: started.append(appliance_factory("--name", name)))
    assert targets, "no announcement seen"
    labels = targets[0].labels
    assert labels[1:] == (b"_eticket", b"_tcp", b"local", b"")
    assert labels[0].decode() == f"Boulangerie St\u2024 Martin {token}"
    assert started[0].display()["shop"] == name
