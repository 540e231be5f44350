"""The live progress of ``eticket fleet deploy`` (unit): redrawn in place on a terminal, plain lines otherwise."""

from __future__ import annotations

import io

from fleet._progress import Progress


def test_plain_lines_when_not_a_terminal() -> None:
    """In a log file (CI, cron, ``| tee``) each change is one line and uploads report every 25 %."""
    out = io.StringIO()
    progress = Progress(["paris-01", "lyon-01"], out, tty=False)
    progress.set("paris-01", "connecting")
    for done in range(0, 101, 5):
        progress.upload("paris-01", done, 100)
    progress.set("paris-01", "installing")
    progress.set("paris-01", "installing")  # no change, no line
    progress.set("lyon-01", "unreachable", "no route to host")
    progress.close()
    assert out.getvalue().splitlines() == [
        "paris-01: connecting", "paris-01: uploading 0 %", "paris-01: uploading 25 %", "paris-01: uploading 50 %",
        "paris-01: uploading 75 %", "paris-01: uploading 100 %", "paris-01: installing",
        "lyon-01: unreachable no route to host"]
    assert "\x1b" not in out.getvalue()


def test_a_terminal_gets_one_line_per_device_redrawn_in_place() -> None:
    out = io.StringIO()
    progress = Progress(["paris-01", "lyon-01"], out, tty=True)
    progress.set("paris-01", "healthy", "2.0.0")
    progress.set("lyon-01", "rolled back", "health check failed")
    progress.close()
    frames = out.getvalue().split("\x1b[2F")  # cursor up two lines: the block of two devices is redrawn
    assert len(frames) >= 2
    last = frames[-1].replace("\x1b[2K", "").splitlines()
    assert [line.split()[:3] for line in last] == [["paris-01", "healthy", "2.0.0"], ["lyon-01", "rolled", "back"]]
