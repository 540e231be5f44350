"""How long each ESC/POS command is: the one table the interpreter consults before it executes anything.

A command is a prefix byte (ESC 0x1B, GS 0x1D, FS 0x1C, DLE 0x10), a command byte, then arguments whose
length is fixed or declared inside the command (``pL pH`` of the ``GS (`` / ``ESC (`` / ``FS (`` families,
``xL xH yL yH`` of ``GS v 0``, ``nL nH`` of ``ESC *``, a NUL terminator, ...). Lengths follow Epson's
ESC/POS Application Programming Guide (command reference) and, for what Dolibarr sends, the bytes written
by escpos-php's ``Printer.php``.

A measure is ``measure(buffer, start, end) -> total``: the command's whole length in bytes, prefix
included, computed from the bytes in ``buffer[start:end]``. When the bytes needed to know the length are
not all there yet, it returns a length larger than ``end - start`` (at least one byte more than what is
there): the caller waits until that many bytes are buffered and measures again. A measure only reads
bytes below ``start + total``, so the result never depends on how the stream was chunked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

ESC = 0x1B
GS = 0x1D
FS = 0x1C
DLE = 0x10
PREFIXES = {ESC: "ESC", GS: "GS", FS: "FS", DLE: "DLE"}

Buffer = bytes | bytearray
Measure = Callable[[Buffer, int, int], int]

NUL_SEARCH_LIMIT = 256
"""A NUL-terminated argument (``GS k`` function A data, ``ESC D`` tab stops) longer than this many bytes is
damaged: only the command's fixed bytes are skipped."""
FS_2_GLYPH_BYTES = 72
"""``FS 2 c1 c2 d1..dk``: one 24 x 24 user Kanji glyph (k = 72 on 24-dot heads)."""


def fixed(args: int) -> Measure:
    """A command with ``args`` argument bytes after its two command bytes."""
    total = 2 + args

    def measure(buffer: Buffer, start: int, end: int) -> int:
        return total

    return measure


def _u16(buffer: Buffer, at: int) -> int:
    return buffer[at] | buffer[at + 1] << 8


def _family(buffer: Buffer, start: int, end: int) -> int:
    """``X ( fn pL pH d1..dp``: 5 + p."""
    if end - start < 5:
        return 5
    return 5 + _u16(buffer, start + 3)


def _gs_8(buffer: Buffer, start: int, end: int) -> int:
    """``GS 8 L p1 p2 p3 p4 d1..dp``: 7 + p (only ``L``; another third byte: the two bytes)."""
    if end - start < 3:
        return 3
    if buffer[start + 2] != 0x4C:
        return 2
    if end - start < 7:
        return 7
    return 7 + (buffer[start + 3] | buffer[start + 4] << 8 | buffer[start + 5] << 16 | buffer[start + 6] << 24)


def _gs_v(buffer: Buffer, start: int, end: int) -> int:
    """``GS v 0 m xL xH yL yH d1..dk``: 8 + x * y (x in bytes)."""
    if end - start < 8:
        return 8
    return 8 + _u16(buffer, start + 4) * _u16(buffer, start + 6)


def _esc_star(buffer: Buffer, start: int, end: int) -> int:
    """``ESC * m nL nH d1..dk``: k = n (m 0, 1) or 3n (m 32, 33; other m: taken as 8-dot)."""
    if end - start < 5:
        return 5
    columns = _u16(buffer, start + 3)
    return 5 + columns * (3 if buffer[start + 2] in (32, 33) else 1)


def _gs_star(buffer: Buffer, start: int, end: int) -> int:
    """``GS * x y d1..dk``: k = x * y * 8."""
    if end - start < 4:
        return 4
    return 4 + buffer[start + 2] * buffer[start + 3] * 8


def _nul_terminated(fixed_args: int) -> Measure:
    """``fixed_args`` bytes, then data up to and including a NUL (at most :data:`NUL_SEARCH_LIMIT`)."""

    def measure(buffer: Buffer, start: int, end: int) -> int:
        data = start + 2 + fixed_args
        stop = min(end, data + NUL_SEARCH_LIMIT)
        if stop > data:
            found = buffer.find(b"\0", data, stop)
            if found >= 0:
                return found + 1 - start
        if end - data >= NUL_SEARCH_LIMIT:
            return 2 + fixed_args
        return max(end - start, data - start) + 1

    return measure


