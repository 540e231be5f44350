"""Pairing: the code on the screen is the only way in; it is single-use, expires and resists guessing."""

from __future__ import annotations

import time

import httpx

from tests.conftest import Appliance


def _pair(app: Appliance, code: object, name: object = "till") -> httpx.Response:
    return httpx.post(app.url + "/api/v1/pair", json={"code": code, "name": name})


def test_code_is_single_use_and_pairing_closes(appliance: Appliance) -> None:
    code = appliance.pairing_code()
    first = _pair(appliance, code)
    assert first.status_code == 201
    body = first.json()
    assert set(body) == {"pos_id", "token", "device_id", "api"} and len(body["token"]) >= 22
    replay = _pair(appliance, code)
    assert replay.status_code == 403 and replay.json()["type"].endswith("/pairing-refused")
    assert appliance.display()["scene"] == "idle"
    assert httpx.get(appliance.url + "/healthz").json()["paired"] is True


def test_wrong_codes_are_refused_and_the_fifth_renews_the_code(appliance: Appliance) -> None:
    code = appliance.pairing_code()
    for attempt in range(5):
        r = _pair(appliance, "ZZZZ-ZZZZ" if code != "ZZZZ-ZZZZ" else "YYYY-YYYY")
        assert r.status_code == 403, attempt
    fresh = appliance.pairing_code()
    assert fresh != code
    assert _pair(appliance, code).status_code == 403  # the old code is dead
    assert _pair(appliance, fresh).status_code == 201


def test_codes_expire_and_the_screen_gets_a_new_one(appliance_factory: object) -> None:
    app: Appliance = appliance_factory()  # type: ignore[operator]
    app.stop()
    app.extra = ["--config", str(app.data_dir.parent / "short.toml")]
    (app.data_dir.parent / "short.toml").write_text("pairing_code_ttl_seconds = 1.5\n")
    app.start()
    code = app.pairing_code()
    time.sleep(3)
    assert _pair(app, code).status_code == 403
    assert app.pairing_code() != code


def test_malformed_pairing_requests_name_the_fault(appliance: Appliance) -> None:
    for body in (b"not json", b"[]", b'{"name": "x"}', b'{"code": 5}'):
        r = httpx.post(appliance.url + "/api/v1/pair", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["type"].endswith("/bad-pairing-request"), body
    assert _pair(appliance, appliance.pairing_code(), name="x" * 65).status_code == 400
    assert _pair(appliance, appliance.pairing_code()).status_code == 201
