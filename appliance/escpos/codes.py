"""``GS ( k`` 2D codes: the QR code (cn 49) and PDF417 (cn 48) settings a till sends before storing the data
and printing it, per Epson's ESC/POS reference (``GS ( k`` functions 165-181 and 065-081) and the bytes
escpos-php's ``qrCode()``/``pdf417Code()`` write.

QR (cn 49): fn 65 model (``n1`` 49 model 1, 50 model 2, 51 micro QR, printed as model 2), fn 67 module size
(1-16 dots), fn 69 error correction (48-51: L M Q H), fn 80 store (``m=48`` then the data), fn 81 print,
fn 82 size query (ignored). PDF417 (cn 48): fn 65 columns (0-30), 66 rows (0, 3-90), 67 module width (2-8),
68 row height (2-8), 69 error correction (``m=48`` level 48-56, or ``m=49`` a ratio: automatic), 70 options
(0/48 standard, 1/49 truncated), 80 store, 81 print. Settings and stored data stay until changed
(``ESC @`` keeps them here), so a till may print the same stored code twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from appliance.escpos.model import Align, Pdf417, QrCode

QrLevel = Literal["L", "M", "Q", "H"]
QR_CN = 49
PDF417_CN = 48
STORE = 80
PRINT = 81
QR_LEVELS: dict[int, QrLevel] = {48: "L", 49: "M", 50: "Q", 51: "H"}
"""``GS ( k`` cn 49 fn 69 argument -> error correction level."""
QR_MODELS = {49: 1, 50: 2}
"""``GS ( k`` cn 49 fn 65 ``n1`` -> model (51, micro QR, and anything else: 2)."""


@dataclass
class QrSettings:
    """QR settings and stored data."""

    model: int = 2
    size: int = 3
    level: QrLevel = "L"
    data: bytes = b""


@dataclass
class Pdf417Settings:
    """PDF417 settings and stored data."""

    columns: int = 0
    rows: int = 0
    width: int = 3
    height: int = 3
    level: int | None = None
    truncated: bool = False
    data: bytes = b""


@dataclass
class TwoDCodes:
    """The printer's 2D code state: feed it each ``GS ( k`` function with :meth:`function`."""

    qr: QrSettings = field(default_factory=QrSettings)
    pdf417: Pdf417Settings = field(default_factory=Pdf417Settings)

    def function(self, cn: int, fn: int, args: bytes, align: Align) -> QrCode | Pdf417 | None:
        """Apply ``GS ( k pL pH cn fn args``; returns the code to print for fn 81 (print) when data is
        stored, else None. ``align`` is the ``ESC a`` in force. Out-of-range arguments are ignored, as the
        printer does."""
        if cn == QR_CN:
            return self._qr(fn, args, align)
        if cn == PDF417_CN:
            return self._pdf417(fn, args, align)
        return None

    def _qr(self, fn: int, args: bytes, align: Align) -> QrCode | None:
        qr = self.qr
        if fn == PRINT:
            if not qr.data:
                return None
            return QrCode(qr.data, module_size=qr.size, error_correction=qr.level, model=qr.model, align=align)
        if not args:
            return None
        if fn == 65:
            qr.model = QR_MODELS.get(args[0], 2)
        elif fn == 67 and 1 <= args[0] <= 16:
            qr.size = args[0]
        elif fn == 69:
            qr.level = QR_LEVELS.get(args[0], qr.level)
        elif fn == STORE:
            qr.data = args[1:]
        return None

    def _pdf417(self, fn: int, args: bytes, align: Align) -> Pdf417 | None:
        pdf = self.pdf417
        if fn == PRINT:
            if not pdf.data:
                return None
            return Pdf417(pdf.data, columns=pdf.columns, rows=pdf.rows, module_width=pdf.width,
                          row_height=pdf.height, error_level=pdf.level, truncated=pdf.truncated, align=align)
        if not args:
            return None
        if fn == 65:
            pdf.columns = args[0] if args[0] <= 30 else 0
        elif fn == 66:
            pdf.rows = args[0] if args[0] <= 90 else 0
        elif fn == 67:
            pdf.width = args[0] if 1 <= args[0] <= 8 else 3
        elif fn == 68:
            pdf.height = args[0] if 1 <= args[0] <= 8 else 3
        elif fn == 69 and len(args) >= 2:
            pdf.level = args[1] - 48 if args[0] == 48 and 48 <= args[1] <= 56 else None
        elif fn == 70:
            pdf.truncated = args[0] in (1, 49)
        elif fn == STORE:
            pdf.data = args[1:]
        return None
