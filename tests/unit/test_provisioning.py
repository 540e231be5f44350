"""First-boot settings (provisioning/): parsing with clear errors, idempotent apply, secrets removed from the
applied file, USB events chosen right, and the appliance accepting the config it writes."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from appliance.config import load_settings
from provisioning import (
    DeviceSettings,
    Layout,
    ProvisioningError,
    WifiSettings,
    apply,
    parse_settings,
    read_settings,
    scrub_secrets,
    seed,
    stick_partition,
    wpa_psk,
)
from tests.conftest import ETICKET, REPO, require

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBAwJqZQFo/WBzcVSiBme4rlFGCsmDrRQmZMIhFnmvJ6 admin@laptop"
"""A real Ed25519 public key (its private half was thrown away)."""
GOOD = f"""
hostname = "caisse-1"
shop_name = "Boulangerie Martin"
locale = "fr_FR.UTF-8"
timezone = "Europe/Paris"
display_rotation = 90
ssh_authorized_keys = ["{KEY}"]

[wifi]
ssid = "Boulangerie"
passphrase = "croissant-42"
country = "FR"
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A device root with the time zones the tests use (copied from this machine's tzdata)."""
    device = tmp_path / "root"
    zones = device / "usr/share/zoneinfo"
    for zone in ("Europe/Paris", "Etc/UTC"):
        (zones / zone).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path("/usr/share/zoneinfo") / zone, zones / zone)
    seed(device)
    return device


def test_the_shipped_example_parses() -> None:
    settings = read_settings(REPO / "image-build" / "eticket.toml.example")
    assert settings.hostname == "caisse-1" and settings.wifi is not None and settings.has_secrets


@pytest.mark.parametrize(
    ("text", "key", "hint"),
    [
        ('hostname = "Caisse_1"', "hostname", "a-z, 0-9"),
        ('hostnme = "caisse"', "hostnme", "unknown key"),
        ("display_rotation = 45", "display_rotation", "0, 90, 180, 270"),
        ('locale = "french"', "locale", "fr_FR.UTF-8"),
        ('timezone = "../../etc/passwd"', "timezone", "Europe/Paris"),
        ('relay_url = "relay.example.org"', "relay_url", "https://"),
        ('ssh_authorized_keys = ["my key"]', "ssh_authorized_keys[0]", "id_ed25519.pub"),
        ('[wifi]\nssid = "Shop"\ncountry = "fr"\npassphrase = "longenough"', "wifi.country", "two capital"),
        ('[wifi]\nssid = "Shop"\ncountry = "FR"\npassphrase = "short"', "wifi.passphrase", "8 to 63"),
        ('[wifi]\ncountry = "FR"\npassphrase = "longenough"', "wifi.ssid", "required"),
        ('[wifi]\nssid = "Shop"\ncountry = "FR"\npsk = "x"', "wifi.psk", "unknown key"),
        ('hostname = "caisse-1', "", "not valid TOML"),
        ("shop_name = 42", "shop_name", "in quotes"),
        # Strict types: nothing is converted (90.0 was written as "--rotate 90.0" and the kiosk exited 2).
        ("display_rotation = 90.0", "display_rotation", "0, 90, 180, 270"),
        ('display_rotation = "90"', "display_rotation", "0, 90, 180, 270"),
        ("display_rotation = true", "display_rotation", "0, 90, 180, 270"),
        # A trailing newline passed the old "…$" patterns and reached the files.
        ('hostname = "caisse-1\\n"', "hostname", "control characters"),
        ('relay_url = "https://relay.example.org\\n"', "relay_url", "control characters"),
        ('relay_url = "https://relay.example.org/a\\u0000b"', "relay_url", "control characters"),
        ('relay_url = "https://relay.example.org/caf\u00e9"', "relay_url", "https://"),
        ('locale = "fr_FR.UTF-8\\n"', "locale", "control characters"),
        ('[wifi]\nssid = "Shop"\ncountry = "FR\\n"', "wifi.country", "control characters"),
        ('[wifi]\nssid = "Shop\\n}\\nnetwork={"\ncountry = "FR"', "wifi.ssid", "control characters"),
        ('[wifi]\nssid = "Shop"\ncountry = "FR"\npassphrase = "longenough\\n"', "wifi.passphrase", "control"),
        ('shop_name = "Boulangerie\\nMartin"', "shop_name", "control characters"),
        ('shop_name = "Boulangerie \\u202eMartin"', "shop_name", "visible characters"),
        ('shop_name = "   "', "shop_name", "not blank"),
        (f'shop_name = "{"é" * 64}"', "shop_name", "1 to 63 characters"),
        # SSH keys: the key data must decode; one line per key; no authorized_keys options.
        ('ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake x@y"]', "ssh_authorized_keys[0]",
         "does not decode"),
        ('ssh_authorized_keys = ["ssh-rsa not-base64 x@y"]', "ssh_authorized_keys[0]", "does not decode"),
        (f'ssh_authorized_keys = ["{KEY}", "{KEY}\\nssh-rsa AAAA x"]', "ssh_authorized_keys[1]", "control"),
        (f'ssh_authorized_keys = ["from=\\"10.0.0.1\\" {KEY}"]', "ssh_authorized_keys[0]", "options"),
        ('display_diagonal_inches = "3.5"', "display_diagonal_inches", "diagonal in inches"),
        ("display_diagonal_inches = 0.5", "display_diagonal_inches", "1 to 120"),
        ("display_diagonal_inches = true", "display_diagonal_inches", "1 to 120"),
        # Guest Wi-Fi: the same limits as the shop's own network (the appliance shows them in a join QR).
        ('guest_wifi_ssid = ""', "guest_wifi_ssid", "1 to 32 bytes"),
        (f'guest_wifi_ssid = "{"é" * 17}"', "guest_wifi_ssid", "1 to 32 bytes"),
        ('guest_wifi_ssid = "Invités\\n"', "guest_wifi_ssid", "control characters"),
        ('guest_wifi_ssid = "Invités \\u202e"', "guest_wifi_ssid", "visible characters"),
        ('guest_wifi_password = "short"', "guest_wifi_password", "8 to 63 printable ASCII"),
        (f'guest_wifi_password = "{"x" * 64}"', "guest_wifi_password", "8 to 63 printable ASCII"),
        ('guest_wifi_password = "croissanté"', "guest_wifi_password", "8 to 63 printable ASCII"),
        ("guest_wifi_password = 12345678", "guest_wifi_password", "in quotes"),
        # A relay URL is logged and is the base of every receipt QR: no credentials, no plain http.
        ('relay_url = "https://user:pw@relay.example.org"', "relay_url", "user name or password"),
        ('relay_url = "https://user@relay.example.org/"', "relay_url", "user name or password"),
        ('relay_url = "http://relay.example.org"', "relay_url", "must start with https://"),
        ('relay_url = "http://192.168.1.10:8090"', "relay_url", "must start with https://"),
        ('relay_url = "https://relay.example.org:99999"', "relay_url", "https://"),
        ('relay_url = "https://:8443/eticket"', "relay_url", "no host name"),
        ('[wifi]\nssid = "Shop"\ncountry = "ZZ"\npassphrase = "longenough"', "wifi.country", "ISO 3166-1"),
        # A file that would crash the parser or take the memory.
        ("a = " + "[" * 1000 + "]" * 1000, "", "nested too deeply"),
        ('hostname = "caisse-1"\n' + "# padding\n" * 7000, "", "larger than 64 KiB"),
    ],
)
def test_a_bad_file_is_named_with_its_key(text: str, key: str, hint: str) -> None:
    """This is when the shop owner made a typo: the message says which file, which key and what is right."""
    with pytest.raises(ProvisioningError) as caught:
        parse_settings(text, "/boot/firmware/eticket.toml")
    message = str(caught.value)
    assert message.startswith("/boot/firmware/eticket.toml: ")
    assert f": {key}: " in message or not key
    assert hint in message


