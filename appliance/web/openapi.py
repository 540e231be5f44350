"""The device's OpenAPI 3.1 schema (``GET /openapi.json`` on the POS API port): the contract of
``docs/protocol.md`` §2–§7 in machine-readable form, for POS integrators' code generators.

The endpoints read their bodies themselves (size limits, PDF checks), so FastAPI cannot infer the
request bodies and refusals: :data:`OPERATIONS` declares them per endpoint, in this one module, and
:func:`finish_schema` merges them into the schema FastAPI generates from the routes. :func:`problems` turns
error classes into ``application/problem+json`` responses (RFC 9457) with one example per problem type;
the models below give the JSON shapes; ``servers`` name the HTTPS POS API and, per operation, the plain-HTTP
port of screens and downloads; FastAPI's generic 422 goes (our validation errors are ``400 bad-request``).
``tests/service/test_openapi.py`` checks every endpoint and problem type of docs/protocol.md is in it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from eticket_core.i18n import LANGUAGES as SCREEN_LANGUAGES

from ..errors import (
    PROBLEM_TYPE_BASE,
    ApplianceError,
    BadMultipart,
    BadPairingRequest,
    BadRequest,
    EmptyBody,
    Gone,
    IdempotencyKeyReused,
    InvalidCurrency,
    InvalidReference,
    InvalidTicket,
    InvalidTotal,
    JsonTooDeep,
    MissingFile,
    NotAPdf,
    NotFound,
    PairingBusy,
    PairingLocked,
    PairingRefused,
    PasswordProtectedPdf,
    PayloadTooLarge,
    PdfTooComplex,
    PdfWithJavaScript,
    PdfWithLaunchAction,
    PdfWithoutPages,
    PdfWithoutUsablePage,
    PrintJobRefused,
    ReceiptDamaged,
    RequestTimeout,
    StorageDamaged,
    StorageUnavailable,
    TillNotAllowed,
    TooManyConnections,
    Unauthorized,
    UnreadablePdf,
    UnsupportedMediaType,
)
from .common import PROBLEM_MEDIA_TYPE

SERVERS_API = [{"url": "https://{device}:8443", "description": "The POS API: HTTPS, pin the certificate (§2)",
                "variables": {"device": {"default": "192.168.1.20", "description": "the device's address"}}}]
SERVERS_PLAIN = [{"url": "http://{device}:8080", "description": "Screens and customer downloads: plain HTTP",
                  "variables": {"device": {"default": "192.168.1.20", "description": "the device's address"}}}]

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details. Switch on the last segment of `type`; `title` and `detail` are "
                   "for people. Extension members (`limit`, `retry_after`, `max_depth`, ...) may follow.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri", "example": PROBLEM_TYPE_BASE + "not-a-pdf"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}


PROBLEM_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": 'Bearer realm="eticket" (RFC 6750)'}},
    429: {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds (RFC 9110 §10.2.3)"}},
}


def problems(*errors: type[ApplianceError]) -> dict[str, dict[str, Any]]:
    """OpenAPI responses for refusals: ``{"422": {"description", "content": {"application/problem+json":
    {"schema", "examples": {slug: {...}}}}, ["headers"]}}``, one example per error class, grouped by status."""
    by_status: dict[int, list[type[ApplianceError]]] = {}
    for error in errors:
        by_status.setdefault(error.status, []).append(error)
    responses: dict[str, dict[str, Any]] = {}
    for status, group in sorted(by_status.items()):
        examples = {error.slug: {"summary": error.title, "value": {
            "type": PROBLEM_TYPE_BASE + error.slug, "title": error.title, "status": status,
            "detail": (error.__doc__ or error.title).strip()}} for error in group}
        responses[str(status)] = {"description": ", ".join(f"`{error.slug}`" for error in group),
                                  "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"},
                                                                   "examples": examples}}}
        if status in PROBLEM_HEADERS:
            responses[str(status)]["headers"] = PROBLEM_HEADERS[status]
    return responses


# --- shapes (docs/protocol.md) ---------------------------------------------------------------------------
class TicketCreated(BaseModel):
    """§3: the answer to a ticket, sent once it is on disk."""

    id: str = Field(examples=["t-9c1d2e3f4a5b6c7d"])
    url: str = Field(description="The customer's capability URL (the QR code)",
                     examples=["http://192.168.1.20:8080/r/<token>"])
    expires_at: str = Field(description="RFC 3339, UTC", examples=["2026-12-29T10:00:00Z"])
    total: str | None = Field(examples=["12.50"])
    currency: str | None = Field(examples=["EUR"])
    ref: str | None = Field(examples=["R-2026-0042"])


class PairRequest(BaseModel):
    """§2.1: the secret ``s`` of the pairing QR and a name for this POS."""

    secret: str = Field(examples=["T2MLq4u1P0hZklzn6jlWWg"])
    name: str | None = Field(default=None, max_length=64, examples=["Till 1"])


class PairResult(BaseModel):
    """§2.1: the bearer token, shown once."""

    pos_id: str = Field(examples=["pos-1a2b3c4d5e6f"])
    token: str = Field(description="43 characters; send as `Authorization: Bearer <token>`")
    device_id: str = Field(examples=["et-3f9a0c1d2e4b5a69"])
    api: str = Field(examples=["/api/v1"])


class SpakeStart(BaseModel):
    """§2.2 step 2: ``msg_a``, 33 bytes, unpadded base64url."""

    msg: str


class SpakeStarted(BaseModel):
    """§2.2 step 2: the exchange id and ``msg_b`` (33 bytes, unpadded base64url)."""

    session: str
    msg: str


class SpakeConfirm(BaseModel):
    """§2.2 step 3: ``HMAC-SHA256(k_pos, "pos")``, 32 bytes, unpadded base64url, within 30 s."""

    confirm: str
    name: str | None = Field(default=None, max_length=64, examples=["Till 1"])


class SpakeConfirmed(BaseModel):
    """§2.2 step 4: the device's confirmation and the sealed grant ``{"token", "pos_id", "device_id"}``."""

    confirm: str
    sealed: str = Field(description="nonce(12) || AES-256-GCM(k_seal, nonce, grant, aad='eticket pairing v1')")


