"""eTicket appliance: takes receipts from the POS, shows their QR, serves the PDF to the customer's phone."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("eticket")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+src"

from .config import ConfigError, Settings, load_settings
from .errors import ApplianceError

__all__ = ["ApplianceError", "ConfigError", "Settings", "__version__", "load_settings"]
