"""The device's own web pages (screen pairing, "screen paired", the receipt pages, ``/screen`` without a key,
the home page) over real HTTP: in the browser's language when it names one of the five, else the device's;
and a screen link that pairs nothing says so when opened, without the button."""

from __future__ import annotations

from html import unescape

import httpx

from tests.conftest import Appliance, run_cli

UNKNOWN_RECEIPT = "/r/" + "x" * 43


def _text(response: httpx.Response) -> str:
    """The page's text as a reader sees it (HTML entities such as &#x27; decoded)."""
    return unescape(response.text)


def _get(appliance: Appliance, path: str, language: str | None = None) -> httpx.Response:
    headers = {"Accept": "text/html"} | ({"Accept-Language": language} if language else {})
    return httpx.get(appliance.url + path, headers=headers)


SCREEN_WITHOUT_KEY = [
    ("de-CH,de;q=0.9,en;q=0.5", "Dieser Bildschirm ist nicht gekoppelt"),
    ("ja,es;q=0.4", "Esta pantalla no está emparejada"),  # the first of the five the browser names
    ("ja,zh;q=0.5", "Cet écran n'est pas appairé"),  # none of the five: the device's language (fr)
    (None, "Cet écran n'est pas appairé"),
    ("en;q=0,it", "Questo schermo non è abbinato"),  # q=0 means "not English"
]


def test_the_screen_without_a_key_speaks_the_browsers_language_else_the_devices(appliance: Appliance) -> None:
    for accept_language, expected in SCREEN_WITHOUT_KEY:
        page = _get(appliance, "/screen", accept_language)
        assert page.status_code == 401
        assert expected in _text(page), accept_language


def test_receipt_and_home_pages_follow_the_browser_and_the_devices_language(appliance_factory: object) -> None:
    italian = appliance_factory("--language", "it")  # type: ignore[operator]
    assert "Scontrino non trovato" in _text(_get(italian, UNKNOWN_RECEIPT))
    assert "Receipt not found" in _text(_get(italian, UNKNOWN_RECEIPT, "en-GB"))
    assert _get(italian, UNKNOWN_RECEIPT, "en-GB").status_code == 404
    assert "Scansiona il codice QR" in _text(_get(italian, "/"))
    assert "Scannez le QR code" in _text(_get(italian, "/", "fr-BE,fr;q=0.8"))
    assert "<html lang=de>" in _text(_get(italian, "/", "de"))
    mistyped = _get(italian, "/scren", "es-MX")  # a browser on a path the device does not serve
    assert mistyped.status_code == 404 and "Página no encontrada" in _text(mistyped)
    api = httpx.get(italian.url + "/scren")  # an API client keeps the problem details
    assert api.status_code == 404 and api.headers["content-type"] == "application/problem+json"


def _add_link(appliance: Appliance, cli_env: dict[str, str]) -> str:
    run_cli("screens", "add", "--name", "Tablet", "--data-dir", str(appliance.data_dir), env=cli_env)
    return str(appliance.display()["screen_link"]["url"]).removeprefix(appliance.url)  # type: ignore[index]


def test_a_used_link_says_so_when_opened_and_shows_no_button(appliance: Appliance, cli_env: dict[str, str]) -> None:
    """The shop owner opens a link twice (a second tablet, a reload after pairing): the page says it was
    already used and what to do, instead of a button that fails only when pressed."""
    link = _add_link(appliance, cli_env)
    for _ in range(2):  # opening (or a link preview) spends nothing
        page = _get(appliance, link, "en")
        assert page.status_code == 200 and "<button" in _text(page) and "Pair this screen" in _text(page)
    paired = httpx.post(appliance.url + link, headers={"Accept-Language": "fr"})
    assert paired.status_code == 201 and "Cet écran est appairé sous le nom Tablet." in _text(paired)

    used = _get(appliance, link, "en")
    assert used.status_code == 410
    assert "<button" not in _text(used)
    assert "This link was already used" in _text(used) and "run 'eticket screens add' again" in _text(used)
    assert "Ce lien a déjà été utilisé" in _text(_get(appliance, link))  # the device's language
    refused = httpx.post(appliance.url + link, headers={"Accept-Language": "de"})  # a stale form still refuses
    assert refused.status_code == 403 and "Dieser Link wurde schon benutzt" in _text(refused)
    assert httpx.post(appliance.url + link, headers={"Accept": "application/json"}).status_code == 403


def test_a_replaced_or_unknown_link_says_so(appliance: Appliance, cli_env: dict[str, str]) -> None:
    first = _add_link(appliance, cli_env)
    _add_link(appliance, cli_env)
    replaced = _get(appliance, first, "en")
    assert replaced.status_code == 410 and "A newer link replaced this one." in _text(replaced)
    assert "<button" not in _text(replaced)
    unknown = _get(appliance, "/screen/claim/" + "A" * 22, "es")
    assert unknown.status_code == 404 and "Este enlace no se conoce aquí" in _text(unknown)
    assert "<button" not in _text(unknown)
