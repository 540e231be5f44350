"""Damage in the SQLite database: detect it, move the damaged file aside, salvage what can still be read.

A shop has no one to call, so the device repairs itself (:meth:`appliance.store.Store` drives this):

1. **Detect.** ``PRAGMA quick_check`` at start (https://www.sqlite.org/pragma.html#pragma_quick_check: the
   b-trees, their order and the page accounting, in O(N); not index contents), and any query that fails with
   ``SQLITE_CORRUPT`` or ``SQLITE_NOTADB`` (https://www.sqlite.org/rescode.html) while running. Damage that
   leaves the structure intact (bytes changed inside a receipt's PDF) is caught by the receipt's SHA-256,
   checked before every download and upload.
2. **Move aside** the database with its ``-wal`` and ``-shm`` files, together, under a timestamped name
   (``eticket.sqlite3.damaged-20261201T203000Z``), so that nothing is deleted and a later look is possible.
3. **Salvage** into a fresh database, table by table and row by row (rowids from the table and from every
   index, each row read on its own, errors skipped), in pure Python: SQLite's ``.recover`` lives in the
   ``sqlite3`` shell, not in the library Python uses. Receipts are copied only when their PDF matches its
   stored SHA-256; a receipt whose PDF is lost keeps its metadata without PDF, so its link says "damaged"
   rather than "unknown". A damaged first page (the header and the schema) is rebuilt from a fresh database
   of the same schema, since our root pages are always the same (the schema is created in one script).

Everything here is blocking and runs under the store's lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import struct
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

DAMAGE_CODES = frozenset({11, 26})
"""SQLITE_CORRUPT and SQLITE_NOTADB (primary result codes): the file is damaged, not merely busy or full."""
UNAVAILABLE_CODES = frozenset({3, 5, 8, 10, 13, 14})
"""SQLITE_PERM, SQLITE_BUSY (another process held a lock past the 30 s timeout), SQLITE_READONLY, SQLITE_IOERR,
SQLITE_FULL, SQLITE_CANTOPEN: the storage refuses, for now."""
TABLE_ORDER = ("meta", "pos", "screens", "tills", "tickets", "outbox")
"""Copy order: the device id, pairings and till allowances first (losing them forces every till to pair
again), outbox last
(it refers to tickets)."""
KEEP_DAMAGED_COPIES = 2
"""Set-aside databases kept (the newest); older ones are deleted at the next repair, so that a failing card
that needs repair after repair does not fill the data partition. Everything readable in them was salvaged."""
ROWID_BATCH = 256
HEADER_BYTES = 100
"""The database header at the start of page 1 (https://www.sqlite.org/fileformat.html#the_database_header)."""
_HEADER_WRITE_VERSION = 18
_HEADER_READ_VERSION = 19
_HEADER_CHANGE_COUNTER = 24
_HEADER_PAGE_COUNT = 28
_HEADER_FREELIST = 32
_HEADER_VALID_FOR = 92


def result_code(exc: sqlite3.Error) -> int | None:
    """The primary SQLite result code of ``exc`` (extended codes carry it in their low byte), or None."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def is_damage(exc: BaseException) -> bool:
    """True when ``exc`` says the database file is damaged (``SQLITE_CORRUPT``, ``SQLITE_NOTADB``)."""
    return isinstance(exc, sqlite3.DatabaseError) and result_code(exc) in DAMAGE_CODES


def integrity_problems(db: sqlite3.Connection, limit: int = 5) -> list[str]:
    """``PRAGMA quick_check(limit)``: [] when the database is sound, else up to ``limit`` problem lines.

    Raises:
        sqlite3.DatabaseError: the check itself could not read the file (the caller treats it as damage).
    """
    rows = db.execute(f"PRAGMA quick_check({int(limit)})").fetchall()
    lines = [str(row[0]) for row in rows]
    return [] if lines == ["ok"] else [line for text in lines for line in text.splitlines() if line.strip()]


def stamp(now: float) -> str:
    """``20261201T203000Z``: a timestamp fit for a file name (UTC)."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")


