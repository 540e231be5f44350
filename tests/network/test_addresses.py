"""The URLs a device puts on screen follow its current address: IPv4 link-local before a DHCP lease, the
lease once it comes, the new one after a renumber (same token, new host)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.conftest import samples, wait_for
from tests.network.netns import Host, Lan, screen_state, start_device


def _only_link_local(host: Host, address: str) -> None:
    """What the image's network config gives first: no lease yet, only an IPv4 link-local address."""
    subprocess.run(["ip", "-n", host.ns, "addr", "flush", "dev", "eth0"], check=True)
    subprocess.run(["ip", "-n", host.ns, "addr", "add", f"{address}/16", "dev", "eth0", "scope", "link"], check=True)
    host.address = address


def _addr(host: Host, *args: str) -> None:
    subprocess.run(["ip", "-n", host.ns, "addr", *args, "dev", "eth0"], check=True)


def _pairing_host(device: Host, data: Path) -> str:
    state = screen_state(device, data)
    assert state["scene"] == "pairing", state
    return parse_qs(urlsplit(str(state["pairing"]["uri"])).query)["addr"][0]  # type: ignore[index]


def _ticket_url(device: Host, data: Path) -> str:
    return str((screen_state(device, data).get("ticket") or {}).get("url"))  # type: ignore[union-attr]


def test_link_local_before_a_lease_and_the_screen_follows_renumbering(lan: Lan, tmp_path: Path,
                                                                       pos_env: dict[str, str]) -> None:
    device, pos, phone = lan.add_host("dev", 2), lan.add_host("pos", 3), lan.add_host("phone", 4)
    _only_link_local(device, "169.254.10.2")
    data = tmp_path / "device"
    start_device(device, data, "--display-timeout", "600")
    assert _pairing_host(device, data) == "169.254.10.2:8443"

    _addr(device, "add", "10.77.0.2/24")  # the DHCP lease arrives: the pairing QR moves to it
    wait_for(lambda: _pairing_host(device, data) == "10.77.0.2:8443", 5, "the pairing QR on the lease")
    uri = str(screen_state(device, data)["pairing"]["uri"])  # type: ignore[index]
    assert pos.eticket("pair", "--uri", uri, "--pos-name", "Till 1", env=pos_env).returncode == 0
    sent = pos.eticket("send", str(samples("pdf")[0]), "--json", "--address", "10.77.0.2:8443", env=pos_env)
    assert sent.returncode == 0, sent.stderr
    url = json.loads(sent.stdout)["url"]
    token_path = urlsplit(url).path
    assert url == f"http://10.77.0.2:8080{token_path}" and _ticket_url(device, data) == url
    seq = int(screen_state(device, data)["seq"])  # type: ignore[call-overload]

    _addr(device, "del", "10.77.0.2/24")  # renumbered: the QR on screen moves to the new address
    _addr(device, "add", "10.77.0.12/24")
    wait_for(lambda: _ticket_url(device, data) == f"http://10.77.0.12:8080{token_path}", 5,
             "the receipt QR on the new address")
    assert int(screen_state(device, data)["seq"]) > seq  # type: ignore[call-overload]  # screens redraw
    got = phone.run("curl", "-sf", f"http://10.77.0.12:8080{token_path}", "-o", str(tmp_path / "got.pdf"))
    assert got.returncode == 0 and (tmp_path / "got.pdf").read_bytes() == samples("pdf")[0].read_bytes()

    _addr(device, "del", "10.77.0.12/24")  # the lease is gone: link-local again, never 127.0.0.1
    wait_for(lambda: _ticket_url(device, data) == f"http://169.254.10.2:8080{token_path}", 5,
             "the receipt QR back on the link-local address")
