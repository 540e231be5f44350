"""What the appliance answers to a till's status queries: the replies of a healthy Epson TM-T20-class printer.

Dolibarr never reads status, but other tills (OPOS/JavaPOS drivers, python-escpos's ``is_online``,
``paper_status``) send ``DLE EOT``, ``GS r`` or ``GS I`` and wait for the answer before printing. Values
follow the bit tables of Epson's ESC/POS reference (e.g. the TM-U220 and TM-T88III technical references,
``DLE EOT``, ``GS r``, ``GS I``): fixed bits set as specified, every error/paper-end bit off.

Not answered: ``DLE ENQ`` (Epson's "real-time request": recover from an error, no reply), ``GS a`` (Auto
Status Back: a real printer then sends 4-byte ASB status whenever it changes; ours never changes),
``GS ( k`` fn 82 (QR size), ``GS ( L`` fn 48/51 (NV capacities) and ``GS I`` numbers not listed.
"""

from __future__ import annotations

DLE_EOT = 0x04
GS_R = 0x72
GS_I = 0x49
ESC_U = 0x75
ESC_V = 0x76

DLE_EOT_REPLIES: dict[int, bytes] = {1: b"\x12", 2: b"\x12", 3: b"\x12", 4: b"\x12"}
"""``DLE EOT n`` (transmit real-time status). n=1 printer status: bits 1 and 4 fixed on, bit 2 off (drawer
kick connector pin 3 LOW, as ``GS r 2`` and ``ESC u`` say too), bit 3 off (online): 0x12. n=2 offline
cause (cover closed, no FEED button, no paper-end stop, no error), n=3 error cause (no mechanical,
autocutter, unrecoverable or auto-recoverable error), n=4 roll paper sensor (paper adequate, not near its
end): the fixed bits 1 and 4 only, 0x12."""
GS_R_REPLIES: dict[int, bytes] = {1: b"\x00", 49: b"\x00", 2: b"\x00", 50: b"\x00"}
"""``GS r n`` (transmit status). n=1/49 paper sensor: no near-end, no end (0x00); n=2/50 drawer kick
connector: bit 0 off, pin 3 LOW (0x00), as ``DLE EOT 1`` reports it."""
GS_I_REPLIES: dict[int, bytes] = {
    1: b"\x20", 49: b"\x20",  # printer model ID: 0x20, a TM-T20-class model (chosen, not Epson-assigned)
    2: b"\x02", 50: b"\x02",  # type ID: bit 1 autocutter installed; bit 0 off: no two-byte characters
    3: b"\x10", 51: b"\x10",  # version ID (chosen)
    65: b"_1.00\x00",  # firmware version
    66: b"_EPSON\x00",  # maker name
    67: b"_TM-T20\x00",  # printer model
    68: b"_0000000000\x00",  # serial number
    69: b"_\x00",  # font of language for each country: none (no Kanji/Chinese font)
}
"""``GS I n`` (transmit printer ID): one byte for n 1-3/49-51 (printer information A); for n 65-69
(printer information B) header 0x5F, the text, NUL."""
ESC_U_REPLY = b"\x00"
"""``ESC u n`` (peripheral device status: drawer pin 3 LOW) and ``ESC v`` (paper sensor: paper present)."""


def status_reply(command: bytes) -> bytes:
    """The reply to one whole status command (``b"\\x10\\x04\\x01"``, ``b"\\x1dr\\x01"``, ``b"\\x1dIC"``,
    ``b"\\x1bu\\x00"``, ``b"\\x1bv"``), b"" when it has none.

    >>> status_reply(b"\\x10\\x04\\x01")
    b'\\x16'
    """
    if len(command) < 2:
        return b""
    code = command[1]
    if code in (ESC_U, ESC_V) and command[0] == 0x1B:
        return ESC_U_REPLY
    if len(command) < 3:
        return b""
    if code == DLE_EOT and command[0] == 0x10:
        return DLE_EOT_REPLIES.get(command[2], b"")
    if code == GS_R and command[0] == 0x1D:
        return GS_R_REPLIES.get(command[2], b"")
    if code == GS_I and command[0] == 0x1D:
        return GS_I_REPLIES.get(command[2], b"")
    return b""