def set_aside(path: Path, now: float) -> Path:
    """Rename ``path`` and its ``-wal`` and ``-shm`` files to ``<name>.damaged-<stamp>`` (same suffixes, so
    SQLite still pairs them) and return the new database path. A clash with an earlier aside gets ``-2``…

    Raises:
        OSError: the rename failed (the data directory is read-only or gone).
    """
    base = path.with_name(f"{path.name}.damaged-{stamp(now)}")
    aside, n = base, 1
    while any(Path(str(aside) + s).exists() for s in ("", "-wal", "-shm")):
        n += 1
        aside = base.with_name(f"{base.name}-{n}")
    for suffix in ("-wal", "-shm", ""):  # the database last: a crash in between leaves its journal beside it
        source = Path(str(path) + suffix)
        if source.exists():
            os.replace(source, Path(str(aside) + suffix))
    _fsync_dir(path.parent)
    prune_damaged_copies(path)
    return aside


def prune_damaged_copies(path: Path, keep: int = KEEP_DAMAGED_COPIES) -> list[Path]:
    """Delete all but the ``keep`` newest set-aside copies of ``path`` (each with its -wal, -shm and .page1
    files); return the database paths deleted. Their names sort by time (:func:`stamp`)."""
    sidecars = ("-wal", "-shm", ".page1")
    copies: set[Path] = set()
    for found in path.parent.glob(f"{path.name}.damaged-*"):
        name = found.name
        for suffix in sidecars:
            name = name.removesuffix(suffix)
        copies.add(found.with_name(name))
    newest_first = sorted(copies, key=lambda c: c.name, reverse=True)
    doomed = newest_first[keep:]
    for copy in doomed:
        for suffix in (*sidecars, ""):
            with contextlib.suppress(FileNotFoundError):
                Path(str(copy) + suffix).unlink()
    return doomed


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(slots=True)
class SalvageReport:
    """What a salvage recovered (``rows``) and could not (``lost``), per table; ``receipts_lost`` counts
    receipts whose PDF is gone (their links answer ``receipt-damaged``) or whose row could not be read;
    ``schema_rebuilt``: page 1 was unreadable and rebuilt; ``error``: why the salvage stopped early."""

    rows: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    receipts_lost: int = 0
    schema_rebuilt: bool = False
    error: str | None = None


def _open_source(path: Path) -> sqlite3.Connection:
    """The set-aside database with its schema readable, read-only when SQLite allows it (so that its WAL is
    not checkpointed into it).

    Raises:
        sqlite3.DatabaseError: the schema cannot be read (:func:`is_damage` tells damage apart).
    """
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.OperationalError:  # a WAL without its -shm needs a writer to open
        db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("SELECT name, rootpage FROM sqlite_master").fetchall()
    except sqlite3.Error:
        db.close()
        raise
    return db


def _template_page_one(schema: str, page_size: int) -> bytes:
    """Page 1 (header and schema table) of a fresh database made with ``schema``."""
    with tempfile.TemporaryDirectory() as folder:
        fresh = Path(folder) / "template.sqlite3"
        db = sqlite3.connect(fresh, isolation_level=None)
        try:
            db.execute(f"PRAGMA page_size={int(page_size)}")
            db.executescript(schema)
        finally:
            db.close()
        with fresh.open("rb") as handle:
            return handle.read(page_size)


def _page_size_of(path: Path) -> int:
    """The page size in the header (offset 16, big-endian; 1 means 65536) if it is a power of two from 512
    that divides the file size, else SQLite's default, 4096."""
    with path.open("rb") as handle:
        header = handle.read(HEADER_BYTES)
    size = struct.unpack_from(">H", header, 16)[0] if len(header) >= 18 else 0
    size = 65536 if size == 1 else size
    if size >= 512 and size & (size - 1) == 0 and path.stat().st_size % size == 0:
        return int(size)
    return 4096


