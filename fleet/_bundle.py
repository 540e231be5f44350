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
MAX_VERSION_CHARS = 128
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
    rauc is not installed here. The signature is not checked here: the device does it with its own keyring,
    which is what counts.

    Raises:
        BundleError: rauc is here and cannot read the file as a bundle (its reason, one line).
    """
    rauc = shutil.which("rauc")
    if rauc is None:
        return None
    done = subprocess.run([rauc, "info", "--no-verify", "--output-format=json", str(path)], capture_output=True,
                          text=True, timeout=RAUC_INFO_TIMEOUT_SECONDS, check=False)
    info: object = None
    if done.returncode == 0:
        try:
            info = json.loads(done.stdout)
        except json.JSONDecodeError:
            info = None
    if not isinstance(info, dict):
        lines = [line for line in done.stderr.splitlines() if line.strip() and "Reading bundle" not in line]
        reason = lines[-1].strip()[:300] if lines else f"rauc info exited {done.returncode}"
        raise BundleError(f"{path}: not a RAUC bundle ({reason})")
    return info


def read_bundle(path: Path, version: str | None = None) -> Bundle:
    """Hash ``path`` and read its version: ``version`` if given, else the manifest's (``rauc info``), else the
    file name's (``eticket-ARCH-VERSION.raucb``). BundleError when the file is unreadable or no version is known.
    """
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "missing or not a regular file"
        raise BundleError(f"{path}: not a bundle file ({kind})")
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
    if not found.isprintable() or len(found) > MAX_VERSION_CHARS:
        raise BundleError(f"{path}: the version {found[:80]!r} has control characters or is over "
                          f"{MAX_VERSION_CHARS} characters")
    return Bundle(path=path, sha256=digest.hexdigest(), size=size, version=found,
                  compatible=compatible if isinstance(compatible, str) else None)
