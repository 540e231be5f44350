"""The web screen keeps working where browsers and devices fail, in real Chromium (slow: several browser
tabs and an appliance restart):

* many ``/screen`` tabs in one browser: one stream for all of them, so they all follow and a receipt
  download from the same browser still finds a connection (HTTP/1.1 browsers keep six per host);
* the device restarts: the page never lands on the browser's error page, draws "Connecting…" itself and
  shows the next receipt within seconds of the device being back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Appliance, samples
from tests.e2e.chromium import chromium, claim_screen, qr_texts

pytestmark = pytest.mark.slow

TABS = 8
"""More than the six connections Chromium keeps per host over HTTP/1.1."""
RECOVERY_SECONDS = 5.0
"""After the device is back, the page shows the next receipt within this (the retry pause is at most 5 s)."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as running:
        yield running


def _send(appliance: Appliance, token: str, index: int = 0) -> dict[str, Any]:
    sent = appliance.api.post("/api/v1/tickets", content=samples("pdf")[index].read_bytes(),
                              headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"})
    assert sent.status_code == 201, sent.text
    result: dict[str, Any] = sent.json()
    return result


def test_eight_screen_tabs_share_one_stream_and_leave_room_for_a_download(
        appliance: Appliance, browser: Any, cli_env: dict[str, str]) -> None:
    token = appliance.pair()
    key = claim_screen(appliance, cli_env)
    context = browser.new_context(viewport={"width": 800, "height": 480})
    streams: list[str] = []
    context.on("request", lambda request: streams.append(request.url) if "/display/stream" in request.url else None)
    tabs = []
    for _ in range(TABS):
        tab = context.new_page()
        tab.goto(f"{appliance.url}/screen?key={key}", timeout=10_000)  # the 7th never loaded
        tab.wait_for_selector(".scene[data-scene=idle]", timeout=5000)
        tabs.append(tab)
    time.sleep(1.0)  # the tabs have elected their leader; it holds the stream

    ticket = _send(appliance, token)
    for tab in tabs:
        tab.wait_for_selector(f".scene[data-ticket='{ticket['id']}']", timeout=5000)
    assert qr_texts(tabs[-1].screenshot()) == [ticket["url"]]
    size = tabs[3].evaluate("url => fetch(url).then(r => r.arrayBuffer()).then(b => b.byteLength)",
                            ticket["url"])  # a receipt download from the same browser completes
    assert size == len(samples("pdf")[0].read_bytes())
    assert len(streams) == 1, streams  # one stream for the eight tabs

    tabs[0].close()  # whichever tab led, the others go on following
    tabs[1].close()
    second = _send(appliance, token, 1)
    for tab in tabs[2:]:
        tab.wait_for_selector(f".scene[data-ticket='{second['id']}']", timeout=8000)
    context.close()


def test_after_a_device_restart_the_page_recovers_by_itself(appliance: Appliance, browser: Any,
                                                           cli_env: dict[str, str]) -> None:
    token = appliance.pair()
    key = claim_screen(appliance, cli_env)
    context = browser.new_context(viewport={"width": 800, "height": 480})
    tab = context.new_page()
    navigations: list[str] = []
    tab.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == tab.main_frame else None)
    tab.goto(f"{appliance.url}/screen?key={key}")
    tab.wait_for_selector(".scene[data-scene=idle]", timeout=5000)
    time.sleep(0.5)

    appliance.stop()
    tab.wait_for_selector(".scene[data-scene=connecting]", timeout=5000)
    assert "Connexion…" in tab.inner_text("body")  # drawn by the page, in the screen's language
    time.sleep(3.0)  # the device stays away a while; the page keeps retrying
    appliance.start()
    back = time.monotonic()
    ticket = _send(appliance, token)
    tab.wait_for_selector(f".scene[data-ticket='{ticket['id']}']", timeout=RECOVERY_SECONDS * 1000)
    assert time.monotonic() - back < RECOVERY_SECONDS + 1
    assert qr_texts(tab.screenshot()) == [ticket["url"]]
    assert navigations == [f"{appliance.url}/screen?key={key}"], navigations  # never an error page, no reload
    assert tab.url.startswith(appliance.url)
    context.close()


@pytest.mark.parametrize("missing", [["BroadcastChannel"], ["BroadcastChannel", "EventSource"]])
def test_an_older_browser_without_the_newer_apis_still_follows(appliance: Appliance, browser: Any,
                                                              cli_env: dict[str, str], missing: list[str]) -> None:
    """An old tablet's browser: without BroadcastChannel each tab follows the stream itself; without
    EventSource too, the page polls the scene every 3 s."""
    token = appliance.pair()
    key = claim_screen(appliance, cli_env)
    context = browser.new_context(viewport={"width": 800, "height": 480})
    context.add_init_script("".join(f"delete window.{name};" for name in missing))
    tab = context.new_page()
    tab.goto(f"{appliance.url}/screen?key={key}")
    tab.wait_for_selector(".scene[data-scene=idle]", timeout=5000)
    assert tab.evaluate(f"typeof window.{missing[-1]}") == "undefined"
    ticket = _send(appliance, token)
    tab.wait_for_selector(f".scene[data-ticket='{ticket['id']}']", timeout=8000)
    assert qr_texts(tab.screenshot()) == [ticket["url"]]
    context.close()
