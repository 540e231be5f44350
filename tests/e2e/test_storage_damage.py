"""A damaged database on the SD card: the device starts, repairs itself, never serves wrong bytes, and says so.

Each test runs a real ``eticket serve``, sends receipts from a paired till, stops the device, damages the
database file as a failing SD card or a power cut would (bytes inside a stored PDF, a b-tree page, the header
page, a truncated file), starts it again and checks what the shop and its customers would see.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import Appliance, run_cli, samples, wait_for

# About 80 s of appliance restarts on 2 cores: under the slow marker (`make test-slow`, run by CI) to keep the
# quick suite within its 15-minute budget.
pytestmark = pytest.mark.slow

PAGE_SIZE = 4096


def _send(app: Appliance, token: str, pdf: bytes, ref: str) -> str:
    r = app.api.post("/api/v1/tickets", content=pdf, params={"ref": ref},
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"})
    assert r.status_code == 201, r.text
    return str(r.json()["url"])


def _device_with_receipts(factory: Callable[..., Appliance], count: int = 12) -> tuple[Appliance, str,
                                                                                         list[tuple[str, bytes]]]:
    app = factory()
    token = app.pair()
    pdfs = [p.read_bytes() for p in samples("pdf")][:6]
    sent = [(_send(app, token, pdfs[i % len(pdfs)], f"r{i}"), pdfs[i % len(pdfs)]) for i in range(count)]
    app.stop()
    return app, token, sent


def _db(app: Appliance) -> Path:
    return app.data_dir / "eticket.sqlite3"


def _pages(app: Appliance, kind: str) -> list[int]:
    """Page numbers of the tickets table's b-tree pages of ``kind`` (``leaf``, ``overflow``), from SQLite's
    own page map (the dbstat table), read before the damage."""
    db = sqlite3.connect(f"file:{_db(app)}?mode=ro", uri=True)
    try:
        return [int(r[0]) for r in db.execute(
            "SELECT pageno FROM dbstat WHERE name = 'tickets' AND pagetype = ? ORDER BY pageno", (kind,))]
    finally:
        db.close()


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def _health(app: Appliance) -> dict[str, object]:
    r = httpx.get(app.url + "/healthz", timeout=5)
    assert r.status_code == 200
    result: dict[str, object] = r.json()
    return result


def _fetch(url: str, accept: str = "application/pdf") -> httpx.Response:
    return httpx.get(url, headers={"Accept": accept, "Accept-Language": "en"}, timeout=10)  # pages speak it


def _storage_lines(app: Appliance) -> list[str]:
    return [line for line in app.logs().splitlines() if "storage was damaged" in line or "is damaged in" in line]


def test_damaged_bytes_inside_a_stored_pdf_are_never_served(appliance_factory: object) -> None:
    """A bit flip on the card inside one receipt's PDF: the file is structurally sound, so only the stored
    SHA-256 can tell. The customer gets a page saying to ask at the counter, never the wrong bytes."""
    app, token, sent = _device_with_receipts(appliance_factory)  # type: ignore[arg-type]
    damaged_pdf = sent[3][1]
    raw = _db(app).read_bytes()
    for start in range(len(damaged_pdf) // 2, len(damaged_pdf), 97):  # 48 bytes that lie on one page
        needle = damaged_pdf[start:start + 48]
        if raw.count(needle) == sum(pdf == damaged_pdf for _, pdf in sent):
            break
    _overwrite(_db(app), raw.find(needle), b"X" * len(needle))  # the first copy of this PDF in the file
    app.start()
    # Found by the check after start, before any customer asks: /healthz and the screens say so.
    wait_for(lambda: _health(app)["status"] == "degraded", 20, "healthz to report the damaged receipt")
    wait_for(lambda: app.display()["storage"] == {"status": "damaged", "receipts_lost": 1, "pairings_lost": 0}, 10,
             "the storage band on the screens")
    served = {url: _fetch(url) for url, _ in sent}
    broken = [url for url, pdf in sent if served[url].status_code != 200 or served[url].content != pdf]
    assert len(broken) == 1, broken
    r = served[broken[0]]
    assert r.status_code == 500 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("/receipt-damaged") and "ask at the counter" in r.json()["detail"]
    page = _fetch(broken[0], accept="text/html")
    assert page.status_code == 500 and "ask at the counter" in page.text and b"%PDF" not in page.content
    for url, pdf in sent:
        if url != broken[0]:
            assert served[url].content == pdf
    health = _health(app)
    assert health["status"] == "degraded"
    assert health["storage"] == {"status": "damaged", "damaged_receipts": 1, "error": None,  # type: ignore[comparison-overlap]
                                 "last_refusal": None, "last_repair": None}
    assert len(_storage_lines(app)) == 1 and broken[0].rsplit("/", 1)[1] not in app.logs()
    _send(app, token, sent[0][1], "after")
    app.stop()
    app.start()  # the damage is remembered: the link still answers receipt-damaged, healthz still tells
    assert _fetch(broken[0]).json()["type"].endswith("/receipt-damaged")
    assert _health(app)["storage"]["damaged_receipts"] == 1  # type: ignore[index]


def _assert_repaired(app: Appliance, token: str, sent: list[tuple[str, bytes]], device_id: str,
                     *, all_saved: bool, lost_links_say_damaged: bool = False) -> dict[str, object]:
    """The device came back after a repair: what the shop and the customers see."""
    health = _health(app)
    assert health["status"] == "degraded"
    storage: dict[str, object] = health["storage"]  # type: ignore[assignment]
    assert storage["status"] == "repaired"
    repair: dict[str, object] = storage["last_repair"]  # type: ignore[assignment]
    assert (app.data_dir / str(repair["moved_to"])).is_file()  # moved aside, not deleted
    assert health["device_id"] == device_id  # the same device: tills find it again by its id
    good = 0
    for url, pdf in sent:
        r = _fetch(url)
        assert r.status_code in (200, 404, 500), r.status_code
        if r.status_code == 200:
            assert r.content == pdf  # never wrong bytes
            good += 1
        else:
            assert r.headers["content-type"].startswith("application/problem+json")
            if lost_links_say_damaged:  # the indexes still knew the link: "ask at the counter", not "unknown"
                assert r.status_code == 500 and r.json()["type"].endswith("/receipt-damaged")
    if all_saved:
        assert good == len(sent) and repair["receipts_lost"] == 0
    else:
        assert 0 < good < len(sent) and repair["receipts_lost"] == len(sent) - good
    _send(app, token, sent[0][1], "after-repair")  # the till's pairing survived and new receipts are stored
    lines = _storage_lines(app)
    assert len(lines) == 1 and "moved aside" in lines[0] and " ERROR " in lines[0], lines
    assert app.display()["storage"] == {"status": "repaired", "receipts_lost": repair["receipts_lost"],
                                        "pairings_lost": 0}
    return repair


@pytest.mark.parametrize("damage", ["header-bytes", "whole-first-page"])
def test_a_damaged_header_page_is_rebuilt_and_nothing_is_lost(appliance_factory: object, damage: str) -> None:
    """Page 1 holds the file header and the schema: without a repair SQLite calls the file "not a database"
    and the device could not start at all."""
    app, token, sent = _device_with_receipts(appliance_factory)  # type: ignore[arg-type]
    device_id = _device_id(app)
    _overwrite(_db(app), 0, b"\xa5" * (100 if damage == "header-bytes" else PAGE_SIZE))
    app.start()
    repair = _assert_repaired(app, token, sent, device_id, all_saved=True)
    assert repair["schema_rebuilt"] is True


def _device_id(app: Appliance) -> str:
    db = sqlite3.connect(f"file:{_db(app)}?mode=ro", uri=True)
    try:
        return str(db.execute("SELECT value FROM meta WHERE key = 'device_id'").fetchone()[0])
    finally:
        db.close()


def test_a_damaged_btree_page_loses_only_the_receipts_on_it(appliance_factory: object) -> None:
    """A leaf page of the receipts table is garbage: the receipts on other pages come back byte-identical,
    the lost ones answer a problem, the device says how many."""
    app, token, sent = _device_with_receipts(appliance_factory, count=24)  # type: ignore[arg-type]
    device_id = _device_id(app)
    leaves = _pages(app, "leaf")
    assert len(leaves) >= 2
    _overwrite(_db(app), (leaves[0] - 1) * PAGE_SIZE, b"\x5a" * 64)
    app.start()
    repair = _assert_repaired(app, token, sent, device_id, all_saved=False, lost_links_say_damaged=True)
    _assert_band_on_screens(app, token, f"Tickets perdus : {repair['receipts_lost']}")
    # A restart after the repair is a clean start: no second repair, no crash loop, the record stays.
    app.stop()
    app.start()
    assert len(_storage_lines(app)) == 1
    assert len(list(app.data_dir.glob("eticket.sqlite3.damaged-*[0-9]Z"))) == 1
    assert _health(app)["storage"]["status"] == "repaired"  # type: ignore[index]


def _assert_band_on_screens(app: Appliance, token: str, text: str) -> None:
    """Once the till clears the screen, the kiosk's frame has the dark-red band, and the web screen the same
    words (the shop's language: fr)."""
    import numpy as np
    import pygame

    from eticket_core.i18n import translator
    from kiosk.bands import storage_lines
    from kiosk.scenes import NOTICE_BACKGROUND, render

    assert app.api.delete("/api/v1/display", headers={"Authorization": f"Bearer {token}"}).status_code == 204
    state = app.display()
    assert state["scene"] == "idle"
    frame = pygame.surfarray.array3d(render(state, (800, 480)))
    assert (frame == np.array(NOTICE_BACKGROUND)).all(axis=2).sum() > 800 * 480 // 10
    assert storage_lines(state["storage"], translator("fr")) == ("Stockage réparé :", text)
    page = httpx.get(app.url + "/screen", params={"key": app.screen_token()}, timeout=5).text
    assert "Stockage réparé :" in page and text in page


def test_a_truncated_database_starts_and_keeps_what_is_left(appliance_factory: object) -> None:
    """The file lost its second half (a copy or a write cut short)."""
    app, token, sent = _device_with_receipts(appliance_factory, count=24)  # type: ignore[arg-type]
    device_id = _device_id(app)
    size = _db(app).stat().st_size
    with _db(app).open("r+b") as handle:
        handle.truncate(size // 2 // PAGE_SIZE * PAGE_SIZE)
    app.start()
    _assert_repaired(app, token, sent, device_id, all_saved=False)


def test_device_commands_work_on_a_repaired_device(appliance_factory: object, cli_env: dict[str, str]) -> None:
    """``eticket status`` and ``eticket pairings list`` on the device after a repair: the truth, no traceback."""
    app, _token, _sent = _device_with_receipts(appliance_factory, count=4)  # type: ignore[arg-type]
    _overwrite(_db(app), 0, b"\xa5" * PAGE_SIZE)
    app.start()
    status = run_cli("status", "--data-dir", str(app.data_dir), env=cli_env)
    assert json.loads(status.stdout)["storage"]["status"] == "repaired" and not status.stderr
    listed = run_cli("pairings", "list", "--data-dir", str(app.data_dir), env=cli_env)
    assert "test-till" in listed.stdout and not listed.stderr
    assert app.proc is not None and app.proc.poll() is None


def test_damage_found_while_running_is_repaired_at_once(appliance_factory: object, cli_env: dict[str, str]) -> None:
    """The card damages a page while the device runs: the query that finds it repairs the database then and
    there; customers get their receipt or a problem (never a plain-text 500), the till goes on, the device
    commands answer, and nobody has to restart anything."""
    app: Appliance = appliance_factory()  # type: ignore[operator]
    token = app.pair()
    pdfs = [p.read_bytes() for p in samples("pdf")][:6]
    sent = [(_send(app, token, pdfs[i % len(pdfs)], f"r{i}"), pdfs[i % len(pdfs)]) for i in range(24)]
    leaves = _pages(app, "leaf")
    other = sqlite3.connect(_db(app), isolation_level=None)  # a second writer, as the card's controller would be
    try:
        other.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the pages now live in the main file only
        _overwrite(_db(app), (leaves[0] - 1) * PAGE_SIZE, b"\x5a" * 64)
        other.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('poke', '1')")  # the device drops its cache
    finally:
        other.close()
    answers = [_fetch(url) for url, _ in sent]
    assert all(r.status_code in (200, 404, 500) for r in answers), [r.status_code for r in answers]
    assert all(r.content == pdf for r, (_, pdf) in zip(answers, sent, strict=True) if r.status_code == 200)
    assert all(r.headers["content-type"].startswith("application/problem+json")
               for r in answers if r.status_code != 200)
    assert 0 < sum(r.status_code == 200 for r in answers) < len(sent)
    assert _health(app)["storage"]["status"] == "repaired"  # type: ignore[index]
    _send(app, token, pdfs[0], "after")
    listed = run_cli("pairings", "list", "--data-dir", str(app.data_dir), env=cli_env)
    assert "test-till" in listed.stdout and not listed.stderr
    assert len(_storage_lines(app)) == 1


def test_a_lost_device_id_is_taken_back_from_the_certificate(appliance_factory: object) -> None:
    """The page holding the device id (the meta table) is garbage: the device keeps its id (the one in its
    certificate, which tills pinned and find it by), and the pairings on their own page survive."""
    app, token, sent = _device_with_receipts(appliance_factory, count=4)  # type: ignore[arg-type]
    device_id = _device_id(app)
    db = sqlite3.connect(f"file:{_db(app)}?mode=ro", uri=True)
    meta_page = int(db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'meta'").fetchone()[0])
    db.close()
    _overwrite(_db(app), (meta_page - 1) * PAGE_SIZE, b"\x5a" * PAGE_SIZE)
    app.start()
    health = _health(app)
    assert health["device_id"] == device_id and health["storage"]["status"] == "repaired"  # type: ignore[index]
    assert _device_id(app) == device_id  # and it is stored again
    assert all(_fetch(url).content == pdf for url, pdf in sent)
    _send(app, token, sent[0][1], "after")


def test_no_usable_database_at_all_keeps_the_device_up_and_it_recovers_by_itself(
        appliance_factory: object, tmp_path: Path) -> None:
    """The database cannot be opened at all (here a directory where the file should be, as a damaged file
    system can leave): the device still starts and says so (healthz, screen band), answers the till with a
    problem, and takes receipts again by itself once the fault is gone, without a restart."""
    data = tmp_path / "broken"
    (data / "eticket.sqlite3").mkdir(parents=True)
    app: Appliance = appliance_factory(data_dir=data)  # type: ignore[operator]
    health = _health(app)
    assert health["status"] == "degraded" and health["storage"]["status"] == "failed"  # type: ignore[index]
    wait_for(lambda: (app.display()["storage"] or {}).get("status") == "failed", 10, "the band on the screens")
    r = app.api.post("/api/v1/pair", json={"secret": app.pairing_secret(), "name": "till"})
    assert r.status_code == 503 and r.json()["type"].endswith("/storage-unavailable"), r.text
    assert r.headers["retry-after"] == "10"  # RFC 9110 §10.2.3: when to try again
    lines = [line for line in app.logs().splitlines() if "storage cannot be used" in line]
    assert len(lines) == 1 and " ERROR " in lines[0]
    (data / "eticket.sqlite3").rmdir()  # the fault is gone
    answers: list[httpx.Response] = []
    wait_for(lambda: answers.append(app.api.post("/api/v1/pair", json={"secret": app.pairing_secret(),
                                                                       "name": "till"})) or
             answers[-1].status_code == 201, 30, "pairing to work again with the code still on screen")
    token = str(answers[-1].json()["token"])
    _send(app, token, samples("pdf")[0].read_bytes(), "after")
    assert _health(app)["status"] == "ok"
    wait_for(lambda: app.display()["storage"] is None, 10, "the band to go")
    assert app.proc is not None and app.proc.poll() is None


def test_a_power_cut_and_a_damaged_header_lose_nothing(appliance_factory: object) -> None:
    """kill -9 right after the receipts (they are in the WAL, not yet in the main file), then page 1 of the
    main file is garbage. SQLite takes page 1 from the WAL here, so the start-up check finds nothing to
    repair: a guard that the check and the repair never throw away what the WAL holds."""
    app: Appliance = appliance_factory()  # type: ignore[operator]
    token = app.pair()
    pdfs = [p.read_bytes() for p in samples("pdf")][:6]
    sent = [(_send(app, token, pdfs[i % len(pdfs)], f"r{i}"), pdfs[i % len(pdfs)]) for i in range(12)]
    app.kill9()
    assert Path(str(_db(app)) + "-wal").stat().st_size > 0
    _overwrite(_db(app), 0, b"\xa5" * PAGE_SIZE)
    app.start()
    assert all(_fetch(url).content == pdf for url, pdf in sent)
    _send(app, token, pdfs[0], "after")


def test_a_full_card_refuses_receipts_clearly_and_recovers(appliance_factory: object, tmp_path: Path) -> None:
    """The data partition is full (logs, a copied file): the till gets 503 storage-unavailable, /healthz and
    the screens say the card is full, phones still get their receipts, and once space is free the next
    receipt is stored, without a restart."""
    import os
    import subprocess

    from tests.conftest import require

    require(os.geteuid() == 0, "mounting a small tmpfs as the data partition needs root")
    data = tmp_path / "small"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(data)], check=True)
    try:
        app: Appliance = appliance_factory(data_dir=data)  # type: ignore[operator]
        token = app.pair()
        pdf = samples("pdf")[1].read_bytes()
        url = _send(app, token, pdf, "before")
        filler = data / "filler"
        with filler.open("wb") as handle, contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        r = app.api.post("/api/v1/tickets", content=pdf, headers={"Authorization": f"Bearer {token}",
                                                                   "Content-Type": "application/pdf"})
        assert r.status_code == 503 and r.json()["type"].endswith("/storage-unavailable"), r.text
        storage: dict[str, object] = _health(app)["storage"]  # type: ignore[assignment]
        assert storage["status"] == "refusing" and "full" in str(storage["error"])
        wait_for(lambda: (app.display()["storage"] or {}).get("full") is True, 10, "the 'card is full' band")
        assert _fetch(url).content == pdf
        filler.unlink()
        _send(app, token, pdf, "after")
        assert len([line for line in app.logs().splitlines() if "storage refused" in line]) == 1
        app.stop()
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


@pytest.mark.parametrize("damage", ["UPDATE tickets SET pdf = CAST(pdf AS TEXT) WHERE token = ?",
                                    "UPDATE tickets SET expires_at = 'abc' WHERE token = ?"])
def test_a_record_of_another_type_answers_receipt_damaged_and_never_logs_its_bytes(
        appliance_factory: object, damage: str) -> None:
    """A record whose value changed type (a flipped type byte: the PDF reads as text, a time as a word):
    ``quick_check`` still says ok. The link answers ``receipt-damaged``, /healthz counts it, and no log line
    carries the receipt's content (SQLite's own decoding error quotes it)."""
    app, _token, sent = _device_with_receipts(appliance_factory, count=4)  # type: ignore[arg-type]
    victim = sent[1][0]
    db = sqlite3.connect(_db(app), isolation_level=None)
    try:
        assert db.execute(damage, (victim.rsplit("/", 1)[1],)).rowcount == 1
        assert db.execute("PRAGMA quick_check").fetchall() == [("ok",)]
    finally:
        db.close()
    app.start()
    r = _fetch(victim)
    assert r.status_code == 500 and r.headers["content-type"].startswith("application/problem+json"), r.text
    assert r.json()["type"].endswith("/receipt-damaged") and "ask at the counter" in r.json()["detail"]
    page = _fetch(victim, accept="text/html")
    assert page.status_code == 500 and "ask at the counter" in page.text and b"%PDF" not in page.content
    for url, pdf in sent:
        if url != victim:
            assert _fetch(url).content == pdf
    wait_for(lambda: _health(app)["storage"]["damaged_receipts"] == 1, 10,  # type: ignore[index]
             "healthz to count the damaged receipt")
    assert _health(app)["storage"]["status"] == "damaged"  # type: ignore[index]
    logs = app.logs()
    assert "%PDF" not in logs and "Could not decode" not in logs and "Traceback" not in logs, logs[-2000:]
    assert victim.rsplit("/", 1)[1] not in logs and len(_storage_lines(app)) == 1


@pytest.mark.parametrize("loss", ["empty", "missing"])
def test_a_lost_database_on_a_device_that_ran_before_is_reported_as_damage(appliance_factory: object,
                                                                           loss: str) -> None:
    """The database file is empty (0 bytes) or gone, but the device has its identity (``tls/``, ``kiosk.json``):
    this is not a first boot. /healthz, the journal and the screens say that everything was lost and every till
    must pair again; the till's old token is refused, and pairing again works."""
    app, token, sent = _device_with_receipts(appliance_factory, count=3)  # type: ignore[arg-type]
    if loss == "empty":
        _db(app).write_bytes(b"")
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(str(_db(app)) + suffix).unlink(missing_ok=True)
    app.start()
    health = _health(app)
    storage = health["storage"]
    assert health["status"] == "degraded" and health["paired"] is False
    assert storage["status"] == "repaired" and storage["last_repair"]["database_lost"] is True  # type: ignore[index]
    assert ("empty" if loss == "empty" else "missing") in storage["last_repair"]["reason"]  # type: ignore[index]
    assert len(_storage_lines(app)) == 1 and "every till must pair again" in _storage_lines(app)[0]
    assert app.display()["storage"]["database_lost"] is True  # type: ignore[index]
    from eticket_core.i18n import translator
    from kiosk.bands import storage_lines

    text = "Tous les tickets et appairages sont perdus : réappairez chaque caisse."
    assert storage_lines(app.display()["storage"], translator("fr")) == ("Stockage réparé :", text)
    page = httpx.get(app.url + "/screen", params={"key": app.screen_token()}, timeout=5).text
    assert "Stockage réparé :" in page and text in page
    assert _fetch(sent[0][0]).status_code == 404
    assert app.api.delete("/api/v1/display", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    app.stop()
    app.start()  # remembered: the next start of the fresh database is not a loss again
    again = _health(app)["storage"]
    assert again["status"] == "repaired" and again["last_repair"]["database_lost"] is True  # type: ignore[index]
    assert len(_storage_lines(app)) == 1
    assert app.pair()


def test_a_first_boot_is_not_a_loss(appliance_factory: object) -> None:
    """A fresh data directory (no identity yet) starts as a new device: /healthz says ok, no repair."""
    app: Appliance = appliance_factory()  # type: ignore[operator]
    assert _health(app)["storage"]["last_repair"] is None  # type: ignore[index]
    assert _health(app)["status"] == "ok"
