"""A fleet's signing keys: a CA that devices trust and a signing certificate that signs bundles (``rauc bundle``).

    init_keys(DIR)        DIR/ca.crt, ca.key (0600), signing.crt, signing.key (0600), keyring.pem (= ca.crt)
    rotate_signing(DIR)   a new signing key and certificate from the same CA (the devices keep their keyring)

The CA (basicConstraints CA, path length 0, keyUsage keyCertSign + cRLSign) lives long (:data:`CA_DAYS`); it is
what a device's keyring holds, so replacing it needs every device's keyring replaced (``update_keyring`` in
``eticket.toml``, or a bundle that carries the new keyring). The signing leaf (keyUsage digitalSignature,
extendedKeyUsage codeSigning: what RAUC 1.8's ``check-purpose=codesign`` requires (later RAUC calls it
``codesign-rauc``), RAUC docs "Signature Verification" / RFC 5280 §4.2.1.12) lives shorter
(:data:`SIGNING_DAYS`) and is rotated without touching the devices. Devices verify with
``use-bundle-signing-time=true`` (image-build/rootfs-arm64/etc/rauc/system.conf), i.e. at the time the bundle
says it was signed, so a device whose clock is wrong (a Pi has no real-time clock) still accepts a good bundle; the
price, and where to keep ``ca.key``, are in docs/fleet.md and docs/security.md.

Keys are ECDSA P-256 (small signatures, fast on a Pi; OpenSSL's CMS, which RAUC uses, signs and verifies them).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 30 * 365
"""Default validity of the CA, in days (30 years: longer than a counter device lives)."""
SIGNING_DAYS = 5 * 365
"""Default validity of a signing certificate, in days (5 years; rotate sooner if the key may have leaked)."""
BACKDATE = dt.timedelta(minutes=10)
"""notBefore is set this far before now, so a build host whose clock is a little behind the key host's still
signs with a certificate already valid."""
NAME_MAX_CHARS = 48
"""Longest fleet name; the CA's common name is ``NAME CA`` and X.509's ub-common-name is 64 (RFC 5280 App. A)."""
KEY_MODE = 0o600
DIR_MODE = 0o700
RETIRED = "retired"
"""Sub-folder where :func:`rotate_signing` keeps the replaced signing certificates (not their keys)."""


class KeysError(Exception):
    """The key directory cannot be made or used; the message names the file and says what to do."""


@dataclass(frozen=True, slots=True)
class KeySet:
    """The files of one fleet's keys in ``directory`` (every path absolute when ``directory`` is)."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def signing_cert(self) -> Path:
        return self.directory / "signing.crt"

    @property
    def signing_key(self) -> Path:
        return self.directory / "signing.key"

    @property
    def keyring(self) -> Path:
        return self.directory / "keyring.pem"

    def files(self) -> tuple[Path, ...]:
        """Every file of the set, CA first."""
        return (self.ca_cert, self.ca_key, self.signing_cert, self.signing_key, self.keyring)


def _check_days(days: int, what: str) -> None:
    if type(days) is not int or days < 1:
        raise KeysError(f"{what}: must be a whole number of days, 1 or more, not {days!r}")


def _check_name(name: str) -> None:
    if not name.strip() or len(name) > NAME_MAX_CHARS or not name.isprintable():
        raise KeysError(f"name: must be 1 to {NAME_MAX_CHARS} printable characters, not {name!r}")


def _pem_key(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _make_ca(name: str, key: ec.EllipticCurvePrivateKey, now: dt.datetime, days: int) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    public = key.public_key()
    return (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256()))


