"""``/screen/claim/{secret}``: the one-time link that pairs another screen (appliance.screens)."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from ..errors import ApplianceError
from .auth import appliance_of

router = APIRouter()

FORM_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
"""The strict policy, except that this page's own form may be submitted."""


def _page(title: str, body: str, status: int = 200) -> Response:
    html = ("<!doctype html><html><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{escape(title)}</title></head><body style='font:20px sans-serif;margin:2em'>"
            f"<h1>{escape(title)}</h1>{body}</body></html>")
    return Response(html, status_code=status, media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": FORM_CSP})


@router.get("/screen/claim/{secret}")
async def claim_page(secret: str) -> Response:
    """A page with one button: opening the link spends nothing (link previews are harmless); the button does."""
    return _page("Pair this screen",
                 f"<form method=post action='/screen/claim/{escape(secret)}'>"
                 "<button style='font-size:1.5em;padding:.5em 1em'>Pair this screen</button></form>")


@router.post("/screen/claim/{secret}")
async def claim(secret: str, request: Request) -> Response:
    """Spend the link. JSON clients (``Accept: application/json``; ``eticket kiosk --claim``) get
    ``201 {"screen_id", "token", "stream": "/api/v1/display/stream"}``; a browser gets a page.
    Errors: 403 pairing-refused (unknown, used or expired link)."""
    wants_json = "application/json" in request.headers.get("accept", "")
    try:
        screen, token = await appliance_of(request).screens.async_claim(secret)
    except ApplianceError as error:
        if wants_json:
            raise
        return _page("Link not valid", f"<p>{escape(error.detail)}</p>", status=error.status)
    if wants_json:
        return JSONResponse({"screen_id": screen.id, "token": token, "stream": "/api/v1/display/stream"},
                            status_code=201)
    url = f"/screen?key={token}"
    return _page("Screen paired", f"<p>This screen is paired as {escape(screen.name)}.</p>"
                 f"<p><a href='{escape(url)}' style='font-size:1.5em'>Open the screen</a> (bookmark it, or add it to "
                 "the home screen)</p>", status=201)
