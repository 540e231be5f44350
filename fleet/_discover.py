"""``eticket fleet discover``: devices advertising ``_eticket._tcp`` on the LAN (mDNS, RFC 6762/6763), printed
as inventory entries to complete. The browsing is the POS client library's (``appliance.client.discover``).

mDNS proves nothing about who answers: the entries carry no ``host_key``. Read each device's host key out of
band — on its console (``cat /etc/ssh/ssh_host_ed25519_key.pub``), from the SD card before first boot, or from
the provisioning record — and paste it in; the fleet tool refuses a device without one.
"""

from __future__ import annotations

import re

from ._const import BROWSE_SECONDS


def discover(timeout: float = BROWSE_SECONDS, interfaces: str | None = None) -> list[dict[str, str]]:
    """Devices found within ``timeout`` seconds: ``[{"name", "host", "id", "shop"}]`` sorted by name; ``name``
    made from the advertised shop name (lower case, ``[a-z0-9-]``, numbered when two are alike), ``host`` the
    first IPv4 address, ``id`` the device id of its TXT record. ``interfaces``: as ``--mdns-interfaces``
    (addresses or interface names, comma-separated; default every interface). ValueError for an unknown
    interface."""
    from appliance.client import discover as browse
    from appliance.discovery import resolve_interfaces

    found = browse(timeout=timeout, interfaces=resolve_interfaces(interfaces or "auto", loopback_only=False))
    entries: list[dict[str, str]] = []
    taken: dict[str, int] = {}
    for device in sorted(found, key=lambda d: (d.name, d.id)):
        ipv4 = [a for a in device.addresses if ":" not in a]
        if not ipv4:
            continue
        name = re.sub(r"[^a-z0-9]+", "-", device.name.lower()).strip("-") or "device"
        taken[name] = taken.get(name, 0) + 1
        if taken[name] > 1:
            name = f"{name}-{taken[name]}"
        entries.append({"name": name, "host": ipv4[0], "id": device.id, "shop": device.name})
    return entries


def as_inventory(found: list[dict[str, str]]) -> str:
    """TOML ``[[device]]`` entries for ``found``, each with an empty ``host_key`` to fill in (the inventory
    loader refuses it until then)."""
    out = ["# Devices seen on the LAN (mDNS). Fill in each host_key, read OUT OF BAND (on the device's console:",
           "#   cat /etc/ssh/ssh_host_ed25519_key.pub): mDNS is not authenticated, so the key must not come from",
           "#   the network. The fleet tool refuses a device whose host_key is empty.", ""]
    for entry in found:
        out += ["[[device]]", f'name = "{entry["name"]}"', f'host = "{entry["host"]}"',
                f"# shop {entry['shop']!r}, device id {entry['id']}",
                'host_key = ""   # ssh-ed25519 AAAA... (out of band)', ""]
    if not found:
        out.append("# (no device answered)")
    return "\n".join(out) + "\n"
