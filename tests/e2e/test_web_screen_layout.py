"""The web screen on the tablets shops have, in real Chromium: held upright (portrait), and with the
browser's forced dark mode on (Chromium's auto dark mode, which some tablets' system setting turns on).
The QR read from the screenshot is the ticket's URL, and every line of text stays on the screen."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from eticket_core.money import format_money
from tests.conftest import Appliance, samples
from tests.e2e.chromium import FORCE_DARK_FLAG, chromium, qr_texts

UPRIGHT_TABLET = {"width": 600, "height": 960}
LANDSCAPE_PANEL = {"width": 800, "height": 480}


@pytest.fixture(scope="module")
def dark_browser() -> Iterator[Any]:
    """One Chromium with forced dark mode for the module."""
    with chromium(FORCE_DARK_FLAG) as running:
        yield running


def _show_ticket(appliance: Appliance, browser: Any, viewport: dict[str, int]) -> tuple[Any, dict[str, Any]]:
    """A ticket of 104.90 EUR on the device, then a tab showing the screen."""
    token = appliance.pair()
    ticket = appliance.api.post("/api/v1/tickets", content=samples("pdf")[0].read_bytes(),
                                params={"total": "1234567.50", "currency": "CHF"},
                                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"})
    assert ticket.status_code == 201, ticket.text
    tab = browser.new_context(viewport=viewport).new_page()
    tab.goto(f"{appliance.url}/screen?key={appliance.screen_token()}")
    tab.wait_for_selector(f".scene[data-ticket='{ticket.json()['id']}']", timeout=5000)
    return tab, ticket.json()


def test_an_upright_tablet_stacks_the_qr_above_every_line_of_text(appliance: Appliance, dark_browser: Any) -> None:
    """A tablet held upright (600x960): the QR on top, the total, the instruction and "Link valid N days"
    below it, each line inside the screen's width; the QR decodes (in forced dark mode too)."""
    tab, ticket = _show_ticket(appliance, dark_browser, UPRIGHT_TABLET)
    qr = tab.locator(".qr").bounding_box()
    lines = tab.eval_on_selector_all(
        ".scene p", "ps => ps.map(p => { const r = p.getBoundingClientRect(); const range = document.createRange();"
        " range.selectNodeContents(p); const t = range.getBoundingClientRect();"
        " return {text: p.textContent, top: r.top, left: t.left, right: t.right, bottom: t.bottom}; })")
    texts = [line["text"] for line in lines]
    assert format_money("1234567.50", "CHF", "fr") in texts, texts
    for line in lines:
        assert line["top"] >= qr["y"] + qr["height"] - 1, f"{line['text']!r} beside the QR, not below it"
        assert 0 <= line["left"] and line["right"] <= UPRIGHT_TABLET["width"], f"{line['text']!r} runs off the screen"
        assert line["bottom"] <= UPRIGHT_TABLET["height"], f"{line['text']!r} runs off the bottom"
    assert qr["width"] >= 0.8 * UPRIGHT_TABLET["width"]  # the QR takes the width, as the kiosk draws it
    assert "Lien valable 30 jours" in texts  # the device's language (fr), the retention (30 days by default)
    assert qr_texts(tab.screenshot()) == [ticket["url"]]
    tab.context.close()


def test_forced_dark_mode_keeps_the_qr_black_on_white(appliance: Appliance, dark_browser: Any) -> None:
    """Forced dark mode on a landscape panel darkens the page (Chromium 156 ignores ``color-scheme: only
    light`` there), but the QR keeps its own white quiet zone: the screenshot decodes to the ticket's URL,
    and the margin around the modules is white, which every phone's reader needs."""
    tab, ticket = _show_ticket(appliance, dark_browser, LANDSCAPE_PANEL)
    png = tab.screenshot()
    assert qr_texts(png) == [ticket["url"]]
    from io import BytesIO

    from PIL import Image

    image = Image.open(BytesIO(png)).convert("L")
    box = tab.locator(".qr").bounding_box()
    module = box["width"] / 37  # 29 modules (version 3) and 4 on each side, at least
    for x, y in ((box["x"] + module, box["y"] + module), (box["x"] + module, box["y"] + box["height"] / 2),
                 (box["x"] + box["width"] / 2, box["y"] + box["height"] - module)):
        assert image.getpixel((int(x), int(y))) > 200, f"the quiet zone is dark at {x:.0f},{y:.0f}"
    tab.context.close()
