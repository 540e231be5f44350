"""Fixtures of the image tests (all ``@pytest.mark.slow``; scripts/test-slow.sh runs them in one pytest process
beside another running the rest of the slow suite): the image built once per session by the documented
command's script, into the git-ignored build/ directory. When the session also holds arm64 tests, the arm64
build starts in a thread as soon as the amd64 image is asked for (it is mostly downloads and emulated
maintainer scripts, which the amd64 tests' KVM guest leaves room for).

``ETICKET_IMAGE_REUSE=1`` reuses an image already in build/test-image-ARCH (a desk iterating on tests); CI
always builds.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import IN_CI, REPO, require
from tests.image.keys import make_fleet_keys

BUILD_TIMEOUT_SECONDS = 30 * 60
TOOLS = ("mmdebstrap", "mcopy", "mkfs.vfat", "mke2fs", "sfdisk", "ssh", "ssh-keygen", "systemd-analyze")


def _build(arch: str) -> Path:
    require(os.geteuid() == 0, "building the image needs root (mmdebstrap --mode=root)")
    for tool in TOOLS:
        require(shutil.which(tool) is not None, f"{tool} is missing (make sysdeps-image installs it)")
    if arch == "arm64":
        require(Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists(),
                "binfmt for qemu-aarch64 is off (make sysdeps-image turns it on)")
    out = REPO / "build" / f"test-image-{arch}"
    image = out / f"eticket-{arch}.img"
    if os.environ.get("ETICKET_IMAGE_REUSE") == "1" and not IN_CI and image.exists():
        return out
    keys = make_fleet_keys(REPO / "build" / "test-fleet-keys")
    log = REPO / "build" / f"test-image-{arch}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log, "wb") as handle:
        result = subprocess.run(["bash", str(REPO / "image-build" / "build.sh"), arch, str(out)],
                                env={**os.environ, "COMPRESS": "none", "FLEET_KEYS": str(keys)}, stdout=handle,
                                stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_SECONDS, cwd=REPO)
    seconds = time.monotonic() - start
    assert result.returncode == 0, f"image build failed; see {log}:\n{log.read_text(errors='replace')[-3000:]}"
    (out / "build-time.json").write_text(json.dumps({"arch": arch, "seconds": round(seconds, 1)}) + "\n")
    print(f"built the {arch} image in {seconds:.0f} s")
    return out


_builder = ThreadPoolExecutor(1, thread_name_prefix="arm64-image")


@functools.cache
def _arm64_build_started() -> Future[Path]:
    """The arm64 build, started (in a thread) on the first call."""
    make_fleet_keys(REPO / "build" / "test-fleet-keys")  # here, not in two builds at once
    return _builder.submit(_build, "arm64")


@pytest.fixture(scope="session")
def amd64_build(request: pytest.FixtureRequest) -> Path:
    """build/test-image-amd64: the amd64 image, its manifest and its work tree."""
    if any("arm64_build" in getattr(item, "fixturenames", ()) for item in request.session.items):
        _arm64_build_started()
    return _build("amd64")


@pytest.fixture(scope="session")
def arm64_build() -> Path:
    """build/test-image-arm64: the Raspberry Pi image, its manifest and its work tree."""
    return _arm64_build_started().result()


@pytest.fixture(scope="session")
def fleet_keys() -> Path:
    """build/test-fleet-keys: the CA the test images trust (keyring.pem) and its signing leaf."""
    return make_fleet_keys(REPO / "build" / "test-fleet-keys")


@pytest.fixture(scope="session")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh ed25519 key pair; the private key's path (``.pub`` beside it)."""
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "eticket-test", "-f", str(key)], check=True)
    return key


def copy_image(build: Path, arch: str, dest: Path, grow_mib: int = 0) -> Path:
    """A sparse copy of the built image the test may boot and change, ``grow_mib`` larger (a bigger card)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "--sparse=always", str(build / f"eticket-{arch}.img"), str(dest)], check=True)
    if grow_mib:
        with open(dest, "r+b") as handle:
            handle.truncate(dest.stat().st_size + grow_mib * 1024 * 1024)
    return dest
