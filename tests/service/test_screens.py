"""Extra screens pair with a one-time link shown on the device screen; their tokens open the stream."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import Appliance, decode_qr_png, run_cli


def test_a_second_screen_pairs_by_the_link_on_screen_and_can_be_revoked(
    appliance: Appliance, cli_env: dict[str, str], tmp_path: Path
) -> None:
    added = run_cli("screens", "add", "--name", "Tablet", "--data-dir", str(appliance.data_dir), env=cli_env)
    assert "one-time link" in added.stdout
    shot = tmp_path / "link.png"
    run_cli("kiosk", "--data-dir", str(appliance.data_dir), "--snapshot", str(shot), env=cli_env)
    (link,) = decode_qr_png(shot)
    assert link.startswith(appliance.url + "/screen/claim/")

    page = httpx.get(link)  # opening (or previewing) the link spends nothing
    assert page.status_code == 200 and "<form" in page.text and "<script" not in page.text
    other = tmp_path / "second-screen"
    claimed = run_cli("kiosk", "--claim", link, "--data-dir", str(other), "--snapshot", str(tmp_path / "s.png"),
                      env=cli_env)
    assert "paired" in claimed.stdout
    assert (other / "kiosk.json").stat().st_mode & 0o777 == 0o600
    token = json.loads((other / "kiosk.json").read_text())["token"]
    stream = httpx.get(appliance.url + "/api/v1/display", headers={"Authorization": f"Bearer {token}"})
    assert stream.status_code == 200 and stream.json()["scene"] == "pairing"  # back from the link scene

    again = httpx.post(link, headers={"Accept": "application/json"})
    assert again.status_code == 403  # single use

    (screen,) = json.loads(run_cli("screens", "list", "--json", "--data-dir", str(appliance.data_dir),
                                   env=cli_env).stdout)
    assert screen["name"] == "Tablet"
    run_cli("screens", "revoke", screen["id"], "--data-dir", str(appliance.data_dir), env=cli_env)
    refused = httpx.get(appliance.url + "/api/v1/display", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401


def test_screen_links_cannot_be_guessed(appliance: Appliance) -> None:
    r = httpx.post(appliance.url + "/screen/claim/" + "A" * 22, headers={"Accept": "application/json"})
    assert r.status_code == 403 and r.json()["type"].endswith("/pairing-refused")
    page = httpx.post(appliance.url + "/screen/claim/x")
    assert page.status_code == 403 and "not valid" in page.text
