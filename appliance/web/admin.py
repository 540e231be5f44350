"""The device-local admin API, on a Unix socket only the appliance's user can open (``<data_dir>/admin.sock``,
mode 0600). Reaching it proves local, privileged presence; ``eticket pairings …`` uses it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from ..errors import ApplianceError, BadRequest, NotFound
from ..pairing import OPEN_WINDOW_SECONDS
from ..service import Appliance, rfc3339
from ..store import Pos, Till

router = APIRouter()
SCREEN_NAME_MAX_CHARS = 64
"""Longest screen name (characters), as for a POS name (appliance.web.api)."""


def _app(request: Request) -> Appliance:
    appliance: Appliance = request.app.state.appliance
    return appliance


def _rows(rows: list[Pos]) -> list[dict[str, Any]]:
    return [{"id": p.id, "name": p.name, "paired_at": rfc3339(p.paired_at)} for p in rows]


@router.get("/pairings")
async def list_pairings(request: Request) -> list[dict[str, Any]]:
    """Every paired POS: ``[{"id", "name", "paired_at"}]`` (RFC 3339)."""
    from starlette.concurrency import run_in_threadpool

    return _rows(await run_in_threadpool(_app(request).store.list_pos))


@router.delete("/pairings/{pos_id}", status_code=204)
async def revoke_pairing(pos_id: str, request: Request) -> Response:
    """Revoke a POS at once (its token gets 401 from now on). 404 if unknown."""
    if not await _app(request).async_revoke_pos(pos_id):
        raise NotFound(f"No paired POS {pos_id!r}; see 'eticket pairings list'.")
    return Response(status_code=204)


@router.post("/pairings/open")
async def open_pairing(request: Request) -> dict[str, Any]:
    """Open the pairing window for OPEN_WINDOW_SECONDS (or until the first pairing on an unpaired device):
    the screen shows a fresh QR and code. ``{"closes_at": RFC 3339 or null}``."""
    app = _app(request)
    window = await app.pairing.async_open(None if not app.paired else OPEN_WINDOW_SECONDS)
    return {"closes_at": None if window.closes_at is None else rfc3339(window.closes_at)}


@router.post("/screens")
async def add_screen(request: Request) -> dict[str, Any]:
    """Show a one-time link (QR) on the device screen that pairs another screen: ``{"id", "name", "url",
    "expires_at"}`` (``id``: the screen's id once it claims the link; ``expires_at`` RFC 3339). Query ``name``
    names the screen (default "screen"). Errors: 400 bad-request when the name is blank, holds invisible
    characters (newline, bidi override) or is longer than SCREEN_NAME_MAX_CHARS (appliance.intake.name_fault:
    the shop name's rules); the detail names the fault."""
    from ..intake import name_fault

    app = _app(request)
    name = request.query_params.get("name", "screen")
    fault = name_fault(name, SCREEN_NAME_MAX_CHARS)
    if fault is not None:
        raise BadRequest(f"The screen name {name!r} {fault}.")
    screen_id, url, expires_at = await app.screens.async_add(name, app.public_url)
    return {"id": screen_id, "name": name, "url": url, "expires_at": rfc3339(expires_at)}


@router.get("/screens")
async def list_screens(request: Request) -> list[dict[str, Any]]:
    """Every paired screen (the local kiosk is not listed: it proves itself with kiosk.json)."""
    from starlette.concurrency import run_in_threadpool

    return _rows(await run_in_threadpool(_app(request).store.list_screens))


@router.delete("/screens/{screen_id}", status_code=204)
async def revoke_screen(screen_id: str, request: Request) -> Response:
    """Revoke a screen: its token stops working and its open display streams end at once. 404 if unknown."""
    if not await _app(request).screens.async_revoke(screen_id):
        raise NotFound(f"No paired screen {screen_id!r}; see 'eticket screens list'.")
    return Response(status_code=204)


def _till_rows(tills: list[Till]) -> list[dict[str, Any]]:
    return [{"id": t.id, "network": t.network, "name": t.name, "how": t.how, "added_at": rfc3339(t.added_at)}
            for t in tills]


@router.post("/printers")
async def allow_printer(request: Request) -> dict[str, Any]:
    """Allow a till to print (port 9100, the TakePOS connector): query ``address`` an IP address or network
    (``192.168.1.30``, ``192.168.1.0/24``; at most a /16 or an IPv6 /48), ``name`` optional.
    ``{"id", "network", "name", "how", "added_at", "created"}`` (``created`` false when that network was
    already allowed). A fresh device's pairing window (open until the first pairing) closes, as a pairing
    closes it; a window opened with ``pairings open`` stays. Errors: 400 bad-request naming the fault (not an
    address, too wide, a bad name)."""
    from starlette.concurrency import run_in_threadpool

    from ..intake import name_fault
    from ..printer.tills import parse_network

    app = _app(request)
    try:
        network = parse_network(request.query_params.get("address", ""))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    where = network.network_address if network.num_addresses == 1 else network
    name = request.query_params.get("name") or f"Till {where}"
    fault = name_fault(name, SCREEN_NAME_MAX_CHARS)
    if fault is not None:
        raise BadRequest(f"The till name {name!r} {fault}.")
    till, created = await run_in_threadpool(app.store.add_till, str(network), name, "allowed")
    if created:
        await app.async_tills_changed()
        window = app.pairing.window
        if window is not None and window.closes_at is None:  # a fresh device's window, open until set up
            await app.pairing.async_close()
    return {**_till_rows([till])[0], "created": created}


@router.get("/printers")
async def list_printers(request: Request) -> list[dict[str, Any]]:
    """Every till allowed to print: ``[{"id", "network", "name", "how": "allowed"|"bound", "added_at"}]``."""
    from starlette.concurrency import run_in_threadpool

    return _till_rows(await run_in_threadpool(_app(request).store.list_tills))


@router.delete("/printers/{till_id}", status_code=204)
async def revoke_printer(till_id: str, request: Request) -> Response:
    """Revoke a till's allowance: its next job or display call is refused (pairing is not reopened, even
    when no till or POS is left, so that job cannot bind it again). 404 if unknown."""
    from starlette.concurrency import run_in_threadpool

    app = _app(request)
    if not await run_in_threadpool(app.store.revoke_till, till_id):
        raise NotFound(f"No till {till_id!r} is allowed to print; see 'eticket printers list'.")
    await app.async_tills_changed(reopen=False)
    return Response(status_code=204)


@router.post("/selftest")
async def selftest(request: Request) -> dict[str, Any]:
    """The update's self-test receipt (appliance/selftest.py): a small PDF through intake → store → display,
    then off the screen and deleted. ``{"ok": bool, "steps": [{"step": "intake"|"store"|"display"|"clear"|
    "delete", "ok", "detail", "seconds"}]}``, always 200: ``ok`` says whether every step passed."""
    from ..selftest import async_selftest

    return await async_selftest(_app(request))


@router.get("/status")
async def status(request: Request) -> dict[str, Any]:
    """Health plus ``pairing_open``, ``api_url`` and ``public_url``."""
    app = _app(request)
    return {**app.health(), "pairing_open": app.pairing.window is not None, "api_url": app.api_url,
            "public_url": app.public_url}


def create_admin_app(appliance: Appliance) -> FastAPI:
    """The admin ASGI app (no docs, problem details on errors)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.appliance = appliance
    app.include_router(router)

    @app.exception_handler(ApplianceError)
    async def on_error(request: Request, exc: ApplianceError) -> JSONResponse:
        return JSONResponse(exc.problem(), status_code=exc.status, media_type="application/problem+json")

    return app
