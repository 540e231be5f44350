"""What the slow update proofs and the update bench share on an A/B guest: bundles built by the documented
script (image-build/bundle.sh) from the image build's own root, built once per session (a second module asking
for the same version and overlay gets the same file), the failing release's overlay, a receipt sent through
the guest's API, and the guest's real SSH host key read out of band from its card.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import IN_CI, REPO, samples
from tests.image.ab import ABDevice

BUNDLE_BUILD_TIMEOUT_SECONDS = 900
SECTOR_BYTES = 512
DATA_PARTITION = 4  # SPEC12: eticket-data, mounted at /var
HOST_KEY_ON_DATA = "/lib/eticket-system/ssh/etc/ssh/ssh_host_ed25519_key.pub"  # systemd/eticket-ssh-keys.service
_built: dict[tuple[str, str, str], Path] = {}


def build_bundle(build: Path, keys: Path, out: Path, version: str, overlay: Path | None = None) -> Path:
    """``out/eticket-arm64-VERSION.raucb`` made by image-build/bundle.sh from ``build`` (the image build's work
    tree), signed by ``keys/signing.crt`` + ``signing.key``, ``overlay`` (a directory) copied over the root.
    Built once per session; on a desk with ``ETICKET_IMAGE_REUSE=1`` a bundle already there is reused.

    Raises:
        AssertionError: bundle.sh failed (its stderr).
    """
    memo = (str(out), version, str(overlay))
    bundle = out / f"eticket-arm64-{version}.raucb"
    if memo in _built and bundle.exists():
        return bundle
    env = {**os.environ, "BUILD": str(build), "VERSION": version, "SIGNING_CERT": str(keys / "signing.crt"),
           "SIGNING_KEY": str(keys / "signing.key")}
    if overlay is not None:
        env["OVERLAY"] = str(overlay)
    if not (os.environ.get("ETICKET_IMAGE_REUSE") == "1" and not IN_CI and bundle.exists()):
        start = time.monotonic()
        result = subprocess.run(["bash", str(REPO / "image-build" / "bundle.sh"), "arm64", str(out)], env=env,
                                capture_output=True, text=True, timeout=BUNDLE_BUILD_TIMEOUT_SECONDS)
        assert result.returncode == 0, result.stderr
        print(f"bundle {bundle.name}: {bundle.stat().st_size} bytes in {time.monotonic() - start:.0f} s")
    _built[memo] = bundle
    return bundle


def unhealthy_overlay(directory: Path, gate_deadline_seconds: int) -> Path:
    """An overlay whose eticket.service never gets READY (ExecStart=/bin/false) and whose health gate gives up
    after ``gate_deadline_seconds`` (instead of the default 600 s), in ``directory`` (made afresh)."""
    shutil.rmtree(directory, ignore_errors=True)
    (directory / "etc/systemd/system/eticket.service.d").mkdir(parents=True)
    (directory / "etc/systemd/system/eticket.service.d/broken.conf").write_text(
        "[Service]\nExecStart=\nExecStart=/bin/false\n")
    (directory / "etc/systemd/system/eticket-update-commit.service.d").mkdir(parents=True)
    (directory / "etc/systemd/system/eticket-update-commit.service.d/deadline.conf").write_text(
        f"[Service]\nExecStart=\nExecStart=/usr/bin/eticket update commit --deadline {gate_deadline_seconds}\n")
    return directory


@dataclass
class Receipt:
    """A receipt a till sent: its download ``path`` on the device and the PDF's bytes."""

    path: str
    pdf: bytes

    def still_there(self, device: ABDevice) -> bool:
        """The device still serves the same PDF at ``path``."""
        return httpx.get(device.guest.url + self.path, timeout=30).content == self.pdf


def send_receipt(device: ABDevice, cli_env: dict[str, str]) -> Receipt:
    """A till pairs with the device (the code from its display state) and sends a sample PDF with
    ``eticket send``; the receipt, checked downloadable.

    Raises:
        AssertionError: pairing or sending failed (the CLI's stderr).
    """
    token = json.loads(device.run("cat /var/lib/eticket/kiosk.json"))["token"]
    state = httpx.get(device.guest.url + "/api/v1/display", headers={"Authorization": f"Bearer {token}"},
                      timeout=30).json()
    assert state["scene"] == "pairing", state
    address = f"127.0.0.1:{device.guest.api_port}"
    eticket = [str(REPO / ".venv" / "bin" / "eticket")]
    paired = subprocess.run([*eticket, "pair", "--code", state["pairing"]["code"], "--address", address,
                             "--pos-name", "Till 1"], env=cli_env, capture_output=True, text=True, timeout=180)
    assert paired.returncode == 0, paired.stderr
    pdf = samples("pdf")[0]
    sent = subprocess.run([*eticket, "send", str(pdf), "--total", "12.50", "--currency", "EUR", "--address",
                           address], env=cli_env, capture_output=True, text=True, timeout=180)
    assert sent.returncode == 0, sent.stderr
    url = sent.stdout.strip().splitlines()[-1]
    receipt = Receipt(path=url[url.index("/r/"):], pdf=pdf.read_bytes())
    assert receipt.still_there(device)
    return receipt


def host_key_from_card(device: ABDevice) -> str:
    """The guest's SSH host public key line (``ssh-ed25519 AAAA...``), read out of band: from its disk image
    (the data partition, with debugfs), not over the SSH connection it is meant to authenticate. The guest's
    /var is frozen and thawed first (``fsfreeze``: ext4 then writes its journal out to the file system, so
    debugfs, which does not replay a journal, sees the key file).

    Raises:
        AssertionError: the partition or the key file is not there.
    """
    device.run("fsfreeze -f /var && fsfreeze -u /var")
    table = json.loads(subprocess.run(["sfdisk", "-J", str(device.guest.disk)], check=True, capture_output=True,
                                      text=True).stdout)
    start = table["partitiontable"]["partitions"][DATA_PARTITION - 1]["start"] * SECTOR_BYTES
    read = subprocess.run(["debugfs", "-R", f"cat {HOST_KEY_ON_DATA}", f"{device.guest.disk}?offset={start}"],
                          capture_output=True, text=True)
    line = read.stdout.strip()
    assert read.returncode == 0 and line.startswith("ssh-ed25519 "), f"no host key on the card: {read.stderr}"
    return " ".join(line.split()[:2])
