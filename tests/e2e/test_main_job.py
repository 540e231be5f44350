"""The main job end to end, real processes only: a POS sends a real receipt PDF, the screen shows its QR,
a phone downloads the same bytes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Appliance, decode_qr_png, require, run_cli, samples

GOOD_PDFS = samples("pdf")


def test_discover_pair_send_every_sample_and_download_it_from_the_screen_qr(
    appliance: Appliance, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """A shop owner plugs the device in; the integrator's POS finds it, pairs from the screen's QR, and for
    every real receipt the customer scans the screen and gets the very bytes the POS sent."""
    require(bool(GOOD_PDFS), "../shared/samples/pdf is missing")

    found = json.loads(run_cli("discover", "--json", "--timeout", "3", "--mdns-interfaces", "127.0.0.1",
                               env=cli_env).stdout)
    mine = [d for d in found if d["port"] == appliance.api_port]
    assert len(mine) == 1, found
    assert mine[0]["paired"] is False and mine[0]["addresses"] == ["127.0.0.1"]
    device_id = mine[0]["id"]

    screen = tmp_path / "pairing.png"
    run_cli("kiosk", "--data-dir", str(appliance.data_dir), "--size", "800x480", "--snapshot", str(screen),
            env=cli_env)
    (uri,) = decode_qr_png(screen)
    assert uri.startswith("eticket://pair?") and device_id in uri
    run_cli("pair", "--uri", uri, env=cli_env)

    # The device re-announces its TXT record with paired=1 (RFC 6762 §8.4); a browser that caught the
    # earlier announcement may still hold it for a moment, so look again for a few seconds.
    deadline, paired = time.monotonic() + 10, [False]
    while paired != [True] and time.monotonic() < deadline:
        found = json.loads(run_cli("discover", "--json", "--timeout", "2", "--mdns-interfaces", "127.0.0.1",
                                   env=cli_env).stdout)
        paired = [d["paired"] for d in found if d["id"] == device_id]
    assert paired == [True]

    for index, pdf in enumerate(GOOD_PDFS):
        sent = json.loads(run_cli("send", str(pdf), "--total", f"{index + 1}.50", "--currency", "EUR",
                                  "--ref", f"R-{index}", "--json", env=cli_env).stdout)
        shot = tmp_path / f"ticket-{index}.png"
        size = "1920x1080" if index % 2 else "800x480"
        run_cli("kiosk", "--data-dir", str(appliance.data_dir), "--size", size, "--snapshot", str(shot), env=cli_env)
        (url,) = decode_qr_png(shot)
        assert url == sent["url"], pdf.name
        phone = httpx.get(url)
        assert phone.status_code == 200, pdf.name
        assert phone.content == pdf.read_bytes(), f"{pdf.name} not byte-identical"
        assert phone.headers["content-type"] == "application/pdf"
        assert phone.headers["content-disposition"].startswith("inline; filename=\"receipt-")
        assert "set-cookie" not in phone.headers


def test_send_errors_are_one_line_and_nonzero(appliance: Appliance, cli_env: dict[str, str], tmp_path: Path) -> None:
    """An integrator who forgot to pair, or sends a broken file, gets one clear line and a failing status."""
    pdf = GOOD_PDFS[0] if GOOD_PDFS else pytest.skip("no samples")
    unpaired = run_cli("send", str(pdf), "--address", appliance.api_address, env=cli_env, check=False)
    assert unpaired.returncode != 0
    assert unpaired.stderr.count("\n") == 1 and "not paired" in unpaired.stderr

    run_cli("pair", "--code", appliance.pairing_code().lower(), "--address", appliance.api_address, env=cli_env)
    bad = SAMPLES_BAD[0]
    refused = run_cli("send", str(bad), env=cli_env, check=False)
    assert refused.returncode != 0 and refused.stderr.count("\n") == 1 and "422" in refused.stderr

    missing = run_cli("send", str(tmp_path / "nope.pdf"), env=cli_env, check=False)
    assert missing.returncode != 0 and "cannot read" in missing.stderr

    nobody = run_cli("pair", "--code", "ABCD-EFGH", "--device", "et-0000000000000000", "--timeout", "1",
                     "--mdns-interfaces", "127.0.0.1", env=cli_env, check=False)
    assert nobody.returncode != 0 and "et-0000000000000000 not found" in nobody.stderr


SAMPLES_BAD = samples("pdf-bad")


def test_a_changed_device_certificate_is_a_clear_error_never_silent_trust(
    appliance: Appliance, cli_env: dict[str, str]
) -> None:
    """The device is replaced (or impersonated) at the same address: `send` refuses and names the reason."""
    import shutil

    run_cli("pair", "--uri", appliance.pairing_uri(), env=cli_env)
    assert run_cli("send", str(GOOD_PDFS[0]), env=cli_env).returncode == 0
    appliance.stop()
    shutil.rmtree(appliance.data_dir / "tls")  # a new key and certificate on the next start
    appliance.start()
    refused = run_cli("send", str(GOOD_PDFS[0]), "--address", appliance.api_address, env=cli_env, check=False)
    assert refused.returncode != 0 and "different certificate" in refused.stderr, refused.stderr