def test_apply_writes_every_setting_then_changes_nothing(root: Path) -> None:
    settings = parse_settings(GOOD)
    changed = apply(settings, root)
    assert changed == ["hostname", "timezone", "locale", "ssh_authorized_keys", "display_rotation", "wifi",
                       "appliance"]
    layout = Layout(root)
    assert layout.hostname.read_text() == "caisse-1\n"
    assert (layout.localtime.readlink()) == Path("/usr/share/zoneinfo/Europe/Paris")
    assert layout.locale.read_text() == "LANG=fr_FR.UTF-8\n"
    assert layout.authorized_keys.read_text() == KEY + "\n"
    assert layout.authorized_keys.stat().st_mode & 0o777 == 0o600
    assert layout.kiosk_env.read_text() == "ETICKET_KIOSK_ARGS=--rotate 90\n"
    wifi = layout.wifi.read_text()
    assert "croissant-42" not in wifi and f"psk={wpa_psk('croissant-42', 'Boulangerie')}" in wifi
    assert "country=FR" in wifi and layout.wifi.stat().st_mode & 0o777 == 0o600
    config = tomllib.loads(layout.appliance_config.read_text())
    assert config == {"api_listen": "0.0.0.0:8443", "language": "fr", "listen": "0.0.0.0:8080",
                      "printer_listen": "0.0.0.0:9100",
                      "name": "Boulangerie Martin"}
    before = {p: p.stat().st_mtime_ns for p in layout.state.rglob("*") if p.is_file()}
    assert apply(settings, root) == []
    assert before == {p: p.stat().st_mtime_ns for p in layout.state.rglob("*") if p.is_file()}


