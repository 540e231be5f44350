"""The appliance's behaviour, independent of HTTP: accept tickets, pair POS, drive the display.

One :class:`Appliance` per process. Blocking work (SQLite, PDF checks) runs in worker threads; the rest on
the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import secrets
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zeroconf
from segno.helpers import make_wifi_data
from starlette.concurrency import run_in_threadpool

from relay.crypto import TOKEN_CHARS, Signer, link

from . import __version__
from ._paths import write_private
from .admission import Admission
from .config import Settings
from .discovery import AddressWatcher, Advertiser, interface_addresses, lan_ipv4, resolve_interfaces
from .display import Display
from .errors import ApplianceError, IdempotencyKeyReused, StorageUnavailable
from .identity import certificate_device_id, load_or_create
from .intake import TicketMeta
from .pairing import PairingManager
from .pdfworker import PdfChecker, default_workers
from .publisher import Publisher
from .screens import ScreenLinks
from .store import Pos, Store, Ticket, sha256_hex
from .update.state import image_version

log = logging.getLogger(__name__)

KIOSK_FILE = "kiosk.json"
"""In the data dir, mode 0600: ``{"url": <appliance base URL on loopback>, "token": <screen token>}``.
Reading it is how the local kiosk proves it runs on the device as the appliance's user."""
PURGE_INTERVAL_SECONDS = 3600.0
PAIRING_TICK_SECONDS = 1.0


def provisioning_notice(path: Path) -> str | None:
    """The message to show when ``eticket provision`` refused a settings file (its status file says
    ``"ok": false``), else None (no file, unreadable, or the last file was applied)."""
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(status, dict) or status.get("ok") is not False:
        return None
    return str(status.get("message") or "the settings file was refused")[:300]


def _host_of(address: str) -> str:
    """``"192.168.1.20:8080"`` -> ``"192.168.1.20"``; ``"[fd00::1]:8080"`` -> ``"fd00::1"``."""
    return address.rpartition(":")[0].strip("[]")


DEVICE_NAME_SUFFIX_CHARS = 4
"""Hex digits of the device id in a fresh device's name: "eTicket 3F9A" for ``et-3f9a0c1d2e4b5a69``."""


def fresh_device_name(device_id: str) -> str:
    """The name of a device whose settings give none: ``"eTicket 3F9A"``, the default name and the first
    DEVICE_NAME_SUFFIX_CHARS hex digits of ``device_id`` (``et-3f9a…``), upper case. Stable for the life of the
    device's data, and the same digits start the ``id`` that ``eticket discover`` lists beside it."""
    suffix = device_id.removeprefix("et-")[:DEVICE_NAME_SUFFIX_CHARS].upper()
    return f"{Settings.model_fields['name'].default} {suffix}"


