"""Pairing: a POS proves it stands at the counter by reading a one-time secret off the device's screen.

Two ways in: the QR (a URI carrying a 128-bit secret and the device certificate's pin) or the short code
typed by a person, exchanged with SPAKE2 bound to the TLS certificate (see ``_spake``).
"""

from ._manager import OPEN_WINDOW_SECONDS, PairingManager
from ._spake import DeviceSide, PosSide, b64d, b64e
from ._window import (
    CODE_ALPHABET,
    CODE_LENGTH,
    LOCKOUT_SECONDS,
    MAX_WRONG_CODES,
    PairingWindow,
    build_pairing_uri,
    normalise_code,
    parse_pairing_uri,
)

__all__ = [
    "CODE_ALPHABET",
    "CODE_LENGTH",
    "LOCKOUT_SECONDS",
    "MAX_WRONG_CODES",
    "OPEN_WINDOW_SECONDS",
    "DeviceSide",
    "PairingManager",
    "PairingWindow",
    "PosSide",
    "b64d",
    "b64e",
    "build_pairing_uri",
    "normalise_code",
    "parse_pairing_uri",
]
