"""Pairing: the QR (secret + pinned certificate) or the typed code (SPAKE2) is the only way in; codes are
single-use, expire, lock out after five wrong tries; tokens can be revoked."""

from __future__ import annotations

import time

import httpx
import pytest

from appliance.client import RefusedError, pair_with_code, pair_with_uri
from tests.conftest import Appliance


def _pair(app: Appliance, secret: object, name: object = "till") -> httpx.Response:
    return app.api.post("/api/v1/pair", json={"secret": secret, "name": name})


def test_qr_secret_is_single_use_and_pairing_closes(appliance: Appliance) -> None:
    secret = appliance.pairing_secret()
    first = _pair(appliance, secret)
    assert first.status_code == 201
    body = first.json()
    assert set(body) == {"pos_id", "token", "device_id", "api"} and len(body["token"]) >= 22
    replay = _pair(appliance, secret)
    assert replay.status_code == 403 and replay.json()["type"].endswith("/pairing-refused")
    assert appliance.display()["scene"] == "idle"
    assert httpx.get(appliance.url + "/healthz").json()["paired"] is True


def test_pairing_by_uri_and_by_code_with_the_client_library(appliance: Appliance) -> None:
    by_uri = pair_with_uri(appliance.pairing_uri(), "Till 1")
    assert by_uri.cert_pem == appliance.cert_pem() and by_uri.address == appliance.api_address
    assert appliance.admin("POST", "/pairings/open").status_code == 200
    by_code = pair_with_code(appliance.api_address, appliance.pairing_code().lower(), "Till 2")
    assert by_code.device_id == by_uri.device_id and by_code.token != by_uri.token
    names = sorted(p["name"] for p in appliance.admin("GET", "/pairings").json())
    assert names == ["Till 1", "Till 2"]


def test_five_wrong_codes_lock_out_and_renew_the_code(appliance: Appliance) -> None:
    code = appliance.pairing_code()
    wrong = "ZZZZ-ZZZZ" if code != "ZZZZ-ZZZZ" else "YYYY-YYYY"
    for attempt in range(5):
        with pytest.raises(RefusedError) as refused:
            pair_with_code(appliance.api_address, wrong)
        assert refused.value.status == 403, attempt
    state = appliance.display()["pairing"]
    assert state["locked_until"] is not None  # type: ignore[index]
    fresh = appliance.pairing_code()
    assert fresh != code
    with pytest.raises(RefusedError) as locked:
        pair_with_code(appliance.api_address, fresh)
    assert locked.value.status == 429 and locked.value.slug == "pairing-locked"
    assert int(_pair(appliance, "x").headers["retry-after"]) > 0


def test_wrong_secrets_count_too(appliance: Appliance) -> None:
    secret = appliance.pairing_secret()
    for _ in range(5):
        assert _pair(appliance, "not-the-secret").status_code == 403
    assert _pair(appliance, secret).status_code == 429  # locked, and the old secret is dead anyway


def test_codes_expire_and_the_screen_gets_a_new_one(appliance_factory: object, tmp_path: object) -> None:
    app: Appliance = appliance_factory()  # type: ignore[operator]
    app.stop()
    config = app.data_dir.parent / "short.toml"
    config.write_text("pairing_code_ttl_seconds = 1.5\n")
    app.extra = ["--config", str(config)]
    app.start()
    secret = app.pairing_secret()
    time.sleep(3)
    assert _pair(app, secret).status_code == 403
    assert app.pairing_secret() != secret


