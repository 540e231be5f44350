"""The customer's side: ``GET /r/{token}``, the capability URL in the QR."""

from __future__ import annotations

import contextlib
import re
import time
from datetime import UTC, datetime
from html import escape

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from eticket_core.negotiation import prefers

from ..errors import ApplianceError, Gone, NotFound, ReceiptDamaged, StorageUnavailable
from .auth import appliance_of
from .common import PROBLEM_MEDIA_TYPE
from .page_lang import page_translator

router = APIRouter()

TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}|[A-Za-z0-9_-]{28}")
"""secrets.token_urlsafe(32): 256 bits in 43 URL-safe base64 characters; or a relay token (28 characters,
:func:`relay.crypto.new_token`) when the device publishes to a relay."""


PAGE_TEXTS = {
    404: ("Receipt not found",
          "This receipt link is not known here. Check that you scanned the code on this shop's screen."),
    410: ("Receipt expired", "This receipt has expired and was deleted. Ask the shop for a copy."),
    500: ("Receipt damaged", "This receipt was damaged in the device's storage and cannot be shown. Please ask "
                             "at the counter for a copy."),
    503: ("Receipt not available now", "The device cannot read its receipts right now. Please ask at the counter."),
}
"""Status → (title, text) of the page a phone's browser gets, English source text (scripts/translations.py)."""


def _page(request: Request, error: ApplianceError) -> Response:
    """A tiny HTML page for a phone's browser, in its language or the device's (:mod:`.page_lang`): no
    script, no external asset."""
    lang, t = page_translator(request)
    title, text = PAGE_TEXTS.get(error.status, (error.title, error.detail))
    html = (
        f"<!doctype html><html lang={lang}><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{escape(t(title))}</title></head><body style='font:18px sans-serif;margin:2em'>"
        f"<h1>{escape(t(title))}</h1><p>{escape(t(text))}</p></body></html>"
    )
    return Response(html, status_code=error.status, media_type="text/html; charset=utf-8")


def not_found_page(request: Request) -> Response:
    """404 for a browser (``Accept: text/html``) on a path this device does not serve (a mistyped ``/screen``
    link): a page in its language, instead of problem details."""
    lang, t = page_translator(request)
    title = t("Page not found")
    text = t("This device has no page at this address. Check the link, or scan the code on the shop's screen.")
    html = (f"<!doctype html><html lang={lang}><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{escape(title)}</title></head><body style='font:18px sans-serif;margin:2em'>"
            f"<h1>{escape(title)}</h1><p>{escape(text)}</p></body></html>")
    return Response(html, status_code=404, media_type="text/html; charset=utf-8")


@router.get("/")
async def home(request: Request) -> Response:
    """A plain page for whoever opens the device's address in a browser: what this is, nothing more (in the
    browser's language or the device's)."""
    lang, t = page_translator(request)
    shop = escape(appliance_of(request).settings.name)
    text = t("This is an eTicket receipt screen. Scan the QR code shown at the counter to get your receipt.")
    html = (
        f"<!doctype html><html lang={lang}><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{shop} · eTicket</title></head><body style='font:18px sans-serif;margin:2em'>"
        f"<h1>{shop}</h1><p>{escape(text)}</p></body></html>"
    )
    return Response(html, media_type="text/html; charset=utf-8")


@router.get("/logo")
async def logo(request: Request) -> Response:
    """The shop's logo (config ``logo``), for screens; 404 when none is configured."""
    path = appliance_of(request).settings.logo
    if path is None:
        raise NotFound("No logo is configured.")
    data = await run_in_threadpool(path.read_bytes)
    media = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
    return Response(data, media_type=media, headers={"Cache-Control": "public, max-age=86400"})


@router.api_route("/r/{token}", methods=["GET", "HEAD"])
async def download(token: str, request: Request) -> Response:
    """Return the stored receipt PDF, byte-identical, ``Content-Disposition: inline``.

    404 for an unknown token, 410 once the retention period is over, 500 ``receipt-damaged`` when the stored
    PDF no longer matches its SHA-256 or was lost in a storage repair (wrong bytes are never served), 503
    ``storage-unavailable``/``storage-damaged`` when the storage fails: an HTML page when the client accepts
    ``text/html`` (a phone), problem details otherwise. No cookie is set; security headers come from the app.
    """
    app = appliance_of(request)
    try:
        if not TOKEN_PATTERN.fullmatch(token):
            raise NotFound("No receipt at this address.")
        found = await run_in_threadpool(app.store.ticket_by_token, token)
        if found is None:
            raise NotFound("No receipt at this address.")
        ticket, pdf = found
        if ticket.expires_at <= time.time():
            raise Gone("This receipt has expired.")
        # Before expiry only damage removes a PDF. Hashing up to max_body_bytes: off the event loop.
        if pdf is None or not await run_in_threadpool(app.store.pdf_intact, ticket, pdf):
            if pdf is not None:
                await run_in_threadpool(app.store.drop_damaged_pdf, ticket.id)
            raise ReceiptDamaged("This receipt was damaged in the device's storage and cannot be shown. Please "
                                 "ask at the counter for a copy.")
    except ApplianceError as error:
        if prefers(request, "text/html", over=PROBLEM_MEDIA_TYPE):
            return _page(request, error)
        raise
    if ticket.downloaded_at is None and request.method == "GET":
        # The customer gets the receipt even when the card refuses this small write (full): it was found.
        with contextlib.suppress(StorageUnavailable):
            await run_in_threadpool(app.store.mark_downloaded, ticket.id)
        await app.display.async_ticket_downloaded(ticket.id)
    day = datetime.fromtimestamp(ticket.created_at, UTC).strftime("%Y-%m-%d")
    filename = f"receipt-{day}-{ticket.id.removeprefix('t-')}.pdf"
    return Response(
        pdf, media_type="application/pdf", headers={"Content-Disposition": f'inline; filename="{filename}"'}
    )
