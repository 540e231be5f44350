"""Apply device settings to a root file system, idempotently: a file is written only when its content changes.

All or nothing: every setting is checked and every file computed first, then the changed files are written
beside their targets and only then renamed into place, so a refused setting or a full disk changes nothing.

Everything lands under ``/var/lib/eticket-system`` (the data partition: the root is read-only), which the
image links from ``/etc`` (``/etc/hostname``, ``/etc/eticket``, ``/etc/localtime``, ``/etc/default/locale``,
``/etc/wpa_supplicant/wpa_supplicant-wlan0.conf``, ``/etc/rauc/keyring.pem``). ``root`` is ``/`` on a device
and a directory in tests and at image build time (:func:`seed`).

The keyring RAUC checks update bundles against (``rauc/keyring.pem``) comes from the image
(:data:`IMAGE_KEYRING`, the fleet's keyring built in) until ``update_keyring`` in ``eticket.toml`` sets the
fleet owner's own; ``rauc/keyring.source`` says which (``image`` or ``eticket.toml``). While it is the image's,
each apply follows the running image's (a bundle that carries a new keyring brings it, a rollback takes the
old one back); once the card set one, only the card changes it.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

from eticket_core.i18n import LANGUAGES as SCREEN_LANGUAGES

from ._errors import ProvisioningError
from ._settings import DeviceSettings, toml_value

STATE = Path("var/lib/eticket-system")
ZONEINFO = Path("usr/share/zoneinfo")
IMAGE_KEYRING = Path("usr/share/eticket/rauc-keyring.pem")
"""The keyring the image was built with (``make image FLEET_KEYS=DIR`` puts DIR/keyring.pem there)."""
KEYRING_FROM_IMAGE, KEYRING_FROM_SETTINGS = "image", "eticket.toml"
DEVICE_DEFAULTS: dict[str, str | int | bool] = {"listen": "0.0.0.0:8080", "api_listen": "0.0.0.0:8443",
                                                  "printer_listen": "0.0.0.0:9100"}
"""Appliance settings of every device: listen on the LAN (plain HTTP downloads, HTTPS POS API, the receipt
printer port for tills, docs/protocol.md §12)."""
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
    def keyring(self) -> Path:
        """RAUC's keyring (``/etc/rauc/keyring.pem`` links here)."""
        return self.state / "rauc" / "keyring.pem"

    @property
    def keyring_source(self) -> Path:
        """Where the keyring came from: :data:`KEYRING_FROM_IMAGE` or :data:`KEYRING_FROM_SETTINGS`."""
        return self.state / "rauc" / "keyring.source"

    @property
    def localtime(self) -> Path:
        return self.state / "localtime"

    @property
    def timezone(self) -> Path:
        return self.state / "timezone"

    @property
    def locale(self) -> Path:
        return self.state / "locale"


@dataclass(frozen=True, slots=True)
class _File:
    """One file of the plan: ``content`` with permission bits ``mode``, for the setting ``setting``."""

    setting: str
    path: Path
    content: str
    mode: int = 0o644

    def is_current(self) -> bool:
        try:
            return self.path.read_text() == self.content and (self.path.stat().st_mode & 0o777) == self.mode
        except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
            return False


@dataclass(frozen=True, slots=True)
class _Link:
    """One symbolic link of the plan: ``path`` pointing at ``target``."""

    setting: str
    path: Path
    target: str

    def is_current(self) -> bool:
        return self.path.is_symlink() and os.readlink(self.path) == self.target


_Step = _File | _Link


def _commit(steps: list[_Step]) -> list[str]:
    """Make every step true: first each new file or link under a temporary name beside its target (written
    and fsynced), then every rename, so a full or read-only disk stops the apply before anything changed.
    Returns the settings whose files changed, in plan order, each once.

    Raises:
        OSError: the state directory cannot be written (nothing was renamed if it failed while preparing);
            its ``filename`` is the target file that could not be written (not a temporary name).
    """
    pending: list[_Step] = []
    prepared: list[tuple[Path, Path]] = []
    step: _Step | None = None
    try:
        for step in steps:
            if not step.is_current():  # reads the target: a folder in its place fails here, before any write
                pending.append(step)
        for step in pending:
            step.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = step.path.with_name(f".{step.path.name}.tmp")
            if tmp.is_symlink() or tmp.exists():
                tmp.unlink()
            if isinstance(step, _Link):
                tmp.symlink_to(step.target)
            else:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, step.mode)
                with os.fdopen(fd, "w") as handle:
                    handle.write(step.content)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.chmod(tmp, step.mode)
            prepared.append((tmp, step.path))
    except OSError as exc:
        for tmp, _ in prepared:
            tmp.unlink(missing_ok=True)
        raise _naming(exc, step.path if step is not None else None) from exc
    for tmp, path in prepared:
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise _naming(exc, path) from exc
    for folder in {path.parent for _, path in prepared}:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return list(dict.fromkeys(step.setting for step in pending))


