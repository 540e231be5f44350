"""Proof by boot of the A/B update mechanism on the arm64 image (qemu's virt machine through U-Boot: the
Raspberry Pi's boot script and counter): one device, booted once, walks through a chain of updates, each test
starting from where the previous one left it (module-scoped; the order below is the order of the story).

Bundles are built by the documented script (image-build/bundle.sh) from the image build's own root, signed by
the fleet CA the image trusts (tests/image/keys.py, laid out as ``eticket fleet keys init`` does). Installs
run over SSH with ``eticket update install`` when the image has it, else with ``rauc install``; the commit is
the image's eticket-update-commit.service when ``eticket update commit`` exists, else ``rauc status mark-good``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, samples
from tests.image.ab import ABDevice, boot_ab_device
from tests.image.keys import make_fleet_keys

pytestmark = [pytest.mark.slow, pytest.mark.timeout(5400)]

INCOMING = "/var/lib/eticket-update/incoming"
BUNDLE_BUILD_TIMEOUT_SECONDS = 900
INSTALL_TIMEOUT_SECONDS = 1200
BAD_SLOT_FALLBACK_TIMEOUT_SECONDS = 900.0
TAMPER_OFFSET = 4096  # inside the bundle's squashfs (its first verity-protected block)


@dataclass
class Bundles:
    """The bundles of this story, built once: ``good`` (version V2), ``later`` (V3), ``unbootable`` (its
    slot has no initramfs: U-Boot cannot start it), ``tampered`` (a byte of V2 flipped), ``foreign`` (V2
    re-signed by a CA the device does not trust)."""

    good: Path
    later: Path
    unbootable: Path
    tampered: Path
    foreign: Path
    versions: dict[str, str] = field(default_factory=dict)


def _bundle(build: Path, keys: Path, out: Path, version: str, overlay: Path | None = None) -> Path:
    env = {**os.environ, "BUILD": str(build), "VERSION": version, "SIGNING_CERT": str(keys / "signing.crt"),
           "SIGNING_KEY": str(keys / "signing.key")}
    if overlay is not None:
        env["OVERLAY"] = str(overlay)
    result = subprocess.run(["bash", str(REPO / "image-build" / "bundle.sh"), "arm64", str(out)], env=env,
                            capture_output=True, text=True, timeout=BUNDLE_BUILD_TIMEOUT_SECONDS)
    assert result.returncode == 0, result.stderr
    return out / f"eticket-arm64-{version}.raucb"


@pytest.fixture(scope="module")
def bundles(arm64_build: Path, fleet_keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    out = tmp_path_factory.mktemp("bundles")
    start = time.monotonic()
    good = _bundle(arm64_build, fleet_keys, out, "2.0.0+test")
    print(f"bundle {good.name}: {good.stat().st_size} bytes, built in {time.monotonic() - start:.0f} s")
    later = _bundle(arm64_build, fleet_keys, out, "3.0.0+test")
    # A release whose slot U-Boot cannot start: its /boot/initrd.img is empty.
    overlay = out / "overlay-unbootable"
    (overlay / "boot").mkdir(parents=True)
    (overlay / "boot" / "initrd.img").write_bytes(b"")
    unbootable = _bundle(arm64_build, fleet_keys, out, "2.1.0+unbootable", overlay)
    tampered = out / "tampered.raucb"
    shutil.copy(good, tampered)
    with open(tampered, "r+b") as handle:
        handle.seek(TAMPER_OFFSET)
        byte = handle.read(1)
        handle.seek(TAMPER_OFFSET)
        handle.write(bytes([byte[0] ^ 0xFF]))
    other = make_fleet_keys(out / "other-fleet", name="Someone else")
    foreign = out / "foreign.raucb"
    subprocess.run(["rauc", "resign", f"--cert={other / 'signing.crt'}", f"--key={other / 'signing.key'}",
                    f"--keyring={fleet_keys / 'keyring.pem'}", str(good), str(foreign)], check=True,
                   capture_output=True)
    return Bundles(good=good, later=later, unbootable=unbootable, tampered=tampered, foreign=foreign)


@pytest.fixture(scope="module")
def device(arm64_build: Path, ssh_key: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ABDevice]:
    workdir = tmp_path_factory.mktemp("ab-device")
    start = time.monotonic()
    dev = boot_ab_device(arm64_build, workdir, ssh_key)
    print(f"A/B device up in {time.monotonic() - start:.0f} s")
    try:
        yield dev
    finally:
        dev.guest.stop()
        (arm64_build / "serial-arm64-update.log").write_text(dev.guest.console_tail(500_000))


def _has_update_command(device: ABDevice) -> bool:
    return device.ssh("eticket update --help", timeout=120).returncode == 0


def _install(device: ABDevice, bundle: Path) -> subprocess.CompletedProcess[str]:
    """Upload ``bundle`` and install it into the other slot, without rebooting."""
    device.run(f"mkdir -p {INCOMING}")
    target = f"{INCOMING}/{bundle.name}"
    device.upload(bundle, target)
    if _has_update_command(device):
        return device.ssh(f"eticket update install --no-reboot {target}", timeout=INSTALL_TIMEOUT_SECONDS)
    return device.ssh(f"rauc install {target}", timeout=INSTALL_TIMEOUT_SECONDS)


def _commit(device: ABDevice) -> None:
    """The booted slot commits: the image's health gate when it has one, else RAUC by hand."""
    if _has_update_command(device):
        device.run("systemctl start eticket-update-commit.service", timeout=900)
    else:
        device.run("rauc status mark-good booted")