def rfc3339(ts: float) -> str:
    """Unix seconds -> ``2026-11-29T10:00:00Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Appliance:
    """State owner: store, display, pairing window, mDNS advertisement, screen token."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(settings.data_dir, 0o700)  # receipts and tokens: owner only, even if the directory pre-existed
        established = (settings.data_dir / "tls").is_dir() and (settings.data_dir / KIOSK_FILE).exists()
        # checks it, repairs a damaged one; on a device that ran before, a lost database is damage too
        self.store = Store(settings.data_dir / "eticket.sqlite3", established=established)
        known_id = certificate_device_id(settings.data_dir)
        try:
            self.device_id = self.store.device_id(fallback=known_id)
        except StorageUnavailable:  # no usable database for now (health says so): the certificate knows us
            self.device_id = known_id or "et-" + secrets.token_hex(8)
        self._storage_generation = self.store.generation
        self.image_version = image_version()
        """The system image's release (``version=`` of /etc/eticket-image-id, docs/fleet.md §11), None on a desk."""
        if "name" not in settings.model_fields_set:  # unconfigured: tell two fresh devices on one LAN apart
            settings = settings.model_copy(update={"name": fresh_device_name(self.device_id)})
            self.settings = settings
        self.identity = load_or_create(settings.data_dir, self.device_id)
        self.address = self._reachable_address(settings.host, settings.port)
        self.api_address = self._reachable_address(*settings.api_host_port)
        self.api_url = f"{'https' if settings.tls else 'http'}://{self.api_address}"
        self.public_url = settings.public_url or f"http://{self.address}"
        logo = None
        if settings.logo is not None:
            logo = f"/logo?v={sha256_hex(settings.logo.read_bytes())[:12]}"
        self.display = Display(shop=settings.name, timeout_seconds=settings.display_timeout_seconds,
                               lang=settings.language, logo=logo, clock=settings.clock)
        self.paired = self._pos_count() > 0
        self.pairing = PairingManager(
            store=self.store, device_id=self.device_id, address=self.api_address, name=settings.name,
            fingerprint=self.identity.fingerprint, ttl_seconds=settings.pairing_code_ttl_seconds,
            on_change=self.display.async_set_pairing, on_paired=self._async_on_paired,
        )
        self.screen_token = secrets.token_urlsafe(32)
        self.pdf_checker = PdfChecker(settings.pdf_workers or default_workers())
        self.admission = Admission()
        """Connection caps and the addresses trusted with their reserve (appliance/admission.py)."""
        self._advertiser: Advertiser | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher = AddressWatcher(self._async_addresses_changed)
        self.screens = ScreenLinks(self.store, self.display)
        self.guest_wifi = None if settings.relay_url or not settings.guest_wifi_ssid else {
            "ssid": settings.guest_wifi_ssid,
            "qr": make_wifi_data(ssid=settings.guest_wifi_ssid, password=settings.guest_wifi_password or None,
                                 security="WPA" if settings.guest_wifi_password else "nopass"),
        }
        """Without a relay: the guest Wi-Fi join QR (``WIFI:T:WPA;S:…;P:…;;``, segno's encoder) shown first."""
        self.printer_port: int | None = None
        """The bound port of ``printer_listen`` (set by the server before start), for the DNS-SD printer
        records; None without a printer port."""
        from .printer.intake import PrintIntake

        self.printer = PrintIntake(self)
        """Print jobs (port 9100, the TakePOS connector) and customer-display calls (appliance/printer)."""
        self.publisher: Publisher | None = None
        if settings.relay_url:
            self.publisher = Publisher(self.store, settings.relay_url, Signer(self.identity.key_path.read_bytes()),
                                       on_downloaded=self.display.async_ticket_downloaded)

    @staticmethod
    def _reachable_address(host: str, port: int, current: str | None = None) -> str:
        """``host:port`` a POS or phone can reach: the given address, or on a wildcard this machine's LAN
        IPv4 now (:func:`appliance.discovery.pick_lan_ipv4`; ``current``, the host in use, stays when still as
        good), and 127.0.0.1 only when it has no other address."""
        if host in ("0.0.0.0", "::", ""):
            host = lan_ipv4(current) or "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{port}"

    def _mdns_plan(self) -> tuple[list[str] | None, list[str]] | None:
        """``(interfaces, addresses)`` for mDNS now, or None when it is off.

        Addresses: the API's own address when it listens on one; on a wildcard, every address of the mDNS
        interfaces (IPv4, then global/ULA IPv6).
        """
        interfaces = resolve_interfaces(self.settings.mdns_interfaces, loopback_only=self.settings.listens_on_loopback)
        if interfaces == []:
            return None
        host = self.settings.api_host_port[0]
        if host in ("0.0.0.0", "::", ""):
            return interfaces, interface_addresses(interfaces)
        try:
            return interfaces, [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                return interfaces, [socket.gethostbyname(host)]
            except OSError:
                log.warning("cannot resolve %s to an address: mDNS will advertise no address", host)
                return interfaces, []

    async def _async_start_mdns(self) -> None:
        plan = self._mdns_plan()
        if plan is None:
            return
        interfaces, addresses = plan
        advertiser = Advertiser(
            name=self.settings.name, device_id=self.device_id, port=self.settings.api_host_port[1],
            interfaces=interfaces, addresses=addresses, fingerprint=self.identity.fingerprint, tls=self.settings.tls,
            printer_port=self.printer_port,
        )
        try:
            await advertiser.async_start(paired=self.paired)
        except OSError as exc:  # no multicast on the interface: the API still works, discovery does not
            log.error("mDNS could not start (%s); POS must use --address. Is multicast enabled?", exc)
            return
        except zeroconf.Error as exc:  # e.g. every conflict-renamed name is taken: serve without discovery
            log.error("mDNS could not start (%s: %s); POS must use --address.", type(exc).__name__, exc)
            await advertiser.async_close()
            return
        self._advertiser = advertiser

    async def _async_addresses_changed(self) -> None:
        """The LAN addresses changed (DHCP, roaming, cable): recompute URLs, redraw the ones on screen (the
        pairing QR, the receipt QR: same token, new host) and re-announce over mDNS."""
        old_public = self.public_url
        self.address = self._reachable_address(self.settings.host, self.settings.port, _host_of(self.address))
        self.api_address = self._reachable_address(*self.settings.api_host_port, _host_of(self.api_address))
        self.api_url = f"{'https' if self.settings.tls else 'http'}://{self.api_address}"
        if not self.settings.public_url:
            self.public_url = f"http://{self.address}"
        await self.pairing.async_set_address(self.api_address)
        if self.public_url != old_public:
            log.info("customer URLs now %s (were %s)", self.public_url, old_public)
            await self.display.async_rebase_urls(old_public, self.public_url)
        plan = self._mdns_plan()
        current = self._advertiser
        if current is not None and plan is not None and (current.interfaces, current.addresses) == plan:
            return
        log.info("addresses changed: now %s; re-announcing", ", ".join(plan[1]) if plan else "none")
        if current is not None:
            self._advertiser = None
            await current.async_close()
        await self._async_start_mdns()

    # --- lifecycle -------------------------------------------------------------------------------------
    def begin_shutdown(self) -> None:
        """Called from a signal handler: end the display streams so that the server can stop at once."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: loop.create_task(self.display.async_close()))
        # a print job converting now is refused at once (its connector request answers before the servers'
        # graceful timeout), rather than holding the stop for up to 30 s
        self.printer.converter.close(busy_too=True)

    async def async_start(self) -> None:
        """Write the kiosk file, open pairing if unpaired, start mDNS and housekeeping."""
        self._loop = asyncio.get_running_loop()
        kiosk_host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(self.settings.host,
                                                                                   self.settings.host)
        kiosk_url = f"http://{kiosk_host}:{self.settings.port}"
        write_private(
            self.settings.data_dir / KIOSK_FILE, json.dumps({"url": kiosk_url, "token": self.screen_token})
        )
        if not self.paired:
            await self.pairing.async_open(None)
        await self.display.async_set_storage(self.storage_notice())
        await self._async_start_mdns()
        if self._watcher.start():
            # An address that came while mDNS was starting (it takes a second or two: the names-in-use browse,
            # the probes) sent its event before the watcher listened: look once more now.
            self._watcher.poke()
        self._tasks.append(asyncio.create_task(asyncio.to_thread(self.pdf_checker.warm)))
        self._tasks.append(asyncio.create_task(self._async_verify_pdfs()))
        self._tasks.append(asyncio.create_task(self._async_purge_loop()))
        self._tasks.append(asyncio.create_task(self._async_pairing_loop()))
        if self.publisher is not None:
            self._tasks.append(asyncio.create_task(self.publisher.async_run_uploads()))
            self._tasks.append(asyncio.create_task(self.publisher.async_run_download_watch()))
            log.info("publishing receipts to the relay %s as device %s", self.publisher.relay_url,
                     self.publisher.signer.relay_id)
        log.info("appliance %s ready: POS API %s, customer URLs %s", self.device_id, self.api_url, self.public_url)

    async def async_stop(self) -> None:
        """Say mDNS goodbye, stop housekeeping, close the database."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._watcher.stop()
        if self.publisher is not None:
            await self.publisher.async_close()
        if self._advertiser is not None:
            await self._advertiser.async_close()
        self.pdf_checker.close()
        self.printer.close()
        self.store.close()

    # --- pairing ---------------------------------------------------------------------------------------
    async def _async_on_paired(self) -> None:
        await self._async_set_paired(True)

    async def _async_set_paired(self, paired: bool) -> None:
        if paired != self.paired:
            self.paired = paired
            if self._advertiser is not None:
                await self._advertiser.async_set_paired(paired)

    async def async_revoke_pos(self, pos_id: str) -> bool:
        """Revoke a POS's token at once; reopen pairing when no POS (nor till allowed to print) is left.
        False if unknown."""
        removed = await run_in_threadpool(self.store.revoke_pos, pos_id)
        if removed:
            log.info("revoked POS %s", pos_id)
            await self.async_tills_changed()
        return removed

    async def async_tills_changed(self, reopen: bool = True) -> None:
        """A POS or a till allowance came or went: ``paired`` (the TXT record) follows whether any is left;
        with none left, pairing opens, unless ``reopen`` is False: a revoked till must not be re-bound by its
        next print job (binding needs no code, docs/security.md "Printing"); the shop opens pairing itself."""
        count = await run_in_threadpool(self._pos_count, -1)
        if count == 0 and self.paired:
            await self._async_set_paired(False)
            if reopen:
                await self.pairing.async_open(None)
        elif count > 0:
            await self._async_set_paired(True)

    async def _async_pairing_loop(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(PAIRING_TICK_SECONDS)
            await self.pairing.async_tick()
            await self.screens.async_tick()
            ticks += 1
            if ticks % 3 == 1:
                await self.display.async_set_notice(provisioning_notice(self.settings.provision_status_file))
                await self._async_storage_changed()

    async def _async_storage_changed(self) -> None:
        """Show the storage's state on the screens; after a repair while running, pairings may be gone:
        reopen pairing when no POS is left."""
        await self.display.async_set_storage(self.storage_notice())
        if self.store.generation != self._storage_generation:
            self._storage_generation = self.store.generation
            count = await run_in_threadpool(self._pos_count, -1)
            if count == 0 and self.paired:
                await self._async_set_paired(False)
                await self.pairing.async_open(None)
            elif count > 0 and not self.paired:  # the storage came back with its pairings
                await self._async_set_paired(True)
                await self.pairing.async_close()

    def _pos_count(self, unknown: int = 0) -> int:
        """How many POS are paired and tills allowed to print, or ``unknown`` while the storage cannot be
        used. Blocking."""
        try:
            return self.store.pos_count() + len(self.store.list_tills())
        except StorageUnavailable:
            return unknown

    def storage_notice(self) -> dict[str, Any] | None:
        """For the screens' band: None while the storage is fine, else ``{"status": "repaired"|"damaged"|"failed"|
        "refusing", "receipts_lost", "pairings_lost"}``, plus ``full`` (bool) when failed or refusing, and
        ``database_lost`` (true) after a repair that found the whole database gone (:meth:`Store.health`)."""
        storage = self.store.health()
        if storage["status"] == "ok":
            return None
        repair = (storage["last_repair"] or {}) if storage["status"] == "repaired" else {}
        notice: dict[str, Any] = {
            "status": storage["status"], "pairings_lost": int(repair.get("pairings_lost", 0)),
            "receipts_lost": max(int(repair.get("receipts_lost", 0)), int(storage["damaged_receipts"]))}
        if repair.get("database_lost"):
            notice["database_lost"] = True
        if storage["status"] in ("failed", "refusing"):
            notice["full"] = "full" in str(storage["error"] or "")  # SQLite: "database or disk is full"
        return notice

    # --- tickets ---------------------------------------------------------------------------------------
    async def async_accept_ticket(
        self, pos: Pos, pdf: bytes, meta: TicketMeta, idempotency_key: str | None, lang: str | None = None,
        publish: bool = True,
    ) -> tuple[dict[str, Any], bool]:
        """Check, store durably and show a ticket; return ``(response body, created)``. ``publish`` False keeps
        it off the relay (the self-test receipt, appliance/selftest.py).

        The body is ``{"id", "url", "expires_at", "total", "currency", "ref"}``. ``created`` is False for a
        replay of an ``Idempotency-Key`` with the same receipt (nothing new is stored or shown).

        Raises:
            RejectedPdf: the document is refused (see :func:`appliance.pdfcheck.check_pdf`).
            IdempotencyKeyReused: the key was used before with a different receipt or metadata (``lang`` counts).
        """
        # lang is part of what was asked (the screen's language): a reused key with another lang is refused.
        # Appended only when given, so the fingerprints of tickets stored before it counted stay the same.
        fields = meta.fingerprint() + (f"\x1f{lang}" if lang else "")
        request_sha = sha256_hex(sha256_hex(pdf) + "\x1e" + fields)
        if idempotency_key is not None:  # a retry is answered before any PDF work
            earlier = await run_in_threadpool(self.store.ticket_by_idempotency_key, pos.id, idempotency_key)
            if earlier is not None:
                if earlier.request_sha256 != request_sha:
                    raise IdempotencyKeyReused(
                        "This Idempotency-Key was already used for a different receipt; use a new key per sale."
                    )
                return self.ticket_body(earlier), False
        info = await run_in_threadpool(self.pdf_checker.check, pdf)
        ticket, created = await run_in_threadpool(
            lambda: self.store.add_ticket(
                pos_id=pos.id, pdf=pdf, pages=info.pages, request_sha256=request_sha,
                idempotency_key=idempotency_key, total=meta.total, currency=meta.currency,
                reference=meta.reference, retention_seconds=self.settings.retention_seconds,
                make_token=self.publisher.new_secret if self.publisher else None,
                publish=publish and self.publisher is not None,
            )
        )
        if not created and ticket.request_sha256 != request_sha:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used for a different receipt; use a new key per sale."
            )
        body = self.ticket_body(ticket)
        if created:
            await self.display.async_show_ticket(
                {"id": ticket.id, "url": body["url"], "total": ticket.total, "currency": ticket.currency,
                 "expires_at": body["expires_at"], "lang": lang,
                 "valid_days": max(1, round(self.settings.retention_seconds / 86_400)), "wifi": self.guest_wifi},
                wifi_seconds=self.settings.guest_wifi_seconds,
            )
            log.info("ticket %s accepted from %s (%d bytes, %d pages)", ticket.id, pos.id, ticket.size, ticket.pages)
            if self.publisher is not None and publish:
                self.publisher.wake()
        return body, created

    def ticket_url(self, ticket: Ticket) -> str:
        """The customer's capability URL: ``<relay>/r#<secret>`` for a ticket published to the relay (a blind
        link: the secret stays in the fragment, :func:`relay.crypto.link`; ``<relay>/r/<token>`` for a v1 token
        made before), else ``<public base>/r/<token>`` (the device itself; the LAN)."""
        if self.settings.relay_url and len(ticket.token) == TOKEN_CHARS:
            return link(self.settings.relay_url, ticket.token)
        return f"{self.public_url}/r/{ticket.token}"

    def ticket_body(self, ticket: Ticket) -> dict[str, Any]:
        """The POS-facing JSON for a ticket."""
        return {
            "id": ticket.id, "url": self.ticket_url(ticket), "expires_at": rfc3339(ticket.expires_at),
            "total": ticket.total, "currency": ticket.currency, "ref": ticket.reference,
        }

    async def _async_verify_pdfs(self) -> None:
        """After start, check every stored PDF against its SHA-256 in the background (bit rot on the card is
        invisible to the database's own check); damaged ones are dropped, logged and shown at once."""
        try:
            damaged = await asyncio.to_thread(self.store.verify_pdfs)
        except ApplianceError as exc:  # the storage failed under the check: /healthz and the band say so
            log.error("checking the stored receipts failed: %s", exc.detail)
            return
        if damaged:
            await self.display.async_set_storage(self.storage_notice())
        log.info("stored receipts checked: %d damaged", damaged)

    async def _async_purge_loop(self) -> None:
        while True:
            try:
                dropped = await run_in_threadpool(self.store.purge_expired)
            except StorageUnavailable:  # logged by the store, shown in /healthz; the next round tries again
                dropped = 0
            if dropped:
                log.info("purged %d expired receipts", dropped)
            await asyncio.sleep(PURGE_INTERVAL_SECONDS)

    def health(self) -> dict[str, Any]:
        """``{"status": "ok"|"degraded", "version", "image_version", "device_id", "name", "paired", "fingerprint",
        "relay", "storage"}`` (``name``: the DNS-SD instance name the screen shows, e.g. "eTicket 3F9A";
        ``image_version``: the system image's release, from ``version=`` in /etc/eticket-image-id, null on a
        desk: what the update's health gate compares with the booted slot's);
        ``relay`` is null without a relay, else the upload queue (:meth:`Publisher.status`); ``storage`` is
        :meth:`Store.health`, and ``status`` is ``degraded`` while it is not ``ok``."""
        storage = self.store.health()
        return {"status": "ok" if storage["status"] == "ok" else "degraded", "version": __version__,
                "image_version": self.image_version, "device_id": self.device_id, "name": self.settings.name,
                "paired": self.paired, "fingerprint": self.identity.fingerprint,
                "relay": self.publisher.status() if self.publisher is not None else None, "storage": storage}
