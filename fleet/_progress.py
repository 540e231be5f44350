"""The live per-device progress of a rollout: a table redrawn in place on a terminal, plain lines otherwise.

States (in order of a device's life): ``waiting``, ``connecting``, ``uploading`` (with a percentage),
``verifying``, ``installing``, ``rebooting``, then one of ``healthy`` (updated and committed), ``skipped``
(already on the version), ``rolled back``, ``failed``, ``unreachable``, ``not started``.
On a terminal the block of lines is rewritten (ANSI cursor-up and erase-line, at most every
:data:`REDRAW_SECONDS`); on a pipe or a file each change is one line ``NAME: STATE DETAIL``, with upload
progress only every :data:`LINE_PERCENT_STEP` percent, so a log of two hundred devices stays readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

REDRAW_SECONDS = 0.1
LINE_PERCENT_STEP = 25
FINAL_STATES = {"healthy", "skipped", "rolled back", "failed", "unreachable", "not started"}


class Progress:
    """``Progress(names, stream)``; ``set(name, state, detail)``, ``upload(name, done, total)``, ``close()``."""

    def __init__(self, names: list[str], stream: TextIO | None = None, tty: bool | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty() if tty is None else tty
        self._names = list(names)
        self._width = max((len(n) for n in self._names), default=4)
        self._rows: dict[str, tuple[str, str]] = {n: ("waiting", "") for n in self._names}
        self._percent: dict[str, int] = {}
        self._drawn = 0
        self._last_draw = 0.0

    def set(self, name: str, state: str, detail: str = "") -> None:
        """Device ``name`` is now in ``state`` (one of the module's states); ``detail`` a short note."""
        if self._rows.get(name) == (state, detail):
            return
        self._rows[name] = (state, detail)
        if self._tty:
            self._draw(force=state in FINAL_STATES)
        else:
            self._line(name, state, detail)

    def upload(self, name: str, done: int, total: int) -> None:
        """Upload progress of ``name``: ``done`` of ``total`` bytes."""
        percent = 100 if total <= 0 else int(done * 100 / total)
        if self._tty:
            self._rows[name] = ("uploading", f"{percent:3d} %")
            self._draw()
            return
        step = percent - percent % LINE_PERCENT_STEP
        if self._percent.get(name) != step:
            self._percent[name] = step
            self._rows[name] = ("uploading", f"{step} %")
            self._line(name, "uploading", f"{step} %")

    def _line(self, name: str, state: str, detail: str) -> None:
        self._stream.write(f"{name}: {state}{' ' + detail if detail else ''}\n")
        self._stream.flush()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < REDRAW_SECONDS:
            return
        self._last_draw = now
        out = [f"\x1b[{self._drawn}F"] if self._drawn else []
        for name in self._names:
            state, detail = self._rows[name]
            out.append(f"\x1b[2K{name:<{self._width}}  {state:<12} {detail}"[:200] + "\n")
        self._drawn = len(self._names)
        self._stream.write("".join(out))
        self._stream.flush()

    def close(self) -> None:
        """Draw the final state (terminal mode)."""
        if self._tty:
            self._draw(force=True)
