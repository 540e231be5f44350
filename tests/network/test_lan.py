"""Discovery and pairing across hosts on a LAN of network namespaces, with python-zeroconf and with avahi
as an independent mDNS peer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import decode_qr_png, require, samples, wait_for
from tests.network.netns import Host, Lan, discover_json, screen_state, start_device


def test_discover_pair_by_uri_send_and_phone_download(lan: Lan, tmp_path: Path, pos_env: dict[str, str]) -> None:
    device, pos, phone = lan.add_host("dev", 2), lan.add_host("pos", 3), lan.add_host("phone", 4)
    data = tmp_path / "device"
    start_device(device, data, name="Boulangerie Martin")

    (found,) = discover_json(pos, pos_env)
    assert found["addresses"] == [device.address] and found["port"] == 8443 and found["paired"] is False
    assert found["name"] == "Boulangerie Martin" and found["tls"] is True and found["fingerprint"]

    shot = tmp_path / "pairing.png"
    result = device.eticket("kiosk", "--data-dir", str(data), "--snapshot", str(shot))
    assert result.returncode == 0, result.stderr
    (uri,) = decode_qr_png(shot)
    assert f"addr={device.address}%3A8443" in uri
    paired = pos.eticket("pair", "--uri", uri, "--pos-name", "Till 1", env=pos_env)
    assert paired.returncode == 0, paired.stderr

    pdf = samples("pdf")[0]
    sent = pos.eticket("send", str(pdf), "--total", "4.20", "--currency", "EUR", "--json", env=pos_env)
    assert sent.returncode == 0, sent.stderr
    url = json.loads(sent.stdout)["url"]
    assert url.startswith(f"http://{device.address}:8080/r/")
    got = phone.run("curl", "-sf", url, "-o", str(tmp_path / "got.pdf"))
    assert got.returncode == 0 and (tmp_path / "got.pdf").read_bytes() == pdf.read_bytes()


def test_pair_by_typed_code_across_hosts(lan: Lan, tmp_path: Path, pos_env: dict[str, str]) -> None:
    device, pos = lan.add_host("dev", 2), lan.add_host("pos", 3)
    data = tmp_path / "device"
    start_device(device, data)
    (found,) = discover_json(pos, pos_env)
    code = str(screen_state(device, data)["pairing"]["code"])  # type: ignore[index]
    paired = pos.eticket("pair", "--code", code, "--device", str(found["id"]), "--mdns-interfaces", "eth0",
                         env=pos_env)
    assert paired.returncode == 0, paired.stderr
    sent = pos.eticket("send", str(samples("pdf")[1]), env=pos_env)
    assert sent.returncode == 0 and sent.stdout.startswith(f"http://{device.address}:8080/r/"), sent.stderr


# Slow (about 60 s of mDNS re-announcement and discovery rounds across namespaces); `make test-slow`, in CI too.
# The quick suite keeps tests/network/test_addresses.py (the screen follows a renumbering).
@pytest.mark.slow
def test_address_change_is_reannounced_and_the_pos_follows(lan: Lan, tmp_path: Path,
                                                           pos_env: dict[str, str]) -> None:
    """A DHCP lease changes the device's address: mDNS says so within 5 s and `send` finds it by its id."""
    device, pos = lan.add_host("dev", 2), lan.add_host("pos", 3)
    data = tmp_path / "device"
    start_device(device, data)
    (before,) = discover_json(pos, pos_env)
    code = str(screen_state(device, data)["pairing"]["code"])  # type: ignore[index]
    assert pos.eticket("pair", "--code", code, "--address", f"{device.address}:8443", env=pos_env).returncode == 0

    device.set_address("10.77.0.12")
    log = tmp_path / "dev.log"
    # The device notices (rtnetlink) and re-announces within 5 s ...
    wait_for(lambda: "now 10.77.0.12; re-announcing" in log.read_text(), 5, "the device to re-announce")
    # ... and the POS, browsing from another host, sees the new address.
    wait_for(lambda: [d["addresses"] for d in discover_json(pos, pos_env, timeout=1.0)] == [["10.77.0.12"]],
             15, "the new address over mDNS")
    (after,) = discover_json(pos, pos_env)
    assert after["id"] == before["id"]
    sent = pos.eticket("send", str(samples("pdf")[0]), "--mdns-interfaces", "eth0", env=pos_env)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("http://10.77.0.12:8080/r/")


def test_name_conflict_keeps_both_devices_discoverable_by_id(lan: Lan, tmp_path: Path,
                                                              pos_env: dict[str, str]) -> None:
    one, two, pos = lan.add_host("one", 2), lan.add_host("two", 5), lan.add_host("pos", 3)
    start_device(one, tmp_path / "one" / "data", name="Counter")
    start_device(two, tmp_path / "two" / "data", name="Counter")
    wait_for(lambda: len(discover_json(pos, pos_env, timeout=2.0)) == 2, 20, "both devices")
    found = discover_json(pos, pos_env)
    assert len({d["id"] for d in found}) == 2
    assert len({d["instance"] for d in found}) == 2  # one of them was renamed by the conflict resolution
    assert sorted(d["addresses"][0] for d in found) == [one.address, two.address]  # type: ignore[index]


