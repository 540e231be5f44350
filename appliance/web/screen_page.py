"""``/screen``: the counter screen for a browser (an old tablet), the same scenes as the kiosk in HTML/CSS.

No framework, no external asset, no cookie. The page is rendered on the server; ``/screen.js`` (ES5, no
build step, every newer API feature-detected) keeps it current without ever navigating: it follows the
display stream and, on each change, fetches the scene as an HTML fragment (``/screen/view``) with
XMLHttpRequest and swaps it in. When the device cannot be reached (a restart) the page draws "Connecting…"
itself and retries with backoff (0.5 s doubling to 5 s), so the browser's own error page never shows.

One stream per browser: tabs of the same screen elect one leader over ``BroadcastChannel``; only the leader
holds the stream and fetches the fragment, and it hands each fragment to the other tabs, so many tabs
never take the six connections a browser keeps per host over HTTP/1.1 (a receipt download from the
same browser still finds one). Browsers without ``BroadcastChannel`` follow the stream in each tab, and
without ``EventSource`` poll the fragment; a ``<noscript>`` meta refresh keeps script-less browsers current.

The screen token travels as ``?key=`` (a browser cannot set headers on EventSource); query strings are never
logged. The page's own words (not paired, connecting) follow :mod:`appliance.web.page_lang`; the scenes
speak the display state's language.
"""

from __future__ import annotations

import time
from html import escape
from pathlib import Path
from typing import Any

import segno
from fastapi import APIRouter, Request, Response

from eticket_core.expiry import minutes_shown, seconds_left
from eticket_core.money import format_money

from .auth import screen_token_valid
from .page_lang import page_translator

router = APIRouter()

