"""Parse and check ``eticket.toml``, the shop's device settings on the boot partition or a USB stick.

Example (every key optional; an absent key keeps the device's current value)::

    hostname = "caisse-1"
    shop_name = "Boulangerie Martin"
    locale = "fr_FR.UTF-8"
    timezone = "Europe/Paris"
    display_rotation = 90
    display_diagonal_inches = 3.5               # the panel's size, when it reports none (SPI panels)
    relay_url = "https://relay.example.org"
    guest_wifi_ssid = "Boulangerie Invités"      # without a relay: a join QR shown before the receipt QR
    guest_wifi_password = "croissant-2026"       # "" for an open network; shown to customers, so kept
    ssh_authorized_keys = ["ssh-ed25519 AAAA… admin@laptop"]   # as in ~/.ssh/id_ed25519.pub
    update_keyring = '''
    -----BEGIN CERTIFICATE-----
    MIIB…
    -----END CERTIFICATE-----
    '''                                     # the fleet's keyring.pem (`eticket fleet keys init`)

    [wifi]
    ssid = "Boulangerie"
    passphrase = "8 to 63 characters"   # removed from the file once applied
    country = "FR"

Types are checked strictly (``display_rotation = 90.0`` or ``"90"`` is refused, not converted). Text values
must not hold control characters (a newline, a tab…), and every pattern must match the whole value. The file
is at most :data:`SETTINGS_MAX_BYTES`. An SSH key is one OpenSSH public key line, ``TYPE BASE64 [comment]``,
whose key data must decode (``cryptography``'s ``load_ssh_public_key``); ``authorized_keys`` options
(``from="…"``, ``command="…"``) before the type are refused: write them on the device itself if needed.
``relay_url`` is https:// (plain http:// only to a loopback host) without ``user:password@``; ``wifi.country``
is an ISO 3166-1 alpha-2 code (``pycountry``); the guest Wi-Fi keys are the appliance's own (see
``appliance/config.py``) and are written into its config, the SSID 1 to 32 bytes, the password 8 to 63 printable
ASCII characters (IEEE 802.11i) or "" for an open network. ``update_keyring`` is the PEM text of one to
:data:`KEYRING_MAX_CERTS` root CA certificates (self-signed, basicConstraints CA, keyCertSign, not expired by
the device's clock) that the device's RAUC trusts for update bundles from then on; anything else in it (a
private key, a signing certificate, a truncated paste) refuses the whole file, and the device keeps its keyring.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pycountry

from ._errors import ProvisioningError

# Every pattern is used with fullmatch: ``$`` would also accept a trailing newline.
HOSTNAME_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
LOCALE_RE = re.compile(r"[a-z]{2,3}_[A-Z]{2}(\.UTF-8)?")
TIMEZONE_RE = re.compile(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*")
COUNTRY_RE = re.compile(r"[A-Z]{2}")
RELAY_URL_RE = re.compile(r"https?://[!-.0-~]+(/[!-~]*)?")
"""http(s)://host[:port][/path]: printable ASCII only (an IDN host in its xn-- form). Plain http:// only to
a loopback host (a relay on the same machine, in tests); no ``user:password@`` (the URL is logged and its
base is in every receipt QR)."""
LOOPBACK_NAMES = ("localhost",)
SETTINGS_MAX_BYTES = 64 * 1024
"""Largest eticket.toml read, in bytes (a real one is well under 4 KiB)."""
SSH_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
                 "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
ROTATIONS = (0, 90, 180, 270)
SSID_MAX_BYTES = 32
PASSPHRASE_MIN, PASSPHRASE_MAX = 8, 63  # WPA-PSK (IEEE 802.11i)
GUEST_PASSWORD_MIN, GUEST_PASSWORD_MAX = 8, 63
"""WPA-PSK passphrase of the guest Wi-Fi (IEEE 802.11i); "" is an open network."""
SHOP_NAME_MAX = 63
"""Characters (not bytes): the appliance fits its DNS-SD instance name to 63 bytes itself."""
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})
"""Unicode general categories refused in the shop name: control, format, private-use, surrogate, unassigned,
line and paragraph separators (RFC 6763 §4.1.1 forbids controls in instance names; the rest cannot be read
on a screen). The appliance applies the same rule to its ``name`` and ``guest_wifi_ssid``."""
TOP_KEYS = {"hostname", "shop_name", "locale", "timezone", "display_rotation", "display_diagonal_inches", "relay_url",
            "ssh_authorized_keys", "guest_wifi_ssid", "guest_wifi_password", "update_keyring", "wifi"}
DIAGONAL_INCHES = (1.0, 120.0)
"""Accepted ``display_diagonal_inches`` (the kiosk's ``--diagonal-inches`` range)."""
KEYRING_MAX_CERTS = 16
"""Most CA certificates in ``update_keyring`` (a fleet has one, two while it changes its CA)."""
PEM_LABEL_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")
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
    display_diagonal_inches: float | None = None
    relay_url: str | None = None
    ssh_authorized_keys: tuple[str, ...] | None = None
    guest_wifi_ssid: str | None = None
    guest_wifi_password: str | None = None
    update_keyring: str | None = None
    """The CA certificates for update bundles, as PEM re-encoded from the parsed certificates."""
    wifi: WifiSettings | None = None

    @property
    def has_secrets(self) -> bool:
        """True when the file still holds a secret (the Wi-Fi passphrase)."""
        return self.wifi is not None and self.wifi.passphrase is not None


def _fail(source: str, key: str, problem: str) -> ProvisioningError:
    return ProvisioningError(f"{source}: {key}: {problem}")


def _string(data: dict[str, Any], key: str, source: str, prefix: str = "") -> str | None:
    """The text at ``key``, or None when absent; refused when not a string or when it holds a control
    character (a newline would inject a line into the files written from it)."""
    if key not in data:
        return None
    value = data[key]
    if not isinstance(value, str):
        raise _fail(source, prefix + key, f"must be a text in quotes, not {value!r}")
    _check_no_controls(value, prefix + key, source)
    return value


def _check_no_controls(value: str, key: str, source: str) -> None:
    bad = next((ch for ch in value if unicodedata.category(ch) == "Cc"), None)
    if bad is not None:
        raise _fail(source, key, f"must not hold control characters (found U+{ord(bad):04X}, "
                    "e.g. a newline or a tab)")


def _check_shop_name(name: str, source: str) -> None:
    if not 1 <= len(name) <= SHOP_NAME_MAX or not name.strip():
        raise _fail(source, "shop_name", f"must be 1 to {SHOP_NAME_MAX} characters, not blank")
    _check_visible(name, "shop_name", source)


def _check_visible(value: str, key: str, source: str) -> None:
    bad = next((ch for ch in value if unicodedata.category(ch) in INVISIBLE_CATEGORIES), None)
    if bad is not None:
        raise _fail(source, key, f"must hold only visible characters (found U+{ord(bad):04X}, "
                    f"{unicodedata.name(bad, 'an invisible character')})")


def _check_ssh_key(key: str, where: str, source: str) -> str:
    """``key`` stripped when it is one OpenSSH public key line whose key data decodes."""
    # Imported here: the image build runs `seed` on the build host against the target's (arm64) wheels.
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    fields = key.split()
    hint = "(\"ssh-ed25519 AAAA… comment\", as in ~/.ssh/id_ed25519.pub)"
    if len(fields) < 2:
        raise _fail(source, where, f"is not an OpenSSH public key line {hint}")
    if fields[0] not in SSH_KEY_TYPES:
        if any(t in key for t in SSH_KEY_TYPES):
            raise _fail(source, where, "options before the key type (from=, command=…) are not accepted: "
                        f"give the bare key line {hint}")
        raise _fail(source, where, f"is not an OpenSSH public key line {hint}: {fields[0][:40]!r} is not a key "
                    f"type ({', '.join(SSH_KEY_TYPES)})")
    try:
        load_ssh_public_key(f"{fields[0]} {fields[1]}".encode())
    except (ValueError, TypeError) as exc:  # truncated, mistyped or not base64: cryptography says which
        raise _fail(source, where, f"the key data does not decode ({exc}); copy the whole line {hint}") from exc
    except UnsupportedAlgorithm as exc:  # a key type this build of OpenSSL lacks
        raise _fail(source, where, f"cannot be read: {exc}") from exc
    return key.strip()


def _check_keyring(value: object, source: str, now: dt.datetime | None = None) -> str:
    """``value`` (the ``update_keyring`` text) as the PEM of its certificates, each re-encoded from its parsed
    form (nothing else of the card's text reaches the device's keyring). Each must be a root CA: self-signed
    (RAUC verifies whole chains to a certificate of the keyring; RFC 5280 §6.1), basicConstraints CA,
    keyCertSign when keyUsage is present (RFC 5280 §4.2.1.3, §4.2.1.9), and not expired by the device's clock
    (``now``; a clock that is behind lets an expired one pass, which costs nothing: RAUC checks again)."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = "update_keyring"
    hint = "paste the fleet's keyring.pem (made by `eticket fleet keys init`) in a \"\"\"…\"\"\" text"
    if not isinstance(value, str):
        raise _fail(source, key, f"must be a text in quotes: {hint}")
    labels = PEM_LABEL_RE.findall(value)
    if any("PRIVATE KEY" in label for label in labels):
        raise _fail(source, key, "holds a private key: never put a key on the card (anyone holding it could "
                    f"sign updates); {hint}")
    if not labels:
        raise _fail(source, key, f"is not PEM text (no -----BEGIN CERTIFICATE-----): {hint}")
    other = next((label for label in labels if label != "CERTIFICATE"), None)
    if other is not None:
        raise _fail(source, key, f"holds a {other}, not only certificates: {hint}")
    try:
        certificates = x509.load_pem_x509_certificates(value.encode("utf-8", "surrogatepass"))
    except ValueError as exc:
        # A block cut short, a BEGIN without its END, a mistyped character: cryptography's reason is technical.
        raise _fail(source, key, f"a certificate does not decode (cut short or altered): {hint}") from exc
    if len(certificates) > KEYRING_MAX_CERTS:
        raise _fail(source, key, f"holds {len(certificates)} certificates; at most {KEYRING_MAX_CERTS}")
    now = now or dt.datetime.now(dt.UTC)
    for number, cert in enumerate(certificates, 1):
        try:
            names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            name = str(names[0].value) if names else ""
            what = (f"certificate {number} ({name})" if name.isprintable() and len(name) <= 64 and name
                    else f"certificate {number}")
            try:
                constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
                is_ca = constraints.ca
            except x509.ExtensionNotFound:
                is_ca = False
            try:
                usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
                is_ca = is_ca and usage.key_cert_sign
            except x509.ExtensionNotFound:
                pass
        except ValueError as exc:  # a malformed name or extension inside an otherwise decodable certificate
            raise _fail(source, key, f"certificate {number} has a malformed name or extension ({exc!s:.80}): "
                        f"{hint}") from exc
        if not is_ca:
            raise _fail(source, key, f"{what} is not a CA certificate (a signing certificate?): give the "
                        "fleet's keyring.pem or ca.crt, not signing.crt")
        if cert.not_valid_after_utc <= now:
            raise _fail(source, key, f"{what} expired on {cert.not_valid_after_utc:%Y-%m-%d}: make a new fleet CA "
                        "(docs/fleet.md)")
        try:
            cert.verify_directly_issued_by(cert)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise _fail(source, key, f"{what} is not self-signed: give the fleet's root CA (keyring.pem), "
                        "the device trusts whole chains only") from exc
    return "".join(cert.public_bytes(Encoding.PEM).decode("ascii") for cert in certificates)


def _is_wpa_passphrase(value: str) -> bool:
    """True for a WPA-PSK passphrase: 8 to 63 printable ASCII characters (IEEE 802.11i, annex H.4)."""
    return PASSPHRASE_MIN <= len(value) <= PASSPHRASE_MAX and value.isascii() and value.isprintable()


def _check_relay_url(url: str, source: str) -> None:
    """Refuse a relay URL that is not printable ASCII http(s), holds ``user:password@`` or is plain http://
    to anything but a loopback host."""
    if not RELAY_URL_RE.fullmatch(url):
        raise _fail(source, "relay_url", f"{url!r} is not an https:// URL")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError as exc:
        raise _fail(source, "relay_url", f"{url!r} is not an https:// URL ({exc})") from exc
    if "@" in parts.netloc:
        raise _fail(source, "relay_url", "must not hold a user name or password (user:password@): the URL "
                    "is written in logs and its base in every receipt QR")
    if not parts.hostname:
        raise _fail(source, "relay_url", f"{url!r} has no host name")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise _fail(source, "relay_url", "must start with https:// (plain http:// only to a relay on this "
                    "machine, 127.0.0.1 or localhost)")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in LOOPBACK_NAMES


def parse_settings(text: str, source: str = "eticket.toml") -> DeviceSettings:
    """Parse and check the TOML ``text``; ``source`` names it in error messages.

    Raises:
        ProvisioningError: bad TOML (also: nested too deeply, larger than :data:`SETTINGS_MAX_BYTES`), an
            unknown key (a typo), a value of the wrong type, with a control character, or out of range; the
            message names ``source`` and the key, e.g. ``eticket.toml: wifi.country: is required: two
            capital letters (FR), the regulatory domain``.
    """
    if len(text.encode("utf-8", "surrogatepass")) > SETTINGS_MAX_BYTES:
        raise ProvisioningError(f"{source}: larger than {SETTINGS_MAX_BYTES // 1024} KiB: is this the right file?")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProvisioningError(f"{source}: not valid TOML: {exc}") from exc
    except RecursionError as exc:  # tomllib parses nested arrays and tables recursively
        raise ProvisioningError(f"{source}: not valid TOML: arrays or tables nested too deeply") from exc
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise _fail(source, unknown[0], f"unknown key (known: {', '.join(sorted(TOP_KEYS))})")

    hostname = _string(data, "hostname", source)
    if hostname is not None and not HOSTNAME_RE.fullmatch(hostname):
        raise _fail(source, "hostname", f"{hostname!r} is not a host name: 1-63 of a-z, 0-9 and '-', "
                    "not starting or ending with '-' (e.g. \"caisse-1\")")
    shop_name = _string(data, "shop_name", source)
    if shop_name is not None:
        _check_shop_name(shop_name, source)
    locale = _string(data, "locale", source)
    if locale is not None and not LOCALE_RE.fullmatch(locale):
        raise _fail(source, "locale", f"{locale!r} is not a locale like \"fr_FR.UTF-8\"")
    timezone = _string(data, "timezone", source)
    if timezone is not None and (not TIMEZONE_RE.fullmatch(timezone) or ".." in timezone):
        raise _fail(source, "timezone", f"{timezone!r} is not a time zone like \"Europe/Paris\"")
    rotation = data.get("display_rotation")
    if rotation is not None and (type(rotation) is not int or rotation not in ROTATIONS):  # not 90.0, "90", true
        raise _fail(source, "display_rotation", f"must be one of 0, 90, 180, 270 (degrees), not {rotation!r}")
    diagonal = data.get("display_diagonal_inches")
    if diagonal is not None and (type(diagonal) not in (int, float) or not
                                 DIAGONAL_INCHES[0] <= diagonal <= DIAGONAL_INCHES[1]):  # not true, "3.5"
        raise _fail(source, "display_diagonal_inches", f"must be the panel's diagonal in inches, "
                    f"{DIAGONAL_INCHES[0]:g} to {DIAGONAL_INCHES[1]:g} (e.g. 3.5), not {diagonal!r}")
    relay_url = _string(data, "relay_url", source)
    if relay_url is not None:
        _check_relay_url(relay_url, source)
    guest_ssid = _string(data, "guest_wifi_ssid", source)
    if guest_ssid is not None and not 1 <= len(guest_ssid.encode()) <= SSID_MAX_BYTES:
        raise _fail(source, "guest_wifi_ssid", f"the guest network's name must be 1 to {SSID_MAX_BYTES} bytes")
    if guest_ssid is not None:
        _check_visible(guest_ssid, "guest_wifi_ssid", source)  # shown on the screen: the appliance's rule
    guest_password = _string(data, "guest_wifi_password", source)
    if guest_password and not _is_wpa_passphrase(guest_password):
        raise _fail(source, "guest_wifi_password", f"must be {PASSPHRASE_MIN} to {PASSPHRASE_MAX} printable "
                    "ASCII characters (WPA2-PSK), or \"\" for an open network")
    keys = data.get("ssh_authorized_keys")
    if keys is not None:
        if isinstance(keys, str):
            keys = [keys]
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise _fail(source, "ssh_authorized_keys", "must be a list of public keys in quotes")
        for index, key in enumerate(keys):
            where = f"ssh_authorized_keys[{index}]"
            _check_no_controls(key, where, source)  # a newline would add a second, unchecked line
            keys[index] = _check_ssh_key(key, where, source)
    return DeviceSettings(hostname=hostname, shop_name=shop_name, locale=locale, timezone=timezone,
                          display_rotation=rotation, relay_url=relay_url,
                          display_diagonal_inches=None if diagonal is None else float(diagonal),
                          ssh_authorized_keys=tuple(keys) if keys is not None else None,
                          guest_wifi_ssid=guest_ssid, guest_wifi_password=guest_password,
                          update_keyring=None if "update_keyring" not in data else _check_keyring(
                              data["update_keyring"], source),
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
    if country is None or not COUNTRY_RE.fullmatch(country):
        raise _fail(source, "wifi.country", "is required: two capital letters (FR), the regulatory domain")
    if pycountry.countries.get(alpha_2=country) is None:
        raise _fail(source, "wifi.country", f"{country!r} is not an ISO 3166-1 country code (FR, IT, DE…)")
    passphrase = _string(table, "passphrase", source, "wifi.")
    if passphrase is not None and not _is_wpa_passphrase(passphrase):
        raise _fail(source, "wifi.passphrase", f"must be {PASSPHRASE_MIN} to {PASSPHRASE_MAX} printable ASCII "
                    "characters (WPA2-PSK)")
    return WifiSettings(ssid=ssid, country=country, passphrase=passphrase)


def read_settings(path: Path) -> DeviceSettings:
    """Read and check the file at ``path``.

    Raises:
        ProvisioningError: unreadable (named with the OS reason), larger than :data:`SETTINGS_MAX_BYTES`,
            not UTF-8, or a bad value (see
            :func:`parse_settings`).
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read(SETTINGS_MAX_BYTES + 1)  # a stick's huge file is never read whole
    except OSError as exc:
        raise ProvisioningError(f"{path}: cannot read: {exc.strerror}") from exc
    if len(raw) > SETTINGS_MAX_BYTES:
        raise ProvisioningError(f"{path}: larger than {SETTINGS_MAX_BYTES // 1024} KiB: is this the right file?")
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
    escaped = "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF
                      else f"\\U{ord(ch):08x}" for ch in escaped)
    return f'"{escaped}"'


def render_settings(settings: DeviceSettings, header: str = "") -> str:
    """``settings`` as an ``eticket.toml`` text, secrets included when present (callers drop them first)."""
    lines = [header] if header else []
    for key in ("hostname", "shop_name", "locale", "timezone", "display_rotation", "display_diagonal_inches",
                "relay_url", "guest_wifi_ssid", "guest_wifi_password"):
        value = getattr(settings, key)
        if value is not None:
            lines.append(f"{key} = {toml_value(value)}")
    if settings.ssh_authorized_keys is not None:
        lines.append(f"ssh_authorized_keys = {toml_value(list(settings.ssh_authorized_keys))}")
    if settings.update_keyring is not None:  # PEM: base64, dashes and newlines only
        lines.append(f'update_keyring = """\n{settings.update_keyring}"""')
    if settings.wifi is not None:
        lines += ["", "[wifi]", f"ssid = {toml_value(settings.wifi.ssid)}",
                  f"country = {toml_value(settings.wifi.country)}"]
        if settings.wifi.passphrase is not None:
            lines.append(f"passphrase = {toml_value(settings.wifi.passphrase)}")
    return "\n".join(lines) + "\n"
