"""Pieces every eTicket web app shares (the appliance and the relay): RFC 9457 problem details (with
``Allow`` on 405), security headers, and JSON request bodies with a nesting limit."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import PROBLEM_TYPE_BASE, ApplianceError, JsonTooDeep
from .logs import redact_path

PROBLEM_MEDIA_TYPE = "application/problem+json"
MAX_JSON_DEPTH = 32
"""Nesting of arrays and objects a JSON body may have (ours need 2); deeper is refused before parsing, so
no parser recursion (Python's json stops near 1000 levels with RecursionError) is ever reached."""

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in ``data`` (``b'{"a": [1]}'`` → 2), brackets inside
    strings not counted; linear time, no recursion. Meant for well-formed JSON; garbage gets some number."""
    depth = deepest = 0
    for byte in _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS):
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def loads_json(data: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads(data)`` for a request body, refusing nesting over ``max_depth`` first.

    Raises:
        JsonTooDeep: nested deeper than ``max_depth`` (400 json-too-deep, extension member ``max_depth``).
        ValueError: not JSON (json.JSONDecodeError, UnicodeDecodeError); the caller names the expected shape.
    """
    depth = json_depth(data)
    if depth > max_depth:
        raise JsonTooDeep(f"The JSON body nests {depth} levels of arrays and objects; at most {max_depth} are "
                          "accepted.", max_depth=max_depth)
    return json.loads(data)

SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),  # a route may allow caching of public assets (the logo)
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy",
     b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; "
     b"base-uri 'none'; form-action 'none'"),
    (b"x-frame-options", b"DENY"),
]
"""Sent on every response: nothing is cached (receipts are personal), no referrer leaks a capability URL,
no script or third-party resource can load (OWASP Secure Headers)."""


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` where the route did not set that header itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                # A route may set a policy of its own (the screen-claim form); every other response gets ours.
                message["headers"] = headers + [(k, v) for k, v in SECURITY_HEADERS if k not in present]
            await send(message)

        await self.app(scope, receive, send_wrapper)


def _problem(
    request: Request, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


PROBED_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
"""The RFC 9110 §9 methods (CONNECT and TRACE aside) an ``Allow`` header may name."""


def allowed_methods(request: Request) -> list[str]:
    """The methods some route of the app accepts on the request's path, sorted (``["GET", "HEAD"]``): the
    ``Allow`` header of a 405 (RFC 9110 §15.5.6: the origin server "MUST generate an Allow header field").
    Starlette's own 405 names only the first matching route's methods, and a path may have several routes
    (``GET`` for screens and ``DELETE`` for the POS on ``/api/v1/display``); each method is asked of every
    route through the public ``BaseRoute.matches``, whatever the routers nest."""
    allowed = []
    for method in PROBED_METHODS:
        probe = {**request.scope, "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


def add_problem_handlers(app: FastAPI) -> None:
    """Render :class:`ApplianceError`, HTTP errors and validation errors as RFC 9457 problem details
    (``application/problem+json``); 401 adds ``WWW-Authenticate``, a ``retry_after`` extension ``Retry-After``,
    405 ``Allow`` (:func:`allowed_methods`); 408 and 413, refused with the body not read to its end, add
    ``Connection: close`` (RFC 9110 §15.5.9/§15.5.14: the server closes, so a client must not reuse the
    connection for its next request — it would meet a closed socket)."""

    @app.exception_handler(ApplianceError)
    async def on_appliance_error(request: Request, exc: ApplianceError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Bearer realm="eticket"'} if exc.status == 401 else None
        if "retry_after" in exc.extensions:
            headers = {"Retry-After": str(exc.extensions["retry_after"])}
        if exc.status in (408, 413):
            headers = {**(headers or {}), "Connection": "close"}
        return _problem(request, exc.status, exc.problem(instance=None), headers)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        headers = dict(exc.headers or {})
        detail = f"{request.method} {redact_path(request.url.path)} is {exc.detail}."
        if exc.status_code == 405:
            allow = ", ".join(allowed_methods(request)) or headers.get("Allow", "")
            headers["Allow"] = allow
            detail = f"{request.method} is not allowed on {redact_path(request.url.path)}; use {allow}."
        body = {"type": PROBLEM_TYPE_BASE + slug, "title": str(exc.detail), "status": exc.status_code,
                "detail": detail}
        return _problem(request, exc.status_code, body, headers or None)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        faults = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        body = {"type": PROBLEM_TYPE_BASE + "bad-request", "title": "Bad request", "status": 400, "detail": faults}
        return _problem(request, 400, body)
