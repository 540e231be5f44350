"""Durable state in one SQLite database: tickets (with their PDF), paired POS, the device identity.

Durability: WAL journal with ``synchronous=FULL``, so a transaction is on disk when ``commit()`` returns
(https://www.sqlite.org/pragma.html#pragma_synchronous). A ticket and its PDF are one row written in one
transaction: after a crash (``kill -9``, power cut) it is either wholly there or not there at all.

The methods are blocking; call them from a worker thread (``run_in_threadpool``), never on the event loop.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = 1
PURGE_GRACE_SECONDS = 30 * 86_400
"""Expired rows keep their metadata (no PDF) this long, so a late scan gets 410 rather than 404."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pos (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    paired_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tickets (
    id TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    token TEXT NOT NULL,
    pos_id TEXT NOT NULL,
    idempotency_key TEXT,
    request_sha256 TEXT NOT NULL,
    total TEXT,
    currency TEXT,
    reference TEXT,
    pdf_sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    pages INTEGER NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    downloaded_at REAL,
    pdf BLOB,
    UNIQUE (pos_id, idempotency_key)
);
CREATE INDEX IF NOT EXISTS tickets_expiry ON tickets (expires_at);
CREATE TABLE IF NOT EXISTS outbox (
    ticket_id TEXT PRIMARY KEY REFERENCES tickets (id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    created_at REAL NOT NULL,
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS screens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    added_at REAL NOT NULL
);
"""


def sha256_hex(data: bytes | str) -> str:
    """Hex SHA-256 of ``data`` (UTF-8 for text)."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


@dataclass(frozen=True, slots=True)
class Ticket:
    """One stored ticket; ``pdf`` is None once it expired and was purged. Times are Unix seconds."""

    id: str
    token: str
    pos_id: str
    idempotency_key: str | None
    request_sha256: str
    total: str | None
    currency: str | None
    reference: str | None
    pdf_sha256: str
    size: int
    pages: int
    created_at: float
    expires_at: float
    downloaded_at: float | None


@dataclass(frozen=True, slots=True)
class Pos:
    """A paired point of sale. Its bearer token is stored only as a SHA-256 hash."""

    id: str
    name: str
    paired_at: float


_TICKET_COLUMNS = (
    "id, token, pos_id, idempotency_key, request_sha256, total, currency, reference, pdf_sha256, size, pages, "
    "created_at, expires_at, downloaded_at"
)


class Store:
    """The appliance's SQLite database at ``<data_dir>/eticket.sqlite3``. Thread-safe; blocking."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        if not path.exists():  # created owner-only; SQLite gives the -wal and -shm files the same mode
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._lock, self._db:
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    # --- device identity -------------------------------------------------------------------------------
    def device_id(self) -> str:
        """The stable device id (``et-`` + 16 hex digits), made on first use and kept forever."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'device_id'").fetchone()
            if row:
                return str(row[0])
            value = "et-" + secrets.token_hex(8)
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT INTO meta (key, value) VALUES ('device_id', ?)", (value,))
            self._db.execute("COMMIT")
            return value

    # --- POS pairings --------------------------------------------------------------------------------
    def add_pos(self, name: str, token: str) -> Pos:
        """Record a newly paired POS whose bearer token is ``token`` (only its hash is kept)."""
        pos = Pos(id="pos-" + secrets.token_hex(6), name=name, paired_at=time.time())
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO pos (id, name, token_sha256, paired_at) VALUES (?, ?, ?, ?)",
                (pos.id, pos.name, sha256_hex(token), pos.paired_at),
            )
            self._db.execute("COMMIT")
        return pos

    def pos_for_token(self, token: str) -> Pos | None:
        """The POS holding bearer ``token``, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, name, paired_at FROM pos WHERE token_sha256 = ?", (sha256_hex(token),)
            ).fetchone()
        return Pos(*row) if row else None

    def list_pos(self) -> list[Pos]:
        """Every paired POS, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, name, paired_at FROM pos ORDER BY paired_at").fetchall()
        return [Pos(*row) for row in rows]

    def revoke_pos(self, pos_id: str) -> bool:
        """Forget a POS: its token stops working at once. False if there was no such POS."""
        with self._lock:
            cur = self._db.execute("DELETE FROM pos WHERE id = ?", (pos_id,))
        return cur.rowcount > 0

    # --- screen clients ----------------------------------------------------------------------------------
    def add_screen(self, name: str, token: str) -> Pos:
        """Record a paired screen (a tablet's browser); only the token's hash is kept."""
        screen = Pos(id="scr-" + secrets.token_hex(6), name=name, paired_at=time.time())
        with self._lock:
            self._db.execute("INSERT INTO screens (id, name, token_sha256, added_at) VALUES (?, ?, ?, ?)",
                             (screen.id, screen.name, sha256_hex(token), screen.paired_at))
        return screen

    def screen_for_token(self, token: str) -> Pos | None:
        """The paired screen holding ``token``, or None."""
        with self._lock:
            row = self._db.execute("SELECT id, name, added_at FROM screens WHERE token_sha256 = ?",
                                   (sha256_hex(token),)).fetchone()
        return Pos(*row) if row else None

    def list_screens(self) -> list[Pos]:
        """Every paired screen, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, name, added_at FROM screens ORDER BY added_at").fetchall()
        return [Pos(*row) for row in rows]

    def revoke_screen(self, screen_id: str) -> bool:
        """Forget a screen. False if there was no such screen."""
        with self._lock:
            cur = self._db.execute("DELETE FROM screens WHERE id = ?", (screen_id,))
        return cur.rowcount > 0

    def pos_count(self) -> int:
        """How many POS are paired."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM pos").fetchone()[0])

    # --- tickets ---------------------------------------------------------------------------------------
    def add_ticket(
        self,
        *,
        pos_id: str,
        pdf: bytes,
        pages: int,
        request_sha256: str,
        idempotency_key: str | None,
        total: str | None,
        currency: str | None,
        reference: str | None,
        retention_seconds: float,
        make_token: Callable[[float], str] | None = None,
        publish: bool = False,
    ) -> tuple[Ticket, bool]:
        """Store a ticket durably; return ``(ticket, created)``.

        With an ``idempotency_key`` already used by this POS the earlier ticket is returned with
        ``created=False`` and nothing is written; the caller compares ``request_sha256``.
        The token is ``make_token(now)`` (a relay token, :func:`relay.crypto.new_token`), else 32 bytes from the
        OS CSPRNG (256 bits), URL-safe base64 (43 characters). ``publish`` queues the ticket for upload to the
        relay in the same transaction (the outbox), so an acknowledged ticket is never left unpublished.
        """
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if idempotency_key is not None:
                    row = self._db.execute(
                        f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE pos_id = ? AND idempotency_key = ?",
                        (pos_id, idempotency_key),
                    ).fetchone()
                    if row:
                        self._db.execute("ROLLBACK")
                        return Ticket(*row), False
                token = make_token(now) if make_token else secrets.token_urlsafe(32)
                ticket = Ticket(
                    id="t-" + secrets.token_hex(8),
                    token=token,
                    pos_id=pos_id,
                    idempotency_key=idempotency_key,
                    request_sha256=request_sha256,
                    total=total,
                    currency=currency,
                    reference=reference,
                    pdf_sha256=sha256_hex(pdf),
                    size=len(pdf),
                    pages=pages,
                    created_at=now,
                    expires_at=now + retention_seconds,
                    downloaded_at=None,
                )
                self._db.execute(
                    f"INSERT INTO tickets ({_TICKET_COLUMNS}, token_sha256, pdf) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        ticket.id, ticket.token, ticket.pos_id, ticket.idempotency_key, ticket.request_sha256,
                        ticket.total, ticket.currency, ticket.reference, ticket.pdf_sha256, ticket.size,
                        ticket.pages, ticket.created_at, ticket.expires_at, None, sha256_hex(token), pdf,
                    ),
                )
                if publish:
                    self._db.execute("INSERT INTO outbox (ticket_id, state, next_attempt_at, created_at) "
                                     "VALUES (?, 'pending', ?, ?)", (ticket.id, now, now))
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return ticket, True

    def ticket_by_idempotency_key(self, pos_id: str, key: str) -> Ticket | None:
        """The ticket this POS already sent with ``key``, or None."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE pos_id = ? AND idempotency_key = ?", (pos_id, key)
            ).fetchone()
        return Ticket(*row) if row else None

    def ticket_by_token(self, token: str) -> tuple[Ticket, bytes | None] | None:
        """``(ticket, pdf)`` for a capability token, or None. Looked up by the token's hash."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_TICKET_COLUMNS}, pdf FROM tickets WHERE token_sha256 = ?", (sha256_hex(token),)
            ).fetchone()
        if row is None:
            return None
        return Ticket(*row[:-1]), row[-1]

    def mark_downloaded(self, ticket_id: str, at: float | None = None) -> bool:
        """Remember the first download time of a ticket (``at``, Unix seconds: now by default; the relay's time
        for a download through it); True if it was not known before."""
        with self._lock:
            cur = self._db.execute("UPDATE tickets SET downloaded_at = ? WHERE id = ? AND downloaded_at IS NULL",
                                   (time.time() if at is None else at, ticket_id))
        return cur.rowcount > 0

    def ticket_count(self) -> int:
        """How many tickets are stored (expired ones included until purged)."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM tickets").fetchone()[0])

    def purge_expired(self, now: float | None = None) -> int:
        """Drop the PDF of expired tickets and the rows of long-expired ones; return PDFs dropped."""
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("UPDATE outbox SET state = 'expired' WHERE state = 'pending' AND ticket_id IN "
                             "(SELECT id FROM tickets WHERE expires_at <= ?)", (now,))
            cur = self._db.execute("UPDATE tickets SET pdf = NULL WHERE expires_at <= ? AND pdf IS NOT NULL", (now,))
            self._db.execute("DELETE FROM tickets WHERE expires_at <= ?", (now - PURGE_GRACE_SECONDS,))
            self._db.execute("COMMIT")
        return cur.rowcount

    # --- relay outbox ------------------------------------------------------------------------------------
    def due_uploads(self, now: float, limit: int = 16) -> list[tuple[str, str, bytes, float, int]]:
        """Pending uploads whose time has come: ``(ticket_id, token, pdf, expires_at, attempts)``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT t.id, t.token, t.pdf, t.expires_at, o.attempts FROM outbox o JOIN tickets t ON t.id = "
                "o.ticket_id WHERE o.state = 'pending' AND o.next_attempt_at <= ? AND t.pdf IS NOT NULL "
                "ORDER BY o.created_at LIMIT ?", (now, limit)).fetchall()
        return [(str(r[0]), str(r[1]), bytes(r[2]), float(r[3]), int(r[4])) for r in rows]

    def next_upload_at(self) -> float | None:
        """When the next pending upload is due (Unix seconds), or None when nothing is pending."""
        with self._lock:
            row = self._db.execute("SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'pending'").fetchone()
        return None if row[0] is None else float(row[0])

    def upload_done(self, ticket_id: str) -> None:
        """The relay acknowledged the upload."""
        with self._lock:
            self._db.execute("UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1, "
                             "last_error = NULL WHERE ticket_id = ?", (time.time(), ticket_id))

    def upload_failed(self, ticket_id: str, error: str, next_attempt_at: float | None) -> None:
        """An attempt failed: retry at ``next_attempt_at``, or give up (state ``failed``) when None."""
        with self._lock:
            if next_attempt_at is None:
                self._db.execute("UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ? "
                                 "WHERE ticket_id = ?", (error, ticket_id))
            else:
                self._db.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
                                 "WHERE ticket_id = ?", (error, next_attempt_at, ticket_id))

    def outbox_counts(self) -> dict[str, object]:
        """``{"pending", "sent", "failed", "expired"}`` counts, ``oldest_pending_at`` (Unix s or None) and the
        newest ``last_error`` of a pending or failed upload."""
        with self._lock:
            counts = dict(self._db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall())
            oldest = self._db.execute("SELECT MIN(created_at) FROM outbox WHERE state = 'pending'").fetchone()[0]
            error = self._db.execute("SELECT last_error FROM outbox WHERE state IN ('pending', 'failed') AND "
                                     "last_error IS NOT NULL ORDER BY created_at DESC LIMIT 1").fetchone()
        return {**{k: int(counts.get(k, 0)) for k in ("pending", "sent", "failed", "expired")},
                "oldest_pending_at": oldest, "last_error": error[0] if error else None}

    def awaiting_download(self, since: float, limit: int = 200) -> list[tuple[str, str]]:
        """Uploaded tickets created after ``since`` that no phone has fetched yet: ``(ticket_id, token)``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT t.id, t.token FROM outbox o JOIN tickets t ON t.id = o.ticket_id WHERE o.state = 'sent' "
                "AND t.downloaded_at IS NULL AND t.created_at > ? ORDER BY t.created_at DESC LIMIT ?",
                (since, limit)).fetchall()
        return [(str(a), str(b)) for a, b in rows]
