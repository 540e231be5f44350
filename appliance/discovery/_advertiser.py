"""The device's DNS-SD advertisement, kept in step with its pairing state."""

from __future__ import annotations

import asyncio
import logging
import socket
import unicodedata

from zeroconf import DNSQuestionType, IPVersion, NonUniqueNameException, ServiceInfo, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

log = logging.getLogger(__name__)

SERVICE_TYPE = "_eticket._tcp.local."
PRINTER_TYPE = "_pdl-datastream._tcp.local."
"""A raw print port (Bonjour Printing Specification 1.2 §9, "PDL Data Stream": port 9100)."""
LPD_TYPE = "_printer._tcp.local."
"""The LPD service type: registered with port 0, the Bonjour Printing Specification's way (§9.1) for a
printer without LPD to defend its name against another printer taking it."""
TXT_VERSION = "1"
"""Protocol version in the TXT record key ``v``; bumped on incompatible API changes (docs/protocol.md)."""
API_PATH = "/api/v1"
INSTANCE_NAME_MAX_BYTES = 63
"""Longest DNS-SD instance name, in UTF-8 bytes (RFC 6763 §4.1.1: one DNS label)."""
CONFLICT_RENAMES_MAX = 20
"""Renames tried after a name conflict (``Name (2)`` … ``Name (21)``, RFC 6763 Appendix D) before giving up."""
NAMES_IN_USE_WAIT_SECONDS = 0.5
"""How long the start-up browse listens for the instance names other devices hold (seconds; their answers
come 20-120 ms after the query, RFC 6762 §6)."""
DEFAULT_INSTANCE = "eTicket"
DOT_STAND_IN = "\u2024"
"""ONE DOT LEADER, which looks like ".": it stands for a full stop in instance names, because zeroconf cannot
escape a dot inside a label (RFC 6763 §4.3) and sends "St. Martin" as two labels, which other browsers
(avahi, Bonjour, Android) then parse as another instance of another type."""


def instance_name(name: str, number: int = 1) -> str:
    """The DNS-SD instance name for the shop name ``name``: in NFC and without control characters (turned
    into spaces), as RFC 6763 §4.1.1 asks (Net-Unicode, RFC 5198), each "." as :data:`DOT_STAND_IN`, cut on
    a character boundary so that it fits :data:`INSTANCE_NAME_MAX_BYTES` together with the conflict suffix
    `` (number)`` when ``number`` > 1. The screens keep showing the whole ``name``.

    >>> instance_name("Boulangerie St. Martin", 2)
    'Boulangerie St\u2024 Martin (2)'
    """
    text = "".join(" " if unicodedata.category(ch) == "Cc" else DOT_STAND_IN if ch == "." else ch
                   for ch in unicodedata.normalize("NFC", name))
    suffix = f" ({number})" if number > 1 else ""
    room = INSTANCE_NAME_MAX_BYTES - len(suffix.encode())
    cut = text.encode()[:room].decode("utf-8", "ignore").strip()  # "ignore" drops a split last character
    return (cut or DEFAULT_INSTANCE) + suffix


