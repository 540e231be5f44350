"""The FastAPI application of the appliance: its routes, with problem details, security headers, access log."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from .. import __version__
from ..service import Appliance
from . import api, download, screen_claim, screen_page
from .common import SecurityHeaders, add_problem_handlers
from .logs import AccessLog


def create_app(appliance: Appliance, *, pos_api: bool = True, public: bool = True) -> FastAPI:
    """Build an ASGI app around ``appliance`` (started and stopped by the caller).

    ``pos_api``: the POS and screen API (served over HTTPS); ``public``: the customer's pages and downloads
    (plain HTTP on the LAN: phones refuse self-signed certificates). ``/healthz`` is on both.
    """
    app = FastAPI(title="eTicket appliance", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json" if pos_api else None)
    app.state.appliance = appliance
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
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AccessLog)
    return app
