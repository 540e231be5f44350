"""The update's health gate on a real appliance: ``/healthz`` names the image's release, and ``POST
/selftest`` on the admin socket takes a receipt through intake → store → display and leaves nothing behind."""

from __future__ import annotations

import httpx

from tests.conftest import Appliance, samples

STEPS = ["intake", "store", "display", "clear", "delete"]


def test_selftest_goes_through_every_step_and_leaves_no_trace(appliance: Appliance) -> None:
    """A till's receipt is stored; the self-test runs all five steps, each saying what it saw, and afterwards
    the till's receipt is still the only one stored and still downloadable, and the screen is not left on
    the self-test receipt."""
    token = appliance.pair()
    sent = appliance.api.post("/api/v1/tickets", content=samples("pdf")[1].read_bytes(),
                              headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"})
    assert sent.status_code == 201, sent.text
    answer = appliance.admin("POST", "/selftest")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ok"] is True, body
    assert [s["step"] for s in body["steps"]] == STEPS
    assert all(s["ok"] and s["detail"] for s in body["steps"]), body
    assert appliance.ticket_rows() == 1
    assert httpx.get(sent.json()["url"]).status_code == 200
    assert appliance.display()["scene"] != "ticket"


def test_healthz_names_no_image_on_a_desk(appliance: Appliance) -> None:
    """Not running from a device image (no version= in /etc/eticket-image-id): ``image_version`` is null."""
    health = httpx.get(appliance.url + "/healthz").json()
    assert "image_version" in health and health["image_version"] is None