def _gs_k(buffer: Buffer, start: int, end: int) -> int:
    """``GS k m d1..dk NUL`` (function A, m 0-6) or ``GS k m n d1..dn`` (function B, m >= 65)."""
    if end - start < 3:
        return 3
    if buffer[start + 2] <= 6:
        return _nul_terminated(1)(buffer, start, end)
    if end - start < 4:
        return 4
    return 4 + buffer[start + 3]


def _gs_v_cut(buffer: Buffer, start: int, end: int) -> int:
    """``GS V m`` (m 0, 1, 48, 49) or ``GS V m n`` (m 65, 66, 97, 98, 103, 104)."""
    if end - start < 3:
        return 3
    return 4 if buffer[start + 2] in (65, 66, 97, 98, 103, 104) else 3


def _esc_ampersand(buffer: Buffer, start: int, end: int) -> int:
    """``ESC & y c1 c2 [x d1..d(y*x)]...``: one x and y*x bytes for each character c1..c2."""
    if end - start < 5:
        return 5
    rows = buffer[start + 2]
    count = max(0, buffer[start + 4] - buffer[start + 3] + 1)
    at = start + 5
    for _ in range(count):
        if at >= end:
            return at + 1 - start
        at += 1 + rows * buffer[at]
        if at > end:
            return at - start
    return at - start


def _fs_q(buffer: Buffer, start: int, end: int) -> int:
    """``FS q n [xL xH yL yH d1..d(x*y*8)]...``: n NV bit images."""
    if end - start < 3:
        return 3
    at = start + 3
    for _ in range(buffer[start + 2]):
        if at + 4 > end:
            return at + 4 - start
        at += 4 + _u16(buffer, at) * _u16(buffer, at + 2) * 8
        if at > end:
            return at - start
    return at - start


def _dle_eot(buffer: Buffer, start: int, end: int) -> int:
    """``DLE EOT n`` (n 1-4), ``DLE EOT n a`` (n 7, 8)."""
    if end - start < 3:
        return 3
    return 4 if buffer[start + 2] in (7, 8) else 3


DLE_DC4_LENGTHS = {1: 5, 2: 5, 3: 5, 7: 4, 8: 10}
"""``DLE DC4 fn ...`` total lengths: fn 1 pulse (m t), 2 power-off (a b), 3 clear buffers (d1 d2),
7 transmit status (m), 8 clear buffers (d1..d7); another fn: the three bytes."""


def _dle_dc4(buffer: Buffer, start: int, end: int) -> int:
    if end - start < 3:
        return 3
    return DLE_DC4_LENGTHS.get(buffer[start + 2], 3)


@dataclass(frozen=True, slots=True)
class Command:
    """One entry of :data:`COMMANDS`: ``name`` as Epson writes it (``"GS v 0"``), its measure."""

    name: str
    measure: Measure


