"""``eticket fleet discover``: devices advertising ``_eticket._tcp`` on the LAN (mDNS, RFC 6762/6763), printed
as inventory entries to complete.

mDNS proves nothing about who answers: the entries carry no ``host_key``. Read each device's host key out of
band — on its console (``cat /etc/ssh/ssh_host_ed25519_key.pub``), from the SD card before first boot, or from
the provisioning record — and paste it in; the fleet tool refuses a device without one.
"""

from __future__ import annotations

import re
import time

from zeroconf import IPVersion, ServiceBrowser, ServiceListener, Zeroconf

SERVICE_TYPE = "_eticket._tcp.local."
"""The device's DNS-SD service type (appliance/discovery; docs/protocol.md)."""
BROWSE_SECONDS = 3.0
RESOLVE_TIMEOUT_MS = 2000
"""python-zeroconf's ``ServiceInfo.request`` timeout is in milliseconds."""


class _Collector(ServiceListener):
    def __init__(self) -> None:
        self.names: set[str] = set()

    def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self.names.add(name)

    def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self.names.add(name)

    def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        pass


def discover(timeout: float = BROWSE_SECONDS, interfaces: list[str] | None = None) -> list[dict[str, str]]:
    """Devices found within ``timeout`` seconds: ``[{"name", "host", "id"}]`` sorted by name, ``name`` made
    from the instance name (lower case, [a-z0-9-]), ``host`` its first IPv4 address, ``id`` its TXT ``id``.
    ``interfaces``: addresses or names for python-zeroconf (default: all)."""
    zc = Zeroconf(interfaces=interfaces or ["0.0.0.0"], ip_version=IPVersion.V4Only)
    try:
        collector = _Collector()
        browser = ServiceBrowser(zc, SERVICE_TYPE, collector)
        time.sleep(timeout)
        browser.cancel()
        found: dict[str, dict[str, str]] = {}
        for full in sorted(collector.names):
            info = zc.get_service_info(SERVICE_TYPE, full, timeout=RESOLVE_TIMEOUT_MS)
            if info is None or not info.parsed_addresses(IPVersion.V4Only):
                continue
            instance = full[: -len(SERVICE_TYPE) - 1]
            name = re.sub(r"[^a-z0-9]+", "-", instance.lower()).strip("-") or "device"
            device_id = (info.properties or {}).get(b"id") or b""
            entry = {"name": name, "host": info.parsed_addresses(IPVersion.V4Only)[0],
                     "id": device_id.decode(errors="replace")}
            key = entry["id"] or entry["host"]
            found.setdefault(key, entry)
        taken: dict[str, int] = {}
        for entry in found.values():  # two shops called "eTicket": paris-01 style names are the operator's job
            count = taken.get(entry["name"], 0)
            taken[entry["name"]] = count + 1
            if count:
                entry["name"] = f"{entry['name']}-{count + 1}"
        return sorted(found.values(), key=lambda e: e["name"])
    finally:
        zc.close()


def as_inventory(found: list[dict[str, str]]) -> str:
    """TOML ``[[device]]`` entries for ``found`` with the host key left to fill in (commented)."""
    out = ["# Devices seen on the LAN (mDNS). Fill in each host_key, read OUT OF BAND (on the device's console:",
           "#   cat /etc/ssh/ssh_host_ed25519_key.pub): mDNS is not authenticated, so the key must not come from",
           "#   the network. The fleet tool refuses a device without host_key.", ""]
    for entry in found:
        out += ["[[device]]", f'name = "{entry["name"]}"', f'host = "{entry["host"]}"',
                f"# device id {entry['id'] or '?'}", 'host_key = ""   # ssh-ed25519 AAAA... (out of band)', ""]
    if not found:
        out.append("# (no device answered)")
    return "\n".join(out) + "\n"
