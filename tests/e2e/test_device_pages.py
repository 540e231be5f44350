"""The device's own web pages (screen pairing, "screen paired", the receipt pages, ``/screen`` without a key,
the home page) over real HTTP: in the browser's language when it names one of the five, else the device's;
and a screen link that pairs nothing says so when opened, without the button."""

from __future__ import annotations

import json
import re
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
    screen_id = str(json.loads(run_cli("screens", "list", "--json", "--data-dir", str(appliance.data_dir),
                                       env=cli_env).stdout)[0]["id"])
    run_cli("screens", "revoke", screen_id, "--data-dir", str(appliance.data_dir), env=cli_env)
    refused = httpx.post(appliance.url + link, headers={"Accept-Language": "de"})  # a stale form still refuses
    assert refused.status_code == 403 and "Dieser Link wurde schon benutzt" in _text(refused)
    assert httpx.post(appliance.url + link, headers={"Accept": "application/json"}).status_code == 403


def _key_of(page: httpx.Response) -> str:
    found = re.search(r"/screen\?key=([A-Za-z0-9_-]+)", _text(page))
    assert found, page.text
    return found.group(1)


def test_pressing_pair_twice_or_reloading_gives_the_same_key(appliance: Appliance, cli_env: dict[str, str]) -> None:
    """A double tap on "Pair this screen", or a reload of the "screen paired" page (the browser posts again),
    used to answer "already used": the screen was paired but nobody held its key. Within a minute the same
    claim gets the same key again, page or JSON; the key opens the screen; no second screen is made."""
    link = _add_link(appliance, cli_env)
    first = httpx.post(appliance.url + link, headers={"Accept-Language": "en"})
    assert first.status_code == 201, first.text
    key = _key_of(first)
    again = httpx.post(appliance.url + link, headers={"Accept-Language": "en"})
    assert again.status_code == 201 and "This screen is paired as Tablet." in _text(again)
    assert _key_of(again) == key
    as_json = httpx.post(appliance.url + link, headers={"Accept": "application/json"})
    assert as_json.status_code == 201 and as_json.json()["token"] == key
    assert httpx.get(appliance.url + "/screen/view", params={"key": key}).status_code == 200
    listed = json.loads(run_cli("screens", "list", "--json", "--data-dir", str(appliance.data_dir),
                                env=cli_env).stdout)
    assert [screen["id"] for screen in listed] == [as_json.json()["screen_id"]]


ACCEPT_CASES = [
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),  # a browser
    ("TEXT/HTML", True),  # media types are case-insensitive
    ("text/*", True),
    ("text/html;q=0", False),  # q=0: "not HTML"
    ("text/html;q=0.1, application/problem+json", False),
    ("*/*", False),  # curl: the API's answer
    ("application/json", False),
]


def test_accept_is_read_with_its_weights(appliance: Appliance, cli_env: dict[str, str]) -> None:
    """RFC 9110 §12.5.1: an API client saying ``text/html;q=0`` used to get the HTML page (a substring
    test), and ``TEXT/HTML`` problem details; the screen link's ``application/json;q=0`` got JSON."""
    for accept, html in ACCEPT_CASES:
        for path in (UNKNOWN_RECEIPT, "/scren"):
            r = httpx.get(appliance.url + path, headers={"Accept": accept})
            assert r.status_code == 404
            assert r.headers["content-type"].startswith("text/html" if html else "application/problem+json"), \
                (accept, path)
    link = _add_link(appliance, cli_env)
    page = httpx.post(appliance.url + link, headers={"Accept": "application/json;q=0, text/html"})
    assert page.status_code == 201 and page.headers["content-type"].startswith("text/html")
    assert httpx.post(appliance.url + link, headers={"Accept": "Application/JSON"}).json()["token"] == _key_of(page)


def test_an_underscore_locale_name_is_understood(appliance: Appliance) -> None:
    """Some clients send POSIX locale names (``en_US``) in ``Accept-Language``; they used to get the
    device's language (French here) instead of English."""
    assert "Receipt not found" in _text(_get(appliance, UNKNOWN_RECEIPT, "en_US"))
    assert "Página no encontrada" in _text(_get(appliance, "/scren", "es_MX,fr;q=0.5"))


def test_a_replaced_or_unknown_link_says_so(appliance: Appliance, cli_env: dict[str, str]) -> None:
    first = _add_link(appliance, cli_env)
    _add_link(appliance, cli_env)
    replaced = _get(appliance, first, "en")
    assert replaced.status_code == 410 and "A newer link replaced this one." in _text(replaced)
    assert "<button" not in _text(replaced)
    unknown = _get(appliance, "/screen/claim/" + "A" * 22, "es")
    assert unknown.status_code == 404 and "Este enlace no se conoce aquí" in _text(unknown)
    assert "<button" not in _text(unknown)
