"""Signing keys and signed RAUC bundles for the tests, made with the real tools: ``openssl`` (a CA and a
code-signing leaf, as ``eticket fleet keys init`` makes them) and ``rauc bundle`` (plain format: this host's
kernel has no dm-verity, FLEET-FACTS.md; the device image uses verity).

A bundle's one image is a small ext4 root file system (``mkfs.ext4 -d``, no mount needed) holding
``/etc/eticket-image-id`` with ``version=VERSION``: what the boot stand-in of :mod:`tests.fleet.devicehost`
reads to know which release a slot boots.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

COMPATIBLE = "eticket-test"
ROOTFS_BYTES = 4 * 1024 * 1024
"""Size of a test slot image. RAUC 1.8 refuses a squashfs of 4096 bytes or less: the image carries a little
random data so that its squashfs stays above that."""
CA_DAYS = 10950
LEAF_DAYS = 1825


def _run(*argv: str, cwd: Path | None = None) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {result.stderr.strip()[-800:]}")


@dataclass(frozen=True, slots=True)
class Keys:
    """``ca`` (the keyring a device trusts), ``cert`` and ``key`` (the signing leaf, PEM paths)."""

    ca: Path
    cert: Path
    key: Path


def make_keys(directory: Path, name: str = "test fleet") -> Keys:
    """A CA (EC P-256) and a leaf signed by it with ``extendedKeyUsage=codeSigning`` (RAUC's
    ``check-purpose=codesign``) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.crt", "signing.key", "signing.csr",
                                                            "signing.crt"))
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _run("openssl", "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", str(CA_DAYS),
         "-subj", f"/CN={name} CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _run("openssl", "req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name} signing")
    ext = directory / "leaf.cnf"
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=critical,codeSigning\n")
    _run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
         "-out", str(cert), "-days", str(LEAF_DAYS), "-extfile", str(ext))
    return Keys(ca=ca, cert=cert, key=key)


def make_rootfs(path: Path, version: str) -> Path:
    """An ext4 image at ``path`` whose ``/etc/eticket-image-id`` says ``version=VERSION``."""
    tree = path.with_suffix(".tree")
    (tree / "etc").mkdir(parents=True, exist_ok=True)
    (tree / "etc" / "eticket-image-id").write_text(f"version={version}\n")
    (tree / "filler").write_bytes(os.urandom(16 * 1024))
    _run("mkfs.ext4", "-q", "-F", "-d", str(tree), str(path), str(ROOTFS_BYTES // 1024))
    return path


def make_bundle(out: Path, version: str, keys: Keys, compatible: str = COMPATIBLE,
                image_version: str | None = None, pre_install_hook: str | None = None) -> Path:
    """A signed plain-format bundle ``out`` (``rauc bundle``) with one ``rootfs`` image of release ``version``
    for ``compatible``, signed with ``keys``. ``image_version``: what the root's /etc/eticket-image-id says,
    when it is not ``version`` (a mis-built bundle). ``pre_install_hook``: a shell script RAUC runs (as a
    bundle hook, ``slot-pre-install``) after it marked the target slot non-bootable and before it writes it:
    a test pauses the install there to cut the power in the middle."""
    content = out.with_suffix(".content")
    content.mkdir(parents=True, exist_ok=True)
    make_rootfs(content / "rootfs.ext4", image_version or version)
    hooks = ""
    if pre_install_hook is not None:
        (content / "hook.sh").write_text(pre_install_hook)
        os.chmod(content / "hook.sh", 0o755)
        hooks = "[hooks]\nfilename=hook.sh\n\n"
    (content / "manifest.raucm").write_text(
        f"[update]\ncompatible={compatible}\nversion={version}\n\n[bundle]\nformat=plain\n\n{hooks}"
        f"[image.rootfs]\nfilename=rootfs.ext4\n{'hooks=pre-install' if hooks else ''}\n")
    tree = content / "rootfs.tree"
    if tree.exists():
        subprocess.run(["rm", "-rf", str(tree)], check=True)
    out.unlink(missing_ok=True)
    _run("rauc", "bundle", f"--cert={keys.cert}", f"--key={keys.key}", str(content), str(out))
    return out


def tamper(bundle: Path, out: Path) -> Path:
    """A copy of ``bundle`` with one bit flipped inside its payload (the signature no longer matches)."""
    data = bytearray(bundle.read_bytes())
    data[len(data) // 4] ^= 0x01
    out.write_bytes(bytes(data))
    return out
