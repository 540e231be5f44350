"""Apply device settings to a root file system, idempotently: a file is written only when its content changes.

Everything lands under ``/var/lib/eticket-system`` (the data partition: the root is read-only), which the
image links from ``/etc`` (``/etc/hostname``, ``/etc/eticket``, ``/etc/localtime``, ``/etc/default/locale``,
``/etc/wpa_supplicant/wpa_supplicant-wlan0.conf``). ``root`` is ``/`` on a device and a directory in tests
and at image build time (:func:`seed`).
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ._errors import ProvisioningError
from ._settings import DeviceSettings, toml_value

STATE = Path("var/lib/eticket-system")
ZONEINFO = Path("usr/share/zoneinfo")
SCREEN_LANGUAGES = ("fr", "it", "en", "de", "es")
DEVICE_DEFAULTS: dict[str, str | int | bool] = {"listen": "0.0.0.0:8080", "api_listen": "0.0.0.0:8443"}
"""Appliance settings of every device: listen on the LAN (plain HTTP downloads, HTTPS POS API)."""
DEFAULT_HOSTNAME = "eticket"
DEFAULT_TIMEZONE = "Etc/UTC"
DEFAULT_LOCALE = "C.UTF-8"
PSK_ITERATIONS = 4096  # IEEE 802.11i PBKDF2-SHA1
PSK_BYTES = 32
APPLIANCE_HEADER = "# Written by `eticket provision` from eticket.toml; edits here are replaced at the next apply.\n"


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the settings live under ``root``; every path is absolute (``root`` joined)."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / STATE

    @property
    def hostname(self) -> Path:
        return self.state / "hostname"

    @property
    def appliance_config(self) -> Path:
        return self.state / "eticket" / "eticket.toml"

    @property
    def kiosk_env(self) -> Path:
        return self.state / "eticket" / "kiosk.env"

    @property
    def authorized_keys(self) -> Path:
        return self.state / "ssh" / "authorized_keys"

    @property
    def wifi(self) -> Path:
        return self.state / "wpa_supplicant-wlan0.conf"

    @property
    def localtime(self) -> Path:
        return self.state / "localtime"

    @property
    def timezone(self) -> Path:
        return self.state / "timezone"

    @property
    def locale(self) -> Path:
        return self.state / "locale"


def _write(path: Path, content: str, mode: int = 0o644) -> bool:
    """Write ``content`` atomically (temporary file, fsync, rename) unless the file already holds it; True
    when written."""
    try:
        if path.read_text() == content and (path.stat().st_mode & 0o777) == mode:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def _symlink(path: Path, target: str) -> bool:
    """Point ``path`` at ``target`` unless it already does; True when changed."""
    if path.is_symlink() and os.readlink(path) == target:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, path)
    return True


def wpa_psk(passphrase: str, ssid: str) -> str:
    """The 256-bit WPA pre-shared key as 64 hex digits (what ``wpa_passphrase`` prints): the device never
    stores the passphrase itself."""
    return hashlib.pbkdf2_hmac("sha1", passphrase.encode(), ssid.encode(), PSK_ITERATIONS, PSK_BYTES).hex()


def _wifi_conf(ssid: str, psk: str, country: str) -> str:
    escaped = ssid.replace("\\", "\\\\").replace('"', '\\"')
    return (f"# Written by `eticket provision` from eticket.toml [wifi].\nctrl_interface=DIR=/run/wpa_supplicant\n"
            f"country={country}\nupdate_config=0\n\nnetwork={{\n    ssid=\"{escaped}\"\n    psk={psk}\n"
            "    key_mgmt=WPA-PSK\n}\n")


def _read_wifi(path: Path) -> tuple[str, str] | None:
    """(ssid, psk) of the applied network, or None."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    ssid = psk = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith('ssid="'):
            ssid = line[6:-1].replace('\\"', '"').replace("\\\\", "\\")
        elif line.startswith("psk="):
            psk = line[4:]
    return (ssid, psk) if ssid is not None and psk is not None else None


def _read_appliance(path: Path) -> dict[str, str | int | bool]:
    try:
        data = tomllib.loads(path.read_text())
    except (FileNotFoundError, tomllib.TOMLDecodeError):
        return dict(DEVICE_DEFAULTS)
    return {k: v for k, v in data.items() if isinstance(v, (str, int, bool))}


