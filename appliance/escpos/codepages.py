"""ESC/POS character tables: ``ESC t n`` code pages and ``ESC R n`` international character sets -> Unicode.

Code page numbers are those of escpos-php's "default" (Epson) profile
(``escpos-php/src/Mike42/Escpos/resources/capabilities.json``, ``profiles.default.codePages``), which is
what Dolibarr's receipts use: escpos-php picks a table per character and switches with ``ESC t n`` (CP437
for ``é``, CP1252 for ``€`` and ``–``). Tables Python has a codec for are decoded with it; page 1 (Epson's
"Katakana", listed as CP932 by escpos-php) is the single-byte half of Shift JIS (JIS X 0201); pages 30 and
31 (Vietnamese TCVN-3) are small tables here (:data:`SMALL_TABLES`). Pages the profile lists as "Unknown"
or that Python lacks (CP851, CP853, CP1098, CP774, CP772, RK1048) decode bytes 0x80-0xFF as ``?``:
:func:`table` says so with ``known=False`` so the caller can warn once.

International sets replace 12 ASCII positions (0x23 0x24 0x40 0x5B 0x5C 0x5D 0x5E 0x60 0x7B 0x7C 0x7D 0x7E),
per the table under ``ESC R`` in Epson's ESC/POS Application Programming Guide (n = 0 USA ... 17 Arabia);
Epson's Indic/Thai sets (66-82) keep ASCII.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from functools import lru_cache

CODE_PAGE_CODECS: dict[int, str | None] = {
    0: "cp437", 1: "katakana", 2: "cp850", 3: "cp860", 4: "cp863", 5: "cp865",
    6: None, 7: None, 8: None, 11: None, 12: None, 13: "cp857", 14: "cp737", 15: "iso8859_7",
    16: "cp1252", 17: "cp866", 18: "cp852", 19: "cp858", 20: None, 21: "cp874",
    22: None, 23: None, 24: None, 25: None, 26: None, 30: "tcvn3-1", 31: "tcvn3-2",
    32: "cp720", 33: "cp775", 34: "cp855", 35: "cp861", 36: "cp862", 37: "cp864", 38: "cp869",
    39: "iso8859_2", 40: "iso8859_15", 41: None, 42: None, 43: None, 44: "cp1125",
    45: "cp1250", 46: "cp1251", 47: "cp1253", 48: "cp1254", 49: "cp1255", 50: "cp1256",
    51: "cp1257", 52: "cp1258", 53: None,
    66: None, 67: None, 68: None, 69: None, 70: None, 71: None, 72: None, 73: None, 74: None, 75: None,
    82: None, 254: None, 255: None,
}
"""``ESC t n`` -> Python codec name, or one of :data:`SMALL_TABLES` / ``"katakana"`` (None: no codec, the
high half prints ``?``). Numbers not listed are not code pages of the profile and are treated like None."""

SMALL_TABLES: dict[str, str] = {
    # Vietnamese TCVN 5712 (VN3), as Epson's pages 30 (small letters) and 31 (capitals) lay it out
    # (escpos-php's capabilities.json lists the same); 0x80-0x9F and "?" positions are unassigned.
    "tcvn3-1": "?" * 32 + "????????ăâêôơưđ??????àảãáạ?ằẳẵắ???????ặầẩẫấậè?ẻẽéẹềểễếệìỉ???ĩíịò?ỏõóọồổỗốộờởỡớợù?"
               "ủũúụừửữứựỳỷỹýỵ?",
    "tcvn3-2": "?" * 32 + "?ĂÂ????Đ??ÊÔƠƯ???????ÀẢÃÁẠ?ẰẲẴẮ???????ẶẦẨẪẤẬÈ?ẺẼÉẸỀỂỄẾỆÌỈ???ĨÍỊÒ?ỎÕÓỌỒỔỖỐỘỜỞỠỚỢÙ?"
               "ỦŨÚỤỪỬỮỨỰỲỶỸÝỴ?",
}
"""Code pages Python has no codec for, as their 128 characters for bytes 0x80-0xFF."""

CODE_PAGE_NAMES: dict[int, str] = {
    0: "CP437", 1: "Katakana", 2: "CP850", 3: "CP860", 4: "CP863", 5: "CP865", 11: "CP851", 12: "CP853",
    13: "CP857", 14: "CP737", 15: "ISO-8859-7", 16: "CP1252", 17: "CP866", 18: "CP852", 19: "CP858",
    21: "CP874", 30: "TCVN-3-1", 31: "TCVN-3-2", 32: "CP720", 33: "CP775", 34: "CP855", 35: "CP861",
    36: "CP862", 37: "CP864", 38: "CP869", 39: "ISO-8859-2", 40: "ISO-8859-15", 41: "CP1098", 42: "CP774",
    43: "CP772", 44: "CP1125", 45: "CP1250", 46: "CP1251", 47: "CP1253", 48: "CP1254", 49: "CP1255",
    50: "CP1256", 51: "CP1257", 52: "CP1258", 53: "RK1048",
}
"""Names for warnings (escpos-php's), "unknown" otherwise."""

INTERNATIONAL_POSITIONS = (0x23, 0x24, 0x40, 0x5B, 0x5C, 0x5D, 0x5E, 0x60, 0x7B, 0x7C, 0x7D, 0x7E)
"""The ASCII codes an international character set replaces, in the order of :data:`INTERNATIONAL_SETS`."""

INTERNATIONAL_SETS: dict[int, str] = {
    0: "#$@[\\]^`{|}~",  # USA
    1: "#$à°ç§^`éùè¨",  # France
    2: "#$§ÄÖÜ^`äöüß",  # Germany
    3: "£$@[\\]^`{|}~",  # UK
    4: "#$@ÆØÅ^`æøå~",  # Denmark I
    5: "#¤ÉÄÖÅÜéäöåü",  # Sweden
    6: "#$@°\\é^ùàòèì",  # Italy
    7: "₧$@¡Ñ¿^`¨ñ}~",  # Spain I
    8: "#$@[¥]^`{|}~",  # Japan
    9: "#¤ÉÆØÅÜéæøåü",  # Norway
    10: "#$ÉÆØÅÜéæøåü",  # Denmark II
    11: "#$á¡Ñ¿é`íñóú",  # Spain II
    12: "#$á¡Ñ¿éüíñóú",  # Latin America
    13: "#$@[₩]^`{|}~",  # Korea
    14: "#$ŽŠĐĆČžšđćč",  # Slovenia/Croatia
    15: "#¥@[\\]^`{|}~",  # China
    16: "#₫@[\\]^`{|}~",  # Vietnam
    17: "#$@[\\]^`{|}~",  # Arabia
}
"""``ESC R n`` -> the 12 characters printed at :data:`INTERNATIONAL_POSITIONS` (Epson's table)."""


@dataclass(frozen=True, slots=True)
class Table:
    """A decoding table: ``translate`` maps each byte (as a latin-1 code point) to its character, for
    ``data.decode("latin-1").translate(table.translate)``; ``known`` is False when the code page has no
    codec here (its bytes 0x80-0xFF come out as ``?``)."""

    translate: dict[int, str]
    known: bool


def _high_half(name: str | None) -> tuple[list[str], bool]:
    if name is None:
        return ["?"] * 128, False
    if name in SMALL_TABLES:
        return list(SMALL_TABLES[name]), True
    if name == "katakana":
        # JIS X 0201 half-width katakana at 0xA1-0xDF; Epson's graphics elsewhere are not mapped
        return ["?" if not 0xA1 <= b <= 0xDF else chr(0xFF61 + b - 0xA1) for b in range(0x80, 0x100)], True
    decoder = codecs.lookup(name)
    chars = []
    for b in range(0x80, 0x100):
        text, _ = decoder.decode(bytes([b]), "replace")
        chars.append("?" if text in ("", "\ufffd") else text)
    return chars, True


@lru_cache(maxsize=64)
def table(code_page: int, international: int) -> Table:
    """The table for ``ESC t code_page`` and ``ESC R international`` (both 0-255; numbers outside the
    profile's lists act as an unknown code page / the USA set). Cached: at most a few per job."""
    high, known = _high_half(CODE_PAGE_CODECS.get(code_page))
    mapping: dict[int, str] = {0x80 + i: char for i, char in enumerate(high) if char != chr(0x80 + i)}
    substitutes = INTERNATIONAL_SETS.get(international, INTERNATIONAL_SETS[0])
    for position, char in zip(INTERNATIONAL_POSITIONS, substitutes, strict=True):
        if char != chr(position):
            mapping[position] = char
    return Table(translate=mapping, known=known)


def decode(data: bytes, code_page: int = 0, international: int = 0) -> str:
    """Printable bytes (0x20-0xFF) -> text through ``ESC t code_page`` and ``ESC R international``.

    >>> decode(b"Qu\\x82bec")
    'Québec'
    >>> decode(b"\\x80 \\x96", 16)
    '€ –'
    """
    return data.decode("latin-1").translate(table(code_page, international).translate)


def code_page_name(code_page: int) -> str:
    """escpos-php's name of an ``ESC t`` number, or ``"unknown"``."""
    return CODE_PAGE_NAMES.get(code_page, "unknown")