def rebuild_page_one(path: Path, schema: str) -> None:
    """Replace page 1 of ``path`` (in place) by that of a fresh database of ``schema``, keeping the original
    page in ``<path>.page1``. The page count is set from the file size and the free list is dropped: enough
    to read the tables again, never to write to this file."""
    page_size = _page_size_of(path)
    page = bytearray(_template_page_one(schema, page_size))
    pages = max(1, path.stat().st_size // page_size)
    struct.pack_into(">I", page, _HEADER_PAGE_COUNT, pages)
    struct.pack_into(">II", page, _HEADER_FREELIST, 0, 0)
    page[_HEADER_WRITE_VERSION] = page[_HEADER_READ_VERSION] = 2  # WAL, as the store always runs: keep its -wal
    counter = struct.unpack_from(">I", page, _HEADER_CHANGE_COUNTER)[0]
    struct.pack_into(">I", page, _HEADER_VALID_FOR, counter)
    with path.open("r+b") as handle:
        original = handle.read(page_size)
        Path(str(path) + ".page1").write_bytes(original)
        handle.seek(0)
        handle.write(bytes(page))
        handle.flush()
        os.fsync(handle.fileno())


def _rowids_by_scan(src: sqlite3.Connection, table: str) -> Iterator[int]:
    """Rowids in the table's own b-tree, in order, stepping over ranges that cannot be read (rows skipped that
    way are usually still listed by an index: :func:`_rowids` takes both)."""
    last, step = 0, 1
    while True:
        try:
            batch = [int(r[0]) for r in src.execute(
                f'SELECT rowid FROM "{table}" WHERE rowid > ? ORDER BY rowid LIMIT {ROWID_BATCH}', (last,))]
        except sqlite3.DatabaseError:
            if last + step > 2**62:
                return
            last, step = last + step, step * 2  # past the damaged range, faster and faster
            continue
        if not batch:
            return
        yield from batch
        if max(batch) <= last:  # a damaged page led back to earlier rows: step past it, faster and faster
            if last + step > 2**62:
                return
            last, step = last + step, step * 2
        else:
            last, step = max(batch), 1


def _rowids_by_index(src: sqlite3.Connection, table: str, index: str) -> Iterator[int]:
    """Rowids listed by one index (a covering scan: the table's b-tree is not read), until it breaks."""
    try:
        for (rowid,) in src.execute(f'SELECT rowid FROM "{table}" INDEXED BY "{index}"'):
            yield int(rowid)
    except sqlite3.DatabaseError:
        return


def _rowids(src: sqlite3.Connection, table: str) -> list[int]:
    """Every rowid the table or any of its indexes still knows, sorted."""
    found: set[int] = set()
    with contextlib.suppress(sqlite3.DatabaseError):
        found.update(_rowids_by_scan(src, table))
    try:
        indexes = [str(r[0]) for r in src.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (table,))]
    except sqlite3.DatabaseError:
        indexes = []
    for index in indexes:
        found.update(_rowids_by_index(src, table, index))
    return sorted(found)


def _indexed_values(src: sqlite3.Connection, table: str, wanted: set[str]) -> dict[str, dict[int, object]]:
    """``{column: {rowid: value}}`` for each single-column index on one of the ``wanted`` columns, read from
    the index alone: what the indexes still know about rows whose table page is lost."""
    found: dict[str, dict[int, object]] = {}
    try:
        indexes = [str(r[0]) for r in src.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (table,))]
    except sqlite3.DatabaseError:
        return found
    for index in indexes:
        try:
            columns = [str(r[2]) for r in src.execute(f'PRAGMA index_info("{index}")')]
        except sqlite3.DatabaseError:
            continue
        if len(columns) != 1 or columns[0] not in wanted:
            continue
        values = found.setdefault(columns[0], {})
        with contextlib.suppress(sqlite3.DatabaseError):
            for rowid, value in src.execute(f'SELECT rowid, "{columns[0]}" FROM "{table}" INDEXED BY "{index}"'):
                values[int(rowid)] = value
    return found


def _lost_ticket(rowid: int, known: dict[str, dict[int, object]], now: float) -> list[object] | None:
    """A placeholder row (no PDF) for a receipt whose row is lost but whose token hash and expiry the indexes
    still hold, so that its link answers ``receipt-damaged`` instead of "unknown" until it expires; else None.
    Columns as :data:`LOST_TICKET_COLUMNS`."""
    token_sha256 = known.get("token_sha256", {}).get(rowid)
    expires_at = known.get("expires_at", {}).get(rowid)
    if not isinstance(token_sha256, str) or not isinstance(expires_at, float) or expires_at <= now:
        return None
    ticket_id = known.get("id", {}).get(rowid)
    ticket_id = ticket_id if isinstance(ticket_id, str) else f"t-lost-{rowid}"
    return [rowid, ticket_id, token_sha256, "", "", "", "", 0, 0, now, expires_at]


LOST_TICKET_COLUMNS = ("rowid", "id", "token_sha256", "token", "pos_id", "request_sha256", "pdf_sha256", "size",
                       "pages", "created_at", "expires_at")


def _columns(dst: sqlite3.Connection, table: str) -> list[str]:
    return [str(r[1]) for r in dst.execute(f'PRAGMA table_info("{table}")')]


