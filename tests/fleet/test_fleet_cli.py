"""``eticket fleet`` as an operator types it: keys init (wired to fleet.keys), and bad input refused with one
line naming the fault before anything is sent to a device."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cryptography import x509

from tests.conftest import REPO


def eticket(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})


def test_keys_init_makes_a_fleet_ca_and_signing_certificate_once(tmp_path: Path) -> None:
    keys = tmp_path / "fleet-keys"
    done = eticket("fleet", "keys", "init", str(keys), "--ca-days", "3650", "--signing-days", "400",
                   "--name", "Boulangeries Martin", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(keys / n) for n in ("ca.crt", "ca.key", "signing.crt", "signing.key",
                                                           "keyring.pem")]
    assert "offline" in done.stderr
    first_ca = (keys / "ca.crt").read_bytes()
    ca = x509.load_pem_x509_certificate(first_ca)
    leaf = x509.load_pem_x509_certificate((keys / "signing.crt").read_bytes())
    assert "Boulangeries Martin" in ca.subject.rfc4514_string()
    assert abs((ca.not_valid_after_utc - ca.not_valid_before_utc).days - 3650) <= 1
    assert abs((leaf.not_valid_after_utc - leaf.not_valid_before_utc).days - 400) <= 1
    assert (keys / "keyring.pem").read_bytes() == (keys / "ca.crt").read_bytes()
    again = eticket("fleet", "keys", "init", str(keys), cwd=tmp_path)
    assert again.returncode == 2 and "ca.crt: already exists" in again.stderr
    assert (keys / "ca.crt").read_bytes() == first_ca  # nothing replaced


def test_bad_input_is_refused_naming_the_fault(tmp_path: Path) -> None:
    bundle = tmp_path / "eticket-arm64-2.0.0.raucb"
    bundle.write_bytes(b"not really a bundle")
    (tmp_path / "fleet.toml").write_text('[[device]]\nname = "paris-01"\nhost = "10.0.0.12"\n')
    no_key = eticket("fleet", "deploy", str(bundle), cwd=tmp_path)
    assert no_key.returncode == 2
    assert no_key.stderr.startswith("eticket: error: fleet.toml: device 'paris-01': missing key 'host_key'")
    waves = eticket("fleet", "deploy", str(bundle), "--waves", "1,0", cwd=tmp_path)
    assert waves.returncode == 2 and "--waves: '0'" in waves.stderr
    missing = eticket("fleet", "status", "--inventory", "nowhere.toml", cwd=tmp_path)
    assert missing.returncode == 2 and "nowhere.toml: cannot read the inventory" in missing.stderr
