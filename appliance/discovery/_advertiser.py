"""The device's DNS-SD advertisement, kept in step with its pairing state."""

from __future__ import annotations

import logging
import socket

from zeroconf import IPVersion, ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

log = logging.getLogger(__name__)

SERVICE_TYPE = "_eticket._tcp.local."
TXT_VERSION = "1"
"""Protocol version in the TXT record key ``v``; bumped on incompatible API changes (docs/protocol.md)."""
API_PATH = "/api/v1"


def txt_record(*, device_id: str, paired: bool, fingerprint: str = "", tls: bool = True) -> dict[str, str]:
    """The TXT record (RFC 6763 §6): ``id`` stable device id, ``v`` protocol version, ``paired`` 0/1,
    ``path`` API base path, ``tls`` 1 when the API is HTTPS, ``fp`` the certificate's SHA-256 pin (a hint
    for humans and tools: mDNS is unauthenticated, so a POS trusts the pin from the QR or SPAKE2 only)."""
    txt = {"id": device_id, "v": TXT_VERSION, "paired": "1" if paired else "0", "path": API_PATH,
           "tls": "1" if tls else "0"}
    if fingerprint:
        txt["fp"] = fingerprint
    return txt


class Advertiser:
    """Registers ``<name>._eticket._tcp.local.`` on the given interfaces; says goodbye on close.

    ``interfaces``: IPv4 addresses to bind (None = all). ``addresses``: the A records to publish.
    """

    def __init__(self, *, name: str, device_id: str, port: int, interfaces: list[str] | None,
                 addresses: list[str], fingerprint: str = "", tls: bool = True) -> None:
        self._device_id = device_id
        self._fingerprint = fingerprint
        self._tls = tls
        self._interfaces = interfaces
        self._info = ServiceInfo(
            SERVICE_TYPE,
            f"{name}.{SERVICE_TYPE}",
            port=port,
            properties=txt_record(device_id=device_id, paired=False, fingerprint=fingerprint, tls=tls),
            server=f"{device_id}.local.",
            addresses=[socket.inet_pton(socket.AF_INET6 if ":" in a else socket.AF_INET, a) for a in addresses],
        )
        self._zc: AsyncZeroconf | None = None

    @property
    def addresses(self) -> list[str]:
        """The addresses published (IPv4 and IPv6 text)."""
        return self._info.parsed_addresses()

    @property
    def interfaces(self) -> list[str] | None:
        """The interface addresses mDNS runs on (None: all)."""
        return self._interfaces

    @property
    def instance_name(self) -> str:
        """The registered instance name (zeroconf may have renamed it after a conflict)."""
        return self._info.name

    async def async_start(self, *, paired: bool) -> None:
        """Join the multicast group and announce (RFC 6762 §8.3)."""
        if self._interfaces is None:
            self._zc = AsyncZeroconf(ip_version=IPVersion.All)
        else:
            self._zc = AsyncZeroconf(interfaces=self._interfaces, ip_version=IPVersion.V4Only)
        self._info = self._with_txt(paired)
        await self._zc.async_register_service(self._info, allow_name_change=True)
        log.info("mDNS: advertising %s on %s", self._info.name, ", ".join(self._interfaces or ["all interfaces"]))

    async def async_set_paired(self, paired: bool) -> None:
        """Re-announce with the new ``paired`` TXT value."""
        if self._zc is None:
            return
        self._info = self._with_txt(paired)
        await self._zc.async_update_service(self._info)

    async def async_close(self) -> None:
        """Send goodbye packets (TTL 0) and leave the group."""
        if self._zc is None:
            return
        try:
            await self._zc.async_unregister_all_services()
        finally:
            await self._zc.async_close()
            self._zc = None

    def _with_txt(self, paired: bool) -> ServiceInfo:
        info = self._info
        return ServiceInfo(
            info.type,
            info.name,
            port=info.port,
            properties=txt_record(device_id=self._device_id, paired=paired, fingerprint=self._fingerprint,
                                  tls=self._tls),
            server=info.server,
            addresses=info.addresses_by_version(IPVersion.All),
        )