class PosPairing(BaseModel):
    """§2.4: this POS's pairing as the device sees it now."""

    pos_id: str = Field(examples=["pos-3a9c1e0b2d4f"])
    name: str = Field(examples=["Till 1"])
    paired_at: str = Field(examples=["2026-11-29T10:00:00Z"], description="RFC 3339")


class ScreenClaimed(BaseModel):
    """§6: a paired screen's token (with ``Accept: application/json``)."""

    screen_id: str
    token: str
    stream: str = Field(examples=["/api/v1/display/stream"])


class DisplayState(BaseModel):
    """§6: what the screens show; unknown fields are to be ignored, an unknown ``scene`` drawn as idle."""

    model_config = ConfigDict(extra="allow")
    seq: int
    scene: str = Field(examples=["ticket"], description="pairing, idle, wifi, ticket, downloaded, screen-link, sale")
    shop: str
    ticket: dict[str, Any] | None = None
    pairing: dict[str, Any] | None = None


class Health(BaseModel):
    """§7: liveness and identity; ``relay`` is the upload queue when a relay is configured."""

    model_config = ConfigDict(extra="allow")
    status: str = Field(examples=["ok"])
    version: str
    image_version: str | None = Field(None, description="The system image's release (A/B updates); null when "
                                      "the appliance does not run from a device image.")
    device_id: str
    paired: bool
    fingerprint: str
    relay: dict[str, Any] | None = None


