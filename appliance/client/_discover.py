"""Browse ``_eticket._tcp.local.`` and resolve what answers (RFC 6763)."""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any

from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

from ..discovery import SERVICE_TYPE

log = logging.getLogger(__name__)

RESOLVE_TIMEOUT_MS = 1500
"""Per-instance resolve timeout, milliseconds (zeroconf's unit for ServiceInfo.request)."""


@dataclass(frozen=True, slots=True)
class DiscoveredDevice:
    """One device as its DNS-SD records describe it: ``addresses`` IPv4 first, then IPv6; ``port`` the API's
    TCP port; ``fingerprint`` the certificate pin it announces (a hint: trust comes from pairing)."""

    id: str
    name: str
    instance: str
    addresses: list[str]
    port: int
    paired: bool
    version: str
    path: str
    tls: bool
    fingerprint: str

    @property
    def api_address(self) -> str:
        """``host:port`` of the device's API (first address; IPv6 in brackets)."""
        return self.api_addresses[0]

    @property
    def api_addresses(self) -> list[str]:
        """``host:port`` for every announced address, in announcement order (IPv6 in brackets)."""
        return [f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}" for host in self.addresses]

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _from_info(info: ServiceInfo) -> DiscoveredDevice | None:
    """The device an answer describes, or None when it is not one of ours: no ``id`` or port, or a TXT key or
    value that is not UTF-8 (RFC 6763 §6.5 recommends UTF-8 values; ours always are, so such an answer comes
    from some other, broken announcer and is skipped with a warning)."""
    try:
        txt = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
    except UnicodeDecodeError:
        log.warning("skipping %r: its TXT record is not UTF-8 (not an eTicket device, or a broken one)",
                    info.name)
        return None
    if not txt.get("id") or not info.port:
        return None
    name = info.name.removesuffix("." + SERVICE_TYPE)
    addresses = [socket.inet_ntoa(a) for a in info.addresses_by_version(IPVersion.V4Only)]
    addresses += [a for a in info.parsed_scoped_addresses(IPVersion.V6Only) if not a.startswith("fe80")]
    return DiscoveredDevice(
        id=txt["id"], name=name, instance=info.name, addresses=addresses, port=info.port,
        paired=txt.get("paired") == "1", version=txt.get("v", ""), path=txt.get("path", "/api/v1"),
        tls=txt.get("tls", "0") == "1", fingerprint=txt.get("fp", ""),
    )


def discover(
    timeout: float = 3.0, interfaces: list[str] | None = None, device_id: str | None = None
) -> list[DiscoveredDevice]:
    """Browse for ``timeout`` seconds and return the devices found, sorted by name.

    ``interfaces``: IPv4 addresses to use (None: all). With ``device_id`` the browse stops as soon as
    that device is resolved. Devices without an address are left out. An instance that does not answer its
    resolve query within RESOLVE_TIMEOUT_MS is asked again until the browse ends.
    """
    found: dict[str, DiscoveredDevice] = {}
    pending: set[str] = set()
    zc = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only) if interfaces is not None \
        else Zeroconf(ip_version=IPVersion.All)

    def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            pending.add(name)

    browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[on_change])
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            unresolved: set[str] = set()
            while pending:
                name = pending.pop()
                info = ServiceInfo(SERVICE_TYPE, name)
                if info.request(zc, RESOLVE_TIMEOUT_MS):
                    device = _from_info(info)
                    if device is not None and device.addresses:
                        found[device.id] = device
                else:  # no answer in time (a busy or just-started device): asked again while the browse lasts
                    unresolved.add(name)
            pending |= unresolved
            if device_id is not None and device_id in found:
                break
            time.sleep(0.05)
    finally:
        browser.cancel()
        zc.close()
    return sorted(found.values(), key=lambda d: (d.name, d.id))
