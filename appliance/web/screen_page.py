"""``/screen``: the counter screen for a browser (an old tablet), the same scenes as the kiosk in HTML/CSS.

No framework, no external asset, no cookie. The page is rendered on the server; ``/screen.js`` (ES5, no
build step) listens to the display stream with ``EventSource`` and reloads the page on each change, and a
``<noscript>`` meta refresh keeps script-less browsers current. The screen token travels as ``?key=`` (a
browser cannot set headers on EventSource); query strings are never logged.
"""

from __future__ import annotations

from html import escape
from typing import Any

import segno
from fastapi import APIRouter, Request, Response

from eticket_core.money import format_money

from .auth import screen_token_valid

router = APIRouter()

PAGE_CSP = ("default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
            "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
NOSCRIPT_REFRESH_SECONDS = 3

SCRIPT = """(function () {
  var key = document.documentElement.getAttribute('data-key');
  var seq = document.documentElement.getAttribute('data-seq');
  if (!window.EventSource) { setTimeout(function () { location.reload(); }, 3000); return; }
  var source = new EventSource('/api/v1/display/stream?key=' + encodeURIComponent(key));
  source.addEventListener('state', function (event) {
    var state = JSON.parse(event.data);
    if (String(state.seq) !== seq) { source.close(); location.reload(); }
  });
  source.onerror = function () { setTimeout(function () { location.reload(); }, 2000); };
})();
"""

STYLE = """html,body{margin:0;height:100%;background:#fff;color:#000;font-family:sans-serif}
.scene{display:table;width:100%;height:100%}.cell{display:table-cell;vertical-align:middle;text-align:center;padding:3vmin}
.qr{width:80vmin;max-width:60vw;height:auto}.big{font-size:9vmin;font-weight:bold;margin:2vmin 0}
.mid{font-size:5vmin;margin:1.5vmin 0}.small{font-size:3.5vmin;margin:1vmin 0}"""


def _qr_svg(text: str) -> str:
    """The QR as inline SVG: crisp at any size, quiet zone of 4 modules, never Micro QR."""
    return str(segno.make_qr(text, error="m", boost_error=True).svg_inline(scale=10, border=4, omitsize=True,
                                                                             svgclass="qr"))


def _body(state: dict[str, Any], t: Any) -> str:
    scene = state.get("scene")
    if scene == "ticket":
        ticket = state.get("ticket") or {}
        total = format_money(ticket.get("total"), ticket.get("currency"), state.get("lang"))
        return (f"<div class=cell>{_qr_svg(str(ticket.get('url', '')))}</div><div class=cell>"
                f"<p class=big>{escape(total)}</p><p class=mid>{escape(t('Scan to get'))}<br>"
                f"{escape(t('your receipt'))}</p><p class=small>{escape(t('No app, no e-mail'))}</p></div>")
    if scene == "wifi":
        wifi = (state.get("ticket") or {}).get("wifi") or {}
        join = t("Join the shop's Wi-Fi")
        return (f"<div class=cell>{_qr_svg(str(wifi.get('qr', '')))}</div><div class=cell>"
                f"<p class=big>{escape(t('Step 1: Wi-Fi'))}</p><p class=mid>{escape(join)}"
                f"</p><p class=big>{escape(str(wifi.get('ssid', '')))}</p>"
                f"<p class=small>{escape(t('The receipt code comes next'))}</p></div>")
    if scene == "pairing" and not (state.get("pairing") or {}).get("locked_until"):
        pairing = state.get("pairing") or {}
        return (f"<div class=cell>{_qr_svg(str(pairing.get('uri', '')))}</div><div class=cell>"
                f"<p class=big>{escape(t('Pair your till'))}</p><p class=mid>{escape(t('or type:'))}</p>"
                f"<p class=big>{escape(str(pairing.get('code', '')))}</p></div>")
    if scene == "pairing":  # locked after too many wrong attempts: no QR, no code, as on the kiosk
        return (f"<div class=cell><p class=big>{escape(t('Pairing locked'))}</p>"
                f"<p class=mid>{escape(t('Too many wrong codes.'))}</p>"
                f"<p class=mid>{escape(t('Try again in a minute.'))}</p></div>")
    if scene == "downloaded":
        return (f"<div class=cell><p class=big>&#10003; {escape(t('Receipt downloaded'))}</p>"
                f"<p class=mid>{escape(t('Thank you!'))}</p></div>")
    logo = state.get("logo")
    image = f"<img src='{escape(str(logo))}' alt='' style='max-width:70vw;max-height:35vh'>" if logo else ""
    return (f"<div class=cell>{image}<p class=big>{escape(str(state.get('shop') or 'eTicket'))}</p>"
            f"<p class=mid>{escape(t('Paperless receipts'))}</p></div>")


def _notice(state: dict[str, Any], t: Any) -> str:
    """The shop owner's bands (a refused settings file; the storage's state), as the kiosk draws them; never
    over a QR."""
    from kiosk.bands import storage_lines

    if state.get("scene") in ("ticket", "wifi"):
        return ""
    bands = [(t("Settings not applied:"), str(state["notice"]))] if state.get("notice") else []
    storage = storage_lines(state.get("storage"), t)
    if storage is not None:
        bands.append(storage)
    if not bands:
        return ""
    lines = "".join(f"<p style='margin:0;padding:1vmin 0'><b>{escape(head)}</b> {escape(text)}</p>"
                    for head, text in bands)
    return ("<div style='position:fixed;left:0;right:0;bottom:0;padding:1vmin 2vmin;background:#960000;"
            f"color:#fff;font-size:3vmin'>{lines}</div>")


@router.get("/screen")
async def screen(request: Request, key: str = "") -> Response:
    """The screen page. ``?key=`` a screen token (``eticket screens add``; the local kiosk's works too).
    401 page without a valid key."""
    from eticket_core.i18n import translator

    app = request.app.state.appliance
    if not key or not await screen_token_valid(app, key):
        return Response("<!doctype html><title>eTicket</title><p>This screen is not paired. On the device, run "
                        "'eticket screens add' and open the link it shows.</p>", status_code=401,
                        media_type="text/html; charset=utf-8")
    state = app.display.snapshot()
    t = translator(state.get("lang"))
    html = (f"<!doctype html><html lang={escape(str(state.get('lang') or 'en'))} data-key='{escape(key)}' "
            f"data-seq='{state['seq']}'><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<noscript><meta http-equiv=refresh content={NOSCRIPT_REFRESH_SECONDS}></noscript>"
            f"<title>{escape(str(state.get('shop') or 'eTicket'))}</title><style>{STYLE}</style></head>"
            f"<body><div class=scene data-scene='{escape(str(state.get('scene')))}' "
            f"data-ticket='{escape(str((state.get('ticket') or {}).get('id', '')))}'>{_body(state, t)}</div>"
            f"{_notice(state, t)}"
            "<script src='/screen.js'></script></body></html>")
    return Response(html, media_type="text/html; charset=utf-8", headers={"Content-Security-Policy": PAGE_CSP})


@router.get("/screen.js")
async def screen_js() -> Response:
    """The page's only script (ES5)."""
    return Response(SCRIPT, media_type="application/javascript; charset=utf-8")