def test_the_panel_diagonal_reaches_the_kiosk_beside_the_rotation(root: Path) -> None:
    """This is when the shop owner fits a 3.5" SPI panel (it reports no size): the card's
    ``display_diagonal_inches`` becomes the kiosk's ``--diagonal-inches``, keeping the rotation already set, and a
    later card without it keeps it too; the kiosk accepts what was written."""
    from kiosk.cli import _inches

    layout = Layout(root)
    assert apply(parse_settings("display_rotation = 90"), root) == ["display_rotation"]
    assert apply(parse_settings("display_diagonal_inches = 3.5"), root) == ["display_diagonal_inches"]
    assert layout.kiosk_env.read_text() == "ETICKET_KIOSK_ARGS=--rotate 90 --diagonal-inches 3.5\n"
    assert apply(parse_settings("display_rotation = 270"), root) == ["display_rotation"]
    assert layout.kiosk_env.read_text() == "ETICKET_KIOSK_ARGS=--rotate 270 --diagonal-inches 3.5\n"
    assert apply(parse_settings("display_diagonal_inches = 3.5"), root) == []
    assert _inches(layout.kiosk_env.read_text().split()[-1]) == 3.5


def test_the_appliance_accepts_the_config_that_provisioning_writes(root: Path) -> None:
    apply(parse_settings(GOOD), root)
    settings = load_settings(Layout(root).appliance_config)
    assert (settings.name, settings.language, settings.listen) == ("Boulangerie Martin", "fr", "0.0.0.0:8080")


def test_relay_url_is_written_for_the_appliance(root: Path) -> None:
    apply(parse_settings('relay_url = "https://relay.example.org"'), root)
    assert tomllib.loads(Layout(root).appliance_config.read_text())["relay_url"] == "https://relay.example.org"


def test_guest_wifi_is_written_for_the_appliance_and_shown_by_it(root: Path) -> None:
    """This is the shop owner of the README: the guest network set on the card reaches the appliance's
    config under the appliance's own keys, and the appliance starts with it; "" means an open network."""
    apply(parse_settings('guest_wifi_ssid = "Boulangerie Invités"\nguest_wifi_password = "croissant:2026"'), root)
    config = Layout(root).appliance_config
    assert tomllib.loads(config.read_text())["guest_wifi_ssid"] == "Boulangerie Invités"
    settings = load_settings(config)
    assert (settings.guest_wifi_ssid, settings.guest_wifi_password) == ("Boulangerie Invités", "croissant:2026")
    assert apply(parse_settings('guest_wifi_password = ""'), root) == ["appliance"]
    settings = load_settings(config)
    assert (settings.guest_wifi_ssid, settings.guest_wifi_password) == ("Boulangerie Invités", "")


@pytest.mark.parametrize(("ssid", "password"), [("é" * 16, "x" * 63), ("G", "12345678"), ("Café 🥐", "")])
def test_every_guest_wifi_provisioning_accepts_starts_the_appliance(root: Path, ssid: str, password: str) -> None:
    """The card's limits are the appliance's: what provisioning writes never stops the appliance."""
    apply(parse_settings(f'guest_wifi_ssid = "{ssid}"\nguest_wifi_password = "{password}"'), root)
    settings = load_settings(Layout(root).appliance_config)
    assert (settings.guest_wifi_ssid, settings.guest_wifi_password) == (ssid, password)


def test_a_bad_guest_wifi_password_changes_nothing(root: Path) -> None:
    """Whole or nothing: a refused guest password leaves the shop name of the same file unapplied too."""
    before = _snapshot(root)
    with pytest.raises(ProvisioningError, match="guest_wifi_password"):
        apply(parse_settings('shop_name = "Martin"\nguest_wifi_password = "1234"'), root)
    assert _snapshot(root) == before


@pytest.mark.parametrize("url", ["https://relay.example.org", "https://relay.example.org:8443/eticket",
                                 "http://127.0.0.1:8090", "http://localhost:8090", "http://[::1]:8090"])
def test_good_relay_urls_are_accepted(url: str) -> None:
    """https:// anywhere; plain http:// to a relay on the same machine (``make relay``, tests)."""
    assert parse_settings(f'relay_url = "{url}"').relay_url == url


def test_wpa_psk_matches_the_ieee_802_11i_test_vector() -> None:
    assert wpa_psk("password", "IEEE") == "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"


def test_after_scrubbing_the_same_network_applies_again_without_its_passphrase(root: Path, tmp_path: Path) -> None:
    """This is the second boot: the passphrase is gone from the card, the Wi-Fi must stay as it was."""
    source = tmp_path / "eticket.toml"
    source.write_text(GOOD)
    settings = read_settings(source)
    apply(settings, root)
    assert scrub_secrets(source, settings)
    text = source.read_text()
    assert "croissant-42" not in text and "passphrase" not in text.split("[wifi]")[1].split("#")[0]
    again = read_settings(source)
    assert not again.has_secrets and again.hostname == "caisse-1" and again.ssh_authorized_keys == (KEY,)
    assert apply(again, root) == []
    assert scrub_secrets(source, again) is False


