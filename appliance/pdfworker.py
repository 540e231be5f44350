"""PDF checks in separate worker processes, bounded in memory and time.

A receipt PDF comes from the network. The engines that read it (qpdf, PDFium) are C++ and can be driven to
exhaust memory, loop for minutes or crash by a crafted file of a few kilobytes. So the appliance never parses
a PDF itself: a small pool of worker processes does, each under ``RLIMIT_AS`` and a wall-clock deadline. A
worker that dies, overruns or runs out of memory is replaced; the request gets a 422 and the appliance keeps
serving.

Memory: each worker is capped at WORKER_MEMORY_BYTES of address space, and marks itself the first victim
of the kernel's OOM killer, so that the service's cgroup limit (``MemoryMax=`` in systemd/eticket.service)
takes a worker, never the appliance. A compressed bomb (a 3 MB content stream that inflates to 2 GB) reached
about 1 GiB of RSS per worker under the old 1 GiB cap; under this one it stops near 100 MiB, the
receipt gets ``pdf-too-complex`` and a fresh worker takes the next one (docs/protocol.md, "Limits").
"""

from __future__ import annotations

import json
import logging
import os
import queue
import resource
import select
import struct
import subprocess
import sys
from typing import Any, BinaryIO

from . import errors
from .pdfinfo import PdfInfo

log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 20.0
"""Wall-clock budget of one check; the real samples take under 0.1 s, the worst of them about 2 s."""
WORKER_MEMORY_BYTES = 128 * 1024 * 1024
"""Address-space limit of a worker (RLIMIT_AS), bytes. Measured on amd64: a worker idles at 52 MiB of
address space (37 MiB resident) after the real samples, and peaks at 69 MiB on a 9.5 MB receipt (the
largest body accepted is 10 MiB); the margin is for arm64's larger library mappings. Two workers at the
cap and the appliance (about 100 MiB) stay within the unit's ``MemoryMax=384M``."""
WORKER_OOM_SCORE_ADJ = 1000
"""Written to the worker's ``/proc/self/oom_score_adj``: under memory pressure the kernel kills a worker
(one receipt refused) before the appliance (every receipt)."""
DEFAULT_WORKERS = 2
SMALL_BOARD_MEMORY_BYTES = 1024 * 1024 * 1024
"""Below this much RAM (a 512 MB board) one worker runs, so two bombs at once cannot take 2 × the cap."""


_LENGTH = struct.Struct(">I")


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if data is None or len(data) != size:
        raise EOFError
    return data


def bound_worker(memory_bytes: int) -> None:
    """In a worker process: cap its address space at ``memory_bytes`` (RLIMIT_AS) and make it the OOM
    killer's first victim (WORKER_OOM_SCORE_ADJ)."""
    # glibc makes this the prlimit64 system call, which systemd's @default set allows: the unit's
    # SystemCallFilter=~@resources (which lists setrlimit) does not refuse it.
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    try:
        with open("/proc/self/oom_score_adj", "w") as adj:
            adj.write(str(WORKER_OOM_SCORE_ADJ))
    except OSError:  # no /proc (or a sandbox that hides it): the rlimit still bounds the worker
        pass


def read_request() -> bytes | None:
    """In a worker process: the next request from stdin (a 4-byte big-endian length, then the bytes), or
    None when the appliance closed the pipe."""
    try:
        (size,) = _LENGTH.unpack(_read_exact(sys.stdin.buffer, _LENGTH.size))
        return _read_exact(sys.stdin.buffer, size)
    except EOFError:
        return None


def write_answer(answer: object) -> None:
    """In a worker process: send one answer, a JSON line, on stdout."""
    sys.stdout.buffer.write(json.dumps(answer).encode() + b"\n")
    sys.stdout.buffer.flush()


def worker_main() -> None:
    """Worker loop on stdin/stdout: a request is a 4-byte big-endian length and the PDF bytes; the answer is
    one JSON line, ``["ok", pages, width, height]`` or ``["rejected", class name, detail]``."""
    from .pdfcheck import check_pdf  # the engines load here only, never in the appliance

    bound_worker(WORKER_MEMORY_BYTES)
    while (data := read_request()) is not None:
        answer: list[object]
        try:
            info = check_pdf(data)
            answer = ["ok", info.pages, *info.first_page_pt]
        except errors.RejectedPdf as exc:
            answer = ["rejected", type(exc).__name__, exc.detail]
        except MemoryError:
            answer = ["rejected", "PdfTooComplex", "The PDF needs more memory to read than any receipt."]
        except Exception as exc:  # an engine failure we did not foresee: refuse the file, keep the worker
            answer = ["rejected", "UnreadablePdf", f"The PDF cannot be read ({type(exc).__name__})."]
        write_answer(answer)