TICKET_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "description": "The receipt PDF (§3): raw, metadata in the query, or "
                    "multipart with the PDF in the part `file` and the same fields as text parts.", "content": {
                        "application/pdf": {"schema": {"type": "string", "format": "binary"}},
                        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                            "file": {"type": "string", "format": "binary"}, "total": {"type": "string"},
                            "currency": {"type": "string"}, "ref": {"type": "string"},
                            "lang": {"type": "string", "enum": list(SCREEN_LANGUAGES)}}}}}},
    "parameters": [
        {"name": "total", "in": "query", "schema": {"type": "string",
                                                    "pattern": r"^-?(0|[1-9][0-9]{0,11})(\.[0-9]{1,4})?$"}},
        {"name": "currency", "in": "query", "schema": {"type": "string", "examples": ["EUR"]},
         "description": "ISO 4217 alphabetic code of money"},
        {"name": "ref", "in": "query", "schema": {"type": "string", "maxLength": 128}},
        {"name": "lang", "in": "query", "schema": {"type": "string", "enum": list(SCREEN_LANGUAGES)}},
        {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "minLength": 1, "maxLength": 255},
         "description": "draft-ietf-httpapi-idempotency-key-header; one per sale, reused on every retry"},
    ],
}
PDF_RESPONSE: dict[str, Any] = {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


PAIRING_PROBLEMS = (BadPairingRequest, JsonTooDeep, PairingRefused, RequestTimeout, PayloadTooLarge, PairingLocked,
                    PairingBusy)
"""docs/protocol.md §2: "Errors of §2" (and a body that never arrives)."""
TICKET_PROBLEMS = (EmptyBody, MissingFile, BadMultipart, BadRequest, Unauthorized, RequestTimeout, PayloadTooLarge,
                   UnsupportedMediaType, IdempotencyKeyReused, InvalidTicket, InvalidTotal, InvalidCurrency,
                   InvalidReference, NotAPdf, UnreadablePdf, PasswordProtectedPdf, PdfWithoutPages,
                   PdfWithoutUsablePage, PdfTooComplex, PdfWithJavaScript, PdfWithLaunchAction)
"""docs/protocol.md §3 and §4: every refusal of a ticket."""
POS_SECURITY: list[dict[str, list[str]]] = [{"posBearer": []}]
SCREEN_SECURITY: list[dict[str, list[str]]] = [{"screenBearer": []}, {"screenKey": []}]
SECURITY_SCHEMES = {
    "posBearer": {"type": "http", "scheme": "bearer", "description": "The POS token from pairing (§2)"},
    "screenBearer": {"type": "http", "scheme": "bearer", "description": "A screen token (§6)"},
    "screenKey": {"type": "apiKey", "in": "query", "name": "key", "description": "A screen token (§6), for "
                  "EventSource, which cannot set headers"},
}
PLAIN = {"servers": SERVERS_PLAIN}
SSE = {"content": {"text/event-stream": {"schema": {"type": "string"}}}}

OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/api/v1/tickets"): {
        "tags": ["pos"], "security": POS_SECURITY, **TICKET_BODY,
        "responses": {"201": {"description": "Stored; on disk before this answer. `Idempotent-Replayed: true` "
                              "when this is the first answer again (same key, same receipt).",
                              "content": _json(TicketCreated),
                              "headers": {"Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}}}},
                      **problems(*TICKET_PROBLEMS)}},
    ("post", "/api/v1/pair"): {
        "tags": ["pairing"], "requestBody": {"required": True, "content": _json(PairRequest)},
        "responses": {"201": {"description": "Paired; the token is shown once", "content": _json(PairResult)},
                      **problems(*PAIRING_PROBLEMS)}},
    ("post", "/api/v1/pair/spake2"): {
        "tags": ["pairing"], "requestBody": {"required": True, "content": _json(SpakeStart)},
        "responses": {"200": {"description": "Exchange open for 30 s", "content": _json(SpakeStarted)},
                      **problems(*PAIRING_PROBLEMS)}},
    ("post", "/api/v1/pair/spake2/{session}/confirm"): {
        "tags": ["pairing"], "requestBody": {"required": True, "content": _json(SpakeConfirm)},
        "responses": {"201": {"description": "Paired; open the sealed grant", "content": _json(SpakeConfirmed)},
                      **problems(*PAIRING_PROBLEMS)}},
    ("get", "/api/v1/pairing"): {
        "tags": ["pos"], "security": POS_SECURITY,
        "responses": {"200": {"description": "Still paired", "content": _json(PosPairing)},
                      **problems(Unauthorized)}},
    ("delete", "/api/v1/display"): {
        "tags": ["pos"], "security": POS_SECURITY,
        "responses": {"204": {"description": "The screen is back to idle"}, **problems(Unauthorized)}},
    ("get", "/api/v1/display"): {
        "tags": ["screens"], "security": SCREEN_SECURITY, **PLAIN,
        "responses": {"200": {"description": "The state now", "content": _json(DisplayState)},
                      **problems(Unauthorized)}},
    ("get", "/api/v1/display/stream"): {
        "tags": ["screens"], "security": SCREEN_SECURITY, **PLAIN,
        "responses": {"200": {"description": "Server-Sent Events: `event: state`, `id: <seq>`, `data: <state "
                              "JSON>` at once and on every change; a comment line after 10 s without an event; "
                              "`X-Accel-Buffering: no`", **SSE},
                      **problems(Unauthorized)}},
    ("get", "/screen/claim/{secret}"): {
        "tags": ["screens"], **PLAIN, "responses": {
            "200": _html("A page with one button; spends nothing"),
            "404": _html("Unknown link (or made before the device restarted): what to do, no button"),
            "410": _html("Used, expired or replaced link: why, and what to do; no button")}},
    ("post", "/screen/claim/{secret}"): {
        "tags": ["screens"], **PLAIN,
        "responses": {"201": {"description": "Paired; JSON with `Accept: application/json`, else a page",
                              "content": {**_json(ScreenClaimed), "text/html": {"schema": {"type": "string"}}}},
                      **problems(PairingRefused)}},
    ("get", "/screen"): {
        "tags": ["screens"], **PLAIN,
        "responses": {"200": _html("The web screen (follows the stream with /screen.js)"),
                      "401": _html("Not paired: `key` missing or not a screen token")}},
    ("get", "/screen/view"): {
        "tags": ["screens"], **PLAIN,
        "responses": {"200": _html("The current scene as an HTML fragment, for /screen.js"),
                      "401": _html("The \"not paired\" fragment: `key` missing or not a screen token")}},
    ("get", "/screen.js"): {
        "tags": ["screens"], **PLAIN,
        "responses": {"200": {"description": "ES5", "content": {"application/javascript": {"schema": {
            "type": "string"}}}}}},
    ("post", "/printer/index.php"): {
        "tags": ["printer"], "servers": SERVERS_API + SERVERS_PLAIN,
        "description": "The TakePOS connector (§12.2): a print job from an allowed till's address (§12.3). CORS: "
                       "`Access-Control-Allow-Origin: *` on every answer; preflights answered, with "
                       "`Access-Control-Allow-Private-Network: true` when asked.",
        "parameters": [{"name": "printer", "in": "query", "required": False, "schema": {"type": "integer"},
                        "description": "TakePOS's printer number; accepted and ignored"}],
        "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "required": ["invoice"], "properties": {"invoice": {
                "type": "string", "description": "The ESC/POS bytes in base64url, or base64 (`+` may arrive as "
                "a space)"}}}}}},
        "responses": {"200": {"description": "Stored and on screen, as §3's answer", "content": _json(TicketCreated)},
                      **problems(BadRequest, TillNotAllowed, PayloadTooLarge, UnsupportedMediaType, PrintJobRefused,
                                 StorageUnavailable)}},
    ("get", "/display/index.php"): {
        "tags": ["printer"], "servers": SERVERS_API + SERVERS_PLAIN,
        "description": "TakePOS's customer display (§12.2): two lines of 20 characters shown as the `sale` scene.",
        "parameters": [{"name": "text", "in": "query", "required": False, "schema": {"type": "string",
                        "maxLength": 200}, "description": "40 characters: two lines of 20, each padded"}],
        "responses": {"200": {"description": "Shown", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"lines": {"type": "array", "items": {"type": "string"}}}}}}},
                      **problems(BadRequest, TillNotAllowed)}},
    ("get", "/"): {"tags": ["customers"], **PLAIN, "responses": {"200": _html("What this device is")}},
    ("get", "/logo"): {
        "tags": ["screens"], **PLAIN,
        "responses": {"200": {"description": "The shop's logo", "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}, **problems(NotFound)}},
    **{(method, "/r/{token}"): {
        "tags": ["customers"], **PLAIN,
        "responses": {"200": {"description": "The receipt exactly as the POS sent it, "
                              "`Content-Disposition: inline`", **PDF_RESPONSE},
                      **problems(NotFound, Gone, ReceiptDamaged)},
        "description": "The capability URL of the QR code: the token is the permission. `404`/`410` are small "
                       "HTML pages for browsers (`Accept: text/html`), problem details otherwise."}
       for method in ("get", "head")},
    **{(method, "/healthz"): {
        "tags": ["health"], "servers": SERVERS_API + SERVERS_PLAIN,
        "responses": {"200": {"description": "Alive", "content": _json(Health)}}} for method in ("get", "head")},
}
"""What FastAPI cannot see, per ``(method, path)``; each key replaces the generated operation's."""

MODELS = (TicketCreated, PairRequest, PairResult, SpakeStart, SpakeStarted, SpakeConfirm, SpakeConfirmed,
          PosPairing, ScreenClaimed, DisplayState, Health)


def finish_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Merge :data:`OPERATIONS` into FastAPI's generated ``schema`` (in place; returned), add the components
    and servers, drop the generic 422 and make operation ids unique.

    Raises:
        KeyError: an entry of OPERATIONS names an operation the routes do not have (the table went stale).
    """
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas["Problem"] = PROBLEM_SCHEMA
    for model in MODELS:
        schemas[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components["securitySchemes"] = SECURITY_SCHEMES
    schema["servers"] = SERVERS_API
    paths = schema.setdefault("paths", {})
    seen: set[str] = set()
    for item in paths.values():
        for method, operation in item.items():
            operation.get("responses", {}).pop("422", None)
            if operation.get("operationId") in seen:
                operation["operationId"] = f"{operation['operationId']}_{method}"
            seen.add(operation.get("operationId", ""))
    for (method, path), extra in OPERATIONS.items():
        paths[path][method].update(extra)  # FastAPI's guessed responses are replaced by the declared ones
    for item in paths.values():  # any operation may meet the connection caps (§11) or failing storage (§7)
        for operation in item.values():
            operation.setdefault("responses", {}).update(
                problems(StorageUnavailable, StorageDamaged, TooManyConnections))
    return schema
