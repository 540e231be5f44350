"""The appliance's settings: one object, built once at start-up and passed down.

Sources, highest priority first: command-line flags, environment (``ETICKET_<KEY>``, e.g.
``ETICKET_LISTEN=0.0.0.0:8080``), the TOML file (``--config``, else ``$ETICKET_CONFIG``, else
``/etc/eticket/eticket.toml`` on a device, else ``$XDG_CONFIG_HOME/eticket/eticket.toml``), then the
defaults below. Leaf modules never read ``os.environ``.

Example ``eticket.toml``::

    name = "Boulangerie Martin"
    listen = "0.0.0.0:8080"
    retention_seconds = 2592000   # 30 days
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ._paths import default_data_dir, split_host_port
from .intake import printable_text

__all__ = ["ConfigError", "Settings", "default_config_file", "default_data_dir", "load_settings", "split_host_port"]

MIB = 1024 * 1024
DEFAULT_API_PORT = 8443
DAY_SECONDS = 86_400
DEVICE_CONFIG = Path("/etc/eticket/eticket.toml")
SSID_MAX_BYTES = 32
"""IEEE 802.11: an SSID is at most 32 octets."""
WPA_PASSPHRASE_MIN, WPA_PASSPHRASE_MAX = 8, 63
"""IEEE 802.11i (annex H.4): a WPA-PSK passphrase is 8 to 63 printable ASCII characters."""


class ConfigError(Exception):
    """The configuration is wrong; the message names the key and the source."""


def default_config_file() -> Path | None:
    """The TOML file used when ``--config`` is not given, or None when there is none."""
    env = os.environ.get("ETICKET_CONFIG")
    if env:
        return Path(env)
    if DEVICE_CONFIG.exists():
        return DEVICE_CONFIG
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    desk = Path(base) / "eticket" / "eticket.toml"
    return desk if desk.exists() else None


class Settings(BaseSettings):
    """Appliance settings; every field can be set in TOML, as ``ETICKET_<FIELD>`` or as a flag."""

    model_config = SettingsConfigDict(env_prefix="ETICKET_", extra="forbid", frozen=True)

    data_dir: Path = Field(default_factory=default_data_dir, description="State: SQLite database, device id.")
    listen: str = Field("127.0.0.1:8080", description="HOST:PORT of plain HTTP: customer downloads.")
    api_listen: str | None = Field(
        None, description="HOST:PORT of the HTTPS POS API; default: the listen host, port 8443."
    )
    tls: bool = Field(True, description="Serve the POS API over HTTPS with the device certificate (pinned).")
    public_url: str | None = Field(
        None, description="Base of customer download URLs; default: http://<LAN IPv4>:<port>."
    )
    mdns_interfaces: str = Field(
        "auto",
        description="Comma-separated addresses or interface names for mDNS; 'none' turns it off; "
        "'auto' = loopback when listening on loopback, else every interface.",
    )
    name: str = Field(
        "eTicket", min_length=1, max_length=63, description="Shop/device name: shown on the screens in full; "
        "its DNS-SD instance name is cut to 63 UTF-8 bytes (RFC 6763 §4.1.1). Visible characters only."
    )
    logo: Path | None = Field(None, description="PNG or JPEG shown on the idle screen (served at /logo).")
    clock: bool = Field(False, description="Show the time on the idle screen.")
    language: str = Field("fr", pattern="^(fr|it|en|de|es)$", description="Screen language (fr, it, en, de, es).")
    max_body_bytes: int = Field(10 * MIB, gt=0, description="Largest receipt accepted, in bytes.")
    retention_seconds: float = Field(30 * DAY_SECONDS, gt=0, description="How long a receipt can be downloaded.")
    display_timeout_seconds: float = Field(120.0, gt=0, description="Ticket scene shown this long, then idle.")
    pairing_code_ttl_seconds: float = Field(600.0, gt=0, description="Lifetime of one pairing code.")
    relay_url: str | None = Field(
        None, description="Base URL of an eTicket relay (https://relay.example.org): the QR points there and "
        "receipts are uploaded sealed in the background; unset: the QR points at this device."
    )
    guest_wifi_ssid: str | None = Field(
        None, min_length=1, max_length=32, description="Without a relay: a guest Wi-Fi whose join QR is shown "
        "before the receipt QR (phones must be on the shop's LAN). 1 to 32 bytes of UTF-8 (IEEE 802.11)."
    )
    guest_wifi_password: str | None = Field(
        None, max_length=63, description="Guest Wi-Fi passphrase (WPA-PSK: 8 to 63 printable ASCII characters, "
        "IEEE 802.11i); empty or unset: an open network."
    )
    guest_wifi_seconds: float = Field(12.0, gt=0, le=120, description="How long the Wi-Fi QR shows first.")
    provision_status_file: Path = Field(
        Path("/run/eticket-provision/status.json"),
        description="Status written by 'eticket provision' (first boot, USB stick); a refused settings file "
        "is shown on the screen until a good one is applied.",
    )
    kiosk: bool = Field(False, description="Also start the kiosk (a child process, restarted if it dies).")
    pdf_workers: int | None = Field(
        None, ge=1, le=8, description="PDF check worker processes (about 20 MiB each); default: one on a board "
        "with under 1 GiB of RAM or one core, else two."
    )
    log_level: str = Field("info", description="debug, info, warning or error.")
    printer_listen: str | None = Field(
        None, description="HOST:PORT where tills print ESC/POS receipts as to a network printer (raw TCP, "
        "one job per connection; 0.0.0.0:9100 on a device); unset: no printer port."
    )
    printer_paper_mm: int | None = Field(
        None, description="Paper width of printed receipts, 80 or 58 mm; unset: guessed from each receipt "
        "(a line wider than 32 font-A columns is 80 mm)."
    )
    printer_currency: str = Field(
        "EUR", pattern="^[A-Z]{3}$", description="ISO 4217 currency of totals read from printed receipts."
    )
    printer_total_labels: list[str] | None = Field(
        None, description="Labels of the total line on printed receipts, most specific first (default: "
        "TakePOS's 'Total TTC' and the labels of common tills: appliance.escpos.total.DEFAULT_TOTAL_LABELS)."
    )

    @field_validator("listen", "api_listen", "printer_listen")
    @classmethod
    def _check_listen(cls, value: str | None) -> str | None:
        if value is not None:
            split_host_port(value)
        return value

    @field_validator("printer_paper_mm")
    @classmethod
    def _check_paper(cls, value: int | None) -> int | None:
        if value is not None and value not in (58, 80):
            raise ValueError("must be 80 or 58 (millimetres of thermal paper)")
        return value

    @field_validator("printer_total_labels")
    @classmethod
    def _check_labels(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or any(not label.strip() or len(label) > 40 for label in value)):
            raise ValueError("must be a non-empty list of labels of 1 to 40 characters")
        return value

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        if not printable_text(value):  # RFC 6763 §4.1.1: no control characters in an instance name
            raise ValueError("must hold only visible characters: no control (newline, tab), format or "
                             "separator characters")
        return value

    @field_validator("guest_wifi_ssid")
    @classmethod
    def _check_guest_ssid(cls, value: str | None) -> str | None:
        if value is not None and len(value.encode()) > SSID_MAX_BYTES:
            raise ValueError(f"must be at most {SSID_MAX_BYTES} bytes of UTF-8 (IEEE 802.11), not "
                             f"{len(value.encode())}")
        if value is not None and not printable_text(value):  # it is drawn on the screen and put in a QR
            raise ValueError("must hold only visible characters: no control (newline, tab) or format characters")
        return value

    @field_validator("guest_wifi_password")
    @classmethod
    def _check_guest_password(cls, value: str | None) -> str | None:
        if value and not (WPA_PASSPHRASE_MIN <= len(value) <= WPA_PASSPHRASE_MAX and value.isascii()
                          and value.isprintable()):
            raise ValueError(f"must be {WPA_PASSPHRASE_MIN} to {WPA_PASSPHRASE_MAX} printable ASCII characters "
                             "(WPA-PSK, IEEE 802.11i), or empty for an open network")
        return value

    @field_validator("logo")
    @classmethod
    def _check_logo(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                head = value.read_bytes()[:8]
            except OSError as exc:
                raise ValueError(f"cannot read {value}: {exc.strerror}") from exc
            if not (head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8")):
                raise ValueError(f"{value} is neither a PNG nor a JPEG")
        return value

    @field_validator("public_url", "relay_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is not None:
            if not value.startswith(("http://", "https://")):
                raise ValueError("must start with http:// or https://")
            if not all("!" <= ch <= "~" for ch in value):  # a trailing newline or a space would end up in QRs
                raise ValueError("must be printable ASCII without spaces (an IDN host in its xn-- form)")
            value = value.rstrip("/")
        return value

    @property
    def host(self) -> str:
        """The listen host."""
        return split_host_port(self.listen)[0]

    @property
    def port(self) -> int:
        """The listen port."""
        return split_host_port(self.listen)[1]

    @property
    def api_host_port(self) -> tuple[str, int]:
        """Where the POS API listens: ``api_listen``, else the listen host on port 8443; without TLS, the
        plain listener itself."""
        if not self.tls:
            return self.host, self.port
        if self.api_listen:
            return split_host_port(self.api_listen)
        return self.host, DEFAULT_API_PORT

    @property
    def listens_on_loopback(self) -> bool:
        """True when the server binds a loopback address only (a desk in dev mode)."""
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


def load_settings(config_file: Path | None = None, **flags: Any) -> Settings:
    """Build :class:`Settings` from flags (``None`` values are "not given"), environment and TOML.

    Raises:
        ConfigError: an unknown key, a value of the wrong type, or an unreadable TOML file; the message
            names the key.
    """
    given = {k: v for k, v in flags.items() if v is not None}
    path = config_file or default_config_file()
    if path is not None and not path.is_file():
        raise ConfigError(f"Config file {path} does not exist.")

    class _Sourced(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if path is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            return tuple(sources)

    try:
        settings = _Sourced(**given)
    except ValidationError as exc:
        faults = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(file)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"Invalid configuration ({path or 'flags/environment'}): {faults}") from exc
    except ValueError as exc:  # TOML syntax errors arrive as tomllib.TOMLDecodeError, a ValueError
        raise ConfigError(f"Cannot read config file {path}: {exc}") from exc
    return settings
