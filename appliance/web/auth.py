"""Bearer-token checks (RFC 6750) for POS and screen clients."""

from __future__ import annotations

import hmac

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ..errors import Unauthorized
from ..service import Appliance
from ..store import Pos


def appliance_of(request: Request) -> Appliance:
    """The :class:`Appliance` behind this app."""
    app: Appliance = request.app.state.appliance
    return app


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("This endpoint needs 'Authorization: Bearer <token>'; pair the POS first (eticket pair).")
    return token.strip()


async def require_pos(request: Request) -> Pos:
    """FastAPI dependency: the paired POS presenting the bearer token.

    Raises:
        Unauthorized: no token, or a token no paired POS holds.
    """
    token = _bearer(request)
    pos = await run_in_threadpool(appliance_of(request).store.pos_for_token, token)
    if pos is None:
        raise Unauthorized("Unknown or revoked token; pair the POS again (eticket pair).")
    return pos


async def require_screen(request: Request) -> None:
    """FastAPI dependency: a screen client — the local kiosk (token in kiosk.json, owner-only) or a screen
    paired with ``eticket screens add`` (token stored hashed).

    Raises:
        Unauthorized: no screen token.
    """
    token = _bearer(request)
    app = appliance_of(request)
    if hmac.compare_digest(token.encode(), app.screen_token.encode()):
        return
    if await run_in_threadpool(app.store.screen_for_token, token) is None:
        raise Unauthorized("Screen clients need a screen token: the local kiosk's (kiosk.json) or one from "
                           "'eticket screens add'.")
