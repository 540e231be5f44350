"""Signed RAUC bundles and a device's bundle check on this machine (Debian's rauc 1.8, mksquashfs, faketime)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from fleet.keys import KeySet
from tests.conftest import require

COMPATIBLE = "eticket-test"
RAUC_1_8_CODESIGN = "codesign"
"""RAUC 1.8's name for its code-signing purpose (later versions call it codesign-rauc; 1.8 refuses that name:
"failed to configure X509 purpose 'codesign-rauc'")."""
SQUASHFS_PAYLOAD_BYTES = 64 * 1024
"""RAUC 1.8 refuses a squashfs of 4096 bytes or less: the slot image holds this much random data."""


def need_rauc() -> None:
    """Skip (fail in CI) when rauc or mksquashfs is missing."""
    require(shutil.which("rauc") is not None and shutil.which("mksquashfs") is not None,
            "rauc and mksquashfs are missing (Debian packages rauc, squashfs-tools)")


def make_bundle(tmp: Path, keys: KeySet, name: str = "bundle", version: str = "1.0.0",
                faketime: str | None = None) -> Path:
    """A verity bundle of a small root image, signed with ``keys``' leaf (``rauc bundle``), optionally
    with the signer's clock set by ``faketime``."""
    content = tmp / f"{name}-content"
    tree = tmp / f"{name}-tree"
    tree.mkdir(parents=True)
    (tree / "payload").write_bytes(os.urandom(SQUASHFS_PAYLOAD_BYTES))
    content.mkdir()
    subprocess.run(["mksquashfs", str(tree), str(content / "root.img"), "-quiet", "-noappend"], check=True,
                   timeout=60)
    (content / "manifest.raucm").write_text(f"[update]\ncompatible={COMPATIBLE}\nversion={version}\n\n"
                                            "[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=root.img\n")
    out = tmp / f"{name}.raucb"
    command = ["rauc", "bundle", f"--cert={keys.signing_cert}", f"--key={keys.signing_key}", str(content), str(out)]
    result = subprocess.run(faked(command, faketime), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return out


def faked(command: list[str], faketime: str | None) -> list[str]:
    if faketime is None:
        return command
    require(shutil.which("faketime") is not None, "faketime is missing (Debian package faketime)")
    return ["faketime", faketime, *command]


def device_conf(tmp: Path, keyring: Path, signing_time: bool = True) -> Path:
    """A device's system.conf as the image has it (image-build/rootfs-arm64/etc/rauc/system.conf): [keyring]
    with check-purpose and use-bundle-signing-time."""
    conf = tmp / f"system-{keyring.parent.name}-{int(signing_time)}.conf"
    conf.write_text(f"[system]\ncompatible={COMPATIBLE}\nbootloader=noop\n\n[keyring]\npath={keyring}\n"
                    f"check-purpose={RAUC_1_8_CODESIGN}\nuse-bundle-signing-time={str(signing_time).lower()}\n")
    return conf


def verify(conf: Path, bundle: Path, faketime: str | None = None) -> subprocess.CompletedProcess[str]:
    """``rauc info`` as a device checks a bundle before installing it (the signature against the keyring)."""
    return subprocess.run(faked(["rauc", "-c", str(conf), "info", str(bundle)], faketime), capture_output=True,
                          text=True, timeout=60)
