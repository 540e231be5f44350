"""The device's relay upload queue when something fails under it: a hostile relay's odd replies, or storage the
device cannot use. Each case is one clear ``relay.last_error`` in ``/healthz`` and a retry, never a traceback
or a dead queue; the rest of the device goes on. Real ``eticket serve`` processes; a real relay, or a small
hostile stub (an external party's server, not ours)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Appliance, samples, wait_for
from tests.relay.conftest import RelayProc
from tests.relay.test_relay_hardening import HostileRelay


def _relay_health(app: Appliance) -> dict[str, Any]:
    relay: dict[str, Any] = httpx.get(app.url + "/healthz", timeout=5).json()["relay"]
    return relay


def _attempts(app: Appliance) -> list[int]:
    db = sqlite3.connect(f"file:{app.data_dir / 'eticket.sqlite3'}?mode=ro", uri=True)
    try:
        return [int(row[0]) for row in db.execute("SELECT attempts FROM outbox WHERE state = 'pending'")]
    finally:
        db.close()


def _send(app: Appliance, token: str) -> None:
    r = app.api.post("/api/v1/tickets", content=samples("pdf")[0].read_bytes(),
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"})
    assert r.status_code == 201, r.text


def test_a_stored_answer_nested_two_thousand_deep_is_one_clear_error_and_a_retry(appliance_factory: object) -> None:
    """The relay answers 201 with the receipt id buried 2000 arrays deep (Python's parser would stop with
    RecursionError): the device does not trust it, says why in /healthz, retries after its backoff, logs no
    traceback, and the till is served as ever."""
    hostile = HostileRelay()
    hostile.mode = "nested"
    try:
        app: Appliance = appliance_factory("--relay-url", f"http://127.0.0.1:{hostile.port}")  # type: ignore[operator]
        token = app.pair()
        _send(app, token)
        wait_for(lambda: "nests JSON deeper than 8 levels" in str(_relay_health(app)["last_error"]), 20,
                 "the nested answer named in relay.last_error")
        assert _relay_health(app)["last_error"] == "relay answered 201 but its reply nests JSON deeper than 8 levels"
        wait_for(lambda: _attempts(app) and _attempts(app)[0] >= 2, 20, "a retry after the backoff")
        assert _relay_health(app)["pending"] == 1 and _relay_health(app)["sent"] == 0
        assert "Traceback" not in app.logs() and "RecursionError" not in app.logs()
        _send(app, token)
        assert app.proc is not None and app.proc.poll() is None
    finally:
        hostile.close()


def test_a_download_status_answer_nested_deep_is_reported_and_asked_again(appliance_factory: object) -> None:
    """Uploads are acknowledged, but the relay's download status answer nests 2000 deep: /healthz says the
    status query failed and why, the device asks again later (after a backoff, not in a loop), no traceback."""
    hostile = HostileRelay()
    hostile.mode = "nested-status"
    try:
        app: Appliance = appliance_factory("--relay-url", f"http://127.0.0.1:{hostile.port}")  # type: ignore[operator]
        token = app.pair()
        _send(app, token)
        wait_for(lambda: _relay_health(app)["sent"] == 1, 20, "the upload acknowledged")
        wait_for(lambda: "nests JSON deeper than 8 levels" in str(_relay_health(app)["last_error"]), 20,
                 "the nested status answer named in relay.last_error")
        assert _relay_health(app)["last_error"] == ("download status query failed: relay answered 200 but its "
                                                    "reply nests JSON deeper than 8 levels")
        wait_for(lambda: sum(r.startswith("/api/v1/status") for r in hostile.requests) >= 2, 20, "a second query")
        assert "Traceback" not in app.logs() and "RecursionError" not in app.logs()
        assert app.proc is not None and app.proc.poll() is None
    finally:
        hostile.close()


def test_uploads_wait_out_unusable_storage_and_drain_once_it_is_back(relay_factory: object,
                                                                      appliance_factory: object,
                                                                      tmp_path: Path) -> None:
    """The database cannot be opened at all when the device starts (a directory where the file should be, as
    a damaged file system can leave): the upload queue does not die with it. /healthz says the uploads wait for
    the storage; once the fault is gone the device pairs, takes a receipt, and the queue delivers it to the
    real relay, without a restart."""
    relay: RelayProc = relay_factory()  # type: ignore[operator]
    data = tmp_path / "broken"
    (data / "eticket.sqlite3").mkdir(parents=True)
    app: Appliance = appliance_factory("--relay-url", relay.url, data_dir=data)  # type: ignore[operator]
    wait_for(lambda: "storage unavailable" in str(_relay_health(app)["last_error"]), 20,
             "the storage fault in relay.last_error")
    assert _relay_health(app)["pending"] is None  # unknown, not a made-up 0
    (data / "eticket.sqlite3").rmdir()  # the fault is gone
    answers: list[httpx.Response] = []

    def paired() -> bool:
        answers.append(app.api.post("/api/v1/pair", json={"secret": app.pairing_secret(), "name": "till"}))
        return answers[-1].status_code == 201

    wait_for(paired, 30, "pairing to work again")
    _send(app, str(answers[-1].json()["token"]))
    wait_for(lambda: _relay_health(app)["sent"] == 1, 30, "the receipt uploaded to the relay")
    assert _relay_health(app)["last_error"] is None and _relay_health(app)["pending"] == 0
    assert "Traceback" not in app.logs()
    assert app.proc is not None and app.proc.poll() is None
