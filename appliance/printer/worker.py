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

from ..errors import PrintJobRefused
from ..pdfworker import Worker, bound_worker, read_request, write_answer

log = logging.getLogger(__name__)

CONVERT_TIMEOUT_SECONDS = 30.0
"""Wall-clock budget of one conversion; a 2 MB raster job takes about 2 s on a Pi 3 class board."""
CONVERT_MEMORY_BYTES = 256 * 1024 * 1024
"""Address-space limit of the conversion worker, bytes (RLIMIT_AS). Its libraries (reportlab, pillow, the
fonts) map about 110 MiB before any job; the interpreter's Limits bound a job's images (bench/printer.py
measures the peak on a 2 MB raster job)."""


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
        PrintJobRefused: nothing prints, or a limit of :class:`appliance.escpos.interpreter.Limits` is passed.
    """
    from ..escpos.convert import convert_receipts
    from ..escpos.interpreter import JobTooLarge, interpret
    from ..escpos.total import DEFAULT_TOTAL_LABELS

    try:
        job = interpret(data)
    except JobTooLarge as exc:
        raise PrintJobRefused(f"The print job is too large: {exc}.") from None
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

    def convert(self, data: bytes) -> Conversion:
        """Convert one job's bytes.

        Raises:
            PrintJobRefused: the fault named; also when the worker overran its time or memory, or died.
        """
        worker = self._idle.get()
        try:
            if worker is None or not worker.alive():
                worker = Worker("appliance.printer.worker", self._args)
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
            self._idle.put(worker)
        if answer[0] != "ok":
            raise PrintJobRefused(str(answer[1]))
        body = answer[1]
        return Conversion(pdf=base64.b64decode(body["pdf"]), total=body["total"], receipts=int(body["receipts"]),
                          copies=int(body["copies"]), warnings=[str(w) for w in body["warnings"]],
                          truncated=bool(body["truncated"]))

    def close(self) -> None:
        """Stop the worker."""
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return
            if worker is not None:
                worker.stop()


if __name__ == "__main__":
    worker_main(sys.argv[1:])