PAGE_CSP = ("default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
            "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
NOSCRIPT_REFRESH_SECONDS = 3
SCRIPT = (Path(__file__).with_name("screen.js")).read_text(encoding="utf-8")
"""The page's only script (``appliance/web/screen.js``, ES5)."""

STYLE = """:root{color-scheme:only light}
html,body{margin:0;height:100%;background:#fff;color:#000;font-family:sans-serif}
#view,.scene{width:100%;height:100%}.scene{display:table;table-layout:fixed}
.cell{display:table-cell;vertical-align:middle;text-align:center;padding:3vmin;overflow-wrap:break-word;
word-wrap:break-word}.qr{display:block;margin:auto;width:80vmin;max-width:60vw;height:auto;background:#fff}
.big{font-size:9vmin;font-weight:bold;margin:2vmin 0}.mid{font-size:5vmin;margin:1.5vmin 0}
.small{font-size:3.5vmin;margin:1vmin 0}
.top{position:absolute;left:0;right:0;top:3vmin;margin:0;text-align:center}
.sale{font-size:10vmin;font-weight:bold;margin:2vmin 0;text-align:left}
.sale span{float:right;padding-left:1em}.sale.one{text-align:center}
@media (orientation:portrait){.scene{display:block;padding-top:4vh;box-sizing:border-box}.cell{display:block}
.qr{width:88vw;max-width:56vh}.big{font-size:8vmin}.mid{font-size:5.5vmin}.small{font-size:4vmin}
.sale{font-size:7vw}.scene[data-scene=sale] .cell{padding-top:30vh}}"""
"""High contrast, black on white in every colour scheme: ``color-scheme: only light`` (and the page's
``<meta name=color-scheme>``) opts out of the browser's forced dark mode (Chromium's auto dark mode,
a tablet's system setting), and the QR's own white background keeps its quiet zone light even where a
browser darkens the page anyway. Landscape: QR beside the text, as the kiosk; portrait (a tablet held
upright): the QR above the text, both the full width (kiosk.scenes._split). A sale's lines are as large as
20 characters fit the width (7vw in portrait), the amount floated right as on a pole display."""


def _qr_svg(text: str) -> str:
    """The QR as inline SVG: crisp at any size, quiet zone of 4 modules drawn white (not transparent), never
    Micro QR."""
    return str(segno.make_qr(text, error="m", boost_error=True).svg_inline(
        scale=10, border=4, omitsize=True, svgclass="qr", dark="#000", light="#fff"))


def _validity(ticket: dict[str, Any], t: Any) -> str:
    """"Link valid 30 days" (``ticket.valid_days``, the retention in days), as the kiosk shows it."""
    days = ticket.get("valid_days")
    if not isinstance(days, int) or isinstance(days, bool) or days <= 0:
        return ""
    return f"<p class=small>{escape(t('Link valid {days} days').format(days=days))}</p>"


def _expiry(pairing: dict[str, Any], t: Any) -> str:
    """"This code expires in 9 min" (``pairing.expires_at``, RFC 3339 UTC), as the kiosk shows it. The line
    carries the seconds left when it was rendered (``data-left``, not the device's clock: a tablet's clock may
    be wrong) and its wording (``data-text``); ``screen.js`` counts it down between scene changes."""
    left = seconds_left(pairing.get("expires_at"), time.time())
    if left is None:
        return ""
    wording = t("This code expires in {minutes} min")
    return (f"<p class=small data-left='{int(left)}' data-text='{escape(wording)}'>"
            f"{escape(wording.format(minutes=minutes_shown(left)))}</p>")


def _body(state: dict[str, Any], t: Any) -> str:
    scene = state.get("scene")
    if scene == "ticket":
        ticket = state.get("ticket") or {}
        total = format_money(ticket.get("total"), ticket.get("currency"), state.get("lang"))
        return (f"<div class=cell>{_qr_svg(str(ticket.get('url', '')))}</div><div class=cell>"
                f"<p class=big>{escape(total)}</p><p class=mid>{escape(t('Scan to get'))}<br>"
                f"{escape(t('your receipt'))}</p><p class=small>{escape(t('No app, no e-mail'))}</p>"
                f"{_validity(ticket, t)}</div>")
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
                f"<p class=big>{escape(str(pairing.get('code', '')))}</p>{_expiry(pairing, t)}"
                f"<p class=small>{escape(str(state.get('shop') or ''))}</p></div>")
    if scene == "pairing":  # locked after too many wrong attempts: no QR, no code, as on the kiosk
        return (f"<div class=cell><p class=big>{escape(t('Pairing locked'))}</p>"
                f"<p class=mid>{escape(t('Too many wrong codes.'))}</p>"
                f"<p class=mid>{escape(t('Try again in a minute.'))}</p></div>")
    if scene == "sale":
        return _sale(state)
    if scene == "downloaded":
        return (f"<div class=cell><p class=big>&#10003; {escape(t('Receipt downloaded'))}</p>"
                f"<p class=mid>{escape(t('Thank you!'))}</p></div>")
    logo = state.get("logo")
    image = f"<img src='{escape(str(logo))}' alt='' style='max-width:70vw;max-height:35vh'>" if logo else ""
    return (f"<div class=cell>{image}<p class=big>{escape(str(state.get('shop') or 'eTicket'))}</p>"
            f"<p class=mid>{escape(t('Paperless receipts'))}</p></div>")


def _sale(state: dict[str, Any]) -> str:
    """A sale going on: the shop's logo or name at the top, the till's two lines large below, without their
    padding, a right-aligned amount floated right (:func:`kiosk.bands.sale_line_parts`), as the kiosk draws
    them."""
    from kiosk.bands import sale_line_parts

    logo = state.get("logo")
    top = (f"<img class=top src='{escape(str(logo))}' alt='' style='max-width:70vw;max-height:15vh;margin:auto'>"
           if logo else f"<p class='top mid'>{escape(str(state.get('shop') or 'eTicket'))}</p>")
    raw = (state.get("sale") or {}).get("lines")
    lines = []
    for parts in (sale_line_parts(line) for line in (raw if isinstance(raw, list) else [])[:2]):
        if len(parts) == 2:
            lines.append(f"<p class=sale><span>{escape(parts[1])}</span>{escape(parts[0])}</p>")
        elif parts:
            lines.append(f"<p class='sale one'>{escape(parts[0])}</p>")
    return f"{top}<div class=cell>{''.join(lines)}</div>"


