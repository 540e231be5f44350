"""An attacker on the shop LAN, in its own namespace, relays the POS's traffic with its own certificate.
Both pairing paths must fail without the POS learning anything usable or the attacker getting a token."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest

from appliance.pairing import parse_pairing_uri
from tests.conftest import decode_qr_png, samples
from tests.network.netns import REPO, Host, Lan, screen_state, start_device

RELAY = str(REPO / "tests" / "network" / "relay.py")


def _setup(lan: Lan, tmp_path: Path) -> tuple[Host, Host, Host, Path, Path]:
    device, pos, attacker = lan.add_host("dev", 2), lan.add_host("pos", 3), lan.add_host("atk", 66)
    data = tmp_path / "device"
    start_device(device, data)
    capture = tmp_path / "relay-capture.bin"
    attacker.spawn(sys.executable, RELAY, "8443", device.address, "8443", str(capture), log=tmp_path / "relay.log")
    deadline = time.monotonic() + 10
    while attacker.run("sh", "-c", "ss -ltn | grep -q :8443").returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    return device, pos, attacker, data, capture


def _pairings(device: Host, data: Path) -> list[dict[str, object]]:
    result = device.eticket("pairings", "list", "--json", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


def test_qr_pairing_through_a_relay_fails_before_anything_is_sent(lan: Lan, tmp_path: Path,
                                                                  pos_env: dict[str, str]) -> None:
    device, pos, attacker, data, capture = _setup(lan, tmp_path)
    shot = tmp_path / "screen.png"
    device.eticket("kiosk", "--data-dir", str(data), "--snapshot", str(shot))
    (uri,) = decode_qr_png(shot)
    secret = parse_pairing_uri(uri)["s"]
    # The attacker has diverted the device's address to itself (ARP spoofing, a rogue DHCP, ...).
    diverted = uri.replace(f"addr={device.address}%3A8443", f"addr={attacker.address}%3A8443")
    result = pos.eticket("pair", "--uri", diverted, env=pos_env)
    assert result.returncode != 0 and "not the one in the QR" in result.stderr
    assert not (Path(pos_env["XDG_CONFIG_HOME"]) / "eticket" / "devices.json").exists()
    seen = capture.read_bytes() if capture.exists() else b""
    assert secret.encode() not in seen and b"/api/v1/pair" not in seen  # nothing but the handshake
    assert _pairings(device, data) == []
    # The real QR still works afterwards: the secret was never spent.
    assert pos.eticket("pair", "--uri", uri, env=pos_env).returncode == 0


def test_code_pairing_through_a_relay_fails_and_leaks_nothing(lan: Lan, tmp_path: Path,
                                                              pos_env: dict[str, str]) -> None:
    device, pos, attacker, data, capture = _setup(lan, tmp_path)
    code = str(screen_state(device, data)["pairing"]["code"])  # type: ignore[index]
    result = pos.eticket("pair", "--code", code, "--address", f"{attacker.address}:8443", env=pos_env)
    assert result.returncode != 0 and "403" in result.stderr, result.stderr
    assert not (Path(pos_env["XDG_CONFIG_HOME"]) / "eticket" / "devices.json").exists()
    assert _pairings(device, data) == []
    seen = capture.read_bytes()
    assert b"/api/v1/pair/spake2" in seen  # the relay did carry the exchange...
    for secret in (code, code.replace("-", ""), code.lower()):
        assert secret.encode() not in seen  # ...but never the code
    assert b'"token"' not in seen and b'"sealed"' not in seen  # and no token, not even sealed


def test_five_relayed_attempts_lock_pairing_and_a_fresh_code_appears(lan: Lan, tmp_path: Path,
                                                                     pos_env: dict[str, str]) -> None:
    device, pos, attacker, data, _ = _setup(lan, tmp_path)
    first = str(screen_state(device, data)["pairing"]["code"])  # type: ignore[index]
    for _ in range(5):
        pos.eticket("pair", "--code", "ZZZZ-ZZZZ", "--address", f"{attacker.address}:8443", env=pos_env)
    state = screen_state(device, data)["pairing"]
    assert state["locked_until"] and state["code"] != first  # type: ignore[index]
    locked = pos.eticket("pair", "--code", str(state["code"]), "--address", f"{device.address}:8443",  # type: ignore[index]
                         env=pos_env)
    assert locked.returncode != 0 and "429" in locked.stderr


def test_display_stream_refuses_unpaired_readers_and_pos_tokens(lan: Lan, tmp_path: Path,
                                                                 pos_env: dict[str, str]) -> None:
    device, pos, attacker, data, _ = _setup(lan, tmp_path)
    code = str(screen_state(device, data)["pairing"]["code"])  # type: ignore[index]
    assert pos.eticket("pair", "--code", code, "--address", f"{device.address}:8443", env=pos_env).returncode == 0
    token = next(iter(json.loads((Path(pos_env["XDG_CONFIG_HOME"]) / "eticket" / "devices.json").read_text())
                      ["devices"].values()))["token"]
    stream = f"http://{device.address}:8080/api/v1/display/stream"
    assert attacker.http("GET", stream).status_code == 401
    assert attacker.http("GET", stream, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert attacker.http("GET", f"http://{device.address}:8080/api/v1/display").status_code == 401


def test_no_secret_in_any_log_of_a_full_run(lan: Lan, tmp_path: Path, pos_env: dict[str, str]) -> None:
    """Pair by code and by QR, send, download, revoke: then grep the device's and kiosk's logs for secrets."""
    device, pos, attacker, data, _ = _setup(lan, tmp_path)
    kiosk_log = tmp_path / "kiosk.log"
    device.spawn(sys.executable, "-m", "appliance.cli", "kiosk", "--data-dir", str(data), "--log-level", "debug",
                 log=kiosk_log)
    secrets_seen: list[str] = []
    state = screen_state(device, data)["pairing"]
    code, uri = str(state["code"]), str(state["uri"])  # type: ignore[index]
    secrets_seen += [code, code.replace("-", ""), parse_pairing_uri(uri)["s"]]
    assert pos.eticket("pair", "--uri", uri, env=pos_env).returncode == 0
    assert device.eticket("pairings", "open", "--data-dir", str(data)).returncode == 0
    state = screen_state(device, data)["pairing"]
    code2 = str(state["code"])  # type: ignore[index]
    secrets_seen += [code2, code2.replace("-", ""), parse_pairing_uri(str(state["uri"]))["s"]]  # type: ignore[index]
    other_env = {**pos_env, "XDG_CONFIG_HOME": pos_env["XDG_CONFIG_HOME"] + "-2"}
    assert pos.eticket("pair", "--code", code2, "--address", f"{device.address}:8443", env=other_env).returncode == 0
    for env in (pos_env, other_env):
        creds = json.loads((Path(env["XDG_CONFIG_HOME"]) / "eticket" / "devices.json").read_text())
        secrets_seen += [d["token"] for d in creds["devices"].values()]
    sent = pos.eticket("send", str(samples("pdf")[0]), "--json", env=pos_env)
    url = json.loads(sent.stdout)["url"]
    secrets_seen.append(url.rsplit("/", 1)[1])
    assert attacker.http("GET", url).status_code == 200
    attacker.http("GET", url.replace("/r/", "//r/"))
    secrets_seen.append(json.loads((data / "kiosk.json").read_text())["token"])
    rows = _pairings(device, data)
    assert device.eticket("pairings", "revoke", str(rows[0]["id"]), "--data-dir", str(data)).returncode == 0
    time.sleep(1.0)
    logs = (tmp_path / "dev.log").read_text() + kiosk_log.read_text()
    assert "ticket t-" in logs and "paired POS" in logs  # the logs are real and cover the run
    for secret in secrets_seen:
        assert len(secret) >= 8
        assert secret not in logs, "a secret reached the logs"
    assert not re.search(r"/r/[A-Za-z0-9_-]{20,}", logs)


@pytest.fixture(autouse=True)
def _no_http_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)

