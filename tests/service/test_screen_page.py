"""The web screen (/screen) over real HTTP: what a tablet at the counter shows for a ticket."""

from __future__ import annotations

import httpx

from tests.conftest import Appliance, samples


def test_the_web_screen_writes_the_total_in_the_screen_language(appliance: Appliance, pos_token: str) -> None:
    """The device's language is French by default: the tablet shows "104,90 €" like the kiosk, and "€104.90"
    for a ticket the till sends with lang=en."""
    pdf = samples("pdf")[0].read_bytes()
    for lang, shown in ((None, "104,90\u00a0€"), ("en", "€104.90")):
        params = {"total": "104.90", "currency": "EUR", **({"lang": lang} if lang else {})}
        sent = appliance.api.post("/api/v1/tickets", content=pdf, params=params, timeout=30,
                                  headers={"Authorization": f"Bearer {pos_token}", "Content-Type": "application/pdf"})
        assert sent.status_code == 201, sent.text
        page = httpx.get(appliance.url + "/screen", params={"key": appliance.screen_token()})
        assert page.status_code == 200
        assert f"<p class=big>{shown}</p>" in page.text
