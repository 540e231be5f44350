"""The device's TLS identity: an ECDSA P-256 key and a self-signed certificate, made on first start.

POS clients cannot check this certificate against a CA (a shop LAN has no domain name); they pin it. The
pin travels in the pairing QR (read off the device's screen: physical presence), or is bound to the typed
code by SPAKE2 (see appliance.pairing). Files live in ``<data_dir>/tls/`` with owner-only permissions.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ._paths import write_private

CERT_VALIDITY_DAYS = 20 * 365
"""The certificate lives as long as the device: pinning replaces expiry; re-pairing replaces the pin."""


def fingerprint_der(der: bytes) -> str:
    """SHA-256 of a DER certificate as unpadded base64url (43 characters): the pin carried in QR and TXT."""
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def fingerprint_pem(pem: str) -> str:
    """:func:`fingerprint_der` of a PEM certificate."""
    return fingerprint_der(ssl.PEM_cert_to_DER_cert(pem))


@dataclass(frozen=True, slots=True)
class Identity:
    """Paths of the key and certificate, the certificate PEM and its pin (:func:`fingerprint_der`)."""

    key_path: Path
    cert_path: Path
    cert_pem: str
    fingerprint: str


def certificate_device_id(data_dir: Path) -> str | None:
    """The device id in the common name of ``<data_dir>/tls/cert.pem``, or None (no or unreadable file).
    A store rebuilt after damage takes it from here, so the device keeps its id, pin and pairings' trust."""
    try:
        cert = x509.load_pem_x509_certificate((data_dir / "tls" / "cert.pem").read_bytes())
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except (OSError, ValueError):
        return None
    value = names[0].value if names else None
    return value if isinstance(value, str) and value.startswith("et-") else None


def load_or_create(data_dir: Path, device_id: str) -> Identity:
    """Load ``<data_dir>/tls/{key,cert}.pem``, creating them on first start (key 0600, directory 0700)."""
    folder = data_dir / "tls"
    key_path, cert_path = folder / "key.pem", folder / "cert.pem"
    if not (key_path.exists() and cert_path.exists()):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=CERT_VALIDITY_DAYS))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"{device_id}.local")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256())
        )
        write_private(key_path, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    pem = cert_path.read_text()
    return Identity(key_path=key_path, cert_path=cert_path, cert_pem=pem, fingerprint=fingerprint_pem(pem))


def pinned_client_context(cert_pem: str) -> ssl.SSLContext:
    """A client context that trusts exactly one self-signed certificate and nothing else.

    The handshake fails unless the server proves it holds the key of ``cert_pem``: no request, and so no
    bearer token, is ever sent to anyone else. Host names are not checked (a LAN address is not a name);
    the pin is the identity.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=cert_pem)
    return ctx


def fetch_certificate(host: str, port: int, timeout: float = 5.0) -> str:
    """The PEM certificate a TLS server presents, without trusting it (to compare with a pin).

    Raises:
        OSError: unreachable, or not speaking TLS.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    import socket

    with socket.create_connection((host, port), timeout=timeout) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise OSError(f"{host}:{port} presented no certificate")
    return ssl.DER_cert_to_PEM_cert(der)