class Worker:
    """One ``python -m <module> [args]`` worker process (a plain subprocess: nothing of the server is
    inherited), speaking :func:`read_request` / :func:`write_answer`; by default a PDF check worker."""

    def __init__(self, module: str = "appliance.pdfworker", args: tuple[str, ...] = ()) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=None, close_fds=True,  # inherited: a dying worker says why in the appliance log
            # The worker imports what this process imports, however it was installed (the image puts the
            # application beside, not inside, the system Python's path).
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
            # Its own process group: Ctrl-C in a terminal (SIGINT to the foreground group) is the appliance's
            # to handle; a worker ends when the appliance closes its stdin (or dies: EOF all the same).
            process_group=0,
        )

    def ask(self, data: bytes, timeout: float) -> Any:
        """Send one request; the decoded JSON answer, or None after ``timeout`` seconds. Raises
        OSError/EOFError if the worker died."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(_LENGTH.pack(len(data)) + data)
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        if not line:
            raise EOFError
        return json.loads(line)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


class PdfChecker:
    """Runs :func:`appliance.pdfcheck.check_pdf` in ``workers`` processes. Thread-safe; :meth:`check` blocks
    while every worker is busy, which also bounds how many checks run at once."""

    def __init__(self, workers: int = DEFAULT_WORKERS, timeout: float = CHECK_TIMEOUT_SECONDS) -> None:
        self._timeout = timeout
        self._idle: queue.Queue[Worker | None] = queue.Queue()
        for _ in range(max(1, workers)):
            self._idle.put(None)  # a slot; the process starts on first use

    def check(self, data: bytes) -> PdfInfo:
        """Check ``data`` in a worker; return its :class:`PdfInfo` or raise the RejectedPdf naming the fault.

        Raises:
            RejectedPdf: the fault found, or PdfTooComplex when the worker ran over its time or memory, or
                died reading the file.
        """
        worker = self._idle.get()
        try:
            if worker is None or not worker.alive():
                worker = Worker()
            try:
                answer = worker.ask(data, self._timeout)
            except (EOFError, OSError, ValueError):
                log.warning("PDF check worker %s died (exit code %s)", worker.proc.pid, worker.proc.poll())
                worker.stop()
                worker = None
                raise errors.PdfTooComplex(
                    "The PDF crashed the reader or needs more memory than any receipt.") from None
            if answer is None:
                log.warning("PDF check over %.0f s: worker %s killed", self._timeout, worker.proc.pid)
                worker.stop()
                worker = None
                raise errors.PdfTooComplex(f"The PDF takes more than {self._timeout:.0f} s to read; no receipt does.")
        finally:
            self._idle.put(worker)
        if answer[0] == "ok":
            return PdfInfo(pages=int(answer[1]), first_page_pt=(float(answer[2]), float(answer[3])))
        error_class = getattr(errors, str(answer[1]), errors.UnreadablePdf)
        if not (isinstance(error_class, type) and issubclass(error_class, errors.RejectedPdf)):
            error_class = errors.UnreadablePdf
        raise error_class(str(answer[2]))

    def warm(self) -> None:
        """Start every worker now (blocking), so the first receipt does not wait for a process start."""
        workers = []
        while True:
            try:
                workers.append(self._idle.get_nowait())
            except queue.Empty:
                break
        for worker in workers:
            self._idle.put(worker if worker is not None and worker.alive() else Worker())

    def close(self) -> None:
        """Stop every worker."""
        stop_idle_workers(self._idle)


def stop_idle_workers(idle: queue.Queue[Worker | None]) -> None:
    """Take every worker (or empty slot) out of ``idle`` and stop the workers."""
    while True:
        try:
            worker = idle.get_nowait()
        except queue.Empty:
            return
        if worker is not None:
            worker.stop()


def default_workers() -> int:
    """Two workers, or one on a single-core board or one with less than SMALL_BOARD_MEMORY_BYTES of RAM."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        memory = 0
    if 0 < memory < SMALL_BOARD_MEMORY_BYTES:
        return 1
    return min(DEFAULT_WORKERS, os.cpu_count() or 1)


if __name__ == "__main__":
    worker_main()
