"""Durable state in one SQLite database: tickets (with their PDF), paired POS, the device identity.

Durability: WAL journal with ``synchronous=FULL``, so a transaction is on disk when ``commit()`` returns
(https://www.sqlite.org/pragma.html#pragma_synchronous). A ticket and its PDF are one row written in one
transaction: after a crash (``kill -9``, power cut) it is either wholly there or not there at all.

Damage: the file is checked at start (``PRAGMA quick_check``) and every query that finds it damaged repairs it
then and there (:mod:`appliance.salvage`: the damaged file is moved aside, what can be read is copied into a
fresh one); the store keeps working and :meth:`Store.health` says what happened. A receipt's PDF is checked
against its SHA-256 before it is served or uploaded.

The methods are blocking; call them from a worker thread (``run_in_threadpool``), never on the event loop.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from relay.crypto import BadToken, parse_token

from . import salvage
from .errors import ReceiptDamaged, StorageDamaged, StorageUnavailable

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
"""The schema this release writes, kept in ``meta.schema_version`` when a database is created (a newer
release raises it by its migration; no release lowers it).

Updates and rollbacks (issue 12): the database lives on the data partition, which both A/B slots share, so
after a rollback the previous release opens a database that a newer release has already opened. The rule is
**forward-compatible (additive) migrations**, so no backup or restore is needed:

- a new release may only add: tables, indexes, and columns that are nullable or have a ``DEFAULT``; it never
  drops, renames or retypes a table or column, nor adds a constraint or trigger that an older release's
  writes would break, and it bumps ``schema_version``;
- every release names its columns in every statement (no ``SELECT *``, no ``INSERT`` without a column list)
  and creates its schema with ``CREATE … IF NOT EXISTS``, so it reads and writes a newer database as if the
  additions were not there, and leaves them alone;
- a release that cannot keep to this (a real rewrite of a table) must copy the data into new tables and keep
  the old ones written as well, until no release in the field reads them.

tests/unit/test_store_schema.py opens a database carrying a newer ``schema_version``, an extra table and an
extra column with this release's store and checks that every receipt and pairing is kept. A repair after
damage (appliance/salvage.py) rebuilds only this release's schema: the additions are lost then, not the data.
"""
PURGE_GRACE_SECONDS = 30 * 86_400
"""Expired rows keep their metadata (no PDF) this long, so a late scan gets 410 rather than 404."""
REPAIR_NOTICE_SECONDS = 86_400.0
"""After a repair, ``/healthz`` says ``degraded`` and the screens show the band this long (then only
``storage.last_repair`` keeps the record)."""
STORAGE_RETRY_SECONDS = 10.0
"""While the database cannot be opened at all (the card went read-only, the file is not a file), how often
a request tries again."""
REFUSAL_SHOWN_SECONDS = 60.0
"""After the medium refused an operation (disk full, I/O error), ``/healthz`` and the screens say so this long;
a till sending receipts meets the refusal again, so a lasting fault stays shown."""
_P = ParamSpec("_P")
_R = TypeVar("_R")

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
CREATE TABLE IF NOT EXISTS tills (
    id TEXT PRIMARY KEY,
    network TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    how TEXT NOT NULL,
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


@dataclass(frozen=True, slots=True)
class Till:
    """A till allowed to print (port 9100, the TakePOS connector): every address of ``network`` (an IPv4 or
    IPv6 network in CIDR form, ``192.168.1.30/32`` for one address). ``how`` is ``allowed`` (``eticket
    printers allow``) or ``bound`` (its first print job while pairing was open). Times are Unix seconds."""

    id: str
    network: str
    name: str
    how: str
    added_at: float


class DamagedValue(Exception):
    """A value read from the database is not of its column's type (text that is not UTF-8, a PDF stored as
    text, a time that is not a number): a damaged record that passed ``PRAGMA quick_check``. The message names
    the fault, never the value (receipt content must not reach a log)."""


def _decode_text(data: bytes) -> str:
    """The connection's ``text_factory``: SQLite's own decoding error quotes the undecodable text (receipt bytes
    in the journal); this one raises :class:`DamagedValue` without it."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DamagedValue("a text value in the database is not UTF-8") from None


_TICKET_TYPES: tuple[tuple[type, ...], ...] = (
    (str,), (str,), (str,), (str, type(None)), (str,), (str, type(None)), (str, type(None)), (str, type(None)),
    (str,), (int,), (int,), (float, int), (float, int), (float, int, type(None)))
