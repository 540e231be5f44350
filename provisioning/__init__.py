"""eTicket provisioning: the shop's ``eticket.toml`` applied at first boot and from USB sticks.

``parse_settings``/``read_settings`` check a file (errors name the file and key), ``apply`` makes a device
root match it (idempotent), ``scrub_secrets`` removes the Wi-Fi passphrase from the applied file.
"""

from __future__ import annotations

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
