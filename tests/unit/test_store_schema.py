"""The schema rule across A/B updates (appliance/store.py SCHEMA_VERSION): after a rollback the previous
release opens a database a newer release already migrated, and keeps every receipt and pairing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from appliance.store import SCHEMA_VERSION, Store, sha256_hex
from tests.conftest import samples

NEWER = SCHEMA_VERSION + 1


def _add(store: Store, pdf: bytes, reference: str) -> str:
    ticket, _ = store.add_ticket(pos_id="pos-1", pdf=pdf, pages=1, request_sha256=reference, idempotency_key=None,
                                 total="1.00", currency="EUR", reference=reference, retention_seconds=3600)
    return ticket.token


def test_a_database_migrated_by_a_newer_release_opens_after_a_rollback(tmp_path: Path) -> None:
    """Release N stores receipts and a pairing; release N+1 (simulated with the changes the rule allows: an
    extra column with a default, an extra table, a higher schema_version) stores one more receipt; the device
    rolls back and release N opens the database: every receipt downloads byte for byte, the till is still
    paired, new receipts are stored, and N+1's additions and schema_version are untouched for when it returns."""
    path = tmp_path / "eticket.sqlite3"
    pdf = samples("pdf")[1].read_bytes()
    store = Store(path)
    before = [_add(store, pdf, f"before-{i}") for i in range(3)]
    store.add_pos("Till 1", "till-token")
    store.close()

    newer = sqlite3.connect(path, isolation_level=None)  # what release N+1's migration does
    newer.execute("ALTER TABLE tickets ADD COLUMN loyalty_id TEXT DEFAULT NULL")
    newer.execute("CREATE TABLE IF NOT EXISTS loyalty (id TEXT PRIMARY KEY, points INTEGER NOT NULL)")
    newer.execute("INSERT INTO loyalty (id, points) VALUES ('card-1', 42)")
    newer.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(NEWER),))
    newer.close()
    store = Store(path, established=True)  # still release N's code: N+1's store would add its own receipts
    during = _add(store, pdf, "written-by-newer")
    store.close()
    newer = sqlite3.connect(path, isolation_level=None)
    newer.execute("UPDATE tickets SET loyalty_id = 'card-1' WHERE reference = 'written-by-newer'")
    newer.close()

    store = Store(path, established=True)  # after the rollback
    try:
        assert store.health()["status"] == "ok"
        for token in [*before, during]:
            found = store.ticket_by_token(token)
            assert found is not None and found[1] is not None and sha256_hex(found[1]) == sha256_hex(pdf)
        assert store.pos_for_token("till-token") is not None
        after = _add(store, pdf, "after-rollback")
        assert store.ticket_by_token(after) is not None
        assert store.ticket_count() == 5
    finally:
        store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(NEWER),)
    assert db.execute("SELECT points FROM loyalty WHERE id = 'card-1'").fetchone() == (42,)
    assert db.execute("SELECT loyalty_id FROM tickets WHERE reference = 'written-by-newer'").fetchone() == ("card-1",)
    assert db.execute("SELECT loyalty_id FROM tickets WHERE reference = 'after-rollback'").fetchone() == (None,)
    db.close()

