"""Pairing: a POS proves it stands at the counter by reading a one-time code off the device's screen."""

from ._window import (
    CODE_ALPHABET,
    CODE_LENGTH,
    MAX_WRONG_CODES,
    PairingWindow,
    build_pairing_uri,
    normalise_code,
    parse_pairing_uri,
)

__all__ = [
    "CODE_ALPHABET",
    "CODE_LENGTH",
    "MAX_WRONG_CODES",
    "PairingWindow",
    "build_pairing_uri",
    "normalise_code",
    "parse_pairing_uri",
]