@dataclass
class Receipt:
    path: str
    pdf: bytes


_receipt: list[Receipt] = []


def test_boots_slot_a_through_u_boot_with_rauc_ready(device: ABDevice) -> None:
    """A fresh card: U-Boot's boot.scr picked slot A (first in BOOT_ORDER), RAUC sees both slots, the verity
    bundle modules are loaded and systemd pets the hardware watchdog."""
    assert device.booted_slot() == "A"
    env = device.boot_env()
    assert env["BOOT_ORDER"].split() == ["A", "B"], env
    status = device.run("rauc status --detailed", timeout=120)
    assert "rootfs.0" in status and "rootfs.1" in status and "bootname: A" in status, status
    assert "booted" in status, status
    modules = device.run("cat /proc/modules; cat /lib/modules/$(uname -r)/modules.builtin")
    for module in ("dm_verity", "squashfs", "loop"):
        assert module in modules, module
    watchdog = device.run("systemctl show -p RuntimeWatchdogUSec --value; cat /sys/class/watchdog/watchdog0/state")
    assert watchdog.split() == ["30s", "active"], watchdog
    assert "version=" in device.run("cat /etc/eticket-image-id")


def test_a_receipt_sent_before_the_updates(device: ABDevice, cli_env: dict[str, str], tmp_path: Path) -> None:
    """A till pairs (the code from the device's display state) and sends a receipt; the story checks later
    that it is still downloadable after the updates (the data partition survives)."""
    import json

    token = json.loads(device.run("cat /var/lib/eticket/kiosk.json"))["token"]
    state = httpx.get(device.guest.url + "/api/v1/display", headers={"Authorization": f"Bearer {token}"}).json()
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
    path = url[url.index("/r/"):]
    assert httpx.get(device.guest.url + path).content == pdf.read_bytes()
    _receipt.append(Receipt(path=path, pdf=pdf.read_bytes()))


@pytest.mark.parametrize("kind", ["tampered", "foreign"])
def test_a_tampered_or_foreign_bundle_is_refused_before_the_slot_is_written(device: ABDevice, bundles: Bundles,
                                                                            kind: str) -> None:
    """A bundle with one byte flipped, and one signed by a CA the device does not trust: refused, slot B
    untouched (its first 64 MiB hash the same), the device still on A."""
    before = device.slot_digest("B")
    result = _install(device, getattr(bundles, kind))
    assert result.returncode != 0, result.stdout
    message = (result.stderr + result.stdout).lower()
    if kind == "foreign":
        assert "signature" in message or "verif" in message, message
    assert device.slot_digest("B") == before
    assert device.booted_slot() == "A"
    device.run(f"rm -f {INCOMING}/*")