def _naming(exc: OSError, path: Path | None) -> OSError:
    """``exc`` with ``filename`` the target ``path`` (the OS names the temporary file or a parent folder,
    or nothing): what a message shows the shop."""
    return OSError(exc.errno, exc.strerror or str(exc), str(path)) if path is not None else exc


def wpa_psk(passphrase: str, ssid: str) -> str:
    """The 256-bit WPA pre-shared key as 64 hex digits (what ``wpa_passphrase`` prints; IEEE 802.11i
    PBKDF2-SHA1 of the passphrase, salted with the SSID's UTF-8 bytes): the device never stores the
    passphrase itself."""
    return hashlib.pbkdf2_hmac("sha1", passphrase.encode(), ssid.encode(), PSK_ITERATIONS, PSK_BYTES).hex()


def _ssid_value(ssid: str) -> str:
    """``ssid`` as wpa_supplicant.conf(5) reads it: in quotes when it is printable ASCII without ``"`` and
    ``\\`` (wpa_supplicant takes the text between the first and the last quote on the line, without
    escapes), else as unquoted hex digits of its UTF-8 bytes, which no character can break."""
    if all(" " <= ch <= "~" and ch not in '"\\' for ch in ssid):
        return f'"{ssid}"'
    return ssid.encode().hex()


def _wifi_conf(ssid: str, psk: str, country: str) -> str:
    """wpa_supplicant's configuration for one WPA-PSK network (``psk`` the derived key, 64 hex digits)."""
    return (f"# Written by `eticket provision` from eticket.toml [wifi].\nctrl_interface=DIR=/run/wpa_supplicant\n"
            f"country={country}\nupdate_config=0\n\nnetwork={{\n    ssid={_ssid_value(ssid)}\n    psk={psk}\n"
            "    key_mgmt=WPA-PSK\n}\n")


def _read_wifi(path: Path) -> tuple[str, str] | None:
    """(ssid, psk) of the applied network, or None. Reads both forms :func:`_ssid_value` writes, and the
    backslash escapes earlier versions wrote in quotes."""
    try:
        text = path.read_text()
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        return None
    ssid = psk = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith('ssid="') and line.endswith('"'):
            ssid = line[6:-1].replace('\\"', '"').replace("\\\\", "\\")
        elif line.startswith("ssid="):
            try:
                ssid = bytes.fromhex(line[5:]).decode()
            except (ValueError, UnicodeDecodeError):
                return None
        elif line.startswith("psk="):
            psk = line[4:]
    return (ssid, psk) if ssid is not None and psk is not None else None


def _read_appliance(path: Path) -> dict[str, str | int | bool]:
    try:
        data = tomllib.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return dict(DEVICE_DEFAULTS)
    return {k: v for k, v in data.items() if isinstance(v, (str, int, bool))}


def _kiosk_env(settings: DeviceSettings, path: Path) -> _File | None:
    """``ETICKET_KIOSK_ARGS`` for the kiosk unit from ``display_rotation`` (``--rotate``) and
    ``display_diagonal_inches`` (``--diagonal-inches``); the one not in the file keeps the value ``path``
    already holds. None when the file sets neither."""
    rotation, diagonal = settings.display_rotation, settings.display_diagonal_inches
    if rotation is None and diagonal is None:
        return None
    try:
        words = shlex.split(path.read_text().partition("ETICKET_KIOSK_ARGS=")[2])
    except (OSError, UnicodeDecodeError, ValueError):  # none yet, or not ours: start afresh
        words = []
    have = dict(zip(words[::2], words[1::2], strict=False))
    rotate = str(rotation) if rotation is not None else have.get("--rotate")
    inches = f"{diagonal:g}" if diagonal is not None else have.get("--diagonal-inches")
    args = [*(["--rotate", rotate] if rotate else []), *(["--diagonal-inches", inches] if inches else [])]
    setting = "display_rotation" if rotation is not None else "display_diagonal_inches"
    return _File(setting, path, f"ETICKET_KIOSK_ARGS={shlex.join(args)}\n")


def _keyring_steps(settings: DeviceSettings, layout: Layout) -> list[_Step]:
    """The keyring from ``update_keyring``; without it, the image's keyring while the device has no keyring
    of the card's (see the module's docstring); nothing when the image has none (a desk, tests)."""
    if settings.update_keyring is not None:
        return [_File("update_keyring", layout.keyring, settings.update_keyring),
                _File("update_keyring", layout.keyring_source, KEYRING_FROM_SETTINGS + "\n")]
    try:
        if layout.keyring_source.read_text().strip() == KEYRING_FROM_SETTINGS:
            return []
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        pass
    try:
        image = (layout.root / IMAGE_KEYRING).read_text()
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        return []
    return [_File("keyring", layout.keyring, image), _File("keyring", layout.keyring_source,
                                                          KEYRING_FROM_IMAGE + "\n")]


