"""The counter screen: a pygame-ce client that follows the appliance's display stream and draws scenes.

Scenes are pure functions ``(state, size) -> Surface`` (:func:`kiosk.scenes.render`), so they are tested
headless; output sinks (SDL window/KMSDRM, PNG) are separate.
"""

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # no banner on stdout

from .qr import QrPlacement, draw_qr
from .scenes import render

__all__ = ["QrPlacement", "draw_qr", "render"]