def test_revoked_token_gets_401_and_pairing_reopens_when_none_is_left(appliance: Appliance) -> None:
    token = appliance.pair()
    (pos,) = appliance.admin("GET", "/pairings").json()
    assert appliance.admin("DELETE", f"/pairings/{pos['id']}").status_code == 204
    r = appliance.api.delete("/api/v1/display", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert appliance.display()["scene"] == "pairing"
    assert appliance.admin("DELETE", "/pairings/pos-nope").status_code == 404


def test_pairing_is_closed_on_a_paired_device_until_opened_locally(appliance: Appliance) -> None:
    appliance.pair()
    with pytest.raises(RefusedError) as closed:
        pair_with_code(appliance.api_address, "ABCD-EFGH")
    assert closed.value.status == 403 and "pairings open" in closed.value.detail
    opened = appliance.admin("POST", "/pairings/open").json()
    assert opened["closes_at"] is not None
    assert appliance.display()["scene"] == "pairing"
    pair_with_code(appliance.api_address, appliance.pairing_code())


def test_malformed_pairing_requests_name_the_fault(appliance: Appliance) -> None:
    for body in (b"not json", b"[]", b'{"name": "x"}', b'{"secret": 5}'):
        r = appliance.api.post("/api/v1/pair", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["type"].endswith("/bad-pairing-request"), body
    for body in (b"{}", b'{"msg": "AAAA"}', b'{"msg": 5}'):
        r = appliance.api.post("/api/v1/pair/spake2", content=body)
        assert r.status_code == 400, body
    r = appliance.api.post("/api/v1/pair/spake2/nope/confirm", json={"confirm": "A" * 43})
    assert r.status_code == 403
    assert _pair(appliance, appliance.pairing_secret(), name="x" * 65).status_code == 400
    assert _pair(appliance, appliance.pairing_secret()).status_code == 201


def test_concurrent_uses_of_one_secret_pair_exactly_one_pos(appliance: Appliance) -> None:
    """Single use holds under a race: twenty requests with the same QR secret at once make one pairing."""
    from concurrent.futures import ThreadPoolExecutor

    secret = appliance.pairing_secret()
    ctx = appliance.ssl_context()

    def attempt(_: int) -> int:
        with httpx.Client(base_url=appliance.api_url, verify=ctx) as client:
            return client.post("/api/v1/pair", json={"secret": secret, "name": "racer"}).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(attempt, range(20)))
    assert codes.count(201) == 1 and set(codes) <= {201, 403}, codes
    assert len(appliance.admin("GET", "/pairings").json()) == 1


def test_points_off_the_curve_are_a_clear_400(appliance: Appliance) -> None:
    from appliance.pairing import b64e

    for raw in (b"A" + bytes(range(32)), b"A" + b"\xff" * 32, b"A" + bytes(32)):
        r = appliance.api.post("/api/v1/pair/spake2", json={"msg": b64e(raw)})
        assert r.status_code == 400 and r.json()["type"].endswith("/bad-pairing-request"), raw
    assert "Traceback" not in appliance.logs()


def test_state_files_are_owner_only(appliance: Appliance) -> None:
    assert appliance.data_dir.stat().st_mode & 0o777 == 0o700
    for name in ("eticket.sqlite3", "kiosk.json", "admin.sock", "tls/key.pem"):
        assert (appliance.data_dir / name).stat().st_mode & 0o077 == 0, name


def _abandoned_start(app: Appliance) -> httpx.Response:
    """Step 1 of a typed-code exchange that is never confirmed (a till that crashed, or someone holding
    exchanges open)."""
    from appliance.pairing import PosSide, b64e

    device_id = str(httpx.get(app.url + "/healthz").json()["device_id"])
    return app.api.post("/api/v1/pair/spake2", json={"msg": b64e(PosSide("ZZZZZZZZ", device_id).msg_a)})


def test_exchanges_left_open_do_not_keep_a_till_from_pairing_by_code(appliance: Appliance) -> None:
    """Four typed-code exchanges are started and abandoned. A fifth till is told to retry in a moment
    (429 pairing-busy, Retry-After), and then pairs with the code on screen: a new exchange displaces a stale one."""
    for _ in range(4):
        assert _abandoned_start(appliance).status_code == 200
    code = appliance.pairing_code()
    busy = _abandoned_start(appliance)
    assert busy.status_code == 429 and busy.json()["type"].endswith("/pairing-busy"), busy.text
    time.sleep(int(busy.headers["retry-after"]))
    device = pair_with_code(appliance.api_address, code, "Till 5")
    assert [p["name"] for p in appliance.admin("GET", "/pairings").json()] == ["Till 5"]
    assert device.token


def test_a_flood_of_abandoned_exchanges_ends_in_the_lockout_on_screen(appliance: Appliance) -> None:
    """Someone keeps starting exchanges without finishing them: each one displaced counts as a wrong attempt,
    so pairing locks and the screen says so, instead of typed-code pairing failing unseen."""
    code = appliance.pairing_code()
    starts = 0
    deadline = time.monotonic() + 30
    while True:
        assert time.monotonic() < deadline, f"no lockout after {starts} abandoned exchanges"
        r = _abandoned_start(appliance)
        starts += 1
        if r.status_code == 429 and r.json()["type"].endswith("/pairing-busy"):
            time.sleep(int(r.headers["retry-after"]))
            continue
        if r.status_code != 200:
            break
    assert r.status_code == 429 and r.json()["type"].endswith("/pairing-locked"), r.text
    state = appliance.display()
    assert state["scene"] == "pairing" and state["pairing"]["locked_until"] is not None  # type: ignore[index]
    assert appliance.pairing_code() != code
    page = httpx.get(appliance.url + "/screen", params={"key": appliance.screen_token()})
    assert "Appairage bloqué" in page.text and "<svg" not in page.text  # the web screen says so too (French)
    with pytest.raises(RefusedError) as locked:
        pair_with_code(appliance.api_address, appliance.pairing_code())
    assert locked.value.slug == "pairing-locked"
