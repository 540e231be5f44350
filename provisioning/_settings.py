"""Parse and check ``eticket.toml``, the shop's device settings on the boot partition or a USB stick.

Example (every key optional; an absent key keeps the device's current value)::

    hostname = "caisse-1"
    shop_name = "Boulangerie Martin"
    locale = "fr_FR.UTF-8"
    timezone = "Europe/Paris"
    display_rotation = 90
    relay_url = "https://relay.example.org"
    ssh_authorized_keys = ["ssh-ed25519 AAAA… admin@laptop"]

    [wifi]
    ssid = "Boulangerie"
    passphrase = "8 to 63 characters"   # removed from the file once applied
    country = "FR"
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import ProvisioningError

HOSTNAME_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
LOCALE_RE = re.compile(r"^[a-z]{2,3}_[A-Z]{2}(\.UTF-8)?$")
TIMEZONE_RE = re.compile(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
SSH_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
                 "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
ROTATIONS = (0, 90, 180, 270)
SSID_MAX_BYTES = 32
PASSPHRASE_MIN, PASSPHRASE_MAX = 8, 63  # WPA-PSK (IEEE 802.11i)
SHOP_NAME_MAX = 63
TOP_KEYS = {"hostname", "shop_name", "locale", "timezone", "display_rotation", "relay_url", "ssh_authorized_keys",
            "wifi"}
WIFI_KEYS = {"ssid", "passphrase", "country"}
SECRET_KEYS = (("wifi", "passphrase"),)
"""(table, key) pairs removed from the source file once applied."""


@dataclass(frozen=True, slots=True)
class WifiSettings:
    """One WPA-PSK network. ``passphrase`` None: keep the key already applied for this ``ssid``."""

    ssid: str
    country: str
    passphrase: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceSettings:
    """The settings of one ``eticket.toml``; None means "not in the file: keep what the device has"."""

    hostname: str | None = None
    shop_name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    display_rotation: int | None = None
    relay_url: str | None = None
    ssh_authorized_keys: tuple[str, ...] | None = None
    wifi: WifiSettings | None = None

    @property
    def has_secrets(self) -> bool:
        """True when the file still holds a secret (the Wi-Fi passphrase)."""
        return self.wifi is not None and self.wifi.passphrase is not None


def _fail(source: str, key: str, problem: str) -> ProvisioningError:
    return ProvisioningError(f"{source}: {key}: {problem}")


def _string(data: dict[str, Any], key: str, source: str, prefix: str = "") -> str | None:
    if key not in data:
        return None
    value = data[key]
    if not isinstance(value, str):
        raise _fail(source, prefix + key, f"must be a text in quotes, not {value!r}")
    return value


def parse_settings(text: str, source: str = "eticket.toml") -> DeviceSettings:
    """Parse and check the TOML ``text``; ``source`` names it in error messages.

    Raises:
        ProvisioningError: bad TOML, an unknown key (a typo), or a value out of range; the message names
            ``source`` and the key, e.g. ``eticket.toml: wifi.country: must be two capital letters (FR)``.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProvisioningError(f"{source}: not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise _fail(source, unknown[0], f"unknown key (known: {', '.join(sorted(TOP_KEYS))})")

    hostname = _string(data, "hostname", source)
    if hostname is not None and not HOSTNAME_RE.match(hostname):
        raise _fail(source, "hostname", f"{hostname!r} is not a host name: 1-63 of a-z, 0-9 and '-', "
                    "not starting or ending with '-' (e.g. \"caisse-1\")")
    shop_name = _string(data, "shop_name", source)
    if shop_name is not None and not 1 <= len(shop_name) <= SHOP_NAME_MAX:
        raise _fail(source, "shop_name", f"must be 1 to {SHOP_NAME_MAX} characters")
    locale = _string(data, "locale", source)
    if locale is not None and not LOCALE_RE.match(locale):
        raise _fail(source, "locale", f"{locale!r} is not a locale like \"fr_FR.UTF-8\"")
    timezone = _string(data, "timezone", source)
    if timezone is not None and (not TIMEZONE_RE.match(timezone) or ".." in timezone):
        raise _fail(source, "timezone", f"{timezone!r} is not a time zone like \"Europe/Paris\"")
    rotation = data.get("display_rotation")
    if rotation is not None and (isinstance(rotation, bool) or rotation not in ROTATIONS):
        raise _fail(source, "display_rotation", f"must be one of 0, 90, 180, 270 (degrees), not {rotation!r}")
    relay_url = _string(data, "relay_url", source)
    if relay_url is not None and not re.match(r"^https?://[^\s/]+(/\S*)?$", relay_url):
        raise _fail(source, "relay_url", f"{relay_url!r} is not an http:// or https:// URL")
    keys = data.get("ssh_authorized_keys")
    if keys is not None:
        if isinstance(keys, str):
            keys = [keys]
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise _fail(source, "ssh_authorized_keys", "must be a list of public keys in quotes")
        for index, key in enumerate(keys):
            fields = key.split()
            if len(fields) < 2 or fields[0] not in SSH_KEY_TYPES or "\n" in key:
                raise _fail(source, f"ssh_authorized_keys[{index}]", "is not an OpenSSH public key line "
                            "(\"ssh-ed25519 AAAA… comment\", as in ~/.ssh/id_ed25519.pub)")
    return DeviceSettings(hostname=hostname, shop_name=shop_name, locale=locale, timezone=timezone,
                          display_rotation=rotation, relay_url=relay_url,
                          ssh_authorized_keys=tuple(keys) if keys is not None else None,
                          wifi=_parse_wifi(data.get("wifi"), source))


def _parse_wifi(table: object, source: str) -> WifiSettings | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise _fail(source, "wifi", "must be a table: [wifi] with ssid, passphrase, country")
    unknown = sorted(set(table) - WIFI_KEYS)
    if unknown:
        raise _fail(source, f"wifi.{unknown[0]}", "unknown key (known: country, passphrase, ssid)")
    ssid = _string(table, "ssid", source, "wifi.")
    if ssid is None or not 1 <= len(ssid.encode()) <= SSID_MAX_BYTES:
        raise _fail(source, "wifi.ssid", f"the network name is required, 1 to {SSID_MAX_BYTES} bytes")
    country = _string(table, "country", source, "wifi.")
    if country is None or not COUNTRY_RE.match(country):
        raise _fail(source, "wifi.country", "is required: two capital letters (FR), the regulatory domain")
    passphrase = _string(table, "passphrase", source, "wifi.")
    if passphrase is not None and not (PASSPHRASE_MIN <= len(passphrase) <= PASSPHRASE_MAX
                                       and passphrase.isascii() and passphrase.isprintable()):
        raise _fail(source, "wifi.passphrase", f"must be {PASSPHRASE_MIN} to {PASSPHRASE_MAX} printable ASCII "
                    "characters (WPA2-PSK)")
    return WifiSettings(ssid=ssid, country=country, passphrase=passphrase)


def read_settings(path: Path) -> DeviceSettings:
    """Read and check the file at ``path``.

    Raises:
        ProvisioningError: unreadable (named with the OS reason), not UTF-8, or a bad value (see
            :func:`parse_settings`).
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProvisioningError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ProvisioningError(f"{path}: not UTF-8 text (save it as UTF-8)") from exc
    return parse_settings(text, str(path))


def toml_value(value: str | int | bool | list[str]) -> str:
    """``value`` written as TOML (strings as basic strings, escaped)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in escaped)
    return f'"{escaped}"'


def render_settings(settings: DeviceSettings, header: str = "") -> str:
    """``settings`` as an ``eticket.toml`` text, secrets included when present (callers drop them first)."""
    lines = [header] if header else []
    for key in ("hostname", "shop_name", "locale", "timezone", "display_rotation", "relay_url"):
        value = getattr(settings, key)
        if value is not None:
            lines.append(f"{key} = {toml_value(value)}")
    if settings.ssh_authorized_keys is not None:
        lines.append(f"ssh_authorized_keys = {toml_value(list(settings.ssh_authorized_keys))}")
    if settings.wifi is not None:
        lines += ["", "[wifi]", f"ssid = {toml_value(settings.wifi.ssid)}",
                  f"country = {toml_value(settings.wifi.country)}"]
        if settings.wifi.passphrase is not None:
            lines.append(f"passphrase = {toml_value(settings.wifi.passphrase)}")
    return "\n".join(lines) + "\n"
