"""Which local addresses to advertise and to put in customer URLs."""

from __future__ import annotations

import ipaddress

import ifaddr


def _ipv4_by_interface() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):  # IPv4 entries are strings; IPv6 ones are tuples
                found.setdefault(adapter.nice_name, []).append(ip.ip)
    return found


def resolve_interfaces(spec: str, *, loopback_only: bool) -> list[str] | None:
    """Turn an ``--mdns-interfaces`` value into IPv4 addresses for zeroconf.

    ``spec``: ``"none"`` -> ``[]`` (mDNS off); ``"auto"`` -> ``["127.0.0.1"]`` when ``loopback_only`` else
    None (every interface); otherwise a comma list of addresses and interface names (``"lo,192.168.1.5"``).

    Raises:
        ValueError: a name that is neither an address nor a local interface with an IPv4 address.
    """
    spec = spec.strip()
    if spec == "none":
        return []
    if spec == "auto":
        return ["127.0.0.1"] if loopback_only else None
    by_name = _ipv4_by_interface()
    result: list[str] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        try:
            result.append(str(ipaddress.ip_address(item)))
        except ValueError:
            if item not in by_name:
                raise ValueError(
                    f"mDNS interface {item!r} is neither an IP address nor an interface with an IPv4 address "
                    f"(have: {', '.join(sorted(by_name)) or 'none'})"
                ) from None
            result.extend(by_name[item])
    return result


def lan_ipv4() -> str | None:
    """The first private, non-loopback IPv4 address of this machine (what a phone on the shop LAN can reach)."""
    for addresses in _ipv4_by_interface().values():
        for text in addresses:
            addr = ipaddress.IPv4Address(text)
            if addr.is_private and not addr.is_loopback and not addr.is_link_local:
                return text
    return None


def interface_addresses(interfaces: list[str] | None) -> list[str]:
    """Addresses to publish in A/AAAA records: the IPv4 addresses in ``interfaces`` (None: every non-loopback
    interface's), plus the global and unique-local IPv6 addresses of the same interfaces. Loopback is kept
    only when asked for explicitly (a desk confined to loopback)."""
    wanted = set(interfaces) if interfaces is not None else None
    v4: list[str] = []
    v6: list[str] = []
    for adapter in ifaddr.get_adapters():
        ipv4 = [ip.ip for ip in adapter.ips if isinstance(ip.ip, str)]
        if wanted is not None:
            chosen = [a for a in ipv4 if a in wanted]
        else:
            chosen = [a for a in ipv4 if not ipaddress.IPv4Address(a).is_loopback]
        if not chosen:
            continue
        v4.extend(chosen)
        for ip in adapter.ips:
            if isinstance(ip.ip, tuple):
                addr = ipaddress.IPv6Address(ip.ip[0])
                if not (addr.is_link_local or addr.is_loopback):
                    v6.append(str(addr))
    return v4 + v6