"""The Python types SQLite may give each of :data:`_TICKET_COLUMNS` (a REAL column holds an integer when one
was written)."""


def _ticket(row: tuple[Any, ...] | Any) -> Ticket:
    """A :class:`Ticket` from the first 14 values of ``row``, each checked against its column's type.

    Raises:
        DamagedValue: a value is of another type (the message names the column, not the value).
    """
    names = _TICKET_COLUMNS.split(", ")
    for name, value, types in zip(names, row, _TICKET_TYPES, strict=False):
        if not isinstance(value, types) or isinstance(value, bool):
            raise DamagedValue(f"column {name} of a receipt holds a {type(value).__name__}")
    fields = list(row[:len(names)])
    for i in (11, 12, 13):
        fields[i] = None if fields[i] is None else float(fields[i])
    return Ticket(*fields)


def _pdf_value(value: object) -> bytes | None:
    """A receipt's ``pdf`` column: bytes or None. Raises DamagedValue for any other type (text, a number)."""
    if value is None or isinstance(value, bytes):
        return value
    raise DamagedValue(f"column pdf of a receipt holds a {type(value).__name__}")


_RECEIPT_DAMAGED = ("This receipt was damaged in the device's storage and cannot be shown. Please ask at the "
                    "counter for a copy.")

_TICKET_COLUMNS = (
    "id, token, pos_id, idempotency_key, request_sha256, total, currency, reference, pdf_sha256, size, pages, "
    "created_at, expires_at, downloaded_at"
)


