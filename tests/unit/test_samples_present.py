"""The shared real-world samples must be there: without them the sample-driven tests would silently vanish."""

from __future__ import annotations

from tests.conftest import SAMPLES, require, samples


def test_samples_are_present() -> None:
    require(SAMPLES.is_dir(), f"samples not found at {SAMPLES} (set ETICKET_SAMPLES)")
    assert len(samples("pdf")) >= 10 and len(samples("pdf-bad")) >= 5
