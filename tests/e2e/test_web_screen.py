"""The web screen for old tablets, in a real headless Chromium: it loads, a ticket appears within one second
of the POST, and the QR read from the screenshot is the ticket's URL."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Appliance, run_cli, samples
from tests.e2e.chromium import chromium
from tests.e2e.chromium import qr_texts as _qr


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the module; each test gets its own context."""
    with chromium() as running:
        yield running


@pytest.fixture
def page(browser: Any) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 800, "height": 480})
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    tab = context.new_page()
    tab.requests = requests
    yield tab
    context.close()


def test_the_web_screen_shows_each_ticket_within_a_second(appliance: Appliance, page: object,
                                                          cli_env: dict[str, str], tmp_path: Path) -> None:
    token = appliance.pair()
    run_cli("screens", "add", "--name", "Tablet", "--data-dir", str(appliance.data_dir), env=cli_env)
    link = appliance.display()["screen_link"]["url"]  # type: ignore[index]
    tab = page  # the tablet opens the link shown on the device screen and presses the button
    tab.goto(link)  # type: ignore[attr-defined]
    tab.click("button")  # type: ignore[attr-defined]
    tab.click("text=Open the screen")  # type: ignore[attr-defined]
    tab.wait_for_selector(".scene[data-scene=idle]", timeout=5000)  # type: ignore[attr-defined]
    time.sleep(0.5)  # the page's EventSource is connected

    for pdf in samples("pdf")[:3]:
        started = time.monotonic()
        sent = appliance.api.post("/api/v1/tickets", content=pdf.read_bytes(), params={"total": "4.20"},
                                  headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"})
        assert sent.status_code == 201
        ticket = sent.json()
        tab.wait_for_selector(f".scene[data-ticket='{ticket['id']}']", timeout=1000)  # type: ignore[attr-defined]
        assert time.monotonic() - started < 1.0
        assert _qr(tab.screenshot()) == [ticket["url"]]  # type: ignore[attr-defined]

    own = f"http://127.0.0.1:{appliance.port}/"
    assert all(url.startswith(own) for url in tab.requests)  # type: ignore[attr-defined]  # no third party
    assert tab.context.cookies() == []  # type: ignore[attr-defined]


def test_without_a_key_the_screen_is_refused(appliance: Appliance, page: object) -> None:
    response = page.goto(appliance.url + "/screen")  # type: ignore[attr-defined]
    assert response.status == 401
    response = page.goto(appliance.url + "/screen?key=" + "x" * 43)  # type: ignore[attr-defined]
    assert response.status == 401


def test_without_javascript_the_page_still_follows_by_meta_refresh(appliance: Appliance, browser: Any) -> None:
    token = appliance.pair()
    key = appliance.screen_token()
    context = browser.new_context(java_script_enabled=False, viewport={"width": 800, "height": 480})
    tab = context.new_page()
    tab.goto(f"{appliance.url}/screen?key={key}")
    tab.wait_for_selector(".scene[data-scene=idle]")
    ticket = appliance.api.post("/api/v1/tickets", content=samples("pdf")[0].read_bytes(),
                                headers={"Authorization": f"Bearer {token}",
                                         "Content-Type": "application/pdf"}).json()
    tab.wait_for_selector(f".scene[data-ticket='{ticket['id']}']", timeout=8000)
    assert _qr(tab.screenshot()) == [ticket["url"]]
    context.close()


def test_a_revoked_tablet_leaves_the_receipt_at_once(appliance: Appliance, page: object,
                                                     cli_env: dict[str, str]) -> None:
    """The shop owner revokes the tablet while a receipt is on it: its stream ends, the page asks for the scene
    again and is refused, so the QR goes away (within the page's first 0.5 s retry pause) and later receipts
    never show."""
    import json

    token = appliance.pair()
    run_cli("screens", "add", "--name", "Tablet", "--data-dir", str(appliance.data_dir), env=cli_env)
    tab = page
    tab.goto(appliance.display()["screen_link"]["url"])  # type: ignore[attr-defined,index]
    tab.click("button")  # type: ignore[attr-defined]
    tab.click("text=Open the screen")  # type: ignore[attr-defined]
    tab.wait_for_selector(".scene[data-scene=idle]", timeout=5000)  # type: ignore[attr-defined]
    time.sleep(0.5)  # the page's EventSource is connected
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"}
    first = appliance.api.post("/api/v1/tickets", content=samples("pdf")[0].read_bytes(), headers=headers).json()
    tab.wait_for_selector(f".scene[data-ticket='{first['id']}']", timeout=2000)  # type: ignore[attr-defined]

    (screen,) = json.loads(run_cli("screens", "list", "--json", "--data-dir", str(appliance.data_dir),
                                   env=cli_env).stdout)
    run_cli("screens", "revoke", screen["id"], "--data-dir", str(appliance.data_dir), env=cli_env)
    tab.wait_for_selector("text=This screen is not paired", timeout=4000)  # type: ignore[attr-defined]
    assert _qr(tab.screenshot()) == []  # type: ignore[attr-defined]
    appliance.api.post("/api/v1/tickets", content=samples("pdf")[1].read_bytes(), headers=headers)
    time.sleep(1.0)
    assert _qr(tab.screenshot()) == []  # type: ignore[attr-defined]


def test_the_pairing_scene_says_how_long_its_code_stays_valid_and_counts_down(appliance: Appliance,
                                                                              browser: Any) -> None:
    """A fresh device shows its pairing code on a tablet too, with how many minutes it stays valid (as the
    kiosk does), and the line counts down by itself between scene changes (the tablet's clock is moved on
    two minutes: the page counts from when it drew the line, not from the tablet's idea of the time)."""
    expires = appliance.display()["pairing"]["expires_at"]  # type: ignore[index]
    minutes = math.ceil((datetime.fromisoformat(str(expires)).timestamp() - time.time()) / 60)
    context = browser.new_context(viewport={"width": 800, "height": 480})
    context.clock.install()
    tab = context.new_page()
    tab.goto(f"{appliance.url}/screen?key={appliance.screen_token()}")
    tab.wait_for_selector(".scene[data-scene=pairing]", timeout=5000)
    assert str(appliance.display()["shop"]) in tab.inner_text(".scene")  # which device this code is for
    line = tab.locator("p[data-left]")
    assert line.text_content() in (f"Ce code expire dans {minutes} min", f"Ce code expire dans {minutes - 1} min")
    shown = int(str(line.text_content()).split()[-2])
    context.clock.fast_forward("02:00")
    deadline = time.monotonic() + 5
    while line.text_content() != f"Ce code expire dans {shown - 2} min" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert line.text_content() == f"Ce code expire dans {shown - 2} min"
    context.close()
