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
    _trust_client(request)
    return pos


LOCAL_KIOSK = "kiosk"
"""The screen id of the local kiosk (paired screens have ``scr-…`` ids)."""


async def screen_id_for_token(app: Appliance, token: str) -> str | None:
    """:data:`LOCAL_KIOSK` for the local kiosk's token, a paired screen's id for its token (stored hashed),
    else None."""
    if hmac.compare_digest(token.encode(), app.screen_token.encode()):
        return LOCAL_KIOSK
    screen = await run_in_threadpool(app.store.screen_for_token, token)
    return None if screen is None else screen.id


async def screen_token_valid(app: Appliance, token: str) -> bool:
    """True for the local kiosk's token or a paired screen's (stored hashed)."""
    return await screen_id_for_token(app, token) is not None


async def require_screen(request: Request) -> str:
    """FastAPI dependency: a screen client — the local kiosk (token in kiosk.json, owner-only) or a screen
    paired with ``eticket screens add`` (token stored hashed). The token comes as a bearer header, or as
    ``?key=`` for browsers (EventSource cannot set headers; query strings are never logged).

    Returns the screen's id (:func:`screen_id_for_token`).

    Raises:
        Unauthorized: no valid screen token.
    """
    key = request.query_params.get("key")
    token = key if key else _bearer(request)
    screen_id = await screen_id_for_token(appliance_of(request), token)
    if screen_id is None:
        raise Unauthorized("Screen clients need a screen token: the local kiosk's (kiosk.json) or one from "
                           "'eticket screens add'.")
    _trust_client(request)
    return screen_id


def _trust_client(request: Request) -> None:
    """The client proved it is a paired till or screen: its address keeps a connection reserve."""
    if request.client is not None:
        appliance_of(request).admission.trust(request.client.host)
