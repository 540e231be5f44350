"""An acknowledged receipt is durable: kill -9 in the middle of a burst, restart, every 201 still downloads."""

from __future__ import annotations

import threading
import time

import httpx

from tests.conftest import Appliance, samples


def test_kill_9_during_a_burst_loses_no_acknowledged_ticket(appliance_factory: object) -> None:
    app: Appliance = appliance_factory()  # type: ignore[operator]
    token = app.pair()
    pdfs = [p.read_bytes() for p in samples("pdf")]
    acknowledged: list[tuple[str, bytes]] = []
    failures: list[str] = []
    stop = threading.Event()

    def till(worker: int) -> None:
        with httpx.Client(base_url=app.api_url, verify=app.ssl_context(), timeout=10,
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"}) as client:
            n = 0
            while not stop.is_set():
                pdf = pdfs[(worker + n) % len(pdfs)]
                n += 1
                try:
                    r = client.post("/api/v1/tickets", content=pdf, params={"ref": f"{worker}-{n}"})
                except httpx.TransportError:
                    return  # the device died under us: this one was never acknowledged
                if r.status_code == 201:
                    acknowledged.append((r.json()["url"], pdf))
                else:
                    failures.append(r.text)

    workers = [threading.Thread(target=till, args=(i,)) for i in range(4)]
    for w in workers:
        w.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    app.kill9()
    stop.set()
    for w in workers:
        w.join()
    assert not failures
    assert len(acknowledged) >= 40

    app.start()
    for url, pdf in acknowledged:
        r = httpx.get(url)
        assert r.status_code == 200 and r.content == pdf, url.rsplit("/", 1)[0]
    # No half-stored ticket: every row has its whole PDF (the hash matches).
    import hashlib
    import sqlite3

    db = sqlite3.connect(f"file:{app.data_dir / 'eticket.sqlite3'}?mode=ro", uri=True)
    rows = db.execute("SELECT pdf_sha256, pdf FROM tickets").fetchall()
    db.close()
    assert len(rows) >= len(acknowledged)
    assert all(hashlib.sha256(pdf).hexdigest() == digest for digest, pdf in rows)
    # Pairing survived too: the same POS token still works.
    again = app.api.post("/api/v1/tickets", content=pdfs[0],
                       headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"})
    assert again.status_code == 201
