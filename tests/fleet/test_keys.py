"""A fleet's keys (fleet/keys.py) as the real RAUC 1.8 of Debian sees them: a bundle signed with the fleet's
leaf is accepted by a device trusting the fleet's keyring, another fleet's is refused, a device whose clock is
years behind (a Pi without a real-time clock) still accepts a new bundle, and rotation keeps devices working."""

from __future__ import annotations

import configparser
import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from fleet.keys import KeysError, init_keys, rotate_signing
from tests.conftest import REPO
from tests.fleet.raucbundle import COMPATIBLE, device_conf, make_bundle, need_rauc, verify


def test_init_makes_a_ca_and_a_code_signing_leaf_with_private_keys_owner_only(tmp_path: Path) -> None:
    keys = init_keys(tmp_path / "fleet-keys", name="Boulangeries Martin")
    assert [p.name for p in keys.files()] == ["ca.crt", "ca.key", "signing.crt", "signing.key", "keyring.pem"]
    assert keys.ca_key.stat().st_mode & 0o777 == 0o600 and keys.signing_key.stat().st_mode & 0o777 == 0o600
    assert keys.directory.stat().st_mode & 0o777 == 0o700
    ca = x509.load_pem_x509_certificate(keys.ca_cert.read_bytes())
    leaf = x509.load_pem_x509_certificate(keys.signing_cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is True
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature is True
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CODE_SIGNING]
    leaf.verify_directly_issued_by(ca)
    assert keys.keyring.read_bytes() == keys.ca_cert.read_bytes()
    lifetime = (ca.not_valid_after_utc - ca.not_valid_before_utc).days, (
        leaf.not_valid_after_utc - leaf.not_valid_before_utc).days
    assert lifetime[0] >= 30 * 365 and 5 * 365 <= lifetime[1] < lifetime[0]
    assert "Boulangeries Martin" in ca.subject.rfc4514_string()


def test_init_refuses_to_replace_an_existing_fleet(tmp_path: Path) -> None:
    """This is an operator who runs `keys init` twice: the first CA (which the devices trust) stays."""
    keys = init_keys(tmp_path / "k")
    before = {path: path.read_bytes() for path in keys.files()}
    with pytest.raises(KeysError, match=r"ca\.crt: already exists"):
        init_keys(tmp_path / "k")
    keys.ca_cert.unlink()  # even a partial set is not completed over
    with pytest.raises(KeysError, match=r"ca\.key: already exists"):
        init_keys(tmp_path / "k")
    assert {path: path.read_bytes() for path in keys.files() if path.exists()} == {
        p: b for p, b in before.items() if p != keys.ca_cert}


@pytest.mark.parametrize(("kwargs", "fault"), [({"name": ""}, "name"), ({"ca_days": 0}, "ca_days"),
                                               ({"signing_days": -1}, "signing_days"),
                                               ({"name": "x\ny"}, "name")])
def test_bad_arguments_are_named(tmp_path: Path, kwargs: dict[str, object], fault: str) -> None:
    with pytest.raises(KeysError, match=f"^{fault}: "):
        init_keys(tmp_path / "k", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "k").exists()


def test_a_bundle_signed_with_the_fleet_leaf_is_accepted_and_another_fleet_s_refused(tmp_path: Path) -> None:
    """This is the device checking a bundle before writing a byte: ours passes, a foreign fleet's does not."""
    need_rauc()
    ours, theirs = init_keys(tmp_path / "ours"), init_keys(tmp_path / "theirs")
    bundle = make_bundle(tmp_path, ours)
    accepted = verify(device_conf(tmp_path, ours.keyring), bundle)
    assert accepted.returncode == 0, accepted.stderr
    assert "Compatible:" in accepted.stdout and COMPATIBLE in accepted.stdout
    refused = verify(device_conf(tmp_path, theirs.keyring), bundle)
    assert refused.returncode != 0 and "signature verification failed" in refused.stderr, refused.stderr
    foreign = make_bundle(tmp_path, theirs, name="foreign")
    refused = verify(device_conf(tmp_path, ours.keyring), foreign)
    assert refused.returncode != 0 and "unable to get local issuer certificate" in refused.stderr, refused.stderr