def test_an_ssid_with_quotes_and_backslashes_reaches_wpa_supplicant_unchanged(root: Path, tmp_path: Path) -> None:
    """This is a shop whose network is called 'Chez "Jo" \\ Wi-Fi': the configuration carries those exact
    bytes (hex), one network block, and the next boot (passphrase scrubbed) keeps the same key."""
    ssid, passphrase = 'Chez "Jo" \\ Wi-Fi', 'p"ss\\word'
    source = tmp_path / "eticket.toml"
    source.write_text(f"[wifi]\nssid = {json.dumps(ssid)}\npassphrase = {json.dumps(passphrase)}\ncountry = \"FR\"\n")
    settings = read_settings(source)
    assert settings.wifi is not None and settings.wifi.ssid == ssid
    assert apply(settings, root) == ["wifi"]
    conf = Layout(root).wifi.read_text()
    network = conf.split("network={")[1].split("}")[0].split()
    assert network == [f"ssid={ssid.encode().hex()}", f"psk={wpa_psk(passphrase, ssid)}", "key_mgmt=WPA-PSK"]
    assert conf.count("network={") == 1
    assert scrub_secrets(source, settings)
    again = read_settings(source)
    assert again.wifi is not None and again.wifi.ssid == ssid and not again.has_secrets
    assert apply(again, root) == []


def _wpa_supplicant_reads(conf: Path) -> tuple[list[bytes], str]:
    """The SSIDs (raw bytes) Debian's wpa_supplicant parses from ``conf``, and its log. It stops at once:
    the interface does not exist, so nothing is sent anywhere."""
    binary = shutil.which("wpa_supplicant") or shutil.which("wpa_supplicant", path="/usr/sbin:/sbin")
    require(binary is not None, "wpa_supplicant is missing (Debian package wpasupplicant)")
    assert binary is not None
    log = subprocess.run([binary, "-dd", "-c", str(conf), "-i", "et-no-such-if", "-D", "nl80211"],
                         capture_output=True, text=True, timeout=30).stdout
    ssids: list[bytes] = []
    lines = iter(log.splitlines())
    for line in lines:
        if match := re.fullmatch(r"ssid - hexdump_ascii\(len=(\d+)\):", line.strip()):
            raw = b""
            while len(raw) < int(match[1]):
                raw += bytes.fromhex(next(lines)[:53])  # 16 hex pairs, then the ASCII column
            ssids.append(raw)
    return ssids, log


@pytest.mark.parametrize("ssid", ['Chez "Jo" \\ Wi-Fi', "Café # 2", " Boulangerie ", "Shop"])
def test_wpa_supplicant_reads_the_ssid_exactly(root: Path, ssid: str) -> None:
    """This is wpa_supplicant itself reading the configuration we write: one network, the SSID's exact
    bytes (quotes, backslash, '#', accents, spaces), the derived key and the country."""
    apply(DeviceSettings(wifi=WifiSettings(ssid=ssid, country="FR", passphrase="croissant-42")), root)
    ssids, log = _wpa_supplicant_reads(Layout(root).wifi)
    assert ssids == [ssid.encode()], log
    assert "PSK - hexdump(len=32)" in log and "country='FR'" in log


def test_a_network_applied_by_an_earlier_version_is_kept_without_its_passphrase(root: Path) -> None:
    """This is a device updated from a version that wrote ``ssid="Chez \\"Jo\\""`` (wpa_supplicant reads
    no escapes, so it never joined): the card no longer holds the passphrase, the same network is still
    accepted, its key kept, and its SSID now written as wpa_supplicant reads it."""
    ssid = 'Chez "Jo"'
    psk = wpa_psk("croissant-42", ssid)
    Layout(root).wifi.write_text(f'network={{\n    ssid="Chez \\"Jo\\""\n    psk={psk}\n    key_mgmt=WPA-PSK\n}}\n')
    assert apply(parse_settings('[wifi]\nssid = "Chez \\"Jo\\""\ncountry = "FR"'), root) == ["wifi"]
    conf = Layout(root).wifi.read_text()
    assert f"ssid={ssid.encode().hex()}\n" in conf and f"psk={psk}\n" in conf


def test_a_plain_ssid_stays_readable_in_quotes(root: Path) -> None:
    apply(parse_settings(GOOD), root)
    assert '    ssid="Boulangerie"\n' in Layout(root).wifi.read_text()


def test_a_new_network_without_passphrase_is_refused(root: Path) -> None:
    apply(parse_settings(GOOD), root)
    with pytest.raises(ProvisioningError, match="wifi.passphrase: missing for the new network 'Other'"):
        apply(parse_settings('[wifi]\nssid = "Other"\ncountry = "FR"'), root)


def test_an_uninstalled_time_zone_is_refused(root: Path) -> None:
    with pytest.raises(ProvisioningError, match="timezone: 'Mars/Olympus' is not a known time zone"):
        apply(DeviceSettings(timezone="Mars/Olympus"), root)


