"""Print jobs and customer-display lines -> the appliance: who may print, conversion, the sale on screen."""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import logging
import re
import time
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from ..errors import ApplianceError, PrintJobRefused, TillNotAllowed
from ..intake import TicketMeta, printable_text
from ..store import Pos, Till
from .tills import Address, matching_till
from .worker import Conversion, JobConverter

if TYPE_CHECKING:
    from ..service import Appliance

log = logging.getLogger(__name__)

DISPLAY_LINE_CHARS = 20
"""TakePOS's customer display: two lines of 20 characters (a 2x20 pole display), sent as 40 characters."""
DISPLAY_TOTAL_SECONDS = 300.0
"""A total read from the display's payment line is used for a receipt printed within this time."""
MAX_INVOICE_CHARS = 8 * 1024 * 1024
"""The connector's ``invoice`` field: 8 MiB of base64, a 6 MiB job (a receipt sent as one 2 MB picture is
2.8 MB of base64; the raw port takes up to Limits.max_bytes)."""
CONNECTOR_JOBS = 2
"""Connector jobs decoded and converted at once; more wait (each holds up to MAX_INVOICE_CHARS several times)."""
REFUSAL_LOG_SECONDS = 60.0
"""A refused address is logged at most once in this time (a scan of the port must not flood the journal)."""
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


def decode_invoice(text: str) -> bytes:
    """The ESC/POS bytes of a TakePOS connector ``invoice`` field: base64url (Dolibarr 17+) or plain base64
    (older releases, whose ``+`` arrives as a space once the form is decoded: jQuery posts the string as it
    is), padding optional, surrounding whitespace ignored.

    Raises:
        PrintJobRefused: empty, not base64, or longer than MAX_INVOICE_CHARS.
    """
    text = text.strip().replace(" ", "+")
    if not text:
        raise PrintJobRefused("The invoice field is empty: nothing to print.")
    if len(text) > MAX_INVOICE_CHARS:
        raise PrintJobRefused(f"The invoice field holds {len(text)} characters; at most {MAX_INVOICE_CHARS}.")
    if not _BASE64.fullmatch(text):
        raise PrintJobRefused("The invoice field is not base64url or base64 (ESC/POS bytes, as TakePOS sends).")
    text = text.replace("-", "+").replace("_", "/").rstrip("=")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise PrintJobRefused("The invoice field is not valid base64 (its length is not possible).") from None


def display_lines(text: str) -> list[str]:
    """TakePOS's display ``text`` (40 characters: two lines of 20, each padded) -> two lines, trailing
    spaces dropped. A text with a line break is split there instead; control, format (bidi overrides,
    zero-width) and separator characters are dropped (appliance.intake.printable_text) and each line is cut to
    40 characters."""
    text = "".join(ch for ch in text if ch == "\n" or printable_text(ch))  # no control, bidi or zero-width
    if "\n" in text:
        first, _, second = text.partition("\n")
    else:
        first, second = text[:DISPLAY_LINE_CHARS], text[DISPLAY_LINE_CHARS:]
    return [first[:40].rstrip(), second.replace("\n", " ")[:40].rstrip()]


