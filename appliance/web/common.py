"""Pieces every eTicket web app shares (the appliance and the relay): RFC 9457 problem details and
security headers."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import PROBLEM_TYPE_BASE, ApplianceError
from .logs import redact_path

PROBLEM_MEDIA_TYPE = "application/problem+json"

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


def add_problem_handlers(app: FastAPI) -> None:
    """Render :class:`ApplianceError`, HTTP errors and validation errors as RFC 9457 problem details
    (``application/problem+json``); 401 adds ``WWW-Authenticate``, a ``retry_after`` extension ``Retry-After``."""

    @app.exception_handler(ApplianceError)
    async def on_appliance_error(request: Request, exc: ApplianceError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Bearer realm="eticket"'} if exc.status == 401 else None
        if "retry_after" in exc.extensions:
            headers = {"Retry-After": str(exc.extensions["retry_after"])}
        return _problem(request, exc.status, exc.problem(instance=None), headers)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        body = {"type": PROBLEM_TYPE_BASE + slug, "title": str(exc.detail), "status": exc.status_code,
                "detail": f"{request.method} {redact_path(request.url.path)} is {exc.detail}."}
        return _problem(request, exc.status_code, body)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        faults = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        body = {"type": PROBLEM_TYPE_BASE + "bad-request", "title": "Bad request", "status": 400, "detail": faults}
        return _problem(request, 400, body)