def _table() -> dict[tuple[int, int], Command]:
    def arg(n: int) -> Measure:
        return fixed(n)

    entries: dict[tuple[int, int], tuple[str, Measure]] = {
        # ESC: character and print settings
        (ESC, 0x20): ("ESC SP", arg(1)), (ESC, 0x21): ("ESC !", arg(1)), (ESC, 0x24): ("ESC $", arg(2)),
        (ESC, 0x25): ("ESC %", arg(1)), (ESC, 0x26): ("ESC &", _esc_ampersand), (ESC, 0x28): ("ESC (", _family),
        (ESC, 0x2A): ("ESC *", _esc_star), (ESC, 0x2D): ("ESC -", arg(1)), (ESC, 0x32): ("ESC 2", arg(0)),
        (ESC, 0x33): ("ESC 3", arg(1)), (ESC, 0x3C): ("ESC <", arg(0)), (ESC, 0x3D): ("ESC =", arg(1)),
        (ESC, 0x3F): ("ESC ?", arg(1)), (ESC, 0x40): ("ESC @", arg(0)), (ESC, 0x42): ("ESC B", arg(2)),
        (ESC, 0x44): ("ESC D", _nul_terminated(0)), (ESC, 0x45): ("ESC E", arg(1)), (ESC, 0x47): ("ESC G", arg(1)),
        (ESC, 0x4A): ("ESC J", arg(1)), (ESC, 0x4B): ("ESC K", arg(1)), (ESC, 0x4C): ("ESC L", arg(0)),
        (ESC, 0x4D): ("ESC M", arg(1)), (ESC, 0x52): ("ESC R", arg(1)), (ESC, 0x53): ("ESC S", arg(0)),
        (ESC, 0x54): ("ESC T", arg(1)), (ESC, 0x55): ("ESC U", arg(1)), (ESC, 0x56): ("ESC V", arg(1)),
        (ESC, 0x57): ("ESC W", arg(8)), (ESC, 0x5C): ("ESC \\", arg(2)), (ESC, 0x61): ("ESC a", arg(1)),
        (ESC, 0x63): ("ESC c", arg(2)), (ESC, 0x64): ("ESC d", arg(1)), (ESC, 0x65): ("ESC e", arg(1)),
        (ESC, 0x66): ("ESC f", arg(2)), (ESC, 0x69): ("ESC i", arg(0)), (ESC, 0x6D): ("ESC m", arg(0)),
        (ESC, 0x70): ("ESC p", arg(3)), (ESC, 0x71): ("ESC q", arg(0)), (ESC, 0x72): ("ESC r", arg(1)),
        (ESC, 0x74): ("ESC t", arg(1)), (ESC, 0x75): ("ESC u", arg(1)), (ESC, 0x76): ("ESC v", arg(0)),
        (ESC, 0x7B): ("ESC {", arg(1)), (ESC, GS): ("ESC GS", arg(2)),
        # GS
        (GS, 0x21): ("GS !", arg(1)), (GS, 0x24): ("GS $", arg(2)), (GS, 0x28): ("GS (", _family),
        (GS, 0x2A): ("GS *", _gs_star), (GS, 0x2F): ("GS /", arg(1)), (GS, 0x38): ("GS 8", _gs_8),
        (GS, 0x3A): ("GS :", arg(0)), (GS, 0x42): ("GS B", arg(1)), (GS, 0x45): ("GS E", arg(1)),
        (GS, 0x48): ("GS H", arg(1)), (GS, 0x49): ("GS I", arg(1)), (GS, 0x4C): ("GS L", arg(2)),
        (GS, 0x50): ("GS P", arg(2)), (GS, 0x54): ("GS T", arg(1)), (GS, 0x56): ("GS V", _gs_v_cut),
        (GS, 0x57): ("GS W", arg(2)), (GS, 0x5C): ("GS \\", arg(2)), (GS, 0x5E): ("GS ^", arg(3)),
        (GS, 0x61): ("GS a", arg(1)), (GS, 0x62): ("GS b", arg(1)), (GS, 0x63): ("GS c", arg(0)),
        (GS, 0x66): ("GS f", arg(1)), (GS, 0x67): ("GS g", arg(4)), (GS, 0x68): ("GS h", arg(1)),
        (GS, 0x6A): ("GS j", arg(1)), (GS, 0x6B): ("GS k", _gs_k), (GS, 0x72): ("GS r", arg(1)),
        (GS, 0x76): ("GS v 0", _gs_v), (GS, 0x77): ("GS w", arg(1)), (GS, 0x7A): ("GS z", arg(3)),
        (GS, 0x7C): ("GS |", arg(1)),
        # FS: Kanji, NV images
        (FS, 0x21): ("FS !", arg(1)), (FS, 0x26): ("FS &", arg(0)), (FS, 0x28): ("FS (", _family),
        (FS, 0x2D): ("FS -", arg(1)), (FS, 0x2E): ("FS .", arg(0)), (FS, 0x32): ("FS 2", arg(2 + FS_2_GLYPH_BYTES)),
        (FS, 0x3F): ("FS ?", arg(2)), (FS, 0x43): ("FS C", arg(1)), (FS, 0x53): ("FS S", arg(2)),
        (FS, 0x57): ("FS W", arg(1)), (FS, 0x70): ("FS p", arg(2)), (FS, 0x71): ("FS q", _fs_q),
        # DLE: real-time commands
        (DLE, 0x04): ("DLE EOT", _dle_eot), (DLE, 0x05): ("DLE ENQ", arg(1)), (DLE, 0x14): ("DLE DC4", _dle_dc4),
    }
    return {key: Command(name, measure) for key, (name, measure) in entries.items()}


COMMANDS: dict[tuple[int, int], Command] = _table()
"""(prefix byte, command byte) -> :class:`Command`. A pair not listed is unknown: the interpreter skips
the two bytes with a warning (a lone DLE not followed by EOT/ENQ/DC4 is one byte, skipped silently)."""
