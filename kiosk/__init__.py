"""The counter screen: a pygame-ce client that follows the appliance's display stream and draws scenes.

Scenes are pure functions ``(state, size) -> Surface`` (:func:`kiosk.scenes.render`), so they are tested
headless; output sinks (SDL window/KMSDRM, PNG) are separate.
"""

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # no banner on stdout

from typing import Any

__all__ = ["QrPlacement", "draw_qr", "render"]

_LAZY = {"QrPlacement": ".qr", "draw_qr": ".qr", "render": ".scenes"}
"""Imported on first use: ``eticket`` builds its ``kiosk`` subcommand from kiosk.cli, and the POS commands
must not load pygame for it."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