class PrintIntake:
    """Print jobs and display calls for one appliance; every ``async_`` method runs on the event loop."""

    def __init__(self, appliance: Appliance) -> None:
        self._appliance = appliance
        settings = appliance.settings
        self.converter = JobConverter(settings.printer_paper_mm, settings.printer_total_labels)
        self._display_totals: dict[Address, tuple[str, float]] = {}
        """Per till address (an allowance may cover a network of several tills): the amount of its last display
        line that named a total, and when (monotonic)."""
        self._bind_lock = asyncio.Lock()
        self._refusals_logged: dict[Address, float] = {}
        self.connector_slots = asyncio.Semaphore(CONNECTOR_JOBS)
        """Connector jobs decoded and converted at once (each holds its body, text and bytes in memory)."""

    # --- who may print -----------------------------------------------------------------------------------
    async def async_authorize(self, address: Address, *, bind: bool = True) -> Till | None:
        """The till allowance covering ``address``, or None when there is none but pairing is open and
        ``bind``: the job may then bind its address, once it makes a receipt (:meth:`async_accept`; a port scan
        or a malformed post binds nothing).

        Raises:
            TillNotAllowed: no allowance covers it (logged, at most once a minute per address, with the
                command that allows it).
        """
        till = matching_till(await run_in_threadpool(self._appliance.store.list_tills), address)
        if till is not None:
            return till
        window = self._appliance.pairing.window
        if bind and window is not None and not window.closed:
            return None
        raise self._refusal(address)

    def _refusal(self, address: Address) -> TillNotAllowed:
        now = time.monotonic()
        if now - self._refusals_logged.get(address, -REFUSAL_LOG_SECONDS) >= REFUSAL_LOG_SECONDS:
            if len(self._refusals_logged) > 1024:
                self._refusals_logged.clear()
            self._refusals_logged[address] = now
            log.warning("print job or display call from %s refused: no till allowed there "
                        "(on the device: eticket printers allow %s)", address, address)
        return TillNotAllowed(f"The address {address} is not allowed to print on this device. On the device, run "
                              f"'eticket printers allow {address}', or open pairing and print a test receipt.")

    async def _async_bind(self, address: Address) -> Till:
        """Bind ``address`` (its job made a receipt) if pairing is still open; the screens say so.

        Raises TillNotAllowed when pairing closed meanwhile (another till was bound first)."""
        async with self._bind_lock:  # two new tills printing at once while pairing is open: one is bound
            store = self._appliance.store
            till = matching_till(await run_in_threadpool(store.list_tills), address)
            if till is not None:
                return till
            pairing = self._appliance.pairing
            window = pairing.window
            if window is None or window.closed:
                raise self._refusal(address)
            prefix = 32 if address.version == 4 else 128
            network = str(ipaddress.ip_network(f"{address}/{prefix}"))
            bound, _ = await run_in_threadpool(store.add_till, network, f"Till {address}", "bound")
            await pairing.async_close()
            await self._appliance.async_tills_changed()
            await self._appliance.display.async_till_bound(str(address))
            log.info("till %s at %s may print: its first receipt came while pairing was open", bound.id, address)
            return bound

    # --- jobs ---------------------------------------------------------------------------------------------
    async def async_accept(self, data: bytes, till: Till | None, address: Address, via: str) -> dict[str, Any]:
        """Convert one job from ``address`` (``via``: ``port 9100`` or ``connector``, for the log) and accept
        it as a ticket from ``till`` (None: bind the address now, :meth:`async_authorize`): stored durably, its
        QR shown. The allowance is checked again after the conversion: a till revoked meanwhile is refused.
        Returns the ticket body (:meth:`appliance.service.Appliance.async_accept_ticket`).

        Raises:
            PrintJobRefused: the job makes no receipt (the fault named; logged, never its text).
            TillNotAllowed: the till was revoked, or pairing closed, during the conversion (logged).
            RejectedPdf, StorageUnavailable: as for any ticket.
        """
        started = time.monotonic()
        who = till.id if till is not None else str(address)
        try:
            done: Conversion = await run_in_threadpool(self.converter.convert, data)
        except PrintJobRefused as exc:
            log.warning("print job from %s (%s, %d bytes) refused: %s", who, via, len(data), exc.detail)
            raise
        if till is None:
            till = await self._async_bind(address)
        elif matching_till(await run_in_threadpool(self._appliance.store.list_tills), address) is None:
            log.warning("print job from %s (%s) refused: the till was revoked while its job was converted",
                        till.id, via)
            raise self._refusal(address)
        for warning in done.warnings[:20]:
            log.info("print job from %s: %s", till.id, warning)
        total = done.total
        shown = self._display_totals.pop(address, None)
        if shown is not None and time.monotonic() - shown[1] <= DISPLAY_TOTAL_SECONDS:
            if total is not None and total != shown[0]:
                log.warning("print job from %s: the receipt's total line differs from the customer display's "
                            "total; the display's is shown", till.id)
            total = shown[0]  # what this till showed the customer at payment
        currency = self._appliance.settings.printer_currency if total is not None else None
        pos = Pos(id=till.id, name=till.name, paired_at=till.added_at)
        try:
            body, _ = await self._appliance.async_accept_ticket(
                pos, done.pdf, TicketMeta(total=total, currency=currency), idempotency_key=None)
        except ApplianceError as exc:
            log.warning("print job from %s (%s, %d bytes) not stored: %s", till.id, via, len(data), exc.detail)
            raise
        log.info("print job from %s (%s, %d bytes): %d receipt(s)%s, converted in %.2f s", till.id, via, len(data),
                 done.receipts, f", {done.copies} shop copies dropped" if done.copies else "",
                 time.monotonic() - started)
        return body

    # --- the customer display ---------------------------------------------------------------------------
    async def async_show_display(self, text: str, address: Address) -> list[str]:
        """Show the customer-display ``text`` (:func:`display_lines`) of the till at ``address`` as the
        ``sale`` scene; a line naming a total (the configured labels, e.g. ``Total TTC``) keeps its amount for
        the next receipt from that address."""
        from ..escpos.total import DEFAULT_TOTAL_LABELS, find_total

        lines = display_lines(text)
        labels = tuple(self._appliance.settings.printer_total_labels or DEFAULT_TOTAL_LABELS)
        total = find_total([" ".join(lines)], labels)
        if total is not None:
            if len(self._display_totals) > 1024:
                self._display_totals.clear()
            self._display_totals[address] = (total, time.monotonic())
        await self._appliance.display.async_show_sale(lines)
        return lines

    def close(self) -> None:
        """Stop the conversion worker."""
        self.converter.close()
