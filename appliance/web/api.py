"""POS and screen API under ``/api/v1`` (docs/protocol.md is the contract)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from python_multipart.multipart import parse_options_header
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from eticket_core.i18n import LANGUAGES as SCREEN_LANGUAGES

from ..display import Display
from ..errors import (
    BadMultipart,
    BadPairingRequest,
    BadRequest,
    EmptyBody,
    InvalidTicket,
    MissingFile,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from ..intake import parse_meta, printable_text
from ..pairing import b64d, b64e
from ..service import rfc3339
from ..store import Pos
from .auth import appliance_of, require_pos, require_screen
from .common import loads_json

router = APIRouter(prefix="/api/v1")
"""The POS API (HTTPS)."""
screen_router = APIRouter(prefix="/api/v1")
"""The screen API (plain HTTP beside the downloads: the local kiosk and tablets use it; screen token required)."""

MULTIPART_OVERHEAD_BYTES = 64 * 1024
"""Allowance for multipart boundaries and form fields on top of ``max_body_bytes``."""
STREAM_KEEPALIVE_SECONDS = 10.0
"""A heartbeat comment on the display stream after this much silence: keeps idle paths open, and gives a
dead peer unacknowledged data, so TCP_USER_TIMEOUT drops it (appliance/admission.py)."""
STREAM_HEADERS = {"Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"}
"""On the display stream: no cache may keep or replay it (it carries capability URLs), and a reverse proxy
must pass each event on at once. ``X-Accel-Buffering: no`` turns nginx's response buffering off for this
response (nginx docs, ngx_http_proxy_module ``proxy_buffering``): behind a default nginx the stream was held
in its buffers and a web screen received nothing. docs/protocol.md §6 gives the proxy settings."""
BODY_TIMEOUT_SECONDS = 60.0
"""A body must arrive within this time (10 MiB over a slow shop Wi-Fi takes seconds): stalled uploads
(slowloris) are dropped instead of holding a connection forever."""
MAX_IDEMPOTENCY_KEY_CHARS = 255


async def _read_body(request: Request, limit: int) -> bytes:
    """Read the body, refusing it once it exceeds ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before a byte is read; a chunked body is cut
    off as soon as it passes the limit.

    Raises:
        PayloadTooLarge: over ``limit``.
        RequestTimeout: the body took longer than BODY_TIMEOUT_SECONDS.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The body is {int(declared)} bytes; this device accepts at most {limit} bytes.",
                              limit=limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"The body exceeds this device's limit of {limit} bytes.", limit=limit)
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"The body did not arrive within {BODY_TIMEOUT_SECONDS:.0f} s.") from None
    return b"".join(chunks)


async def _multipart(request: Request, body: bytes, limit: int) -> tuple[bytes, dict[str, str]]:
    """Parse an already size-checked multipart body: the ``file`` part and the text fields."""

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    parsed = Request(request.scope, replay)
    try:
        form = await parsed.form(max_files=1, max_fields=16)
    except StarletteHTTPException as exc:  # starlette's parser: no boundary, too many parts, field too large
        raise BadMultipart(f"The multipart body is malformed: {exc.detail}.") from exc
    try:
        _require_close_delimiter(request, body)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise MissingFile("A multipart ticket needs the receipt PDF in a part named 'file'.")
        pdf = await upload.read()
        if len(pdf) > limit:
            raise PayloadTooLarge(f"The PDF exceeds this device's limit of {limit} bytes.", limit=limit)
        _refuse_repeated_fields(form.multi_items())
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
    finally:
        await form.close()
    return pdf, fields


TICKET_FIELDS = ("total", "currency", "ref", "lang")
"""The metadata fields of a ticket (query parameters or multipart text fields, docs/protocol.md §3)."""


def _refuse_repeated_fields(items: Iterable[tuple[str, Any]]) -> None:
    """Refuse a ticket naming a field of TICKET_FIELDS twice (``?currency=EUR&currency=USD``): which one the
    POS meant is unknowable, so neither is guessed.

    Raises:
        InvalidTicket: 422 invalid-ticket; the message names the repeated field.
    """
    seen: set[str] = set()
    for name, _ in items:
        if name in TICKET_FIELDS and name in seen:
            raise InvalidTicket(f"The field {name!r} is sent more than once, so the ticket is ambiguous; send "
                                "each of total, currency, ref and lang at most once.")
        seen.add(name)


def _require_close_delimiter(request: Request, body: bytes) -> None:
    """Refuse a multipart body without its close delimiter ``--BOUNDARY--`` at the start of a line (RFC 2046
    §5.1.1): a truncated upload or a wrong boundary. python-multipart's ``finalize`` does not check this
    (its docstring says so), so such a body used to look like one without a ``file`` part.

    Raises:
        BadMultipart: the close delimiter is missing; the message names it.
    """
    _, options = parse_options_header(request.headers.get("content-type", ""))
    close = b"--" + options.get(b"boundary", b"") + b"--"
    if not (body.startswith(close) or b"\n" + close in body):
        raise BadMultipart(f"The multipart body is malformed: it does not end with the closing boundary "
                           f"{close.decode('latin-1')!r} (RFC 2046 §5.1.1); was the upload cut short?")


