"""The FastAPI application of the appliance: its routes, with problem details, security headers, access log."""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import Any, cast

from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException

from eticket_core.negotiation import prefers

from .. import __version__
from ..service import Appliance
from . import api, connector, download, screen_claim, screen_page
from .common import PROBLEM_MEDIA_TYPE, SecurityHeaders, add_problem_handlers
from .logs import AccessLog
from .openapi import finish_schema


def create_app(appliance: Appliance, *, pos_api: bool = True, public: bool = True) -> FastAPI:
    """Build an ASGI app around ``appliance`` (started and stopped by the caller).

    ``pos_api``: the POS and screen API (served over HTTPS); ``public``: the customer's pages and downloads
    (plain HTTP on the LAN: phones refuse self-signed certificates). ``/healthz`` is on both.
    """
    app = FastAPI(title="eTicket appliance", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json" if pos_api else None)
    app.openapi = device_schema  # type: ignore[method-assign]
    app.state.appliance = appliance
    app.include_router(connector.router)  # TakePOS posts to whichever address its settings name
    if pos_api:
        app.include_router(api.router)
    if public:
        app.include_router(api.screen_router)
        app.include_router(screen_claim.router)
        app.include_router(screen_page.router)
        app.include_router(download.router)

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> dict[str, Any]:
        """:meth:`Appliance.health`: ``{"status": "ok"|"degraded", "version", "device_id", "paired", "fingerprint",
        "relay", "storage"}``; always 200 while the process serves; no authentication."""
        return appliance.health()

    add_problem_handlers(app)
    if public:
        _html_not_found(app)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AccessLog)
    return app


def _html_not_found(app: FastAPI) -> None:
    """A browser asking for a path no route serves gets :func:`download.not_found_page` (in its language);
    API clients keep the problem details of :func:`add_problem_handlers`."""
    problem = app.exception_handlers[StarletteHTTPException]

    async def on_http_error(request: Request, exc: Exception) -> Response:
        if (isinstance(exc, StarletteHTTPException) and exc.status_code == 404
                and prefers(request, "text/html", over=PROBLEM_MEDIA_TYPE)):
            return download.not_found_page(request)
        answer = problem(request, exc)
        return await answer if inspect.isawaitable(answer) else answer

    app.add_exception_handler(StarletteHTTPException, on_http_error)


@functools.cache
def device_schema() -> dict[str, Any]:
    """The OpenAPI 3.1 schema of the whole device — both ports, as with ``--no-tls`` — served on the POS API
    port as ``/openapi.json`` (docs/protocol.md §10; the declarations are in :mod:`appliance.web.openapi`).
    No interactive docs page: Swagger UI would load scripts from a CDN, which the device never does."""
    full = create_app(cast(Appliance, None))  # routes only; nothing is served from it
    with warnings.catch_warnings():  # GET+HEAD routes share an operation id until finish_schema tells them apart
        warnings.simplefilter("ignore", UserWarning)
        schema = get_openapi(title="eTicket device", version=__version__, routes=full.routes,
                             description="The contract of docs/protocol.md (POS API, screens, customer "
                                         "downloads, health). Refusals are RFC 9457 problem details.")
    return finish_schema(schema)