def apply(settings: DeviceSettings, root: Path = Path("/")) -> list[str]:
    """Make the device under ``root`` match ``settings``; return what changed (e.g. ``["hostname",
    "wifi"]``), empty when it already matched (applying twice changes nothing the second time).

    Raises:
        ProvisioningError: the time zone is not installed, or ``wifi`` names a new network without a
            passphrase (the file names the key).
    """
    layout = Layout(root)
    changed: list[str] = []
    if settings.hostname is not None and _write(layout.hostname, settings.hostname + "\n"):
        changed.append("hostname")
    if settings.timezone is not None:
        zone = root / ZONEINFO / settings.timezone
        if not zone.is_file():
            raise ProvisioningError(f"timezone: {settings.timezone!r} is not a known time zone "
                                    "(e.g. \"Europe/Paris\", see /usr/share/zoneinfo)")
        moved = _symlink(layout.localtime, f"/{ZONEINFO}/{settings.timezone}")
        if _write(layout.timezone, settings.timezone + "\n") or moved:
            changed.append("timezone")
    if settings.locale is not None and _write(layout.locale, f"LANG={settings.locale}\n"):
        changed.append("locale")
    if settings.ssh_authorized_keys is not None:
        keys = "".join(key.strip() + "\n" for key in settings.ssh_authorized_keys)
        if _write(layout.authorized_keys, keys, 0o600):
            changed.append("ssh_authorized_keys")
    if settings.display_rotation is not None:
        env = f"ETICKET_KIOSK_ARGS=--rotate {settings.display_rotation}\n"
        if _write(layout.kiosk_env, env):
            changed.append("display_rotation")
    if settings.wifi is not None:
        wifi = settings.wifi
        if wifi.passphrase is not None:
            psk = wpa_psk(wifi.passphrase, wifi.ssid)
        else:
            applied = _read_wifi(layout.wifi)
            if applied is None or applied[0] != wifi.ssid:
                raise ProvisioningError(f"wifi.passphrase: missing for the new network {wifi.ssid!r}")
            psk = applied[1]
        if _write(layout.wifi, _wifi_conf(wifi.ssid, psk, wifi.country), 0o600):
            changed.append("wifi")
    if _write_appliance(layout, settings):
        changed.append("appliance")
    return changed


def _write_appliance(layout: Layout, settings: DeviceSettings) -> bool:
    """Merge the shop's keys (name, language, relay_url) into the appliance's ``eticket.toml``."""
    config = _read_appliance(layout.appliance_config)
    for key, value in DEVICE_DEFAULTS.items():
        config.setdefault(key, value)
    if settings.shop_name is not None:
        config["name"] = settings.shop_name
    if settings.locale is not None:
        language = settings.locale[:2]
        if language in SCREEN_LANGUAGES:
            config["language"] = language
    if settings.relay_url is not None:
        config["relay_url"] = settings.relay_url
    text = APPLIANCE_HEADER + "".join(f"{key} = {toml_value(config[key])}\n" for key in sorted(config))
    return _write(layout.appliance_config, text)


def seed(root: Path) -> list[str]:
    """Write the defaults of a fresh image under ``root`` where nothing is set yet (hostname ``eticket``,
    UTC, C.UTF-8, the appliance listening on the LAN); returns what was written."""
    layout = Layout(root)
    written = []
    if not layout.hostname.exists() and _write(layout.hostname, DEFAULT_HOSTNAME + "\n"):
        written.append("hostname")
    if not layout.localtime.is_symlink():
        _symlink(layout.localtime, f"/{ZONEINFO}/{DEFAULT_TIMEZONE}")
        _write(layout.timezone, DEFAULT_TIMEZONE + "\n")
        written.append("timezone")
    if not layout.locale.exists() and _write(layout.locale, f"LANG={DEFAULT_LOCALE}\n"):
        written.append("locale")
    if not layout.kiosk_env.exists() and _write(layout.kiosk_env, "ETICKET_KIOSK_ARGS=\n"):
        written.append("display_rotation")
    if _write_appliance(layout, DeviceSettings()):
        written.append("appliance")
    return written
