"""Where a POS keeps its device tokens: ``$XDG_CONFIG_HOME/eticket/devices.json``, mode 0600."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .._paths import write_private


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
        """All paired devices by id; empty when the file does not exist."""
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return {key: PairedDevice(**value) for key, value in raw.get("devices", {}).items()}

    def save(self, device: PairedDevice) -> None:
        """Add or replace ``device``."""
        devices = self.load()
        devices[device.device_id] = device
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(self.path, json.dumps({"devices": {k: asdict(v) for k, v in devices.items()}}, indent=2))
