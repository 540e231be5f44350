"""A newcomer's path, from a plain clone: the README's commands work as written, against real appliance
processes and the real CLI (``eticket discover | pair | send | clear | screens add``)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import REPO, Appliance, free_port, run_cli

SAMPLE = REPO / "samples" / "receipt.pdf"
README = (REPO / "README.md").read_text()
BANNER = (REPO / "scripts" / "run-banner.sh").read_text()


def _pair(appliance: Appliance, env: dict[str, str]) -> None:
    run_cli("pair", "--code", appliance.pairing_code(), "--address", appliance.api_address, env=env)


def _discover(env: dict[str, str], ports: set[int] | None = None, within: float = 20.0) -> list[dict[str, Any]]:
    """`eticket discover --json`, asked again until devices on every one of ``ports`` answered (a device just
    started may still be probing its name, RFC 6762 §8.1) or ``within`` seconds passed."""
    deadline = time.monotonic() + within
    while True:
        found: list[dict[str, Any]] = json.loads(
            run_cli("discover", "--json", "--timeout", "2", "--mdns-interfaces", "127.0.0.1", env=env).stdout)
        if (ports or set()) <= {d["port"] for d in found} or time.monotonic() > deadline:
            return found


def test_the_committed_sample_receipt_is_what_the_script_makes(tmp_path: Path) -> None:
    """Anyone can rebuild samples/receipt.pdf and get the same bytes (no date, no random document id)."""
    out = tmp_path / "receipt.pdf"
    subprocess.run([sys.executable, str(REPO / "scripts" / "sample-receipt.py"), str(out)], check=True,
                   capture_output=True)
    assert SAMPLE.is_file(), "samples/receipt.pdf is not committed"
    assert out.read_bytes() == SAMPLE.read_bytes(), "samples/receipt.pdf is not scripts/sample-receipt.py's output"
    import pypdfium2 as pdfium

    text = pdfium.PdfDocument(str(SAMPLE))[0].get_textpage().get_text_range()
    assert "TOTAL TTC" in text and "12,50 €" in text and "TVA 5,5 %" in text


def test_the_readme_and_banner_send_a_file_of_this_repository(
    appliance: Appliance, cli_env: dict[str, str]
) -> None:
    """The sample `send` of the README and of the `make run` banner names a file in this clone, and a real
    appliance accepts it (the PDF check passes) and serves the very same bytes to the customer."""
    for text, where in ((README, "README.md"), (BANNER, "scripts/run-banner.sh")):
        sends = re.findall(r"eticket send (\S+)", text)
        assert sends, where
        for path in sends:
            assert (REPO / path).is_file(), f"{where}: 'eticket send {path}' names no file of this repository"
    _pair(appliance, cli_env)
    sent = json.loads(run_cli("send", "samples/receipt.pdf", "--total", "12.50", "--currency", "EUR", "--json",
                              env=cli_env).stdout)
    assert appliance.display()["scene"] == "ticket"
    download = httpx.get(sent["url"])
    assert download.status_code == 200 and download.content == SAMPLE.read_bytes()


def test_screens_add_prints_the_link_and_honours_json(appliance: Appliance, cli_env: dict[str, str]) -> None:
    """A second screen can be claimed from the terminal alone: `screens add` prints the one-time link (the
    same one the device screen shows as a QR), and `--json` gives {id, name, link, expires}."""
    data = str(appliance.data_dir)
    plain = run_cli("screens", "add", "--name", "Tablet", "--data-dir", data, env=cli_env).stdout
    shown = str(appliance.display()["screen_link"]["url"])  # type: ignore[index]
    assert shown in plain.split()

    added = json.loads(run_cli("screens", "add", "--name", "Back office", "--json", "--data-dir", data,
                               env=cli_env).stdout)
    assert set(added) == {"id", "name", "link", "expires"} and added["name"] == "Back office"
    assert added["link"] == appliance.display()["screen_link"]["url"]  # type: ignore[index]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", added["expires"])
    claimed = httpx.post(added["link"], headers={"Accept": "application/json"})
    assert claimed.status_code == 201 and claimed.json()["screen_id"] == added["id"]
    listed = json.loads(run_cli("screens", "list", "--json", "--data-dir", data, env=cli_env).stdout)
    assert [(s["id"], s["name"]) for s in listed] == [(added["id"], "Back office")]


def test_send_lang_and_clear_from_the_command_line(appliance: Appliance, cli_env: dict[str, str]) -> None:
    """The till asks for this customer's language, then takes the receipt off the screen when they leave."""
    unpaired = run_cli("clear", "--address", appliance.api_address, env=cli_env, check=False)
    assert unpaired.returncode == 1 and "not paired" in unpaired.stderr
    _pair(appliance, cli_env)
    run_cli("send", str(SAMPLE), "--total", "12.50", "--currency", "EUR", "--lang", "en", env=cli_env)
    state = appliance.display()
    assert state["scene"] == "ticket" and state["lang"] == "en"
    bad = run_cli("send", str(SAMPLE), "--lang", "xx", env=cli_env, check=False)
    assert bad.returncode == 2 and "--lang" in bad.stderr

    cleared = run_cli("clear", env=cli_env)
    assert "idle" in cleared.stdout
    assert appliance.display()["scene"] == "idle"
    for command, flag in (("send", "--lang"), ("clear", "--device")):
        assert flag in run_cli(command, "--help", env=cli_env).stdout
    assert "clear" in run_cli("--help", env=cli_env).stdout


