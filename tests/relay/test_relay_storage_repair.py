"""A device publishing to a relay whose database is repaired: the placeholders of lost receipts never reach the
download watch, so downloads through the relay keep being reported (real device and relay processes)."""

from __future__ import annotations

import sqlite3

import httpx

from tests.conftest import Appliance, fetch_link, samples, wait_for
from tests.relay.conftest import RelayProc

PDFS = [p for p in samples("pdf") if "password" not in p.name and "encrypt" not in p.name]
RECEIPTS = 50
TRUNCATED_BYTES = 3_000_000


def _send(app: Appliance, token: str, pdf: bytes) -> str:
    r = app.api.post("/api/v1/tickets", content=pdf,
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"})
    assert r.status_code == 201, r.text
    return str(r.json()["url"])


def _relay_status(app: Appliance) -> dict[str, object]:
    status: dict[str, object] = httpx.get(app.url + "/healthz").json()["relay"]
    return status


def test_a_repair_that_loses_uploaded_receipts_keeps_the_relay_download_watch_working(
    appliance_factory: object, relay_factory: object
) -> None:
    relay: RelayProc = relay_factory()  # type: ignore[operator]
    app: Appliance = appliance_factory("--relay-url", relay.url)  # type: ignore[operator]
    token = app.pair()
    for i in range(RECEIPTS):
        _send(app, token, PDFS[i % len(PDFS)].read_bytes())
    wait_for(lambda: _relay_status(app)["sent"] == RECEIPTS, 60, "every upload")
    app.stop()
    db_path = app.data_dir / "eticket.sqlite3"
    assert db_path.stat().st_size > TRUNCATED_BYTES
    with db_path.open("r+b") as handle:
        handle.truncate(TRUNCATED_BYTES)
    app.start()
    health = httpx.get(app.url + "/healthz").json()
    assert health["storage"]["status"] == "repaired" and health["storage"]["last_repair"]["receipts_lost"] > 0
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        placeholders = db.execute("SELECT COUNT(*) FROM tickets WHERE token = ''").fetchone()[0]
    finally:
        db.close()
    assert placeholders > 0  # the repair made placeholders for lost receipts: the case under test

    pdf = PDFS[0].read_bytes()
    url = _send(app, token, pdf)
    wait_for(lambda: _relay_status(app)["pending"] == 0, 60, "the new upload")
    got = fetch_link(url)
    assert got.status_code == 200 and got.content == pdf
    wait_for(lambda: app.display()["scene"] == "downloaded", 60, "the downloaded scene from the relay's notice")
    logs = app.logs()
    assert "BadToken" not in logs and "receipt token has" not in logs and "Traceback" not in logs
