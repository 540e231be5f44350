"""Which addresses may print: till allowances (``tills`` table, :class:`appliance.store.Till`).

A LAN printer port has no authentication (docs/security.md, "Printing"): the allowance is by source address.
An allowance is an IPv4 or IPv6 network; one address is a /32 (or /128). IPv4-mapped IPv6 peers
(``::ffff:192.168.1.30``, a dual-stack socket) are matched as the IPv4 address they are.
"""

from __future__ import annotations

import ipaddress

from ..store import Till

IPV4_MIN_PREFIX = 16
IPV6_MIN_PREFIX = 48
"""The widest networks an allowance may name: a shop's LAN is at most a /16 (IPv4) or a site's /48 (IPv6);
a wider one (0.0.0.0/0) would let the whole Internet print through a forwarded port."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_network(text: str) -> Network:
    """``192.168.1.30``, ``192.168.1.0/24``, ``fd00::/64`` -> the network (host bits are cleared).

    Raises:
        ValueError: not an address or network, or wider than IPV4_MIN_PREFIX / IPV6_MIN_PREFIX; the
            message names the fault.
    """
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address or network such as 192.168.1.30 or 192.168.1.0/24") from None
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped is not None:
        mapped = network.network_address.ipv4_mapped
        network = ipaddress.ip_network(f"{mapped}/{max(0, network.prefixlen - 96)}", strict=False)
    floor = IPV4_MIN_PREFIX if network.version == 4 else IPV6_MIN_PREFIX
    if network.prefixlen < floor:
        raise ValueError(f"{network} is wider than a shop's network; allow at most a /{floor}")
    return network


def peer_address(host: str) -> Address:
    """The address a connection came from, IPv4-mapped IPv6 unwrapped and an IPv6 zone dropped.

    Raises ValueError for text that is not an address."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def matching_till(tills: list[Till], address: Address) -> Till | None:
    """The narrowest allowance whose network holds ``address``, or None."""
    best: tuple[int, Till] | None = None
    for till in tills:
        network = ipaddress.ip_network(till.network)
        if address.version == network.version and address in network:
            if best is None or network.prefixlen > best[0]:
                best = (network.prefixlen, till)
    return best[1] if best else None