def test_a_power_cut_during_the_install_boots_the_good_slot(device: ABDevice, bundles: Bundles) -> None:
    """The plug is pulled while RAUC writes slot B: the device comes back on A, healthy, B not chosen."""
    device.run(f"mkdir -p {INCOMING}")
    device.upload(bundles.good, f"{INCOMING}/{bundles.good.name}")
    blank = device.slot_digest("B", mib=4)
    device.run(f"systemd-run --unit=test-install rauc install {INCOMING}/{bundles.good.name}")
    deadline = time.monotonic() + INSTALL_TIMEOUT_SECONDS
    while time.monotonic() < deadline and device.slot_digest("B", mib=4) == blank:
        time.sleep(2)
    assert device.slot_digest("B", mib=4) != blank, "RAUC never started writing slot B"
    device.power_cycle()
    device.wait_up()
    assert device.booted_slot() == "A"
    assert device.guest.wait_healthz(60)[1]["status"] == "ok"
    _commit(device)


def test_an_update_installs_into_b_reboots_and_commits(device: ABDevice, bundles: Bundles) -> None:
    """V2 installed over SSH into slot B; the reboot starts B (U-Boot's counter), the new version runs, the
    slot commits (BOOT_ORDER B first with its tries back), and the receipt sent before is still there."""
    result = _install(device, bundles.good)
    assert result.returncode == 0, result.stderr + result.stdout
    assert device.boot_env()["BOOT_ORDER"].split()[0] == "B"
    device.reboot()
    seconds = device.wait_up()
    print(f"reboot into B: up in {seconds:.0f} s")
    assert device.booted_slot() == "B"
    assert device.image_version() == "2.0.0+test"
    _commit(device)
    env = device.boot_env()
    assert env["BOOT_ORDER"].split()[0] == "B" and env["BOOT_B_LEFT"] == "3", env
    assert _receipt, "the receipt test did not run"
    assert httpx.get(device.guest.url + _receipt[0].path).content == _receipt[0].pdf


def test_a_slot_that_does_not_boot_falls_back_by_itself(device: ABDevice, bundles: Bundles) -> None:
    """A release whose slot cannot be started (no initramfs): U-Boot uses up its tries and boots B again, by
    itself, with V2 and the receipt intact."""
    result = _install(device, bundles.unbootable)
    assert result.returncode == 0, result.stderr + result.stdout
    assert device.boot_env()["BOOT_ORDER"].split()[0] == "A"
    device.reboot()
    device.wait_up(BAD_SLOT_FALLBACK_TIMEOUT_SECONDS)
    assert device.booted_slot() == "B"
    assert device.image_version() == "2.0.0+test"
    env = device.boot_env()
    assert env["BOOT_A_LEFT"] == "0", env
    assert httpx.get(device.guest.url + _receipt[0].path).content == _receipt[0].pdf
    _commit(device)


def test_a_power_cut_during_the_first_boot_of_the_new_slot_boots_a_good_slot(device: ABDevice,
                                                                             bundles: Bundles) -> None:
    """V3 installed into A; the plug is pulled while A boots for the first time (after U-Boot counted the
    try). Powered on again, the device boots a good system and commits it."""
    result = _install(device, bundles.later)
    assert result.returncode == 0, result.stderr + result.stdout
    log = device.guest.serial_log
    seen = log.read_text(errors="replace").count("eticket: booting slot A")
    device.reboot()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and log.read_text(errors="replace").count("eticket: booting slot A") == seen:
        time.sleep(0.5)
    time.sleep(10)  # the kernel is starting
    device.power_cycle()
    device.wait_up()
    slot = device.booted_slot()
    assert slot in ("A", "B")
    assert device.image_version() == {"A": "3.0.0+test", "B": "2.0.0+test"}[slot]
    _commit(device)
    assert httpx.get(device.guest.url + _receipt[0].path).content == _receipt[0].pdf