@router.post("/tickets", status_code=201)
async def post_ticket(request: Request, pos: Annotated[Pos, Depends(require_pos)]) -> Response:
    """Accept a receipt.

    Body: the PDF (``Content-Type: application/pdf``, metadata as query parameters ``total``, ``currency``,
    ``ref``, ``lang`` — the screen language for this customer: fr, it, en, de, es) or
    ``multipart/form-data`` (part ``file`` + the same fields).
    Header ``Idempotency-Key`` (draft-ietf-httpapi-idempotency-key-header): a retry with the same key and
    the same receipt gets the first answer again, with ``Idempotent-Replayed: true``.

    201: ``{"id", "url", "expires_at", "total", "currency", "ref"}``, sent only after the ticket is on disk.
    Errors (problem details, RFC 9457): 400 empty-body / missing-file / bad-multipart, 401, 413 too-large,
    415 unsupported-media-type, 422 not-a-pdf / pdf-unreadable / pdf-password-protected / pdf-no-pages /
    pdf-no-usable-page / pdf-javascript / invalid-total / invalid-currency / invalid-reference /
    invalid-ticket (``lang`` not one of the five, or a field sent twice) / idempotency-key-reused. Nothing is
    stored on error.
    """
    app = appliance_of(request)
    limit = app.settings.max_body_bytes
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/pdf":
        pdf = await _read_body(request, limit)
        _refuse_repeated_fields(request.query_params.multi_items())
        fields = dict(request.query_params)
    elif content_type == "multipart/form-data":
        raw = await _read_body(request, limit + MULTIPART_OVERHEAD_BYTES)
        pdf, fields = await _multipart(request, raw, limit)
    else:
        raise UnsupportedMediaType(
            f"Content-Type {content_type or '(none)'!r} is not accepted; send application/pdf or multipart/form-data."
        )
    if not pdf:
        raise EmptyBody("The request carried no PDF bytes.")
    meta = parse_meta(fields.get("total"), fields.get("currency"), fields.get("ref"))
    lang = fields.get("lang") or None
    if lang is not None and lang not in SCREEN_LANGUAGES:
        raise InvalidTicket(f"lang {lang[:20]!r} is not one of {', '.join(SCREEN_LANGUAGES)}.")
    key = request.headers.get("idempotency-key")
    if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY_CHARS:
        raise BadRequest("Idempotency-Key must be 1 to 255 characters.")
    body, created = await app.async_accept_ticket(pos, pdf, meta, key, lang)
    headers = {} if created else {"Idempotent-Replayed": "true"}
    return JSONResponse(body, status_code=201, headers=headers)


async def _json_object(request: Request) -> dict[str, Any]:
    """The request's JSON object (at most 4096 bytes). Raises BadPairingRequest, JsonTooDeep, PayloadTooLarge."""
    try:
        data = loads_json(await _read_body(request, 4096) or b"null")
    except ValueError as exc:
        raise BadPairingRequest("The body must be a JSON object (docs/protocol.md §2).") from exc
    if not isinstance(data, dict):
        raise BadPairingRequest("The body must be a JSON object (docs/protocol.md §2).")
    return data


def _pos_name(data: dict[str, Any]) -> str:
    name = data.get("name") or "POS"
    if not isinstance(name, str) or len(name) > 64 or not printable_text(name):
        raise BadPairingRequest("'name' must be a string of at most 64 printable characters.")
    return name


def _b64_field(data: dict[str, Any], key: str, size: int) -> bytes:
    value = data.get(key)
    try:
        raw = b64d(value) if isinstance(value, str) and len(value) < 128 else b""
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise BadPairingRequest(f"'{key}' must be {size} bytes in unpadded base64url.")
    return raw


@router.post("/pair", status_code=201)
async def post_pair(request: Request) -> JSONResponse:
    """Pair with the secret read from the pairing QR (the client pinned the certificate from the same QR).

    Body: ``{"secret": "<s from the QR>", "name": "Till 1"}`` (``name`` optional, at most 64 printable
    characters). 201: ``{"pos_id", "token", "device_id", "api": "/api/v1"}``; the token is shown once.
    Errors: 400 bad-pairing-request / json-too-deep, 403 pairing-refused (wrong/expired/used secret, window closed),
    413 too-large (body over 4096 bytes), 429 pairing-locked (``Retry-After``).
    """
    data = await _json_object(request)
    if not isinstance(data.get("secret"), str):
        raise BadPairingRequest("The body must carry the string 'secret' from the pairing QR.")
    app = appliance_of(request)
    pos, token = await app.pairing.async_pair_with_secret(data["secret"], _pos_name(data))
    return JSONResponse({"pos_id": pos.id, "token": token, "device_id": app.device_id, "api": "/api/v1"},
                        status_code=201)