def test_a_device_whose_clock_is_years_behind_still_accepts_a_new_bundle(tmp_path: Path) -> None:
    """This is a Pi without a real-time clock and no network time yet (its clock says 2021): the leaf was made
    today, so by the device's clock it is "not yet valid". With use-bundle-signing-time RAUC checks the chain
    at the bundle's signing time and accepts; the same device without that option refuses (which also proves
    the fake clock reached RAUC's OpenSSL)."""
    need_rauc()
    keys = init_keys(tmp_path / "k")
    bundle = make_bundle(tmp_path, keys)
    behind = "2021-01-01 00:00:00"
    accepted = verify(device_conf(tmp_path, keys.keyring, signing_time=True), bundle, faketime=behind)
    assert accepted.returncode == 0, accepted.stderr
    refused = verify(device_conf(tmp_path, keys.keyring, signing_time=False), bundle, faketime=behind)
    assert refused.returncode != 0 and "certificate is not yet valid" in refused.stderr, refused.stderr


def test_a_bundle_signed_before_the_leaf_expired_stays_installable(tmp_path: Path) -> None:
    """A device left in a drawer for years: its clock (set by NTP) is past the leaf's expiry, and the bundle
    it is given was signed while the leaf was valid: accepted (verified at the signing time)."""
    need_rauc()
    keys = init_keys(tmp_path / "k", signing_days=30)
    bundle = make_bundle(tmp_path, keys)
    later = f"{dt.datetime.now(dt.UTC).year + 3}-01-01 00:00:00"
    assert verify(device_conf(tmp_path, keys.keyring, signing_time=False), bundle, faketime=later).returncode != 0
    accepted = verify(device_conf(tmp_path, keys.keyring, signing_time=True), bundle, faketime=later)
    assert accepted.returncode == 0, accepted.stderr


def test_an_expired_leaf_still_signs_when_its_holder_backdates_the_clock(tmp_path: Path) -> None:
    """The price of use-bundle-signing-time (docs/security.md): the signing time is whatever the signer's
    clock says, so a leaf's expiry does not stop a thief of its key who sets the clock back. Expiry is not
    revocation: a stolen signing key is answered by a new CA (update_keyring), see docs/fleet.md."""
    need_rauc()
    made = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    keys = init_keys(tmp_path / "k", signing_days=30, now=made)  # expired since February 2020
    bundle = make_bundle(tmp_path, keys, faketime="2020-01-15 12:00:00")
    accepted = verify(device_conf(tmp_path, keys.keyring), bundle)
    assert accepted.returncode == 0, accepted.stderr


def test_rotation_gives_a_new_leaf_the_devices_accept_without_a_new_keyring(tmp_path: Path) -> None:
    """This is the yearly rotation: a new signing key from the same CA; the devices' keyring is unchanged, and a
    bundle signed before the rotation is still accepted."""
    need_rauc()
    keys = init_keys(tmp_path / "k")
    old_cert, old_key, keyring = keys.signing_cert.read_bytes(), keys.signing_key.read_bytes(), keys.keyring
    before = make_bundle(tmp_path, keys, name="before")
    rotated = rotate_signing(keys.directory, signing_days=365)
    assert rotated.signing_key.read_bytes() != old_key and rotated.signing_cert.read_bytes() != old_cert
    assert rotated.signing_key.stat().st_mode & 0o777 == 0o600
    old = x509.load_pem_x509_certificate(old_cert)
    assert (keys.directory / "retired" / f"signing-{old.serial_number:x}.crt").read_bytes() == old_cert
    assert not list((keys.directory / "retired").glob("*.key"))
    after = make_bundle(tmp_path, rotated, name="after")
    conf = device_conf(tmp_path, keyring)
    for bundle in (before, after):
        result = verify(conf, bundle)
        assert result.returncode == 0, result.stderr