def test_seed_writes_defaults_once(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    assert seed(fresh) == ["hostname", "timezone", "locale", "display_rotation", "appliance"]
    assert seed(fresh) == []
    assert Layout(fresh).hostname.read_text() == "eticket\n"


def _provision(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ETICKET, "provision", *args], capture_output=True, text=True, cwd=REPO, timeout=60)


def test_cli_applies_scrubs_and_reports_then_refuses_a_bad_file(root: Path, tmp_path: Path) -> None:
    source, status = tmp_path / "boot" / "eticket.toml", tmp_path / "status.json"
    source.parent.mkdir()
    source.write_text(GOOD)
    first = _provision("apply", "--from", str(source), "--root", str(root), "--status", str(status))
    assert first.returncode == 0, first.stderr
    assert "applied" in first.stderr and "removed the Wi-Fi passphrase" in first.stderr
    assert "croissant-42" not in source.read_text()
    assert json.loads(status.read_text())["ok"] is True
    second = _provision("apply", "--from", str(source), "--root", str(root), "--status", str(status))
    assert second.returncode == 0 and "nothing changed" in second.stderr

    source.write_text('hostname = "caisse-1"\ndisplay_rotation = 45\n')
    bad = _provision("apply", "--from", str(source), "--root", str(root), "--status", str(status))
    assert bad.returncode == 1
    assert f"{source}: display_rotation: must be one of 0, 90, 180, 270" in bad.stderr
    assert "keeps its previous settings" in bad.stderr
    assert json.loads(status.read_text())["ok"] is False
    assert Layout(root).kiosk_env.read_text() == "ETICKET_KIOSK_ARGS=--rotate 90\n"  # untouched


def test_cli_without_a_file_keeps_the_settings(root: Path, tmp_path: Path) -> None:
    result = _provision("apply", "--from", str(tmp_path / "none.toml"), "--root", str(root), "--status",
                        str(tmp_path / "status.json"))
    assert result.returncode == 0 and "keeping the current settings" in result.stderr


USB_STICK_ADD = {"ACTION": "add", "SUBSYSTEM": "block", "DEVTYPE": "partition", "DEVNAME": "/dev/sda1",
                 "ID_BUS": "usb", "ID_FS_TYPE": "vfat", "ID_FS_LABEL": "STICK"}


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (USB_STICK_ADD, "/dev/sda1"),
        ({**USB_STICK_ADD, "ID_FS_TYPE": "exfat"}, "/dev/sda1"),
        ({**USB_STICK_ADD, "ACTION": "remove"}, None),
        ({**USB_STICK_ADD, "ID_BUS": "ata"}, None),  # an internal disk
        ({**USB_STICK_ADD, "ID_FS_TYPE": "crypto_LUKS"}, None),
        ({k: v for k, v in USB_STICK_ADD.items() if k != "ID_FS_TYPE"}, None),  # the whole disk, no fs
        ({**USB_STICK_ADD, "SUBSYSTEM": "usb"}, None),
    ],
)
def test_only_usb_partitions_with_a_file_system_are_read(event: dict[str, str], expected: str | None) -> None:
    assert stick_partition(event) == expected


