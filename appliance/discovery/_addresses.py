"""Which local addresses to advertise and to put in customer URLs."""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import ifaddr

SYS_CLASS_NET = Path("/sys/class/net")
NO_CARRIER_STATES = frozenset({"down", "lowerlayerdown", "dormant", "notpresent"})
"""``/sys/class/net/<if>/operstate`` values (RFC 2863 ifOperStatus) of an interface that cannot carry traffic
now: an unplugged cable, Wi-Fi not associated."""


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


def _ipv4_class(text: str) -> int | None:
    """0 private (RFC 1918), 1 another routable address (public, CGNAT), 2 IPv4 link-local (169.254/16,
    RFC 3927); None for loopback and the like, which no other machine can reach."""
    addr = ipaddress.IPv4Address(text)
    if addr.is_loopback or addr.is_unspecified or addr.is_multicast or addr.is_reserved:
        return None
    if addr.is_link_local:
        return 2
    return 0 if addr.is_private else 1


def pick_lan_ipv4(by_interface: Mapping[str, Sequence[str]], *, no_carrier: Collection[str] = (),
                  current: str | None = None) -> str | None:
    """The IPv4 address a phone or a till on the shop LAN should use to reach us, or None (loopback only).

    ``by_interface``: ``{"eth0": ["192.168.1.20"], "lo": ["127.0.0.1"]}`` in interface order;
    ``no_carrier``: names of interfaces that are down (unplugged); ``current``: the address in use now.
    Best first: an interface with carrier before one without; then a private address, another routable one,
    an IPv4 link-local one (169.254/16: what a device has before, or without, a DHCP lease). Among equals,
    ``current`` stays (an unrelated new address does not move the QR), else the first in interface order.
    """
    best: tuple[int, int] | None = None
    chosen: str | None = None
    for name, addresses in by_interface.items():
        for text in addresses:
            kind = _ipv4_class(text)
            if kind is None:
                continue
            rank = (1 if name in no_carrier else 0, kind)
            if best is None or rank < best or (rank == best and text == current):
                best, chosen = rank, text
    return chosen


def _no_carrier(names: Collection[str]) -> set[str]:
    down = set()
    for name in names:
        try:
            state = (SYS_CLASS_NET / name / "operstate").read_text().strip()
        except OSError:  # not Linux, or the interface just went away
            continue
        if state in NO_CARRIER_STATES:
            down.add(name)
    return down


def lan_ipv4(current: str | None = None) -> str | None:
    """This machine's address for customer URLs and the pairing QR now (:func:`pick_lan_ipv4` over its
    interfaces), or None when it has only loopback."""
    by_interface = _ipv4_by_interface()
    return pick_lan_ipv4(by_interface, no_carrier=_no_carrier(by_interface), current=current)


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
