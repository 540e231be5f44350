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


HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def test_mistakes_on_the_operators_side_are_usage_errors_before_any_device_is_tried(tmp_path: Path) -> None:
    """What a careless operator types: a file that is no bundle although named like one, a report path that
    cannot be written, a port inside host, a login name with a control character, an identity that is no file.
    Each is exit 2 with one line naming the fault, before any connection (the devices are not even there)."""
    junk = tmp_path / "eticket-arm64-1.2.3.raucb"
    junk.write_bytes(b"\x00bundle" * 200)
    device = f'[[device]]\nname = "paris-01"\nhost = "192.0.2.1"\nhost_key = "{HOST_KEY}"\n'
    (tmp_path / "fleet.toml").write_text(device)
    (tmp_path / "real.raucb").write_bytes(b"")
    cases = [
        (("deploy", str(junk)), "not a RAUC bundle"),
        (("deploy", str(tmp_path)), "not a bundle file (a directory)"),
        (("deploy", str(junk), "--version", "1.2.3", "--json-report", str(tmp_path / "no" / "r.json")),
         "no directory"),
        (("rollback", "--all", "--json-report", str(tmp_path)), "is a directory, not a file"),
        (("status", "--parallel", "0"), "--parallel must be at least 1"),
        (("deploy", str(junk), "--version", "1.2.3", "--reboot-timeout", "nan"), "--reboot-timeout must be"),
        (("deploy", str(junk), "--waves", "9" * 5000), "neither a count"),
    ]
    for args, fault in cases:
        done = eticket("fleet", *args, cwd=tmp_path)
        assert done.returncode == 2 and fault in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
    inventories = [
        (device.replace('"192.0.2.1"', '"192.0.2.1:2222"'), "is not an IP address or a DNS name"),
        (device + 'user = "ro\\u0000ot"\n', "is not a login name"),
        (device.replace('name = "paris-01"', 'name = "a\\u001b[31m"'), "printable characters"),
        (device + 'identity = "keys/none"\n', "identity"),
    ]
    for text, fault in inventories:
        (tmp_path / "fleet.toml").write_text(text)
        done = eticket("fleet", "status", cwd=tmp_path)
        assert done.returncode == 2 and fault in done.stderr and "Traceback" not in done.stderr, (text, done.stderr)
