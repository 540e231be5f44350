"""The TakePOS connector on the device's listeners: what Dolibarr's till sends to a "TakePOS connector".

``TAKEPOS_PRINT_METHOD=takeposconnector`` (``../shared/clients/README.md``): the till's browser posts
``invoice=<ESC/POS in base64url>`` (form-encoded) to ``<server>/printer/index.php`` and, with a customer display,
loads ``<server>/display/index.php?text=<two lines of 20 characters>``. The page is on the Dolibarr server's
origin, so both are cross-origin: every answer carries ``Access-Control-Allow-Origin: *`` (no cookie is ever
read or set, so no credentials), and preflights, including Chrome's Private Network Access
(``Access-Control-Request-Private-Network: true``, answered with ``Access-Control-Allow-Private-Network``),
are answered. Which tills may print is decided by address as for port 9100 (appliance/printer/tills.py).
docs/protocol.md §12 is the contract.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from ..errors import ApplianceError, BadRequest, PrintJobRefused, TillNotAllowed, UnsupportedMediaType
from ..printer.intake import MAX_INVOICE_CHARS, decode_invoice
from ..printer.tills import Address, peer_address
from ..store import Till
from .api import _read_body
from .auth import appliance_of
from .common import PROBLEM_MEDIA_TYPE

router = APIRouter()

CORS_HEADERS = {"Access-Control-Allow-Origin": "*", "Vary": "Origin"}
PREFLIGHT_MAX_AGE_SECONDS = 600
MAX_DISPLAY_CHARS = 200
FORM_OVERHEAD_BYTES = 1024


def _cors(request: Request, status: int = 200) -> dict[str, str]:
    headers = dict(CORS_HEADERS)
    if request.method == "OPTIONS":
        headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        asked = request.headers.get("access-control-request-headers")
        if asked and len(asked) <= 200:
            headers["Access-Control-Allow-Headers"] = asked
        headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_SECONDS)
        if request.headers.get("access-control-request-private-network", "").lower() == "true":
            # Private Network Access (WICG draft, Chrome): a page on another origin may reach this LAN device
            headers["Access-Control-Allow-Private-Network"] = "true"
    return headers


def _problem(request: Request, exc: ApplianceError) -> JSONResponse:
    return JSONResponse(exc.problem(), status_code=exc.status, media_type=PROBLEM_MEDIA_TYPE, headers=_cors(request))


async def _till(request: Request, *, bind: bool) -> tuple[Till | None, Address]:
    """The till allowed at the request's address (None: may be bound by this job), and the address."""
    if request.client is None:
        raise TillNotAllowed("The connection has no peer address.")
    try:
        address = peer_address(request.client.host)
    except ValueError:
        raise TillNotAllowed("The connection's peer address is not an IP address.") from None
    return await appliance_of(request).printer.async_authorize(address, bind=bind), address


def _decode_form(body: bytes) -> bytes:
    """The ``invoice`` field's ESC/POS bytes from a form body (in a thread: percent-decoding megabytes is
    seconds of CPU). Raises BadRequest, PrintJobRefused."""
    if body.count(b"%") > len(body) // 10 + 16:  # base64 needs a few escapes (+ / =); millions cost gigabytes
        raise PrintJobRefused("The form is mostly percent-escapes: the invoice field is not base64url or base64.")
    try:
        fields = parse_qs(body.decode("latin-1"), keep_blank_values=True, max_num_fields=8)
    except ValueError as exc:  # more fields than max_num_fields
        raise BadRequest(f"The form is malformed: {exc}.") from None
    invoices = fields.get("invoice")
    del fields
    if not invoices:
        raise BadRequest("The form has no 'invoice' field (the receipt's ESC/POS bytes in base64url).")
    return decode_invoice(invoices[0])


@router.options("/printer/index.php", include_in_schema=False)
@router.options("/display/index.php", include_in_schema=False)
async def connector_preflight(request: Request) -> Response:
    """CORS preflight (Fetch standard) for the connector's two paths: 204 with the allowed methods, the
    asked headers, and ``Access-Control-Allow-Private-Network: true`` when Chrome asks for it."""
    return Response(status_code=204, headers=_cors(request))


@router.post("/printer/index.php", tags=["printer"])
async def connector_print(request: Request, printer: str | None = None) -> Response:
    """Print a TakePOS connector job: form field ``invoice`` = the ESC/POS bytes in base64url (or base64,
    ``+`` arriving as a space); ``?printer=N`` (TakePOS's second order printer) is accepted and ignored.

    Answers ``200 {"id", "url", "expires_at", "total", "currency", "ref"}`` (the ticket, as
    ``POST /api/v1/tickets`` does) with CORS headers. Refusals (problem details, RFC 9457):
    400 bad-request (no ``invoice`` field), 403 till-not-allowed (the address may not print),
    413 too-large (a body over MAX_INVOICE_CHARS), 415 unsupported-media-type (not form-encoded),
    422 print-job-refused (not base64, nothing prints, over a limit), 503 storage-unavailable. At most
    CONNECTOR_JOBS are decoded and converted at once; more wait their turn."""
    appliance = appliance_of(request)
    try:
        kind = request.headers.get("content-type", "application/x-www-form-urlencoded").split(";")[0].strip()
        if kind.lower() not in ("application/x-www-form-urlencoded", "text/plain"):
            raise UnsupportedMediaType(f"The connector takes a form-encoded body (invoice=...), not {kind[:60]}.")
        till, address = await _till(request, bind=True)
        async with appliance.printer.connector_slots:
            body = await _read_body(request, MAX_INVOICE_CHARS + FORM_OVERHEAD_BYTES)
            data = await asyncio.to_thread(_decode_form, body)
            del body
            ticket = await appliance.printer.async_accept(data, till, address, "connector")
    except ApplianceError as exc:
        return _problem(request, exc)
    return JSONResponse(ticket, headers=_cors(request))


@router.get("/display/index.php", tags=["printer"])
async def connector_display(request: Request, text: str = "") -> Response:
    """TakePOS's customer display: ``text`` is two lines of 20 characters (the item just rung up with its
    price, then the total at payment), shown as the ``sale`` scene until the receipt comes (docs/protocol.md
    §12). Answers ``200 {"lines": [line1, line2]}``; 403 till-not-allowed from an address that may not print
    (a display call never binds a till); 400 bad-request for more than 200 characters."""
    try:
        if len(text) > MAX_DISPLAY_CHARS:
            raise BadRequest(f"The display text is {len(text)} characters; a customer display takes 40.")
        _, address = await _till(request, bind=False)  # a till, or TillNotAllowed (a display never binds)
        lines = await appliance_of(request).printer.async_show_display(text, address)
    except ApplianceError as exc:
        return _problem(request, exc)
    return JSONResponse({"lines": lines}, headers=_cors(request))
