"""A small LAN made of network namespaces: a bridge in its own namespace and hosts joined to it by veth pairs.

Everything (namespaces, links, addresses) is created by the test and deleted afterwards; nothing touches the
machine's own network, and multicast (mDNS) stays inside the bridge.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
SUBNET = "10.77.0"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def netns_available() -> str | None:
    """None when network namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"et-probe-{secrets.token_hex(3)}"
    result = _ip("netns", "add", probe, check=False)
    if result.returncode != 0:
        return f"ip netns add failed: {result.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


@dataclass
class Host:
    """One host of the LAN: a namespace with ``eth0`` on the bridge."""

    lan: Lan
    name: str
    ns: str
    address: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def cmd(self, *argv: str) -> list[str]:
        """``argv`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.ns, *argv]

    def run(self, *argv: str, timeout: float = 60, check: bool = False,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.cmd(*argv), capture_output=True, text=True, timeout=timeout, check=check,
                              env=env, cwd=REPO)

    def spawn(self, *argv: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(self.cmd(*argv), stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env, cwd=REPO)
        self.procs.append(proc)
        return proc

    def eticket(self, *args: str, env: dict[str, str] | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "appliance.cli", *args, env=env, timeout=timeout)

    def set_address(self, address: str) -> None:
        """Replace eth0's IPv4 address (a DHCP lease changing)."""
        _ip("-n", self.ns, "addr", "flush", "dev", "eth0", "scope", "global")
        _ip("-n", self.ns, "addr", "add", f"{address}/24", "dev", "eth0")
        self.address = address

    def http(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        """An HTTP request made from inside this namespace (curl), for the phone and attacker hosts."""
        argv = ["curl", "-s", "-k", "-X", method, "-o", "-", "-w", "\n%{http_code}", url]
        for key, value in (kwargs.get("headers") or {}).items():  # type: ignore[attr-defined]
            argv += ["-H", f"{key}: {value}"]
        result = subprocess.run(self.cmd(*argv), capture_output=True, timeout=30, check=False)
        body, _, status = result.stdout.rpartition(b"\n")
        return httpx.Response(int(status or 0), content=body)


class Lan:
    """``Lan(prefix)``: a bridge namespace; ``add_host(name, octet)`` joins a host at 10.77.0.<octet>/24."""

    def __init__(self) -> None:
        self.prefix = f"et{secrets.token_hex(2)}"
        self.bridge_ns = f"{self.prefix}-lan"
        self.hosts: list[Host] = []
        _ip("netns", "add", self.bridge_ns)
        _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.bridge_ns, "link", "set", "br0", "up")

    def add_host(self, name: str, octet: int, ipv6: bool = False) -> Host:
        ns = f"{self.prefix}-{name}"
        _ip("netns", "add", ns)
        inside, outside = f"{self.prefix}{name[:3]}a", f"{self.prefix}{name[:3]}b"
        _ip("link", "add", inside, "type", "veth", "peer", "name", outside)
        _ip("link", "set", inside, "netns", ns)
        _ip("link", "set", outside, "netns", self.bridge_ns)
        _ip("-n", self.bridge_ns, "link", "set", outside, "master", "br0")
        _ip("-n", self.bridge_ns, "link", "set", outside, "up")
        _ip("-n", ns, "link", "set", inside, "name", "eth0")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "link", "set", "eth0", "multicast", "on")
        if not ipv6:
            subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
                           check=False)
        _ip("-n", ns, "addr", "add", f"{SUBNET}.{octet}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        host = Host(lan=self, name=name, ns=ns, address=f"{SUBNET}.{octet}")
        self.hosts.append(host)
        return host

    def close(self) -> None:
        for host in self.hosts:
            for proc in host.procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in host.procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            _ip("netns", "del", host.ns, check=False)
        _ip("netns", "del", self.bridge_ns, check=False)


def start_device(host: Host, data_dir: Path, *extra: str, name: str = "eTicket") -> subprocess.Popen[bytes]:
    """``eticket serve`` on ``host``, listening on all its addresses (as on a real device), mDNS on eth0."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    proc = host.spawn(sys.executable, "-m", "appliance.cli", "serve", "--data-dir", str(data_dir),
                      "--listen", "0.0.0.0:8080", "--api-listen", "0.0.0.0:8443", "--mdns-interfaces", "auto",
                      "--name", name, "--log-level", "debug", *extra, log=data_dir.parent / f"{host.name}.log")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((data_dir.parent / f"{host.name}.log").read_text()[-2000:])
        if host.run("curl", "-sf", "http://127.0.0.1:8080/healthz").returncode == 0:
            return proc
        time.sleep(0.2)
    raise RuntimeError("device not ready")


def discover_json(host: Host, env: dict[str, str], timeout: float = 3.0) -> list[dict[str, object]]:
    """``eticket discover --json`` run on ``host`` (mDNS on its eth0)."""
    result = host.eticket("discover", "--json", "--timeout", str(timeout), "--mdns-interfaces", "eth0", env=env)
    assert result.returncode == 0, result.stderr
    found: list[dict[str, object]] = json.loads(result.stdout)
    return found


def screen_state(device: Host, data_dir: Path) -> dict[str, object]:
    """The device's display state, read as its local kiosk would (screen token from kiosk.json)."""
    token = json.loads((data_dir / "kiosk.json").read_text())["token"]
    result = device.run("curl", "-sf", "-H", f"Authorization: Bearer {token}", "http://127.0.0.1:8080/api/v1/display")
    state: dict[str, object] = json.loads(result.stdout)
    return state