@router.post("/pair/spake2")
async def post_spake_start(request: Request) -> JSONResponse:
    """Typed-code pairing, step 1 (SPAKE2, appliance.pairing._spake). Body ``{"msg": b64url(33 bytes)}``.

    200: ``{"session": id, "msg": b64url(33 bytes)}``. Errors: 400, 403 pairing-refused (closed),
    429 pairing-locked, 429 pairing-busy (every exchange slot taken moments ago; ``Retry-After``).
    """
    data = await _json_object(request)
    session, msg_b = await appliance_of(request).pairing.async_spake_start(_b64_field(data, "msg", 33))
    return JSONResponse({"session": session, "msg": b64e(msg_b)})


@router.post("/pair/spake2/{session}/confirm", status_code=201)
async def post_spake_confirm(session: str, request: Request) -> JSONResponse:
    """Typed-code pairing, step 2. Body ``{"confirm": b64url(32 bytes), "name": "Till 1"}``.

    201: ``{"confirm": b64url(32 bytes), "sealed": b64url(nonce + AES-GCM(grant))}``; the grant is
    ``{"token", "pos_id", "device_id"}``. Errors: 400, 403 pairing-refused (wrong code, relayed channel,
    unknown session — each a wrong attempt), 429 pairing-locked.
    """
    data = await _json_object(request)
    confirm = _b64_field(data, "confirm", 32)
    mine, sealed, _ = await appliance_of(request).pairing.async_spake_confirm(session, confirm, _pos_name(data))
    return JSONResponse({"confirm": b64e(mine), "sealed": b64e(sealed)}, status_code=201)


@router.delete("/display", status_code=204)
async def delete_display(request: Request, pos: Annotated[Pos, Depends(require_pos)]) -> Response:
    """Take the receipt off the screen now (the customer left). 204; 401 without a POS token."""
    await appliance_of(request).display.async_clear()
    return Response(status_code=204)


@router.get("/pairing")
async def get_pairing(pos: Annotated[Pos, Depends(require_pos)]) -> dict[str, Any]:
    """This POS's own pairing (docs/protocol.md §2.4): ``{"pos_id", "name", "paired_at"}`` (RFC 3339), so a
    till can check that its token still works without side effects. 401 once revoked or never paired."""
    return {"pos_id": pos.id, "name": pos.name, "paired_at": rfc3339(pos.paired_at)}


@screen_router.get("/display", dependencies=[Depends(require_screen)])
async def get_display(request: Request) -> dict[str, Any]:
    """The screen state now (shape in :mod:`appliance.display`). Screen token required (401)."""
    return appliance_of(request).display.snapshot()


async def _next_state(display: Display, seq: int, revoked: asyncio.Event) -> dict[str, Any] | None:
    """The next state after ``seq``; None after STREAM_KEEPALIVE_SECONDS, on shutdown or once ``revoked``."""
    change = asyncio.ensure_future(display.async_wait_change(seq, STREAM_KEEPALIVE_SECONDS))
    ended = asyncio.ensure_future(revoked.wait())
    try:
        await asyncio.wait({change, ended}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        change.cancel()
        ended.cancel()
    if revoked.is_set() or not change.done() or change.cancelled():
        return None
    return change.result()


@screen_router.get("/display/stream")
async def stream_display(request: Request, screen_id: Annotated[str, Depends(require_screen)]) -> StreamingResponse:
    """Server-Sent Events (WHATWG HTML §9.2): one ``event: state`` with the JSON state at once, then one
    per change; ``id`` is ``seq``. A comment line after 10 s without an event keeps idle connections alive
    and lets a dead screen's connection be detected. Screen token required (401): the state carries
    capability URLs. Revoking the screen (``eticket screens revoke``) ends its streams at once, before any
    later state is sent."""
    app = appliance_of(request)
    display = app.display

    async def events() -> AsyncIterator[str]:
        with app.screens.revocation(screen_id) as revoked:
            state: dict[str, Any] | None = display.snapshot()
            seq = -1
            while not revoked.is_set():
                if state is not None:
                    seq = int(state["seq"])
                    yield f"id: {seq}\nevent: state\ndata: {json.dumps(state)}\n\n"
                else:
                    yield ": keepalive\n\n"
                if await request.is_disconnected():
                    return
                # Cancelled when the screen disconnects: the cancellation propagates (never swallowed).
                state = await _next_state(display, seq, revoked)
                if display.closed:
                    return

    return StreamingResponse(events(), media_type="text/event-stream", headers=STREAM_HEADERS)
