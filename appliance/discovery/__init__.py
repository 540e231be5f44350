"""DNS-SD over mDNS (RFC 6762/6763): the device advertises ``_eticket._tcp.local.``; POS clients browse it."""

from ._addresses import interface_addresses, lan_ipv4, pick_lan_ipv4, resolve_interfaces
from ._advertiser import SERVICE_TYPE, TXT_VERSION, Advertiser, txt_record
from ._watch import AddressWatcher

__all__ = [
    "SERVICE_TYPE",
    "TXT_VERSION",
    "AddressWatcher",
    "Advertiser",
    "interface_addresses",
    "lan_ipv4",
    "pick_lan_ipv4",
    "resolve_interfaces",
    "txt_record",
]
