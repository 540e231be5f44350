"""A fleet's signing keys for the image tests, made with openssl as ``eticket fleet keys init`` lays them out
(docs/fleet.md): ``DIR/ca.crt`` + ``ca.key``, ``DIR/signing.crt`` + ``signing.key`` (a leaf with
extendedKeyUsage codeSigning, signed by the CA), ``DIR/keyring.pem`` (the CA certificate: what a device trusts).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

CA_DAYS = 3650
LEAF_DAYS = 1825
LEAF_EXTENSIONS = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=critical,codeSigning\nsubjectKeyIdentifier=hash\n"
                   "authorityKeyIdentifier=keyid\n")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_fleet_keys(directory: Path, name: str = "eTicket test fleet") -> Path:
    """``directory`` with a new CA and signing leaf (see the module docstring); kept when already there.

    Raises:
        subprocess.CalledProcessError: openssl failed (its stderr says why).
    """
    if (directory / "keyring.pem").exists() and (directory / "signing.key").exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(ca_key), "-out", str(ca_crt), "-days", str(CA_DAYS), "-subj", f"/O={name}/CN={name} CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ca_key.chmod(0o600)
    leaf_key, leaf_csr, leaf_crt = directory / "signing.key", directory / "signing.csr", directory / "signing.crt"
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(leaf_key),
             "-out", str(leaf_csr), "-subj", f"/O={name}/CN={name} signing")
    leaf_key.chmod(0o600)
    extensions = directory / "signing.ext"
    extensions.write_text(LEAF_EXTENSIONS)
    _openssl("x509", "-req", "-in", str(leaf_csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(leaf_crt), "-days", str(LEAF_DAYS), "-extfile", str(extensions))
    (directory / "keyring.pem").write_bytes(ca_crt.read_bytes())
    return directory
