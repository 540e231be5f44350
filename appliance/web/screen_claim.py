"""``/screen/claim/{secret}``: the one-time link that pairs another screen (appliance.screens).

The pages speak the browser's language when it is one of the five, else the device's (:mod:`.page_lang`).
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from eticket_core.negotiation import prefers

from ..errors import ApplianceError
from ..screens import LinkState
from .auth import appliance_of
from .page_lang import page_translator

router = APIRouter()

FORM_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
"""The strict policy, except that this page's own form may be submitted."""
AGAIN = "On the device, run 'eticket screens add' again and open the new link."


def _ended_reason(state: LinkState, t: Callable[[str], str]) -> str:
    """Why a link pairs nothing (any state but ``open``), in words for whoever opened it."""
    return {
        "used": t("This link was already used: each link pairs one screen."),
        "expired": t("This link has expired: a link is valid 10 minutes."),
        "replaced": t("A newer link replaced this one."),
    }.get(state, t("This link is not known here (or the device restarted since)."))


def _page(lang: str, title: str, body: str, status: int = 200) -> Response:
    html = (f"<!doctype html><html lang={escape(lang)}><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{escape(title)}</title></head><body style='font:20px sans-serif;margin:2em'>"
            f"<h1>{escape(title)}</h1>{body}</body></html>")
    return Response(html, status_code=status, media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": FORM_CSP})


def _not_valid(request: Request, state: LinkState) -> Response:
    """The page for a link that pairs nothing: why, and what to do; no button. 404 for an unknown link,
    410 for one that was used, expired or replaced."""
    lang, t = page_translator(request)
    return _page(lang, t("Link not valid"), f"<p>{escape(_ended_reason(state, t))}</p><p>{escape(t(AGAIN))}</p>",
                 status=404 if state == "unknown" else 410)


@router.get("/screen/claim/{secret}")
async def claim_page(secret: str, request: Request) -> Response:
    """A page with one button while the link is open: opening the link spends nothing (link previews are
    harmless); the button does. A used, expired, replaced or unknown link gets a page saying so and what to
    do, without the button (410; 404 when unknown)."""
    state = appliance_of(request).screens.link_state(secret)
    if state != "open":
        return _not_valid(request, state)
    lang, t = page_translator(request)
    return _page(lang, t("Pair this screen"),
                 f"<form method=post action='/screen/claim/{escape(secret)}'>"
                 f"<button style='font-size:1.5em;padding:.5em 1em'>{escape(t('Pair this screen'))}</button></form>")


@router.post("/screen/claim/{secret}")
async def claim(secret: str, request: Request) -> Response:
    """Spend the link. JSON clients (``Accept`` weighing ``application/json`` above ``text/html``, RFC 9110
    §12.5.1; ``eticket kiosk --claim``) get ``201 {"screen_id", "token", "stream": "/api/v1/display/stream"}``;
    a browser gets a page. The same POST within screens.CLAIM_REPEAT_SECONDS (a double tap, a reload) gets
    the same answer and key again.
    Errors: 403 pairing-refused (unknown, used or expired link); a browser gets the page of :func:`claim_page`
    for such a link, with status 403."""
    wants_json = prefers(request, "application/json", over="text/html")
    screens = appliance_of(request).screens
    state = screens.link_state(secret)
    try:
        screen, token = await screens.async_claim(secret)
    except ApplianceError as error:
        if wants_json:
            raise
        page = _not_valid(request, state if state != "open" else "unknown")
        page.status_code = error.status
        return page
    if wants_json:
        return JSONResponse({"screen_id": screen.id, "token": token, "stream": "/api/v1/display/stream"},
                            status_code=201)
    lang, t = page_translator(request)
    url = f"/screen?key={token}"
    paired = t("This screen is paired as {name}.").format(name=screen.name)
    return _page(lang, t("Screen paired"), f"<p>{escape(paired)}</p>"
                 f"<p><a href='{escape(url)}' style='font-size:1.5em'>{escape(t('Open the screen'))}</a> "
                 f"{escape(t('(bookmark it, or add it to the home screen)'))}</p>", status=201)