def _snapshot(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every entry under ``root``: kind, permission bits, content (a link's target)."""
    entries: dict[str, tuple[str, int, bytes]] = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            entries[name] = ("link", 0, os.readlink(path).encode())
        elif path.is_file():
            entries[name] = ("file", path.stat().st_mode & 0o7777, path.read_bytes())
        else:
            entries[name] = ("dir", path.stat().st_mode & 0o7777, b"")
    return entries


OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGXGsGPoHwx7pPFYYX48zLyL8qg4YUHBwxLiFPEHqb/E other@laptop"


@pytest.mark.parametrize(
    ("late", "key"),
    [
        ('[wifi]\nssid = "Other network"\ncountry = "FR"\n', "wifi.passphrase"),  # no passphrase for a new SSID
        ('timezone = "Mars/Olympus"\n', "timezone"),  # not installed
        ('[wifi]\nssid = "Other"\ncountry = "FR"\npassphrase = "long enough"\nchannel = 6\n', "wifi.channel"),
    ],
)
def test_a_file_refused_late_changes_nothing_on_the_device(root: Path, tmp_path: Path, late: str, key: str) -> None:
    """This is an owner who changes the host name, the SSH key and the rotation and makes one mistake at the
    end of the file: the device keeps every previous setting, and the status says the file was refused."""
    source, status = tmp_path / "eticket.toml", tmp_path / "status.json"
    source.write_text(GOOD)
    assert _provision("apply", "--from", str(source), "--root", str(root), "--status", str(status)).returncode == 0
    before = _snapshot(root)
    source.write_text(f'hostname = "caisse-2"\nshop_name = "Chez Paul"\nlocale = "de_DE.UTF-8"\n'
                      f'display_rotation = 180\nrelay_url = "https://relay.example.org"\n'
                      f'ssh_authorized_keys = ["{OTHER_KEY}"]\n{late}')
    bad = _provision("apply", "--from", str(source), "--root", str(root), "--status", str(status))
    assert bad.returncode == 1, bad.stderr
    assert f"{source}: {key}: " in bad.stderr and "NOT applied" in bad.stderr
    assert _snapshot(root) == before
    report = json.loads(status.read_text())
    assert report["ok"] is False and report["message"].startswith(f"{source}: {key}: ")


@pytest.mark.parametrize(
    ("text", "hint"),
    [("a = " + "[" * 10_000 + "]" * 10_000 + "\n", "nested too deeply"),
     ("x = {" * 5000 + "\n", "not valid TOML"),
     ("# " + "x" * (70 * 1024) + "\n", "larger than 64 KiB"),
     (b"hostname = \"caf\xe9\"\n", "not UTF-8")],
)
def test_cli_reports_a_file_it_cannot_read_in_the_status_without_a_traceback(
        root: Path, tmp_path: Path, text: str | bytes, hint: str) -> None:
    """This is a corrupted or wrong file on the stick: one line naming it, the status written for the screen."""
    source, status = tmp_path / "eticket.toml", tmp_path / "status.json"
    if isinstance(text, bytes):
        source.write_bytes(text)
    else:
        source.write_text(text)
    before = _snapshot(root)
    result = _provision("apply", "--from", str(source), "--root", str(root), "--status", str(status))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and f"{source}: " in result.stderr and hint in result.stderr
    report = json.loads(status.read_text())
    assert report["ok"] is False and report["source"] == str(source) and hint in report["message"]
    assert _snapshot(root) == before


def test_a_long_accented_shop_name_from_the_card_starts_the_appliance(root: Path, tmp_path: Path,
                                                                        appliance_factory: Any) -> None:
    """This is the card of a shop with a long French name (63 characters, 70 bytes): provisioning takes it,
    and the appliance started on the configuration it wrote serves, and shows the whole name."""
    name = "La Pâtisserie « Au Pain Doré » près de l'Église Saint-Étienne !"
    assert len(name) == 63 and len(name.encode()) > 63
    source, status = tmp_path / "eticket.toml", tmp_path / "status.json"
    source.write_text(f'shop_name = "{name}"\n')
    result = _provision("apply", "--from", str(source), "--root", str(root), "--status", str(status))
    assert result.returncode == 0, result.stderr
    appliance = appliance_factory("--config", str(Layout(root).appliance_config))
    assert appliance.display()["shop"] == name


def test_a_state_directory_that_cannot_be_written_changes_nothing(root: Path, tmp_path: Path) -> None:
    """This is a damaged data partition (here: where the SSH keys go is a file, not a folder): the apply
    stops before any file is replaced, says so in one line and in the status, and leaves no temporary file."""
    source, status = tmp_path / "eticket.toml", tmp_path / "status.json"
    source.write_text(GOOD)
    Layout(root).authorized_keys.parent.write_text("not a folder")
    before = _snapshot(root)
    result = _provision("apply", "--from", str(source), "--root", str(root), "--status", str(status))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{source}: cannot write the settings under {root}" in result.stderr
    assert f"{Layout(root).authorized_keys}: " in result.stderr  # the file, not only "Not a directory"
    assert _snapshot(root) == before
    assert json.loads(status.read_text())["ok"] is False and "croissant-42" in source.read_text()


def test_a_folder_where_a_file_goes_is_named(root: Path, tmp_path: Path) -> None:
    """A damaged partition where the host name file is a folder: the message names that file (it said only
    "Is a directory"), and nothing changes."""
    source, status = tmp_path / "eticket.toml", tmp_path / "status.json"
    source.write_text(GOOD)
    hostname = Layout(root).hostname
    hostname.unlink()
    hostname.mkdir()
    before = _snapshot(root)
    result = _provision("apply", "--from", str(source), "--root", str(root), "--status", str(status))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{hostname}: Is a directory" in result.stderr
    assert f"{hostname}: Is a directory" in json.loads(status.read_text())["message"]
    assert _snapshot(root) == before


def test_openssh_reads_every_key_line_written(root: Path) -> None:
    """The authorized_keys file is what OpenSSH reads: ``ssh-keygen -l`` lists each key, and only those."""
    apply(parse_settings(f'ssh_authorized_keys = ["{KEY}", "  {OTHER_KEY}  "]'), root)
    keys = Layout(root).authorized_keys
    listed = subprocess.run(["ssh-keygen", "-l", "-f", str(keys)], capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[-2:] for line in listed.stdout.splitlines()] == [["admin@laptop", "(ED25519)"],
                                                                           ["other@laptop", "(ED25519)"]]
    assert keys.read_text() == f"{KEY}\n{OTHER_KEY}\n"


# The fleet owner's CA (update_keyring): what RAUC on the device trusts for update bundles.

def _toml_keyring(pem: str) -> str:
    return f'update_keyring = """\n{pem}"""\n'


def _intermediate_ca(fleet: Any) -> str:
    """A CA certificate issued by ``fleet``'s CA (not self-signed), PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca = x509.load_pem_x509_certificate(fleet.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(fleet.ca_key.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Sub CA")]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _ca_with_garbled_constraints() -> str:
    """A self-signed certificate whose basicConstraints extension holds bytes that are no BasicConstraints
    (DER NULL): it decodes as a certificate, its extension does not."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtensionOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Garbled CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.UnrecognizedExtension(ExtensionOID.BASIC_CONSTRAINTS, b"\x05\x00"), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def fleet_keys(tmp_path: Path) -> Any:
    from fleet.keys import init_keys

    return init_keys(tmp_path / "fleet-keys", name="Boulangeries Martin")


def test_update_keyring_of_one_or_more_cas_is_taken_as_parsed(fleet_keys: Any, tmp_path: Path) -> None:
    from fleet.keys import init_keys

    other = init_keys(tmp_path / "next-ca")
    ours = fleet_keys.keyring.read_text()
    both = "# the current CA, then the next one\n" + ours + "\n" + other.keyring.read_text()
    settings = parse_settings(_toml_keyring(both))
    assert settings.update_keyring == ours + other.keyring.read_text()  # the comment line is not kept
    assert parse_settings(_toml_keyring(ours)).update_keyring == ours


def test_a_bad_update_keyring_is_named_and_refuses_the_whole_file(fleet_keys: Any, tmp_path: Path) -> None:
    """This is a fleet owner pasting the wrong file (or half of it) onto the card: the message names the key and
    what to paste, for each way it can be wrong."""
    from fleet.keys import init_keys

    keyring = fleet_keys.keyring.read_text()
    expired = init_keys(tmp_path / "old", ca_days=30, now=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)).keyring.read_text()
    cases = [
        ("update_keyring = 42\n", "must be a text in quotes"),
        ('update_keyring = "hello"\n', "is not PEM text"),
        (_toml_keyring(fleet_keys.signing_cert.read_text()), "is not a CA certificate (a signing certificate?)"),
        (_toml_keyring(fleet_keys.ca_key.read_text()), "holds a private key: never put a key on the card"),
        (_toml_keyring(keyring + fleet_keys.signing_key.read_text()), "holds a private key"),
        (_toml_keyring(keyring[: len(keyring) // 2]), "does not decode (cut short or altered)"),
        (_toml_keyring(keyring.replace("-----END CERTIFICATE-----\n", "")), "does not decode"),
        (_toml_keyring(keyring + keyring.replace("CERTIFICATE-----\n", "CERTIFICATE-----\nAAAA", 1)),
         "does not decode"),
        (_toml_keyring(expired), "expired on 2020-01-31: make a new fleet CA"),
        (_toml_keyring(_intermediate_ca(fleet_keys)), "is not self-signed"),
        (_toml_keyring("-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"), "holds a PUBLIC KEY"),
        (_toml_keyring(keyring * 17), "at most 16"),
        (_toml_keyring(_ca_with_garbled_constraints()), "has a malformed name or extension"),
    ]
    for text, hint in cases:
        with pytest.raises(ProvisioningError) as caught:
            parse_settings('hostname = "caisse-2"\n' + text, "/boot/firmware/eticket.toml")
        message = str(caught.value)
        assert message.startswith("/boot/firmware/eticket.toml: update_keyring: "), (text, message)
        assert hint in message, (text, message)


def test_update_keyring_reaches_the_device_keyring_once(root: Path, fleet_keys: Any) -> None:
    layout = Layout(root)
    settings = parse_settings(_toml_keyring(fleet_keys.keyring.read_text()))
    assert apply(settings, root) == ["update_keyring"]
    assert layout.keyring.read_text() == fleet_keys.keyring.read_text()
    assert layout.keyring.stat().st_mode & 0o777 == 0o644
    assert layout.keyring_source.read_text() == "eticket.toml\n"
    assert apply(settings, root) == []


def test_a_card_with_a_bad_keyring_leaves_the_device_keyring_and_every_other_setting(
        root: Path, tmp_path: Path, fleet_keys: Any) -> None:
    """This is the whole-or-nothing rule for the keyring: the card's new host name is not applied either, the
    device keeps trusting its CA, and the journal line and the status name the key."""
    source, status = tmp_path / "eticket.toml", tmp_path / "status.json"
    source.write_text(_toml_keyring(fleet_keys.keyring.read_text()) + GOOD)
    assert _provision("apply", "--from", str(source), "--root", str(root), "--status", str(status)).returncode == 0
    before = _snapshot(root)
    source.write_text('hostname = "caisse-9"\n' + _toml_keyring(fleet_keys.signing_cert.read_text()))
    bad = _provision("apply", "--from", str(source), "--root", str(root), "--status", str(status))
    assert bad.returncode == 1 and f"{source}: update_keyring: " in bad.stderr and "NOT applied" in bad.stderr
    assert _snapshot(root) == before
    assert Layout(root).keyring.read_text() == fleet_keys.keyring.read_text()
    assert json.loads(status.read_text())["message"].startswith(f"{source}: update_keyring: ")


def test_the_keyring_stays_on_the_card_after_the_passphrase_is_scrubbed(root: Path, tmp_path: Path,
                                                                       fleet_keys: Any) -> None:
    """The card is rewritten without the Wi-Fi passphrase after the first boot: its keyring must survive it,
    or the next boot would read a card without update_keyring (and a later edit would lose it)."""
    source = tmp_path / "eticket.toml"
    source.write_text(_toml_keyring(fleet_keys.keyring.read_text()) + GOOD)
    settings = read_settings(source)
    apply(settings, root)
    assert scrub_secrets(source, settings)
    again = read_settings(source)
    assert again.update_keyring == fleet_keys.keyring.read_text() and not again.has_secrets
    assert apply(again, root) == []


def test_the_image_keyring_is_seeded_and_followed_until_the_card_sets_one(tmp_path: Path, fleet_keys: Any) -> None:
    """A fresh image trusts the keyring it was built with; an update whose image carries a new keyring brings it
    (the next boot's apply); once the card set the owner's CA, a new image's keyring no longer replaces it."""
    from fleet.keys import init_keys

    device = tmp_path / "device"
    image_keyring = device / "usr/share/eticket/rauc-keyring.pem"
    image_keyring.parent.mkdir(parents=True)
    image_keyring.write_text(fleet_keys.keyring.read_text())
    layout = Layout(device)
    assert "keyring" in seed(device)
    assert layout.keyring.read_text() == fleet_keys.keyring.read_text()
    assert layout.keyring_source.read_text() == "image\n"
    assert apply(DeviceSettings(), device) == []
    new_image = init_keys(tmp_path / "image-2").keyring.read_text()
    image_keyring.write_text(new_image)  # the slot booted after an update
    assert apply(DeviceSettings(), device) == ["keyring"]
    assert layout.keyring.read_text() == new_image
    owner = init_keys(tmp_path / "owner").keyring.read_text()
    assert apply(parse_settings(_toml_keyring(owner)), device) == ["update_keyring"]
    image_keyring.write_text(fleet_keys.keyring.read_text())
    assert apply(DeviceSettings(), device) == []  # a card without the key keeps the owner's CA
    assert layout.keyring.read_text() == owner


def test_rauc_trusts_exactly_the_keyring_provisioning_wrote(root: Path, tmp_path: Path, fleet_keys: Any) -> None:
    """End to end with Debian's RAUC: after the card's update_keyring is applied, a bundle signed by that fleet
    verifies against the device's keyring file and one signed by the image's (other) fleet does not."""
    from fleet.keys import init_keys
    from tests.fleet.raucbundle import device_conf, make_bundle, need_rauc, verify

    need_rauc()
    image_fleet = init_keys(tmp_path / "image-fleet")
    ours = make_bundle(tmp_path, fleet_keys, name="ours")
    theirs = make_bundle(tmp_path, image_fleet, name="theirs")
    apply(parse_settings(_toml_keyring(fleet_keys.keyring.read_text())), root)
    conf = device_conf(tmp_path, Layout(root).keyring)
    accepted = verify(conf, ours)
    assert accepted.returncode == 0, accepted.stderr
    refused = verify(conf, theirs)
    assert refused.returncode != 0 and "signature verification failed" in refused.stderr


def test_a_boot_without_a_card_file_still_takes_the_new_image_keyring(tmp_path: Path, fleet_keys: Any) -> None:
    """This is a device without eticket.toml updated to a release whose image carries a new keyring (a fleet
    changing its CA): the boot's `provision apply` finds no file, keeps every setting, and takes the keyring."""
    from fleet.keys import init_keys

    device = tmp_path / "device"
    image_keyring = device / "usr/share/eticket/rauc-keyring.pem"
    image_keyring.parent.mkdir(parents=True)
    image_keyring.write_text(fleet_keys.keyring.read_text())
    seed(device)
    new = init_keys(tmp_path / "next").keyring.read_text()
    image_keyring.write_text(fleet_keys.keyring.read_text() + new)
    before = _snapshot(Layout(device).state / "eticket")
    result = _provision("apply", "--from", str(tmp_path / "none.toml"), "--root", str(device), "--status",
                        str(tmp_path / "status.json"))
    assert result.returncode == 0 and "keeping the current settings" in result.stderr, result.stderr
    assert Layout(device).keyring.read_text() == fleet_keys.keyring.read_text() + new
    assert json.loads((tmp_path / "status.json").read_text())["changed"] == ["keyring"]
    assert _snapshot(Layout(device).state / "eticket") == before