def _guarded(method: Callable[Concatenate[Store, _P], _R]) -> Callable[Concatenate[Store, _P], _R]:
    """Map SQLite failures of a :class:`Store` method: damage repairs the database and runs the method once
    more on the repaired one; a medium that refuses (I/O error, full, read-only) raises StorageUnavailable."""

    @functools.wraps(method)
    def wrapper(self: Store, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if self._failure is not None and not self._reopen_if_due():
            raise _failed(self._failure)
        generation = self._generation
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if salvage.is_damage(exc):
                self._repair_if_current(generation, f"{method.__name__}: {exc}")
                if self._failure is not None:  # the repair could not make a usable database
                    raise _failed(self._failure) from exc
                try:
                    return method(self, *args, **kwargs)
                except sqlite3.DatabaseError as again:
                    if salvage.is_damage(again):
                        raise StorageDamaged(
                            "The device's storage is damaged and could not be repaired. Restart the device; if "
                            "this persists, replace its SD card.") from again
                    raise self._refused(again) from again
            raise self._refused(exc) from exc
        except DamagedValue as exc:  # a record of another type: named, never quoted
            log.error("storage: %s: %s", method.__name__, exc)
            raise StorageDamaged(f"A record in the device's storage is damaged ({exc}). Restart the device; if "
                                 "this persists, replace its SD card.") from None

    return wrapper


def _failed(reason: str) -> StorageUnavailable:
    """The answer while no usable database can be had; ``retry_after`` (seconds) becomes ``Retry-After``."""
    return StorageUnavailable(f"The device cannot use its storage ({reason}); nothing was stored. It retries by "
                              f"itself every {STORAGE_RETRY_SECONDS:g} s; if this persists, restart the device or "
                              "replace its SD card.", retry_after=int(STORAGE_RETRY_SECONDS))




@dataclass(frozen=True, slots=True)
class Repair:
    """One repair of the database: when (Unix s), why, where the damaged file went (its name in the data
    dir, "" when there was no file) and what was saved or lost (``receipts_lost``: receipts whose PDF could not
    be recovered; ``pairings_lost``: tills that must pair again; ``database_lost``: all of them, uncounted)."""

    at: float
    reason: str
    moved_to: str
    receipts_saved: int
    receipts_lost: int
    pairings_saved: int
    pairings_lost: int
    screens_lost: int
    schema_rebuilt: bool
    error: str | None
    database_lost: bool = False
    """The whole database was gone (the file empty or missing on a device that has its identity): every
    pairing and receipt is lost, how many is not known; every till must pair again."""


def new_screen_id() -> str:
    """A fresh screen id, ``scr-`` and 12 hex digits (random, never reused)."""
    return "scr-" + secrets.token_hex(6)


class Store:
    """The appliance's SQLite database at ``<data_dir>/eticket.sqlite3``. Thread-safe; blocking.

    Opening checks the file and repairs a damaged one; it never raises: when no usable database can be had
    at all, every method raises StorageUnavailable (and tries again, see STORAGE_RETRY_SECONDS) and
    :meth:`health` says ``failed``.
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time, established: bool = False) -> None:
        """``established``: the device has run before (its data directory holds its identity), so a database
        file that is empty or missing is a loss, recorded as a repair with ``database_lost``, not a first
        boot."""
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._generation = 0
        """Incremented by every repair, so that threads that hit the same damage repair it once."""
        self._repair: Repair | None = None
        """The last repair (kept in ``meta``), read at start so that :meth:`health` never waits for the lock."""
        self._damaged_pdfs = 0
        self._damage_found_at: float | None = None
        """When a PDF was last found damaged in place (Unix s; kept in ``meta``): the medium may be failing."""
        self._failure: str | None = None
        """Why the database cannot be used at all (None while it can): every method then raises
        StorageUnavailable, and tries to open it again every STORAGE_RETRY_SECONDS."""
        self._retry_at = 0.0
        self._refusal: tuple[float, str] | None = None
        """The last operation the medium refused (Unix s, SQLite's message): disk full, I/O error."""
        with self._lock:
            lost = self._set_aside_lost_database() if established else None
            self._db = self._open_or_fail()
            if lost is not None and self._failure is None:
                self._record_lost_database(*lost)

    def _set_aside_lost_database(self) -> tuple[str, str] | None:
        """``(reason, moved_to)`` when the database file is missing or empty (0 bytes; then it is moved aside
        with its -wal and -shm, as a damaged one), else None. Lock held."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return "the database file is missing", ""
        except OSError:
            return None  # the open that follows meets it and says so
        if size > 0:
            return None
        try:
            aside = salvage.set_aside(self.path, self._clock())
        except OSError:  # cannot move it: the fresh database is made over it all the same
            return "the database file is empty (0 bytes)", ""
        return "the database file is empty (0 bytes)", aside.name

    def _record_lost_database(self, reason: str, moved_to: str) -> None:
        """Keep the loss of the whole database as a repair (``database_lost``) in the fresh one. Lock held."""
        repair = Repair(at=self._clock(), reason=reason, moved_to=moved_to, receipts_saved=0, receipts_lost=0,
                        pairings_saved=0, pairings_lost=0, screens_lost=0, schema_rebuilt=False, error=None,
                        database_lost=True)
        try:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_repair', ?)",
                             (json.dumps(asdict(repair)),))
        except sqlite3.Error as exc:  # still shown until the process ends
            log.warning("the loss of the database could not be recorded: %s", exc)
        self._repair = repair
        self._generation += 1
        log.error("storage was damaged (%s, though this device has run before): every pairing and receipt "
                  "is lost; every till must pair again", reason)

    def _open_or_fail(self) -> sqlite3.Connection:
        """:meth:`_open_checked`, or, when even a repair cannot give a usable database, the failed state (a
        closed placeholder connection that no method reaches). Lock held."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = self._open_checked()
        except (OSError, sqlite3.Error) as exc:
            if self._failure is None:
                log.error("storage cannot be used (%s): receipts cannot be stored or served until it can; "
                          "retrying every %g s", exc, STORAGE_RETRY_SECONDS)
            self._failure = str(exc)[:300] or type(exc).__name__
            self._retry_at = self._clock() + STORAGE_RETRY_SECONDS
            placeholder = sqlite3.connect(":memory:", check_same_thread=False)
            placeholder.close()
            return placeholder
        if self._failure is not None:
            log.warning("storage usable again")
            self._failure = None
            self._generation += 1
        return db

    def _reopen_if_due(self) -> bool:
        """In the failed state: try to open the database again if STORAGE_RETRY_SECONDS have passed; True
        once it is usable."""
        with self._lock:
            if self._failure is not None and self._clock() >= self._retry_at:
                self._db = self._open_or_fail()
            return self._failure is None

    def _connect(self) -> sqlite3.Connection:
        if not self.path.exists():  # created owner-only; SQLite gives the -wal and -shm files the same mode
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        os.chmod(self.path, 0o600)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        db.text_factory = _decode_text
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error:
            db.close()
            raise
        return db

    @staticmethod
    def _create_schema(db: sqlite3.Connection) -> None:
        """This release's tables (``IF NOT EXISTS``) and ``schema_version`` when there is none (never lowered):
        see SCHEMA_VERSION for the forward-compatible rule."""
        db.executescript(_SCHEMA)  # in autocommit mode the script commits as it goes
        db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def _open_checked(self) -> sqlite3.Connection:
        """Open the database, check it (``PRAGMA quick_check``) and create the schema; repair it if damaged.
        Called with the lock held."""
        db: sqlite3.Connection | None = None
        try:
            db = self._connect()
            problems = salvage.integrity_problems(db)
            if not problems:
                self._create_schema(db)
                self._damaged_pdfs = self._count_lost_pdfs(db)
                self._repair = self._last_repair(db)
                row = db.execute("SELECT value FROM meta WHERE key = 'damage_found_at'").fetchone()
                with contextlib.suppress(TypeError, ValueError):
                    self._damage_found_at = float(row[0]) if row else None
                return db
            reason = "; ".join(problems[:3])
        except sqlite3.DatabaseError as exc:
            if not salvage.is_damage(exc):
                raise
            reason = str(exc)
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()
        return self._repaired(reason)

    def _repaired(self, reason: str) -> sqlite3.Connection:
        """Move the damaged database aside, salvage it into a fresh one and return that. Lock held."""
        now = self._clock()
        aside = salvage.set_aside(self.path, now)
        db = self._connect()
        self._create_schema(db)
        try:
            report = salvage.salvage_into(aside, db, _SCHEMA, now)
        except Exception as exc:  # a salvage that fails must not stop the device: start empty instead
            report = salvage.SalvageReport(error=f"salvage failed: {exc!r}")
        repair = Repair(
            at=now, reason=reason[:300], moved_to=aside.name, receipts_saved=report.rows.get("tickets", 0),
            receipts_lost=report.receipts_lost, pairings_saved=report.rows.get("pos", 0),
            pairings_lost=report.lost.get("pos", 0), screens_lost=report.lost.get("screens", 0),
            schema_rebuilt=report.schema_rebuilt, error=report.error)
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_repair', ?)", (json.dumps(asdict(repair)),))
        self._repair = repair
        self._generation += 1
        self._damaged_pdfs = self._count_lost_pdfs(db)
        log.error("storage was damaged (%s): moved aside as %s; salvaged %d receipts and %d pairings; %d receipts "
                  "and %d pairings lost%s", repair.reason, repair.moved_to, repair.receipts_saved,
                  repair.pairings_saved, repair.receipts_lost, repair.pairings_lost,
                  f"; {repair.error}" if repair.error else "")
        return db

    def _refused(self, exc: sqlite3.DatabaseError) -> Exception:
        """StorageUnavailable for a medium that refuses (remembered for :meth:`health`), else ``exc`` itself."""
        if salvage.result_code(exc) not in salvage.UNAVAILABLE_CODES:
            return exc
        now, last = self._clock(), self._refusal
        if last is None or now - last[0] >= REFUSAL_SHOWN_SECONDS:  # one line per episode, not per request
            log.error("storage refused an operation: %s; receipts cannot be stored until it is fixed", exc)
        self._refusal = (now, str(exc)[:300])
        return StorageUnavailable(f"The device cannot use its storage ({exc}); nothing was stored. Try again; if "
                                  "this persists, restart the device or free space on its SD card.")

    def _repair_if_current(self, generation: int, reason: str) -> None:
        """Repair after a query found damage, unless another thread already did since ``generation``."""
        with self._lock:
            if generation != self._generation:
                return
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            try:
                self._db = self._repaired(reason)
            except (OSError, sqlite3.Error):  # the medium refuses even a fresh file: the failed state, retried
                self._db = self._open_or_fail()

    @staticmethod
    def _last_repair(db: sqlite3.Connection) -> Repair | None:
        row = db.execute("SELECT value FROM meta WHERE key = 'last_repair'").fetchone()
        try:
            return Repair(**json.loads(row[0])) if row else None
        except (ValueError, TypeError):  # written by a different version: not worth failing for
            return None

    @property
    def generation(self) -> int:
        """How many repairs this process made (0 after a clean start; 1 after a repair at start)."""
        return self._generation

    def _count_lost_pdfs(self, db: sqlite3.Connection) -> int:
        """Unexpired receipts without their PDF: lost to damage (expiry is the only other way to lose one)."""
        row = db.execute("SELECT COUNT(*) FROM tickets WHERE expires_at > ? AND pdf IS NULL",
                         (self._clock(),)).fetchone()
        return int(row[0])

    def health(self) -> dict[str, Any]:
        """The storage's state for ``/healthz``: ``{"status", "damaged_receipts", "error", "last_refusal",
        "last_repair"}``; never blocks.

        ``status``, first that applies: ``"failed"`` while the database cannot be used at all; ``"refusing"``
        within REFUSAL_SHOWN_SECONDS of an operation the medium refused (disk full, I/O error); ``"repaired"``
        within REPAIR_NOTICE_SECONDS of a repair; ``"damaged"`` within REPAIR_NOTICE_SECONDS of finding a
        stored PDF damaged in place (a failing medium); else ``"ok"``. ``error``: why, when failed or refusing
        (else null). ``last_refusal``: null or ``{"at", "error"}`` of the last refusal. ``damaged_receipts``:
        unexpired receipts whose PDF is unreadable (either way). ``last_repair``: null, or the last
        :class:`Repair` (``at`` Unix seconds), kept across restarts.
        """
        # No lock: a repair in progress must not block /healthz.
        repair, damaged, found_at, now = self._repair, self._damaged_pdfs, self._damage_found_at, self._clock()
        failure, refusal = self._failure, self._refusal
        if failure is not None:
            status = "failed"
        elif refusal is not None and now - refusal[0] < REFUSAL_SHOWN_SECONDS:
            status = "refusing"
        elif repair is not None and now - repair.at < REPAIR_NOTICE_SECONDS:
            status = "repaired"
        elif found_at is not None and now - found_at < REPAIR_NOTICE_SECONDS:
            status = "damaged"
        else:
            status = "ok"
        return {"status": status, "damaged_receipts": damaged,
                "error": failure if failure is not None else refusal[1] if status == "refusing" and refusal else None,
                "last_refusal": None if refusal is None else {"at": refusal[0], "error": refusal[1]},
                "last_repair": None if repair is None else asdict(repair)}

    def close(self) -> None:
        """Close the database."""
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.close()

    # --- device identity -------------------------------------------------------------------------------
    @_guarded
    def device_id(self, fallback: str | None = None) -> str:
        """The stable device id (``et-`` + 16 hex digits), made on first use and kept forever. ``fallback``
        is used instead of a new one when the store has none (a repair lost it; the certificate still has it)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'device_id'").fetchone()
            if row:
                return str(row[0])
            value = fallback or "et-" + secrets.token_hex(8)
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT INTO meta (key, value) VALUES ('device_id', ?)", (value,))
            self._db.execute("COMMIT")
            return value

    # --- POS pairings --------------------------------------------------------------------------------
    @_guarded
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

    @_guarded
    def pos_for_token(self, token: str) -> Pos | None:
        """The POS holding bearer ``token``, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, name, paired_at FROM pos WHERE token_sha256 = ?", (sha256_hex(token),)
            ).fetchone()
        return Pos(*row) if row else None

    @_guarded
    def list_pos(self) -> list[Pos]:
        """Every paired POS, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, name, paired_at FROM pos ORDER BY paired_at").fetchall()
        return [Pos(*row) for row in rows]

    @_guarded
    def revoke_pos(self, pos_id: str) -> bool:
        """Forget a POS: its token stops working at once. False if there was no such POS."""
        with self._lock:
            cur = self._db.execute("DELETE FROM pos WHERE id = ?", (pos_id,))
        return cur.rowcount > 0

    # --- screen clients ----------------------------------------------------------------------------------
    @_guarded
    def add_screen(self, name: str, token: str, screen_id: str | None = None) -> Pos:
        """Record a paired screen (a tablet's browser) as ``screen_id`` (default a new ``scr-…``); only the
        token's hash is kept."""
        screen = Pos(id=screen_id or new_screen_id(), name=name, paired_at=time.time())
        with self._lock:
            self._db.execute("INSERT INTO screens (id, name, token_sha256, added_at) VALUES (?, ?, ?, ?)",
                             (screen.id, screen.name, sha256_hex(token), screen.paired_at))
        return screen

    @_guarded
    def screen_for_token(self, token: str) -> Pos | None:
        """The paired screen holding ``token``, or None."""
        with self._lock:
            row = self._db.execute("SELECT id, name, added_at FROM screens WHERE token_sha256 = ?",
                                   (sha256_hex(token),)).fetchone()
        return Pos(*row) if row else None

    @_guarded
    def list_screens(self) -> list[Pos]:
        """Every paired screen, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, name, added_at FROM screens ORDER BY added_at").fetchall()
        return [Pos(*row) for row in rows]

    @_guarded
    def revoke_screen(self, screen_id: str) -> bool:
        """Forget a screen. False if there was no such screen."""
        with self._lock:
            cur = self._db.execute("DELETE FROM screens WHERE id = ?", (screen_id,))
        return cur.rowcount > 0

    # --- tills allowed to print --------------------------------------------------------------------------
    @_guarded
    def add_till(self, network: str, name: str, how: str) -> tuple[Till, bool]:
        """Allow ``network`` (canonical CIDR text) to print; ``(till, created)``: an allowance of the same
        network already there is returned as it is (``created`` False)."""
        till = Till(id="till-" + secrets.token_hex(4), network=network, name=name, how=how, added_at=time.time())
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO tills (id, network, name, how, added_at) VALUES (?, ?, ?, ?, ?)",
                (till.id, till.network, till.name, till.how, till.added_at))
            if cur.rowcount:
                return till, True
            row = self._db.execute("SELECT id, network, name, how, added_at FROM tills WHERE network = ?",
                                   (network,)).fetchone()
        return Till(*row), False

    @_guarded
    def list_tills(self) -> list[Till]:
        """Every till allowance, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, network, name, how, added_at FROM tills ORDER BY added_at").fetchall()
        return [Till(*row) for row in rows]

    @_guarded
    def revoke_till(self, till_id: str) -> bool:
        """Forget a till allowance: its jobs are refused from now on. False if there was no such till."""
        with self._lock:
            cur = self._db.execute("DELETE FROM tills WHERE id = ?", (till_id,))
        return cur.rowcount > 0

    @_guarded
    def pos_count(self) -> int:
        """How many POS are paired."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM pos").fetchone()[0])

    # --- tickets ---------------------------------------------------------------------------------------
    @_guarded
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
        The token is ``make_token(now)`` (a relay secret, :func:`relay.crypto.new_secret`), else 32 bytes from the
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
                        return _ticket(row), False
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

    @_guarded
    def delete_ticket(self, ticket_id: str) -> bool:
        """Delete a ticket, its PDF and its upload (the outbox row goes with it: ``ON DELETE CASCADE``); False
        when there was none. For the update's self-test receipt (appliance/selftest.py), never a customer's."""
        with self._lock:
            cursor = self._db.execute("DELETE FROM tickets WHERE id = ?", (ticket_id,))
            return cursor.rowcount > 0

    @_guarded
    def ticket_by_idempotency_key(self, pos_id: str, key: str) -> Ticket | None:
        """The ticket this POS already sent with ``key``, or None."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE pos_id = ? AND idempotency_key = ?", (pos_id, key)
            ).fetchone()
        return _ticket(row) if row else None

    @_guarded
    def ticket_by_token(self, token: str) -> tuple[Ticket, bytes | None] | None:
        """``(ticket, pdf)`` for a capability token, or None. Looked up by the token's hash. ``pdf`` is None
        once expired, or when it was lost to damage (:meth:`pdf_intact` tells a damaged one).

        Raises:
            ReceiptDamaged: the receipt's record holds a value of another type (a damaged record that passed
                ``quick_check``); its PDF is dropped, so ``damaged_receipts`` counts it.
        """
        with self._lock:
            found = self._db.execute("SELECT rowid FROM tickets WHERE token_sha256 = ?",
                                     (sha256_hex(token),)).fetchone()
            if found is None:
                return None
            try:
                row = self._db.execute(f"SELECT {_TICKET_COLUMNS}, pdf FROM tickets WHERE rowid = ?",
                                       found).fetchone()
                return _ticket(row), _pdf_value(row[-1])
            except DamagedValue as exc:
                fault = str(exc)
        self._drop_damaged_row(int(found[0]), fault)
        raise ReceiptDamaged(_RECEIPT_DAMAGED)

    def _forget_pdf(self, ticket_where: str, key: object, outbox_where: str) -> tuple[bool, float]:
        """In one transaction (under ``self._lock``): drop the PDF of the ticket matching ``ticket_where`` (one
        ``?`` for ``key``), stamp ``damage_found_at`` and give up its upload (outbox rows matching
        ``outbox_where``, one ``?`` for ``key``). ``(True if a PDF was still there, the stamp)``; rolled back
        on any error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            cur = self._db.execute(f"UPDATE tickets SET pdf = NULL WHERE {ticket_where} AND pdf IS NOT NULL", (key,))
            now = self._clock()
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('damage_found_at', ?)", (str(now),))
            self._db.execute("UPDATE outbox SET state = 'failed', last_error = 'receipt damaged in storage' "
                             f"WHERE {outbox_where}", (key,))
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return cur.rowcount > 0, now

    @_guarded
    def _drop_damaged_row(self, rowid: int, fault: str) -> bool:
        """Forget the PDF of the receipt at ``rowid`` whose record is damaged (``fault`` names the column, never
        its value) and give up its upload, as :meth:`drop_damaged_pdf`. True the first time. Logged once."""
        with self._lock:
            dropped, now = self._forget_pdf(
                "rowid = ?", rowid, "ticket_id IN (SELECT id FROM tickets WHERE rowid = ?) AND state != 'failed'")
            if dropped:
                self._damaged_pdfs += 1
            self._damage_found_at = now
        if dropped:
            log.error("a receipt's record is damaged in storage (%s; row %d): it cannot be served; ask the till "
                      "to send it again", fault, rowid)
        return dropped

    @staticmethod
    def pdf_intact(ticket: Ticket, pdf: bytes) -> bool:
        """True when ``pdf`` is what the POS sent: its size and SHA-256 are the ones stored with the ticket."""
        return len(pdf) == ticket.size and sha256_hex(pdf) == ticket.pdf_sha256

    @_guarded
    def drop_damaged_pdf(self, ticket_id: str) -> bool:
        """Forget a PDF whose bytes no longer match its checksum (damaged on the medium): its link answers
        ``receipt-damaged`` from now on, its upload is given up. True if it was still there. Logged once."""
        with self._lock:
            dropped, now = self._forget_pdf("id = ?", ticket_id, "ticket_id = ? AND state = 'pending'")
            if dropped:
                self._damaged_pdfs += 1
                self._damage_found_at = now
        if dropped:
            log.error("receipt %s is damaged in storage (its PDF no longer matches its SHA-256): it cannot be "
                      "served; ask the till to send it again", ticket_id)
        return dropped

    def verify_pdfs(self) -> int:
        """Check every stored PDF against its SHA-256 (one row at a time, the lock released in between, so
        receipts keep flowing) and drop the damaged ones (:meth:`drop_damaged_pdf`); return how many. Run
        in the background after start, so that ``/healthz`` tells before a customer finds out.

        Raises:
            StorageDamaged, StorageUnavailable: as every method.
        """
        damaged, last = 0, 0
        while True:
            batch = self._pdf_rowids_after(last)
            if not batch:
                return damaged
            for rowid in batch:
                last = rowid
                found = self._pdf_of_rowid(rowid)
                if found is not None and not self.pdf_intact(*found) and self.drop_damaged_pdf(found[0].id):
                    damaged += 1

    @_guarded
    def _pdf_rowids_after(self, rowid: int, limit: int = 256) -> list[int]:
        with self._lock:
            rows = self._db.execute("SELECT rowid FROM tickets WHERE rowid > ? AND pdf IS NOT NULL ORDER BY rowid "
                                    "LIMIT ?", (rowid, limit)).fetchall()
        return [int(r[0]) for r in rows]

    @_guarded
    def _pdf_of_rowid(self, rowid: int) -> tuple[Ticket, bytes] | None:
        with self._lock:
            try:
                row = self._db.execute(f"SELECT {_TICKET_COLUMNS}, pdf FROM tickets WHERE rowid = ? AND pdf IS NOT "
                                       "NULL", (rowid,)).fetchone()
                if row is None:
                    return None
                ticket, pdf = _ticket(row), _pdf_value(row[-1])
            except DamagedValue as exc:
                fault = str(exc)
            else:
                return None if pdf is None else (ticket, pdf)
        self._drop_damaged_row(rowid, fault)
        return None

    @_guarded
    def mark_downloaded(self, ticket_id: str, at: float | None = None) -> bool:
        """Remember the first download time of a ticket (``at``, Unix seconds: now by default; the relay's time
        for a download through it); True if it was not known before."""
        with self._lock:
            cur = self._db.execute("UPDATE tickets SET downloaded_at = ? WHERE id = ? AND downloaded_at IS NULL",
                                   (time.time() if at is None else at, ticket_id))
        return cur.rowcount > 0

    @_guarded
    def ticket_count(self) -> int:
        """How many tickets are stored (expired ones included until purged)."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM tickets").fetchone()[0])

    @_guarded
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
    @_guarded
    def due_uploads(self, now: float, limit: int = 16) -> list[tuple[str, str, bytes, float, int]]:
        """Pending uploads whose time has come: ``(ticket_id, token, pdf, expires_at, attempts)``, oldest first.
        A PDF that no longer matches its SHA-256 is never uploaded (:meth:`drop_damaged_pdf`)."""
        with self._lock:
            rowids = self._db.execute(
                "SELECT t.rowid FROM outbox o JOIN tickets t ON t.id = o.ticket_id WHERE o.state = 'pending' AND "
                "o.next_attempt_at <= ? AND t.pdf IS NOT NULL AND t.token != '' ORDER BY o.created_at LIMIT ?",
                (now, limit)).fetchall()
        due = []
        for (rowid,) in rowids:
            with self._lock:
                try:
                    r = self._db.execute(f"SELECT {_TICKET_COLUMNS}, pdf, (SELECT attempts FROM outbox WHERE "
                                         "ticket_id = tickets.id) FROM tickets WHERE rowid = ?", (rowid,)).fetchone()
                    if r is None:
                        continue
                    ticket, pdf, attempts = _ticket(r), _pdf_value(r[-2]), r[-1]
                    fault = None if isinstance(attempts, int) else "column attempts of an upload is not a number"
                except DamagedValue as exc:
                    fault = str(exc)
            if fault is not None:
                self._drop_damaged_row(int(rowid), fault)
            elif pdf is not None and self.pdf_intact(ticket, pdf):
                due.append((ticket.id, ticket.token, pdf, ticket.expires_at, int(attempts)))
            elif pdf is not None:
                self.drop_damaged_pdf(ticket.id)
        return due

    @_guarded
    def next_upload_at(self) -> float | None:
        """When the next pending upload is due (Unix seconds), or None when nothing is pending."""
        with self._lock:
            row = self._db.execute("SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'pending'").fetchone()
        return None if row[0] is None else float(row[0])

    @_guarded
    def upload_done(self, ticket_id: str) -> None:
        """The relay acknowledged the upload."""
        with self._lock:
            self._db.execute("UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1, "
                             "last_error = NULL WHERE ticket_id = ?", (time.time(), ticket_id))

    @_guarded
    def upload_failed(self, ticket_id: str, error: str, next_attempt_at: float | None) -> None:
        """An attempt failed: retry at ``next_attempt_at``, or give up (state ``failed``) when None."""
        with self._lock:
            if next_attempt_at is None:
                self._db.execute("UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ? "
                                 "WHERE ticket_id = ?", (error, ticket_id))
            else:
                self._db.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
                                 "WHERE ticket_id = ?", (error, next_attempt_at, ticket_id))

    @_guarded
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

    @_guarded
    def awaiting_download(self, since: float, limit: int = 200) -> list[tuple[str, str]]:
        """Uploaded tickets created after ``since`` that no phone has fetched yet: ``(ticket_id, token)``, each
        token a valid relay token (:func:`relay.crypto.parse_token`). A row that is not one (a placeholder a
        repair made for a lost receipt has an empty token; a damaged record) is left out, so one bad row never
        stops the download watch."""
        with self._lock:
            rowids = self._db.execute(
                "SELECT t.rowid FROM outbox o JOIN tickets t ON t.id = o.ticket_id WHERE o.state = 'sent' "
                "AND t.downloaded_at IS NULL AND t.created_at > ? AND t.token != '' ORDER BY t.created_at DESC "
                "LIMIT ?", (since, limit)).fetchall()
            watched = []
            for (rowid,) in rowids:
                try:
                    row = self._db.execute("SELECT id, token FROM tickets WHERE rowid = ?", (rowid,)).fetchone()
                except DamagedValue:
                    continue
                if row is None or not isinstance(row[0], str) or not isinstance(row[1], str):
                    continue
                try:
                    parse_token(row[1])
                except BadToken:
                    continue
                watched.append((row[0], row[1]))
        return watched