def test_discover_asks_the_device_whether_this_pos_is_still_paired(
    appliance: Appliance, cli_env: dict[str, str], monkeypatch: Any, tmp_path: Path
) -> None:
    """After the device revokes this till, `discover` says so instead of the local file's "yes"; a device
    this POS cannot reach is neither "yes" nor "revoked", nor is one that shows another certificate."""
    from dataclasses import replace

    from appliance.client import Credentials, DiscoveredDevice
    from appliance.client_cli import _this_pos
    from appliance.identity import load_or_create

    _pair(appliance, cli_env)
    (mine,) = [d for d in _discover(cli_env, {appliance.api_port}) if d["port"] == appliance.api_port]
    assert mine["this_pos"] == "yes"
    (pos,) = appliance.admin("GET", "/pairings").json()
    assert appliance.admin("DELETE", f"/pairings/{pos['id']}").status_code == 204
    table = run_cli("discover", "--timeout", "2", "--mdns-interfaces", "127.0.0.1", env=cli_env).stdout
    (row,) = [line for line in table.splitlines() if f":{appliance.api_port}" in line]
    column = table.splitlines()[0].index("PAIRED WITH THIS POS")
    assert row[column:].startswith("revoked (pair again)"), table

    monkeypatch.setenv("XDG_CONFIG_HOME", cli_env["XDG_CONFIG_HOME"])
    held = Credentials().load()
    closed = DiscoveredDevice(id=mine["id"], name="x", instance="x", addresses=["127.0.0.1"], port=free_port(),
                              paired=True, version="1", path="/api/v1", tls=True, fingerprint="")
    assert _this_pos(closed, held) == "unknown"
    assert _this_pos(closed, {}) == "no"
    there = replace(closed, port=appliance.api_port)
    assert _this_pos(there, held) == "revoked"
    impostor = load_or_create(tmp_path / "other", mine["id"]).cert_pem
    assert _this_pos(there, {mine["id"]: replace(held[mine["id"]], cert_pem=impostor)}) == "certificate-changed"


def test_fresh_devices_have_distinguishable_names(appliance_factory: Any, cli_env: dict[str, str]) -> None:
    """Two unconfigured devices on one LAN: each is "eTicket" plus the start of its id, on its screen, on its
    web page and in `eticket discover`."""
    first, second = appliance_factory(), appliance_factory()
    names = {}
    for app in (first, second):
        device_id = httpx.get(app.url + "/healthz").json()["device_id"]
        shop = str(app.display()["shop"])
        assert shop == f"eTicket {device_id[3:7].upper()}"
        page = httpx.get(app.url + "/screen", params={"key": app.screen_token()})
        assert f"<title>{shop}</title>" in page.text
        names[app.api_port] = shop
    assert names[first.api_port] != names[second.api_port]
    found = {d["port"]: d["name"] for d in _discover(cli_env, set(names))}
    assert {port: found.get(port) for port in names} == names, found