def _salvage_table(src: sqlite3.Connection, dst: sqlite3.Connection, table: str, report: SalvageReport,
                   now: float) -> None:
    columns = [c for c in _columns(dst, table) if not (table == "tickets" and c == "pdf")]
    try:
        src_columns = {str(r[1]) for r in src.execute(f'PRAGMA table_info("{table}")')}
    except sqlite3.DatabaseError:
        src_columns = set()
    if not src_columns:
        return
    columns = [c for c in columns if c in src_columns]
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in range(len(columns) + (2 if table == "tickets" else 1)))
    insert = f'INSERT INTO "{table}" (rowid, {names}{", pdf" if table == "tickets" else ""}) VALUES ({marks})'
    saved = lost = 0
    known = _indexed_values(src, table, {"id", "token_sha256", "expires_at"}) if table == "tickets" else {}
    for rowid in _rowids(src, table):
        try:
            row = src.execute(f'SELECT {names} FROM "{table}" WHERE rowid = ?', (rowid,)).fetchone()
        except sqlite3.DatabaseError:
            row = None
        if row is None:
            lost += 1
            if table == "tickets":
                report.receipts_lost += 1
                placeholder = _lost_ticket(rowid, known, now)
                if placeholder is not None:
                    with contextlib.suppress(sqlite3.Error):
                        dst.execute(f"INSERT INTO tickets ({', '.join(LOST_TICKET_COLUMNS)}) VALUES "
                                    f"({', '.join('?' for _ in LOST_TICKET_COLUMNS)})", placeholder)
            continue
        values: list[object] = [rowid, *row]
        if table == "tickets":
            record = dict(zip(columns, row, strict=True))
            pdf = _verified_pdf(src, rowid, record)
            if pdf is None and float(record.get("expires_at") or 0) > now:
                report.receipts_lost += 1  # kept without its PDF: the link answers receipt-damaged
            values.append(pdf)
        try:
            dst.execute(insert, values)
        except sqlite3.Error:  # a damaged value breaks a constraint (NOT NULL, UNIQUE, foreign key)
            lost += 1
            if table == "tickets" and values[-1] is not None:
                report.receipts_lost += 1
            continue
        saved += 1
    report.rows[table] = saved
    report.lost[table] = lost


def _verified_pdf(src: sqlite3.Connection, rowid: int, record: dict[str, object]) -> bytes | None:
    """The row's PDF if it reads and matches its stored SHA-256 and size, else None."""
    try:
        found = src.execute("SELECT pdf FROM tickets WHERE rowid = ?", (rowid,)).fetchone()
    except sqlite3.DatabaseError:
        return None
    pdf = found[0] if found else None
    if not isinstance(pdf, bytes) or len(pdf) != record.get("size"):
        return None
    return pdf if hashlib.sha256(pdf).hexdigest() == record.get("pdf_sha256") else None


def salvage_into(source: Path, dst: sqlite3.Connection, schema: str, now: float | None = None) -> SalvageReport:
    """Copy what can be read from the damaged database ``source`` into ``dst`` (a fresh database with
    ``schema``, in autocommit mode), in one transaction. Never raises for damage: what cannot be read is
    counted in the report. Outbox rows are dropped for receipts that lost their PDF and are not yet
    uploaded, and for every placeholder of a lost receipt (it has no token to watch a download with).

    Raises:
        sqlite3.Error: writing to ``dst`` failed (the fresh database itself is unusable).
    """
    now = time.time() if now is None else now
    report = SalvageReport()
    try:
        src = _open_source(source)
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            report.error = f"cannot open the damaged database: {exc}"
            return report
        try:
            rebuild_page_one(source, schema)
            src = _open_source(source)
            report.schema_rebuilt = True
        except (OSError, sqlite3.Error) as again:
            report.error = f"the damaged database cannot be read: {again}"
            return report
    try:
        dst.execute("BEGIN IMMEDIATE")
        for table in TABLE_ORDER:
            _salvage_table(src, dst, table, report, now)
        dst.execute("DELETE FROM outbox WHERE ticket_id IN (SELECT id FROM tickets WHERE pdf IS NULL) "
                    "AND (state = 'pending' OR ticket_id IN (SELECT id FROM tickets WHERE token = ''))")
        dst.execute("COMMIT")
    except BaseException:
        if dst.in_transaction:
            dst.execute("ROLLBACK")
        raise
    finally:
        src.close()
    return report
