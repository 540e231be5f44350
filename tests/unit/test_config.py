"""Settings come from flags, environment and TOML, in that order; a wrong key is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import ConfigError, load_settings, split_host_port


def test_priority_flags_over_environment_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "eticket.toml"
    toml.write_text('name = "From file"\nlisten = "0.0.0.0:9000"\nretention_seconds = 60\n')
    monkeypatch.setenv("ETICKET_LISTEN", "127.0.0.1:9001")
    s = load_settings(toml, name="From flag")
    assert (s.name, s.listen, s.retention_seconds) == ("From flag", "127.0.0.1:9001", 60)
    assert s.max_body_bytes == 10 * 1024 * 1024 and s.display_timeout_seconds == 120


def test_defaults_are_the_embedded_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("ETICKET_CONFIG", raising=False)
    s = load_settings()
    assert s.listen == "127.0.0.1:8080" and s.listens_on_loopback and s.retention_seconds == 30 * 86400


@pytest.mark.parametrize(
    "text, key",
    [('colour = "red"\n', "colour"), ('listen = "nowhere:99999"\n', "listen"),
     ("max_body_bytes = -1\n", "max_body_bytes"),
     ('public_url = "ftp://x"\n', "public_url"), ("name = [\n", "Cannot read"),
     ('name = "Chez Paul\\n"\n', "name: .*visible characters"), ('name = "Chez\\u0007Paul"\n', "name"),
     ('name = "Chez \\u202ePaul"\n', "name"), ('name = "  "\n', "name: .*blank"),
     (f'name = "{"é" * 64}"\n', "name"), ('relay_url = "https://relay.example.org\\n"\n', "relay_url"),
     ('public_url = "http://10.0.0.2:8080 /"\n', "public_url"),
     # Guest Wi-Fi: what no phone could join was accepted and shown as a join QR.
     ('guest_wifi_password = "short"\n', "guest_wifi_password: .*8 to 63"),
     (f'guest_wifi_password = "{"x" * 64}"\n', "guest_wifi_password"),
     ('guest_wifi_password = "croissant\u00e9"\n', "guest_wifi_password: .*8 to 63"),
     (f'guest_wifi_ssid = "{"é" * 17}"\n', "guest_wifi_ssid: .*32 bytes"),
     ('guest_wifi_ssid = "Invités\\n"\n', "guest_wifi_ssid: .*visible"),
     ("pdf_workers = 0\n", "pdf_workers"), ("pdf_workers = 64\n", "pdf_workers")],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    toml = tmp_path / "eticket.toml"
    toml.write_text(text)
    with pytest.raises(ConfigError, match=key):
        load_settings(toml)


def test_guest_wifi_limits_are_those_of_a_real_network(tmp_path: Path) -> None:
    """32 bytes of SSID, 63 characters of passphrase and an empty one (open network) are accepted."""
    toml = tmp_path / "eticket.toml"
    toml.write_text(f'guest_wifi_ssid = "{"é" * 16}"\nguest_wifi_password = "{"x" * 63}"\n')
    assert load_settings(toml).guest_wifi_ssid == "é" * 16
    toml.write_text('guest_wifi_ssid = "Invités"\nguest_wifi_password = ""\n')
    assert load_settings(toml).guest_wifi_password == ""


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    "text, expected",
    [("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::1]:9", ("::1", 9)), ("host", ("host", 8080))],
)
def test_split_host_port(text: str, expected: tuple[str, int]) -> None:
    assert split_host_port(text) == expected


def test_serve_with_a_bad_config_says_which_key_and_exits(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    toml = tmp_path / "eticket.toml"
    toml.write_text('listen = "127.0.0.1:0:1"\n')
    result = run_cli("serve", "--config", str(toml), "--data-dir", str(tmp_path / "d"), env={"PATH": "/usr/bin"},
                     check=False, timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith("eticket: error:") and "listen" in result.stderr


def test_a_long_accented_name_is_accepted(tmp_path: Path) -> None:
    """63 characters are allowed whatever their UTF-8 length; the DNS-SD instance name is cut, not refused."""
    toml = tmp_path / "eticket.toml"
    name = "Boulangerie-Pâtisserie « Au Pain Doré » de l'Église Saint-Éloi"
    toml.write_text(f'name = "{name}"\n')
    assert len(name.encode()) > 63 and load_settings(toml).name == name


def test_serve_with_a_control_character_in_the_name_says_so_and_exits(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    result = run_cli("serve", "--name", "Chez Paul\nX", "--data-dir", str(tmp_path / "d"), "--mdns-interfaces",
                     "none", env={"PATH": "/usr/bin"}, check=False, timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith("eticket: error:") and "name: " in result.stderr
    assert "visible characters" in result.stderr and "Traceback" not in result.stderr