def test_a_set_name_stays_and_uvicorn_start_and_stop_lines_appear_once(appliance_factory: Any) -> None:
    """A device given a name keeps exactly that name, even the default word. `eticket serve` runs three
    listeners (POS API, downloads, admin socket); the log says it started and stopped once, not three times."""
    app = appliance_factory("--name", "eTicket")
    assert app.display()["shop"] == "eTicket"
    app.stop()
    log = app.logs()
    for line in ("Started server process", "Shutting down", "Finished server process"):
        assert log.count(line) == 1, (line, log[-3000:])


def test_a_till_paired_with_two_devices_chooses_one_by_the_name_its_screen_shows(
        appliance_factory: Any, cli_env: dict[str, str]) -> None:
    """A till paired (by typed code) with two fresh devices: a plain `send` says which names it could mean, and
    `--device 'eTicket 3F9A'` (the name on that device's screen) sends there."""
    first, second = appliance_factory(), appliance_factory()
    for app in (first, second):
        run_cli("pair", "--code", app.pairing_code(), "--address", f"127.0.0.1:{app.api_port}",
                "--pos-name", "Till 1", env=cli_env)
    pdf = str(SAMPLE)
    ambiguous = run_cli("send", pdf, "--total", "12.50", "--currency", "EUR", env=cli_env, check=False)
    names = [str(app.display()["shop"]) for app in (first, second)]
    assert ambiguous.returncode != 0
    assert all(repr(name) in ambiguous.stderr for name in names), ambiguous.stderr
    run_cli("send", pdf, "--total", "12.50", "--currency", "EUR", "--device", names[1].lower(), env=cli_env)
    assert second.display()["scene"] == "ticket" and first.display()["scene"] != "ticket"


def test_ctrl_c_stops_the_appliance_and_its_kiosk_without_a_crash_warning(appliance_factory: Any) -> None:
    """`make run` then Ctrl-C: the terminal sends SIGINT to the appliance and its kiosk child alike; the log
    says nothing of a kiosk that "exited … restarting" (that line is for a real crash)."""
    app = appliance_factory("--kiosk")
    deadline = time.monotonic() + 20
    while not (app.data_dir / "screen.png").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    kiosks = [int(pid) for task in Path(f"/proc/{app.proc.pid}/task").iterdir()  # started by a thread
              for pid in (task / "children").read_text().split()]
    assert kiosks, "no kiosk child"
    for pid in [app.proc.pid, *kiosks]:
        os.kill(pid, signal.SIGINT)
    app.proc.wait(20)
    assert "kiosk exited" not in app.logs(), app.logs()[-2000:]


def test_the_sample_print_job_is_what_the_script_makes_and_prints_as_the_readme_says(
        appliance: Appliance, tmp_path: Path) -> None:
    """samples/receipt.escpos is scripts/sample-receipt.py's output, and the README's and banner's TakePOS
    line (the connector, a fresh device whose pairing is open) puts that receipt on the screen with its total."""
    import base64

    out = tmp_path / "receipt.escpos"
    subprocess.run([sys.executable, str(REPO / "scripts" / "sample-receipt.py"), str(out)], check=True,
                   capture_output=True)
    job = REPO / "samples" / "receipt.escpos"
    assert job.is_file() and out.read_bytes() == job.read_bytes()
    for text, where in ((README, "README.md"), (BANNER, "scripts/run-banner.sh")):
        named = re.findall(r"base64 -w0 (\S+?)\)", text)
        assert named, where
        for path in named:
            assert (REPO / path).is_file(), f"{where}: the TakePOS example prints {path}, not a file of this clone"
    printed = httpx.post(appliance.url + "/printer/index.php",
                         data={"invoice": base64.b64encode(job.read_bytes()).decode()})
    assert printed.status_code == 200, printed.text
    assert printed.json()["total"] == "12.50"
    state = appliance.display()
    assert state["scene"] == "ticket" and state["ticket"]["total"] == "12.50"  # type: ignore[index]
