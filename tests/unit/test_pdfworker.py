"""PDF checks run in worker processes: a file that overruns time or memory, or kills its reader, is refused
and the next receipt is checked as usual."""

from __future__ import annotations

import os
import signal
import time

import pytest

from appliance import errors
from appliance.pdfworker import PdfChecker
from tests.conftest import samples
from tests.unit.test_pdfcheck import _page_bomb


@pytest.fixture
def checker() -> PdfChecker:
    c = PdfChecker(workers=1, timeout=3.0)
    yield c  # type: ignore[misc]
    c.close()


def test_good_and_bad_samples_through_the_worker(checker: PdfChecker) -> None:
    for pdf in samples("pdf"):
        assert checker.check(pdf.read_bytes()).pages >= 1
    from tests.unit.test_pdfcheck import EXPECTED_REFUSAL

    for pdf in samples("pdf-bad"):
        with pytest.raises(EXPECTED_REFUSAL[pdf.name]):
            checker.check(pdf.read_bytes())


def test_a_worker_killed_mid_check_is_replaced(checker: PdfChecker) -> None:
    good = samples("pdf")[0].read_bytes()
    checker.check(good)
    worker = checker._idle.queue[0]  # the one warm worker
    assert worker is not None
    os.kill(worker.proc.pid, signal.SIGKILL)
    time.sleep(0.2)
    assert checker.check(good).pages >= 1  # a fresh worker took over


def test_an_overrunning_check_is_cut_off(checker: PdfChecker) -> None:
    slow = PdfChecker(workers=1, timeout=0.05)
    try:
        with pytest.raises(errors.PdfTooComplex):
            slow.check(_page_bomb(400))  # legal but takes longer than 50 ms including the worker's start
    finally:
        slow.close()
    assert checker.check(samples("pdf")[0].read_bytes()).pages >= 1
