"""eTicket appliance: takes receipts from the POS, shows their QR, serves the PDF to the customer's phone.

The public names below, ``__version__`` included, are imported lazily, so that light commands (the kiosk,
the POS client) and the PDF check workers do not pay for the server's imports (``importlib.metadata`` alone
pulls in the e-mail parser, zipfile and csv: about 4 MiB in every process).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ApplianceError", "ConfigError", "Settings", "__version__", "load_settings"]

_LAZY = {"ApplianceError": ".errors", "ConfigError": ".config", "Settings": ".config", "load_settings": ".config"}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("eticket")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0+src"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()["__version__"] = found = _version()
        return found
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
