"""Print jobs -> PDF in a separate worker process, bounded in memory and time.

The bytes of a print job come from the network, like a PDF's; interpreting them is pure Python but
rendering (reportlab, pillow) allocates per image and per line. So a job is converted by one worker process
under ``RLIMIT_AS`` (CONVERT_MEMORY_BYTES) and a wall-clock deadline (CONVERT_TIMEOUT_SECONDS), started on
the first job and replaced when it dies or overruns: that job is refused, the device keeps serving.
Jobs are converted one at a time (a shop prints one receipt every few seconds at most).
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import sys
from dataclasses import dataclass, field
from typing import Any

from ..errors import PrintJobRefused
from ..pdfworker import Worker, bound_worker, read_request, stop_idle_workers, write_answer

log = logging.getLogger(__name__)

CONVERT_TIMEOUT_SECONDS = 30.0
"""Wall-clock budget of one conversion; a 2 MB raster job takes about 2 s on a Pi 3 class board."""
CONVERT_MEMORY_BYTES = 256 * 1024 * 1024
"""Address-space limit of the conversion worker, bytes (RLIMIT_AS). Its libraries (reportlab, pillow, the
fonts) map about 110 MiB before any job; the interpreter's Limits bound a job's images (bench/printer.py
measures the peak on a 2 MB raster job)."""


MAX_CODES = 200
"""Barcodes, QR and PDF417 codes a job may print (each is encoded and drawn: a job of 20,000 prints of one
stored QR took the worker's whole 30 s); the samples print at most 24."""
MAX_CODE_BYTES = 64 * 1024
"""Data of all of a job's codes together (200 QR codes of 2,900 bytes each took the worker 20 s)."""
MAX_PRINTED_LINES = 20_000
"""Text lines a job prints once wrapped at its paper's columns (about 15 PDF pages): a receipt is rarely over
a few hundred; 1,000 lines of 900 characters made 711 pages, over the PDF check's 500."""
FONT_A_COLUMNS_80MM = 48


def cost_fault(receipts: list[Any]) -> str | None:
    """What makes a job too costly to draw (MAX_CODES, MAX_CODE_BYTES, MAX_PRINTED_LINES), or None. Lines are counted as
    printed: wrapped at 48 font-A columns (the widest paper; font B and double widths count by their width)."""
    from ..escpos.model import Barcode, Pdf417, QrCode, TextLine

    codes = lines = code_bytes = 0
    for receipt in receipts:
        for element in receipt.elements:
            if isinstance(element, (Barcode, QrCode, Pdf417)):
                codes += 1
                code_bytes += len(element.data)
            elif isinstance(element, TextLine):
                columns = sum(len(span.text) * span.width * (0.75 if span.font == "B" else 1.0)
                              for span in element.spans)
                tall = max((span.height for span in element.spans), default=1)
                lines += max(1, -(-int(columns) // FONT_A_COLUMNS_80MM)) * tall
    if codes > MAX_CODES:
        return f"it prints {codes} barcodes and 2D codes; a job may print at most {MAX_CODES}"
    if code_bytes > MAX_CODE_BYTES:
        return f"its codes hold {code_bytes} bytes of data; a job's codes may hold at most {MAX_CODE_BYTES}"
    if lines > MAX_PRINTED_LINES:
        return f"it prints about {lines} lines; a job may print at most {MAX_PRINTED_LINES}"
    return None


@dataclass
class Conversion:
    """A converted job: ``pdf`` bytes (one page per distinct receipt), ``total`` (plain decimal or None),
    ``receipts`` pages, ``copies`` receipts dropped as copies, ``warnings`` (never the receipt's text),
    ``truncated`` (the job ended inside a command)."""

    pdf: bytes
    total: str | None
    receipts: int
    copies: int
    warnings: list[str] = field(default_factory=list)
    truncated: bool = False


def convert_job(data: bytes, paper_mm: int | None, labels: tuple[str, ...] | None) -> Conversion:
    """Interpret ``data`` (ESC/POS) and render its receipts; in this process (the worker calls it).

    Raises:
        PrintJobRefused: nothing prints, a limit of :class:`appliance.escpos.interpreter.Limits` is passed, or
            the job is too costly to draw (:func:`cost_fault`).
    """
    from ..escpos.convert import convert_receipts
    from ..escpos.interpreter import JobTooLarge, interpret
    from ..escpos.total import DEFAULT_TOTAL_LABELS

    try:
        job = interpret(data)
    except JobTooLarge as exc:
        raise PrintJobRefused(f"The print job is too large: {exc}.") from None
    fault = cost_fault(job.receipts)
    if fault is not None:
        raise PrintJobRefused(f"The print job is too long to draw: {fault}.")
    converted = convert_receipts(job.receipts, paper_mm, labels or DEFAULT_TOTAL_LABELS)
    if converted.pdf is None:
        raise PrintJobRefused("The print job prints nothing (no text, image or code before its end)."
                              + (" It ends inside a command." if job.truncated else ""))
    return Conversion(pdf=converted.pdf, total=converted.total, receipts=converted.receipts,
                      copies=converted.copies, warnings=[*job.warnings, *converted.warnings],
                      truncated=job.truncated)


def worker_main(argv: list[str]) -> None:
    """Worker loop: ``argv`` is ``[paper_mm or "", labels as a JSON list or ""]``; each request is a job's
    bytes, each answer ``["ok", {conversion with pdf in base64}]`` or ``["refused", detail]``."""
    paper_mm = int(argv[0]) if argv and argv[0] else None
    labels = tuple(json.loads(argv[1])) if len(argv) > 1 and argv[1] else None
    bound_worker(CONVERT_MEMORY_BYTES)
    while (data := read_request()) is not None:
        answer: list[object]
        try:
            done = convert_job(data, paper_mm, labels)
            answer = ["ok", {"pdf": base64.b64encode(done.pdf).decode(), "total": done.total,
                             "receipts": done.receipts, "copies": done.copies, "warnings": done.warnings[:50],
                             "truncated": done.truncated}]
        except PrintJobRefused as exc:
            answer = ["refused", exc.detail]
        except MemoryError:
            answer = ["refused", "The print job needs more memory than any receipt."]
        except Exception as exc:  # a fault we did not foresee: refuse this job, keep the worker
            answer = ["refused", f"The print job cannot be converted ({type(exc).__name__})."]
        write_answer(answer)


class JobConverter:
    """Converts jobs in one worker process (started on first use). Thread-safe; :meth:`convert` blocks
    while the worker is busy."""

    def __init__(self, paper_mm: int | None = None, labels: list[str] | None = None,
                 timeout: float = CONVERT_TIMEOUT_SECONDS) -> None:
        self._args = (str(paper_mm or ""), json.dumps(labels) if labels else "")
        self._timeout = timeout
        self._idle: queue.Queue[Worker | None] = queue.Queue()
        self._idle.put(None)
        self._busy: Worker | None = None
        self._closed = False

    def convert(self, data: bytes) -> Conversion:
        """Convert one job's bytes.

        Raises:
            PrintJobRefused: the fault named; also when the worker overran its time or memory, or died.
        """
        if self._closed:
            raise PrintJobRefused("The device is stopping; the print job was not converted.")
        worker = self._idle.get()
        try:
            if self._closed:
                raise PrintJobRefused("The device is stopping; the print job was not converted.")
            if worker is None or not worker.alive():
                worker = Worker("appliance.printer.worker", self._args)
            self._busy = worker
            try:
                answer = worker.ask(data, self._timeout)
            except (EOFError, OSError, ValueError):
                log.warning("print job worker %s died (exit code %s)", worker.proc.pid, worker.proc.poll())
                worker.stop()
                worker = None
                raise PrintJobRefused("The print job crashed the converter or needs more memory than any "
                                      "receipt.") from None
            if answer is None:
                log.warning("print job conversion over %.0f s: worker %s killed", self._timeout, worker.proc.pid)
                worker.stop()
                worker = None
                raise PrintJobRefused(f"The print job takes more than {self._timeout:.0f} s to convert.")
        finally:
            self._busy = None
            self._idle.put(worker)
        if answer[0] != "ok":
            raise PrintJobRefused(str(answer[1]))
        body = answer[1]
        return Conversion(pdf=base64.b64decode(body["pdf"]), total=body["total"], receipts=int(body["receipts"]),
                          copies=int(body["copies"]), warnings=[str(w) for w in body["warnings"]],
                          truncated=bool(body["truncated"]))

    def close(self, busy_too: bool = False) -> None:
        """Stop the idle worker; with ``busy_too`` (the device stopping) also kill one converting now: its
        job is refused at once instead of holding the stop for up to CONVERT_TIMEOUT_SECONDS."""
        self._closed = self._closed or busy_too
        busy = self._busy
        if busy_too and busy is not None and busy.alive():
            busy.proc.kill()
        stop_idle_workers(self._idle)
        if self._closed:
            self._idle.put(None)  # a convert() waiting for the worker wakes, sees the device stopping, refuses


if __name__ == "__main__":
    worker_main(sys.argv[1:])
