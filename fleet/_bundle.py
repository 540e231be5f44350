"""What the operator's machine knows about a bundle before sending it: SHA-256, size, version, compatible."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ._ssh import FleetError

HASH_BLOCK_BYTES = 1 << 20
RAUC_INFO_TIMEOUT_SECONDS = 60.0
_NAME = re.compile(r"^eticket-(?P<arch>[a-z0-9_]+)-(?P<version>.+)\.raucb$")
"""``image-build/bundle.sh``'s output name, ``eticket-ARCH-VERSION.raucb`` (docs/fleet.md)."""


class BundleError(FleetError):
    """The bundle file cannot be used (unreadable, version unknown)."""


@dataclass(frozen=True, slots=True)
class Bundle:
    """A bundle file: ``sha256`` hex, ``size`` bytes, ``version`` and ``compatible`` from its manifest."""

    path: Path
    sha256: str
    size: int
    version: str
    compatible: str | None


def _manifest(path: Path) -> dict[str, object] | None:
    """``rauc info --no-verify --output-format=json`` (the manifest's compatible and version), or None when
    rauc is not installed here or cannot read the file. The signature is not checked here: the device does it
    with its own keyring, which is what counts."""
    rauc = shutil.which("rauc")
    if rauc is None:
        return None
    done = subprocess.run([rauc, "info", "--no-verify", "--output-format=json", str(path)], capture_output=True,
                          text=True, timeout=RAUC_INFO_TIMEOUT_SECONDS, check=False)
    if done.returncode != 0:
        return None
    try:
        info = json.loads(done.stdout)
    except json.JSONDecodeError:
        return None
    return info if isinstance(info, dict) else None


def read_bundle(path: Path, version: str | None = None) -> Bundle:
    """Hash ``path`` and read its version: ``version`` if given, else the manifest's (``rauc info``), else the
    file name's (``eticket-ARCH-VERSION.raucb``). BundleError when the file is unreadable or no version is known.
    """
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while block := handle.read(HASH_BLOCK_BYTES):
                digest.update(block)
        size = path.stat().st_size
    except OSError as exc:
        raise BundleError(f"{path}: cannot read the bundle: {exc}") from exc
    manifest = _manifest(path) or {}
    compatible = manifest.get("compatible")
    found = version or manifest.get("version")
    if not found and (match := _NAME.match(path.name)):
        found = match.group("version")
    if not isinstance(found, str) or not found:
        raise BundleError(f"{path}: cannot tell the bundle's version (no rauc here to read its manifest, and the "
                          "name is not eticket-ARCH-VERSION.raucb): pass --version")
    return Bundle(path=path, sha256=digest.hexdigest(), size=size, version=found,
                  compatible=compatible if isinstance(compatible, str) else None)