def _plan(settings: DeviceSettings, root: Path = Path("/")) -> list[_Step]:
    """Every file and link that makes the device under ``root`` match ``settings``, with its whole content,
    computed before anything is written (only reads under ``root``).

    Raises:
        ProvisioningError: the time zone is not installed, or ``wifi`` names a new network without a
            passphrase (the message names the key).
    """
    layout = Layout(root)
    steps: list[_Step] = []
    if settings.hostname is not None:
        steps.append(_File("hostname", layout.hostname, settings.hostname + "\n"))
    if settings.timezone is not None:
        zone = root / ZONEINFO / settings.timezone
        if not zone.is_file():
            raise ProvisioningError(f"timezone: {settings.timezone!r} is not a known time zone "
                                    "(e.g. \"Europe/Paris\", see /usr/share/zoneinfo)")
        steps.append(_Link("timezone", layout.localtime, f"/{ZONEINFO}/{settings.timezone}"))
        steps.append(_File("timezone", layout.timezone, settings.timezone + "\n"))
    if settings.locale is not None:
        steps.append(_File("locale", layout.locale, f"LANG={settings.locale}\n"))
    if settings.ssh_authorized_keys is not None:
        keys = "".join(key.strip() + "\n" for key in settings.ssh_authorized_keys)
        steps.append(_File("ssh_authorized_keys", layout.authorized_keys, keys, 0o600))
    kiosk = _kiosk_env(settings, layout.kiosk_env)
    if kiosk is not None:
        steps.append(kiosk)
    if settings.wifi is not None:
        wifi = settings.wifi
        if wifi.passphrase is not None:
            psk = wpa_psk(wifi.passphrase, wifi.ssid)
        else:
            applied = _read_wifi(layout.wifi)
            if applied is None or applied[0] != wifi.ssid:
                raise ProvisioningError(f"wifi.passphrase: missing for the new network {wifi.ssid!r}")
            psk = applied[1]
        steps.append(_File("wifi", layout.wifi, _wifi_conf(wifi.ssid, psk, wifi.country), 0o600))
    steps += _keyring_steps(settings, layout)
    steps.append(_appliance_step(layout, settings))
    return steps


def apply(settings: DeviceSettings, root: Path = Path("/")) -> list[str]:
    """Make the device under ``root`` match ``settings``; return what changed (e.g. ``["hostname",
    "wifi"]``), empty when it already matched (applying twice changes nothing the second time).

    Everything is checked and every file's content computed first (:func:`_plan`), so a refused setting
    changes nothing on the device; then the changed files are written (see :func:`_commit`).

    Raises:
        ProvisioningError: the time zone is not installed, or ``wifi`` names a new network without a
            passphrase (the message names the key); nothing was written.
        OSError: the state directory cannot be written.
    """
    return _commit(_plan(settings, root))


def follow_image_keyring(root: Path = Path("/")) -> list[str]:
    """Copy the running image's keyring (:data:`IMAGE_KEYRING`) to the device's, unless a card set one
    (``update_keyring``): what :func:`apply` does too, for boots without an ``eticket.toml``. Returns
    ``["keyring"]`` when it changed, else ``[]``.

    Raises:
        OSError: the state directory cannot be written.
    """
    return _commit(_keyring_steps(DeviceSettings(), Layout(root)))


def _appliance_step(layout: Layout, settings: DeviceSettings) -> _File:
    """The appliance's ``eticket.toml`` with the shop's keys (name, language, relay_url, guest_wifi_ssid,
    guest_wifi_password) merged in."""
    config = _read_appliance(layout.appliance_config)
    for key, value in DEVICE_DEFAULTS.items():
        config.setdefault(key, value)
    if settings.shop_name is not None:
        config["name"] = settings.shop_name
    if settings.locale is not None:
        language = settings.locale[:2]
        if language in SCREEN_LANGUAGES:
            config["language"] = language
    for key in ("relay_url", "guest_wifi_ssid", "guest_wifi_password"):  # the appliance's own key names
        value = getattr(settings, key)
        if value is not None:
            config[key] = value
    text = APPLIANCE_HEADER + "".join(f"{key} = {toml_value(config[key])}\n" for key in sorted(config))
    return _File("appliance", layout.appliance_config, text)


def seed(root: Path) -> list[str]:
    """Write the defaults of a fresh image under ``root`` where nothing is set yet (hostname ``eticket``,
    UTC, C.UTF-8, the appliance listening on the LAN, RAUC's keyring from :data:`IMAGE_KEYRING` when the
    image has one); returns what was written."""
    layout = Layout(root)
    steps: list[_Step] = []
    if not layout.hostname.exists():
        steps.append(_File("hostname", layout.hostname, DEFAULT_HOSTNAME + "\n"))
    if not layout.localtime.is_symlink():
        steps.append(_Link("timezone", layout.localtime, f"/{ZONEINFO}/{DEFAULT_TIMEZONE}"))
        steps.append(_File("timezone", layout.timezone, DEFAULT_TIMEZONE + "\n"))
    if not layout.locale.exists():
        steps.append(_File("locale", layout.locale, f"LANG={DEFAULT_LOCALE}\n"))
    if not layout.kiosk_env.exists():
        steps.append(_File("display_rotation", layout.kiosk_env, "ETICKET_KIOSK_ARGS=\n"))
    steps += _keyring_steps(DeviceSettings(), layout)
    steps.append(_appliance_step(layout, DeviceSettings()))
    return _commit(steps)