def _avahi(pos: Host, tmp_path: Path) -> dict[str, str]:
    """Start a private D-Bus system bus and avahi-daemon inside the POS namespace; return its env."""
    bus = tmp_path / "dbus.sock"
    conf = tmp_path / "avahi.conf"
    conf.write_text("[server]\nallow-interfaces=eth0\nuse-ipv6=no\nenable-dbus=yes\n"
                    "[publish]\ndisable-publishing=yes\n")
    dbus_conf = tmp_path / "dbus.conf"
    dbus_conf.write_text(f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path={bus}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/><allow eavesdrop="true"/>
<allow receive_sender="*"/></policy><includedir>/usr/share/dbus-1/system.d</includedir></busconfig>""")
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={bus}"}
    pos.spawn("dbus-daemon", "--nofork", f"--config-file={dbus_conf}", log=tmp_path / "dbus.log")
    wait_for(bus.exists, 10, "the private D-Bus")
    pos.spawn("avahi-daemon", "--no-chroot", "--no-drop-root", "--no-rlimits", "-f", str(conf),
              log=tmp_path / "avahi.log", env=env)
    return env


def test_avahi_browse_sees_the_device_as_an_independent_peer(lan: Lan, tmp_path: Path) -> None:
    for tool in ("avahi-daemon", "avahi-browse", "dbus-daemon"):
        require(shutil.which(tool) is not None, f"{tool} is not installed (Debian avahi-daemon, avahi-utils)")
    require(not Path("/run/avahi-daemon/pid").exists(), "an avahi-daemon already runs on this machine")
    device, pos = lan.add_host("dev", 2), lan.add_host("pos", 3)
    data = tmp_path / "device"
    start_device(device, data, "--printer-listen", "0.0.0.0:9100", name="Boulangerie Martin")
    device_id = json.loads(device.run("curl", "-sf", "http://127.0.0.1:8080/healthz").stdout)["device_id"]
    env = _avahi(pos, tmp_path)
    lines: list[str] = []

    def resolved() -> bool:
        out = subprocess.run(pos.cmd("avahi-browse", "-rtp", "_eticket._tcp"), capture_output=True, text=True,
                             env=env, timeout=20)
        lines[:] = [line for line in out.stdout.splitlines() if line.startswith("=")]
        return any(f'"id={device_id}"' in line for line in lines)

    wait_for(resolved, 20, "avahi-browse to resolve the device")
    (line,) = [line for line in lines if f'"id={device_id}"' in line]
    fields = line.split(";")
    assert fields[3].replace("\\032", " ") == "Boulangerie Martin"
    assert fields[7] == device.address and fields[8] == "8443"
    for key in ("v=1", "paired=0", "path=/api/v1", "tls=1"):
        assert f'"{key}"' in fields[9]

    # the same device as a receipt printer (Bonjour Printing Specification §9): raw port, and LPD on port 0
    printers: dict[str, list[str]] = {}

    def printer_resolved() -> bool:
        for service in ("_pdl-datastream._tcp", "_printer._tcp"):
            out = subprocess.run(pos.cmd("avahi-browse", "-rtp", service), capture_output=True, text=True, env=env,
                                 timeout=20)
            found = [line.split(";") for line in out.stdout.splitlines()
                     if line.startswith("=") and f'"id={device_id}"' in line]
            if found:
                printers[service] = found[0]
        return len(printers) == 2

    wait_for(printer_resolved, 20, "avahi-browse to resolve the device's printer services")
    raw, lpd = printers["_pdl-datastream._tcp"], printers["_printer._tcp"]
    assert raw[3].replace("\\032", " ") == "Boulangerie Martin" and raw[7] == device.address and raw[8] == "9100"
    assert lpd[8] == "0"
    for key in ("txtvers=1", "qtotal=1", "pdl=application/vnd.epson.escpos", "ty=eTicket receipt printer"):
        assert f'"{key}"' in raw[9], raw[9]


def test_ipv6_addresses_are_announced_and_usable(lan: Lan, tmp_path: Path, pos_env: dict[str, str]) -> None:
    """On a dual-stack LAN the device publishes AAAA records too, and a POS can pair over IPv6."""
    device, pos = lan.add_host("dev", 2, ipv6=True), lan.add_host("pos", 3, ipv6=True)
    for host, address in ((device, "fd77::2"), (pos, "fd77::3")):
        subprocess.run(["ip", "-n", host.ns, "addr", "add", f"{address}/64", "dev", "eth0", "nodad"], check=True)
    data = tmp_path / "device"
    start_device(device, data, "--api-listen", "[::]:8443")
    wait_for(lambda: any("fd77::2" in d["addresses"] for d in discover_json(pos, pos_env, timeout=2.0)), 15,  # type: ignore[operator]
          "the IPv6 address over mDNS")
    (found,) = discover_json(pos, pos_env)
    assert device.address in found["addresses"]  # type: ignore[operator]
    code = str(screen_state(device, data)["pairing"]["code"])  # type: ignore[index]
    paired = pos.eticket("pair", "--code", code, "--address", "[fd77::2]:8443", env=pos_env)
    assert paired.returncode == 0, paired.stderr