def _make_leaf(name: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, key: ec.EllipticCurvePrivateKey,
               now: dt.datetime, days: int) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} signing {now:%Y-%m-%d}")])
    public = key.public_key()
    not_after = min(now + dt.timedelta(days=days), ca.not_valid_after_utc)  # never past its CA
    return (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(ca.subject).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` (never replacing a file) with ``data`` and permission bits ``mode``, synced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, mode)


def _replace(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` beside ``path`` and rename it into place (a crash leaves the old or the new file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    _write_new(tmp, data, mode)
    os.replace(tmp, path)


def init_keys(directory: Path, *, name: str = "eTicket fleet", ca_days: int = CA_DAYS,
              signing_days: int = SIGNING_DAYS, ca_passphrase: bytes | None = None,
              now: dt.datetime | None = None) -> KeySet:
    """Make a new fleet's CA and first signing certificate in ``directory`` (created 0700 if missing).

    ``name`` goes into the certificates' common names (``NAME CA``, ``NAME signing YYYY-MM-DD``); ``ca_days`` and
    ``signing_days`` are validities in days (the leaf never outlives the CA); ``ca_passphrase`` encrypts
    ``ca.key`` (PKCS#8, best available encryption); ``now`` (UTC) is for tests. Returns the :class:`KeySet`.

    Raises:
        KeysError: a file of the set already exists (nothing is replaced: a fleet's CA is made once), a bad
            ``name`` or number of days, or the directory cannot be written (files made so far are removed).
    """
    _check_name(name)
    _check_days(ca_days, "ca_days")
    _check_days(signing_days, "signing_days")
    keys = KeySet(directory)
    existing = [path for path in keys.files() if path.exists() or path.is_symlink()]
    if existing:
        raise KeysError(f"{existing[0]}: already exists: a fleet's keys are made once (to sign with a new "
                        "certificate from the same CA, rotate the signing key; see docs/fleet.md)")
    now = now or dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _make_ca(name, ca_key, now, ca_days)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _make_leaf(name, ca, ca_key, leaf_key, now, signing_days)
    written: list[Path] = []
    try:
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        for path, data, mode in ((keys.ca_key, _pem_key(ca_key, ca_passphrase), KEY_MODE),
                                 (keys.ca_cert, _pem_cert(ca), 0o644),
                                 (keys.signing_key, _pem_key(leaf_key, None), KEY_MODE),
                                 (keys.signing_cert, _pem_cert(leaf), 0o644),
                                 (keys.keyring, _pem_cert(ca), 0o644)):
            _write_new(path, data, mode)
            written.append(path)
    except FileExistsError as exc:  # made by someone else meanwhile
        for path in written:
            path.unlink(missing_ok=True)
        raise KeysError(f"{exc.filename}: already exists: a fleet's keys are made once") from exc
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        raise KeysError(f"{exc.filename or directory}: cannot write the keys: {exc.strerror or exc}") from exc
    return keys


def _load_ca(keys: KeySet, passphrase: bytes | None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        ca = x509.load_pem_x509_certificate(keys.ca_cert.read_bytes())
        raw = keys.ca_key.read_bytes()
    except OSError as exc:
        raise KeysError(f"{exc.filename}: cannot read: {exc.strerror} (the CA's files, made by "
                        "`eticket fleet keys init`)") from exc
    except ValueError as exc:
        raise KeysError(f"{keys.ca_cert}: not a PEM certificate ({exc})") from exc
    try:
        key = serialization.load_pem_private_key(raw, passphrase)
    except TypeError as exc:  # encrypted without a passphrase, or a passphrase for a plain key
        raise KeysError(f"{keys.ca_key}: {exc}") from exc
    except ValueError as exc:  # a wrong passphrase or not a key
        raise KeysError(f"{keys.ca_key}: cannot be read (wrong passphrase, or not a private key)") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != ca.public_key():
        raise KeysError(f"{keys.ca_key}: is not the key of {keys.ca_cert}")
    return ca, key


def rotate_signing(directory: Path, *, signing_days: int = SIGNING_DAYS, ca_passphrase: bytes | None = None,
                   now: dt.datetime | None = None) -> KeySet:
    """Replace ``directory``'s signing key and certificate by new ones from the same CA (bring ``ca.key`` back
    from its offline place for this). The old certificate is kept in ``directory/retired/`` (named by its
    serial number, for the record); the old key is deleted. Devices need no change: they trust the CA.

    Raises:
        KeysError: the CA's files are missing or unreadable (wrong ``ca_passphrase``), ``ca.key`` does not match
            ``ca.crt``, the CA has expired (make a new fleet CA and roll its keyring out first), or a bad
            ``signing_days``.
    """
    _check_days(signing_days, "signing_days")
    keys = KeySet(directory)
    ca, ca_key = _load_ca(keys, ca_passphrase)
    now = now or dt.datetime.now(dt.UTC)
    if ca.not_valid_after_utc <= now:
        raise KeysError(f"{keys.ca_cert}: the CA expired on {ca.not_valid_after_utc:%Y-%m-%d}: make a new fleet "
                        "CA and give the devices its keyring (docs/fleet.md, rotating the CA)")
    common_name = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = str(common_name[0].value).removesuffix(" CA") if common_name else "eTicket fleet"
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _make_leaf(name, ca, ca_key, key, now, signing_days)
    try:
        if keys.signing_cert.exists():
            old = x509.load_pem_x509_certificate(keys.signing_cert.read_bytes())
            retired = directory / RETIRED
            retired.mkdir(mode=DIR_MODE, exist_ok=True)
            _replace(retired / f"signing-{old.serial_number:x}.crt", keys.signing_cert.read_bytes(), 0o644)
        # The key first: a crash between the two renames leaves a new key with the old certificate, which
        # `rauc bundle` refuses ("key does not match") instead of signing with a mismatched pair unseen.
        _replace(keys.signing_key, _pem_key(key, None), KEY_MODE)
        _replace(keys.signing_cert, _pem_cert(leaf), 0o644)
    except OSError as exc:
        raise KeysError(f"{exc.filename or directory}: cannot write the new signing key: "
                        f"{exc.strerror or exc}") from exc
    except ValueError as exc:
        raise KeysError(f"{keys.signing_cert}: not a PEM certificate ({exc})") from exc
    return keys
