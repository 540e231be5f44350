"""eTicket provisioning: the shop's ``eticket.toml`` applied at first boot and from USB sticks.

``parse_settings``/``read_settings`` check a file (errors name the file and key), ``apply`` makes a device
root match it (idempotent), ``scrub_secrets`` removes the Wi-Fi passphrase from the applied file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._apply import Layout, apply, seed, wpa_psk
    from ._errors import ProvisioningError
    from ._secrets import scrub_secrets
    from ._settings import DeviceSettings, WifiSettings, parse_settings, read_settings, render_settings
    from ._usb import stick_partition

__all__ = [
    "DeviceSettings",
    "Layout",
    "ProvisioningError",
    "WifiSettings",
    "apply",
    "parse_settings",
    "read_settings",
    "render_settings",
    "scrub_secrets",
    "seed",
    "stick_partition",
    "wpa_psk",
]

_LAZY = {
    "DeviceSettings": "._settings", "Layout": "._apply", "ProvisioningError": "._errors", "WifiSettings": "._settings",
    "apply": "._apply", "parse_settings": "._settings", "read_settings": "._settings",
    "render_settings": "._settings", "scrub_secrets": "._secrets", "seed": "._apply",
    "stick_partition": "._usb", "wpa_psk": "._apply",
}
"""Imported on first use: every ``eticket`` command (the device's kiosk too) builds ``provision``'s parser
from provisioning.cli, and must not load the settings checker (pycountry) for it."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