def printer_txt_record(*, device_id: str, name: str) -> dict[str, str]:
    """The printer services' TXT record (Bonjour Printing Specification 1.2 §9.2): ``txtvers``, ``qtotal``
    (one queue), ``pdl`` (ESC/POS has no registered MIME type; ``application/vnd.epson.escpos`` names it),
    ``ty`` and ``product`` (what a till's printer list shows), ``note`` (the shop), ``id`` (ties it to the
    ``_eticket._tcp`` record)."""
    return {"txtvers": "1", "qtotal": "1", "pdl": "application/vnd.epson.escpos", "ty": "eTicket receipt printer",
            "product": "(eTicket)", "note": name[:200], "id": device_id}


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
    """Registers ``<instance_name(name)>._eticket._tcp.local.`` on the given interfaces; says goodbye on close.

    ``name``: the shop name, any length (see :func:`instance_name`). ``interfaces``: IPv4 addresses to bind
    (None = all). ``addresses``: the A records to publish.
    """

    def __init__(self, *, name: str, device_id: str, port: int, interfaces: list[str] | None,
                 addresses: list[str], fingerprint: str = "", tls: bool = True,
                 printer_port: int | None = None) -> None:
        self._printer_port = printer_port
        """With a printer port (``printer_listen``): also ``_pdl-datastream._tcp`` on it and ``_printer._tcp``
        on port 0, under the same instance name."""
        self._name = name
        self._device_id = device_id
        self._fingerprint = fingerprint
        self._tls = tls
        self._interfaces = interfaces
        self._info = ServiceInfo(
            SERVICE_TYPE,
            f"{instance_name(name)}.{SERVICE_TYPE}",
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
        """The registered instance name, e.g. ``Boulangerie Martin (2)._eticket._tcp.local.`` after a conflict."""
        return self._info.name

    async def async_start(self, *, paired: bool) -> None:
        """Join the multicast group, probe and announce (RFC 6762 §8). When another device already holds
        the name, take ``Name (2)``, ``Name (3)``… (RFC 6763 Appendix D), each cut to fit 63 bytes.

        Raises:
            OSError: multicast cannot be joined on an interface.
            zeroconf.NonUniqueNameException: every name up to ``Name (21)`` is taken.
        """
        if self._interfaces is None:
            self._zc = AsyncZeroconf(ip_version=IPVersion.All)
        else:
            self._zc = AsyncZeroconf(interfaces=self._interfaces, ip_version=IPVersion.V4Only)
        taken = await self._async_names_in_use()
        numbers = [n for n in range(1, CONFLICT_RENAMES_MAX + 2)
                   if f"{instance_name(self._name, n)}.{SERVICE_TYPE}".lower() not in taken]
        if numbers and numbers[0] > 1:
            log.warning("mDNS: another device is already named %r; this one takes the next free name",
                        instance_name(self._name))
        for number in numbers:
            self._info = self._with_txt(paired, f"{instance_name(self._name, number)}.{SERVICE_TYPE}")
            try:
                # zeroconf's own renaming appends "-2" after the cut name and so can exceed 63 bytes
                await self._zc.async_register_service(self._info, allow_name_change=False)
                break
            except NonUniqueNameException:
                log.warning("mDNS: %s is taken by another device; trying the next name", self._info.name)
        else:
            await self.async_close()
            raise NonUniqueNameException(f"every name from {instance_name(self._name)!r} to "
                                         f"{instance_name(self._name, CONFLICT_RENAMES_MAX + 1)!r} is taken")
        log.info("mDNS: advertising %s on %s", self._info.name, ", ".join(self._interfaces or ["all interfaces"]))
        if self._printer_port is not None:
            await self._async_register_printer()

    async def _async_register_printer(self) -> None:
        """The printer services, under the instance name the ``_eticket._tcp`` record got; a conflict (another
        printer of that name) is logged and leaves the device without them, never without its own service."""
        assert self._zc is not None
        label = self._info.name[: -len(SERVICE_TYPE) - 1]
        for service_type, port in ((PRINTER_TYPE, self._printer_port), (LPD_TYPE, 0)):
            info = ServiceInfo(service_type, f"{label}.{service_type}", port=port,
                               properties=printer_txt_record(device_id=self._device_id, name=self._name),
                               server=self._info.server, addresses=self._info.addresses_by_version(IPVersion.All))
            try:
                await self._zc.async_register_service(info, allow_name_change=False)
            except NonUniqueNameException:
                log.warning("mDNS: a printer named %s is already on the network; tills must be given this "
                            "device's address for printing", label)
                return
        log.info("mDNS: advertising the printer %s on port %d", label, self._printer_port)

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

    async def _async_names_in_use(self) -> set[str]:
        """The instance names (lower case, DNS names compare so) that devices answering a browse now hold.

        zeroconf's probe (RFC 6762 §8.1) misses a device holding the same name when both propose identical
        PTR records, so a counter named like another one would silently shadow it; asking first avoids that
        (two devices starting in the same half second can still pick the same name).
        """
        assert self._zc is not None
        taken: set[str] = set()

        def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
            if state_change is not ServiceStateChange.Removed:
                taken.add(name.lower())

        # QM: answers are multicast, so they reach this process even when several share port 5353
        browser = AsyncServiceBrowser(self._zc.zeroconf, SERVICE_TYPE, handlers=[on_change],
                                      question_type=DNSQuestionType.QM)
        try:
            await asyncio.sleep(NAMES_IN_USE_WAIT_SECONDS)
        finally:
            await browser.async_cancel()
        return taken

    def _with_txt(self, paired: bool, name: str | None = None) -> ServiceInfo:
        info = self._info
        return ServiceInfo(
            info.type,
            name or info.name,
            port=info.port,
            properties=txt_record(device_id=self._device_id, paired=paired, fingerprint=self._fingerprint,
                                  tls=self._tls),
            server=info.server,
            addresses=info.addresses_by_version(IPVersion.All),
        )