def _notice(state: dict[str, Any], t: Any) -> str:
    """The shop owner's bands (a refused settings file; the storage's state; a till just allowed to print), as
    the kiosk draws them; never over a QR."""
    from kiosk.bands import storage_lines, till_bound_lines

    if state.get("scene") in ("ticket", "wifi"):
        return ""
    bands = [(t("Settings not applied:"), str(state["notice"]))] if state.get("notice") else []
    for band in (storage_lines(state.get("storage"), t), till_bound_lines(state.get("till_bound"), t)):
        if band is not None:
            bands.append(band)
    if not bands:
        return ""
    lines = "".join(f"<p style='margin:0;padding:1vmin 0'><b>{escape(head)}</b> {escape(text)}</p>"
                    for head, text in bands)
    return ("<div style='position:fixed;left:0;right:0;bottom:0;padding:1vmin 2vmin;background:#960000;"
            f"color:#fff;font-size:3vmin'>{lines}</div>")


def _view(state: dict[str, Any]) -> str:
    """The scene as an HTML fragment (what ``#view`` holds): ``<div class=scene data-seq data-scene
    data-ticket data-title lang>…</div>`` and the shop owner's band."""
    from eticket_core.i18n import translator

    t = translator(state.get("lang"))
    return (f"<div class=scene data-seq='{int(state['seq'])}' data-scene='{escape(str(state.get('scene')))}' "
            f"data-ticket='{escape(str((state.get('ticket') or {}).get('id', '')))}' "
            f"data-title='{escape(str(state.get('shop') or 'eTicket'))}' "
            f"lang='{escape(str(state.get('lang') or 'en'))}'>{_body(state, t)}</div>{_notice(state, t)}")


def _not_paired(request: Request) -> tuple[str, str]:
    """``(lang, fragment)``: the page of a browser without a valid screen key."""
    lang, t = page_translator(request)
    text = t("This screen is not paired. On the device, run 'eticket screens add' and open the link it shows.")
    return lang, (f"<div class=scene data-scene=not-paired><div class=cell><p class=mid>{escape(text)}</p>"
                  "</div></div>")


def _page(lang: str, title: str, fragment: str, key: str, status: int = 200) -> Response:
    """The whole page around ``fragment``; with a ``key``, the script and its "Connecting…" words in ``lang``."""
    from eticket_core.i18n import translator

    t = translator(lang)
    html = (f"<!doctype html><html lang={escape(lang)} data-key='{escape(key)}' "
            f"data-connecting='{escape(t('Connecting…'))}' "
            f"data-starting='{escape(t('The receipt screen is starting.'))}'><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            "<meta name=color-scheme content='only light'>"
            f"<noscript><meta http-equiv=refresh content={NOSCRIPT_REFRESH_SECONDS}></noscript>"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
            f"<body><div id=view>{fragment}</div>" + ("<script src='/screen.js'></script>" if key else "")
            + "</body></html>")
    return Response(html, status_code=status, media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": PAGE_CSP})


@router.get("/screen")
async def screen(request: Request, key: str = "") -> Response:
    """The screen page. ``?key=`` a screen token (``eticket screens add``; the local kiosk's works too).
    401 page without a valid key, in the browser's or the device's language (:mod:`.page_lang`)."""
    app = request.app.state.appliance
    if not key or not await screen_token_valid(app, key):
        lang, fragment = _not_paired(request)
        return _page(lang, "eTicket", fragment, "", status=401)
    state = app.display.snapshot()
    return _page(str(state.get("lang") or "en"), str(state.get("shop") or "eTicket"), _view(state), key)


@router.get("/screen/view")
async def screen_view(request: Request, key: str = "") -> Response:
    """The current scene as an HTML fragment, for ``/screen.js`` (``text/html``; the shape of
    :func:`_view`). ``?key=`` a screen token; 401 with the "not paired" fragment without a valid one."""
    app = request.app.state.appliance
    if not key or not await screen_token_valid(app, key):
        return Response(_not_paired(request)[1], status_code=401, media_type="text/html; charset=utf-8")
    return Response(_view(app.display.snapshot()), media_type="text/html; charset=utf-8")


@router.get("/screen.js")
async def screen_js() -> Response:
    """The page's only script (ES5, :data:`SCRIPT`)."""
    return Response(SCRIPT, media_type="application/javascript; charset=utf-8")
