"""Where a POS keeps its device tokens: ``$XDG_CONFIG_HOME/eticket/devices.json``, mode 0600."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from .._paths import write_private
from ._api import ClientError

TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")
"""What a bearer token may hold to travel in an ``Authorization`` header: visible ASCII (RFC 6750 §2.1's
b64token is narrower; the device's tokens are base64url)."""


class DamagedCredentials(ClientError):
    """``devices.json`` cannot be used as it is (edited by hand, damaged on disk): pair again."""


@dataclass(slots=True)
class PairedDevice:
    """A device this POS paired with: ``address`` is the last known ``host:port`` of its API; ``token`` the
    bearer; ``cert_pem`` the pinned certificate (empty for a device without TLS)."""

    device_id: str
    name: str
    address: str
    pos_id: str
    token: str
    cert_pem: str = ""


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/eticket`` (``~/.config/eticket``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "eticket"


class Credentials:
    """The POS's paired devices, read from and written to ``devices.json`` (atomic, owner-only)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.path = (directory or config_dir()) / "devices.json"

    def load(self) -> dict[str, PairedDevice]:
        """All paired devices by id; empty when the file does not exist.

        Raises:
            DamagedCredentials: the file is not the JSON :meth:`save` writes, or a device's token is not one
                an HTTP header can carry (visible ASCII, RFC 9110 §5.5 and RFC 6750 §2.1); the message names
                the device and the file and says to pair again.
        """
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (ValueError, OSError) as exc:  # edited by hand, cut short by a full disk, unreadable
            raise DamagedCredentials(f"{self.path} is damaged ({exc}); move it away and pair again") from exc
        entries = raw.get("devices", {}) if isinstance(raw, dict) else None
        if not isinstance(entries, dict):
            raise DamagedCredentials(f"{self.path} is damaged (no 'devices' object); move it away and pair again")
        devices: dict[str, PairedDevice] = {}
        for key, value in entries.items():
            try:
                device = PairedDevice(**value)
            except TypeError as exc:  # a missing or unknown field, or not an object
                raise DamagedCredentials(f"the entry for {key} in {self.path} is damaged; pair again") from exc
            if not isinstance(device.token, str) or not TOKEN_CHARS.fullmatch(device.token):
                raise DamagedCredentials(f"the token for {key} in {self.path} is damaged; pair again")
            devices[key] = device
        return devices

    def save(self, device: PairedDevice) -> None:
        """Add or replace ``device``."""
        devices = self.load()
        devices[device.device_id] = device
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(self.path, json.dumps({"devices": {k: asdict(v) for k, v in devices.items()}}, indent=2))
