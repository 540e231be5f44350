"""The store on a real SQLite file: damage met by several requests at once is repaired once."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from appliance.store import Store, Ticket
from tests.conftest import samples

PAGE_SIZE = 4096


def test_damage_met_by_many_threads_at_once_is_repaired_once(tmp_path: Path) -> None:
    """Eight requests meet the same damaged page together: one repair, one set-aside file, every request
    answered (its receipt, or None for one whose row was lost), none raises."""
    path = tmp_path / "eticket.sqlite3"
    store = Store(path)
    pdf = samples("pdf")[1].read_bytes()
    tokens = [store.add_ticket(pos_id="pos-1", pdf=pdf, pages=1, request_sha256="x", idempotency_key=None,
                               total=None, currency=None, reference=None, retention_seconds=3600)[0].token
              for _ in range(40)]
    other = sqlite3.connect(path, isolation_level=None)
    leaf = int(other.execute("SELECT pageno FROM dbstat WHERE name = 'tickets' AND pagetype = 'leaf' "
                             "ORDER BY pageno").fetchone()[0])
    other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with path.open("r+b") as handle:
        handle.seek((leaf - 1) * PAGE_SIZE)
        handle.write(b"\x5a" * 64)
    other.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('poke', '1')")  # the store drops its cache
    other.close()
    results: list[tuple[Ticket, bytes | None] | None] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def reader(n: int) -> None:
        start.wait()
        try:
            results.extend(store.ticket_by_token(t) for t in tokens[n::8])
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == len(tokens)
    assert len(list(tmp_path.glob("eticket.sqlite3.damaged-*[0-9]Z"))) == 1
    assert store.generation == 1 and store.health()["status"] == "repaired"
    found = [r for r in results if r is not None]
    assert all(pdf is None or Store.pdf_intact(ticket, pdf) for ticket, pdf in found)
    store.close()


def test_repair_after_repair_keeps_only_the_newest_damaged_copies(tmp_path: Path) -> None:
    """A failing card that needs one repair after another must not fill the data partition with copies:
    the two newest set-aside databases stay, older ones go; the receipts live on in the current one."""
    path = tmp_path / "eticket.sqlite3"
    pdf = samples("pdf")[0].read_bytes()
    now = [1_800_000_000.0]
    tokens = []
    for _ in range(4):
        store = Store(path, clock=lambda: now[0])
        tokens.append(store.add_ticket(pos_id="pos-1", pdf=pdf, pages=1, request_sha256="x", idempotency_key=None,
                                       total=None, currency=None, reference=None,
                                       retention_seconds=10**9)[0].token)
        store.close()
        with path.open("r+b") as handle:
            handle.write(b"\xa5" * 100)  # the header, again
        now[0] += 60
    store = Store(path, clock=lambda: now[0])
    copies = sorted(p.name for p in tmp_path.glob("eticket.sqlite3.damaged-*") if p.name.endswith("Z"))
    assert copies == ["eticket.sqlite3.damaged-20270115T080300Z", "eticket.sqlite3.damaged-20270115T080400Z"]
    assert not [p for p in tmp_path.glob("eticket.sqlite3.damaged-20270115T0800*")]  # sidecars went too
    found = [store.ticket_by_token(t) for t in tokens]
    assert all(f is not None and f[1] == pdf for f in found)
    store.close()


def test_an_undecodable_value_in_any_table_is_reported_without_its_content(tmp_path: Path, caplog: object) -> None:
    """A till's name that is no longer UTF-8 (a damaged record): listing the tills raises the store's damage
    error naming the fault; neither its message nor the log quotes the bytes (SQLite's own error would)."""
    import logging

    import pytest

    from appliance.errors import StorageDamaged

    path = tmp_path / "eticket.sqlite3"
    store = Store(path)
    store.add_pos("till", "secret-token")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("UPDATE pos SET name = CAST(X'25504446ff2d53454352455421' AS TEXT)")  # '%PDF\xff-SECRET!'
    other.close()
    with caplog.at_level(logging.DEBUG), pytest.raises(StorageDamaged) as raised:  # type: ignore[attr-defined]
        store.list_pos()
    assert "not UTF-8" in str(raised.value) and "SECRET" not in str(raised.value)
    assert "SECRET" not in caplog.text and "not UTF-8" in caplog.text  # type: ignore[attr-defined]
