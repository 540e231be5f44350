"""Without a relay, a shop's guest Wi-Fi join QR shows before the receipt QR."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Appliance, samples, wait_for


def _send_ticket(app: Appliance) -> dict[str, str]:
    token = app.pair()
    r = app.api.post("/api/v1/tickets", content=samples("pdf")[0].read_bytes(),
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"})
    assert r.status_code == 201
    body: dict[str, str] = r.json()
    return body


def test_wifi_join_qr_first_then_the_receipt_qr(appliance_factory: object, tmp_path: Path) -> None:
    config = tmp_path / "eticket.toml"
    config.write_text('guest_wifi_ssid = "Boulangerie;Invités"\nguest_wifi_password = "croissant:2026"\n'
                      "guest_wifi_seconds = 2\n")
    app: Appliance = appliance_factory("--config", str(config))  # type: ignore[operator]
    sent = _send_ticket(app)
    state = app.display()
    assert state["scene"] == "wifi"
    wifi = state["ticket"]["wifi"]  # type: ignore[index]
    # The WIFI: format (ZXing's, read by Android and iOS cameras): special characters backslash-escaped.
    assert wifi == {"ssid": "Boulangerie;Invités", "qr": r"WIFI:T:WPA;S:Boulangerie\;Invités;P:croissant\:2026;;"}
    assert state["ticket"]["url"] == sent["url"]  # type: ignore[index]
    wait_for(lambda: app.display()["scene"] == "ticket", 6, "the receipt QR after the Wi-Fi step")
    assert "croissant" not in app.logs()


def test_the_web_screen_draws_the_wifi_step() -> None:
    from appliance.web.screen_page import _body

    state = {"scene": "wifi", "ticket": {"wifi": {"ssid": "Guests <b>", "qr": "WIFI:T:nopass;S:Guests;;"}}}
    html = _body(state, lambda text: text)
    assert "<svg" in html and "Guests &lt;b&gt;" in html and "Join the shop" in html


def test_a_relay_replaces_the_wifi_step(appliance_factory: object, tmp_path: Path) -> None:
    config = tmp_path / "eticket.toml"
    config.write_text('guest_wifi_ssid = "Guests"\nrelay_url = "http://127.0.0.1:9"\n')
    app: Appliance = appliance_factory("--config", str(config))  # type: ignore[operator]
    _send_ticket(app)
    state = app.display()
    assert state["scene"] == "ticket" and state["ticket"]["wifi"] is None  # type: ignore[index]


def test_a_refused_settings_file_is_shown_on_the_screen_until_fixed(appliance_factory: object,
                                                                    tmp_path: Path) -> None:
    """``eticket provision`` writes its status; the appliance puts a refused file's message on every screen."""
    import json

    import numpy as np
    import pygame

    from appliance.web.screen_page import _notice
    from kiosk.scenes import NOTICE_BACKGROUND, render
    from tests.conftest import wait_for

    status = tmp_path / "status.json"
    config = tmp_path / "eticket.toml"
    config.write_text(f'provision_status_file = "{status}"\n')
    app: Appliance = appliance_factory("--config", str(config))  # type: ignore[operator]
    message = "/boot/firmware/eticket.toml: display_rotation: must be one of 0, 90, 180, 270"
    status.write_text(json.dumps({"ok": False, "message": message}))
    wait_for(lambda: app.display()["notice"] == message, 10, "the notice in the display state")
    state = app.display()
    frame = pygame.surfarray.array3d(render(state, (800, 480)))
    assert (frame == np.array(NOTICE_BACKGROUND)).all(axis=2).sum() > 800 * 480 // 10  # the band is drawn
    assert "display_rotation" in _notice(state, lambda text: text)
    status.write_text(json.dumps({"ok": True, "message": "applied"}))
    wait_for(lambda: app.display()["notice"] is None, 10, "the notice to go once a good file is applied")
