"""eTicket appliance: takes receipts from the POS, shows their QR, serves the PDF to the customer's phone.

The public names below are imported lazily, so that light commands (the kiosk, the POS client) do not pay
for the server's imports.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("eticket")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+src"

__all__ = ["ApplianceError", "ConfigError", "Settings", "__version__", "load_settings"]

_LAZY = {"ApplianceError": ".errors", "ConfigError": ".config", "Settings": ".config", "load_settings": ".config"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
