"""Benchmark: how long the start-up integrity check and a repair take on a full store.

Builds a store of ``--receipts`` receipts (the receipt-sized sample PDFs, 3–41 KB, in turn), then times:
opening it with the start-up check (``PRAGMA quick_check``) with the file in the page cache and out of it
(``posix_fadvise(DONTNEED)`` on the database only), the background check of every PDF's SHA-256 after
start, and a whole repair after one b-tree leaf is overwritten
(move aside, salvage row by row with every PDF's SHA-256 verified, fresh database). The read rate lets one
scale to a board's SD card (a Raspberry Pi reads a class-10 card at ~20–40 MB/s).

    .venv/bin/python bench/storage_check.py [--receipts 10000] [--out bench/results/storage-check.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _report import publish  # noqa: E402

from appliance.store import Store, sha256_hex  # noqa: E402

SAMPLES = REPO.parent / "shared" / "samples" / "pdf"
RECEIPT_SAMPLES = ("dart_pdf_roll-paper-80mm.pdf", "escpos-php_example-document.pdf", "escpos-php_test-doc.pdf",
                   "invoice2data_AzureInterior-odoo.pdf")
PAGE_SIZE = 4096


def build(path: Path, receipts: int) -> None:
    """A store made by :class:`Store` and filled in batches of 500 (same rows as ``add_ticket`` writes)."""
    Store(path).close()
    pdfs = [(SAMPLES / name).read_bytes() for name in RECEIPT_SAMPLES]
    db = sqlite3.connect(path, isolation_level=None)
    now = time.time()
    db.execute("INSERT INTO pos (id, name, token_sha256, paired_at) VALUES ('pos-1', 'till', ?, ?)",
               (sha256_hex("token"), now))
    for start in range(0, receipts, 500):
        db.execute("BEGIN")
        for i in range(start, min(receipts, start + 500)):
            pdf, token = pdfs[i % len(pdfs)], secrets.token_urlsafe(32)
            db.execute(
                "INSERT INTO tickets (id, token, pos_id, idempotency_key, request_sha256, total, currency, reference, "
                "pdf_sha256, size, pages, created_at, expires_at, downloaded_at, token_sha256, pdf) "
                "VALUES (?, ?, 'pos-1', ?, ?, '12.50', 'EUR', NULL, ?, ?, 1, ?, ?, NULL, ?, ?)",
                ("t-" + secrets.token_hex(8), token, secrets.token_hex(8), sha256_hex(token), sha256_hex(pdf),
                 len(pdf), now, now + 30 * 86_400, sha256_hex(token), pdf))
        db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def evict(path: Path) -> None:
    """Drop this file's pages from the page cache (only this file: other processes keep theirs)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed_open(path: Path) -> tuple[float, Store]:
    start = time.perf_counter()
    store = Store(path)
    return time.perf_counter() - start, store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receipts", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "storage-check.json")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="eticket-bench-storage-"))
    try:
        path = folder / "eticket.sqlite3"
        build(path, args.receipts)
        size = path.stat().st_size
        _, store = timed_open(path)  # warm the cache
        store.close()
        warm, store = timed_open(path)
        store.close()
        evict(path)
        cold, store = timed_open(path)
        assert store.health()["status"] == "ok"
        evict(path)
        start = time.perf_counter()
        assert store.verify_pdfs() == 0
        verify = time.perf_counter() - start
        store.close()
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        leaf = db.execute("SELECT pageno FROM dbstat WHERE name = 'tickets' AND pagetype = 'leaf' "
                          "ORDER BY pageno LIMIT 1 OFFSET 10").fetchone()[0]
        db.close()
        with path.open("r+b") as handle:
            handle.seek((leaf - 1) * PAGE_SIZE)
            handle.write(b"\x5a" * 64)
        evict(path)
        repair_s, store = timed_open(path)
        health = store.health()
        store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    repair = health["last_repair"]
    data = {
        "receipts": args.receipts, "database_mb": round(size / 1e6, 1), "machine": platform.machine(),
        "cpus": os.cpu_count(), "open_with_quick_check_warm_s": round(warm, 2),
        "open_with_quick_check_cold_s": round(cold, 2), "quick_check_cold_mb_per_s": round(size / 1e6 / cold, 1),
        "verify_every_pdf_cold_s": round(verify, 2), "repair_cold_s": round(repair_s, 2),
        "repair_receipts_saved": repair["receipts_saved"],
        "repair_receipts_lost": repair["receipts_lost"],
    }
    table = "\n".join([
        "| receipts | database | start-up check, cached | start-up check, from disk | every PDF's SHA-256 "
        "(background) | repair (one leaf page lost) |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {args.receipts} | {data['database_mb']} MB | {warm:.2f} s | {cold:.2f} s "
        f"({data['quick_check_cold_mb_per_s']} MB/s) | {verify:.2f} s | {repair_s:.2f} s "
        f"({repair['receipts_saved']} saved, {repair['receipts_lost']} lost) |",
    ])
    publish(data, table, args.out, REPO / "README.md", "storage-check")


if __name__ == "__main__":
    main()