def test_rotation_with_an_encrypted_ca_key_needs_its_passphrase(tmp_path: Path) -> None:
    """The CA key kept encrypted (brought back from its offline place only to rotate): a wrong or missing
    passphrase is a clear error and changes nothing."""
    keys = init_keys(tmp_path / "k", ca_passphrase=b"correct horse")
    assert b"ENCRYPTED" in keys.ca_key.read_bytes()
    before = keys.signing_cert.read_bytes()
    with pytest.raises(KeysError, match=r"ca\.key: .*(password|encrypted)"):
        rotate_signing(keys.directory)
    with pytest.raises(KeysError, match=r"ca\.key: cannot be read \(wrong passphrase"):
        rotate_signing(keys.directory, ca_passphrase=b"wrong")
    assert keys.signing_cert.read_bytes() == before
    rotate_signing(keys.directory, ca_passphrase=b"correct horse")
    assert keys.signing_cert.read_bytes() != before


def test_rotation_refuses_an_expired_ca(tmp_path: Path) -> None:
    keys = init_keys(tmp_path / "k", ca_days=10, now=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    with pytest.raises(KeysError, match=r"ca\.crt: the CA expired on 2020-01-11"):
        rotate_signing(keys.directory)


def _image_system_confs() -> list[Path]:
    return sorted((REPO / "image-build").glob("rootfs*/etc/rauc/system.conf"))


@pytest.mark.parametrize("image_conf", _image_system_confs() or [None],
                         ids=lambda p: p.parents[2].name if p else "none")
def test_the_image_keyring_settings_accept_the_fleet_keys(tmp_path: Path, image_conf: Path | None) -> None:
    """The [keyring] section the image ships (img's system.conf), as Debian's RAUC 1.8 reads it, accepts a
    bundle signed with `eticket fleet keys init`'s leaf even with the device clock years behind (RAUC 1.8 knows
    the purpose ``codesign``, not the later ``codesign-rauc``: with that, every bundle would be refused)."""
    if image_conf is None:
        pytest.skip("no image-build/rootfs*/etc/rauc/system.conf on this branch (the image's, helper img)")
    need_rauc()
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(image_conf.read_text())
    keys = init_keys(tmp_path / "k")
    keyring = dict(parser["keyring"], path=str(keys.keyring))
    conf = tmp_path / "device.conf"
    conf.write_text(f"[system]\ncompatible={COMPATIBLE}\nbootloader=noop\n\n[keyring]\n"
                    + "".join(f"{k}={v}\n" for k, v in keyring.items()))
    result = verify(conf, make_bundle(tmp_path, keys), faketime="2021-01-01 00:00:00")
    assert result.returncode == 0, result.stderr


def _eticket(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})


def test_keys_rotate_from_the_command_line(tmp_path: Path) -> None:
    """This is the operator's yearly rotation: `eticket fleet keys rotate DIR` prints the new files, and a bundle
    signed with them verifies against the keyring the devices already have; without the CA key (kept offline
    and not brought back) it fails with one line naming the file, and nothing changes."""
    need_rauc()
    keys = init_keys(tmp_path / "fleet-keys")
    old = keys.signing_cert.read_bytes()
    done = _eticket("fleet", "keys", "rotate", str(keys.directory), "--signing-days", "365", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(keys.signing_cert), str(keys.signing_key)]
    assert keys.signing_cert.read_bytes() != old and "devices need no change" in done.stderr
    result = verify(device_conf(tmp_path, keys.keyring), make_bundle(tmp_path, keys))
    assert result.returncode == 0, result.stderr
    keys.ca_key.rename(tmp_path / "ca.key.offline")
    current = keys.signing_cert.read_bytes()
    refused = _eticket("fleet", "keys", "rotate", str(keys.directory), cwd=tmp_path)
    assert refused.returncode == 2 and f"eticket: error: {keys.ca_key}: cannot read" in refused.stderr, refused.stderr
    assert keys.signing_cert.read_bytes() == current
