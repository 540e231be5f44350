"""Proof by boot of the A/B update mechanism on the arm64 image (qemu's virt machine through U-Boot: the
Raspberry Pi's boot script and counter, an i6300esb watchdog): one device, booted once, walks through a chain
of updates, each test starting where the previous one left it (module-scoped; the order below is the story's):

1. a fresh card boots slot A through U-Boot (the appliance up with the card's host name, the kiosk started
   with the image's own wheels and waiting for a display: the virt machine has none); a till pairs and sends
   a receipt;
2. a tampered bundle and one signed by another CA are refused, slot B unchanged;
3. the plug is pulled while RAUC writes slot B: the device comes back on A;
4. V2 is installed over SSH (``eticket update install``), the reboot starts B, the plug is pulled during that
   first boot; powered on, B boots again, passes the health gate and commits; the receipt is still there;
5. V4, whose slot cannot start at all (no initramfs), is installed into A: U-Boot uses up A's tries and boots
   B by itself.

A release whose appliance never gets READY (the health gate's roll-back) is proven on the same image by
tests/image/test_fleet_qemu.py's canary, through the fleet tool: one boot chain for both (CI's time).

Bundles are built by the documented script (image-build/bundle.sh) from the image build's own root, signed by
the fleet CA the image trusts (tests/image/keys.py, laid out as ``eticket fleet keys init`` does).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.image.ab import ABDevice, boot_ab_device
from tests.image.keys import make_fleet_keys
from tests.image.qemu import choose_accel
from tests.image.story import Receipt, send_receipt
from tests.image.story import build_bundle as _bundle  # built once per session, shared with test_fleet_qemu

pytestmark = [pytest.mark.slow, pytest.mark.timeout(5400)]

INCOMING = "/var/lib/eticket-update/incoming"
INSTALL_TIMEOUT_SECONDS = 1200
BAD_SLOT_FALLBACK_TIMEOUT_SECONDS = 900.0
COMMIT_TIMEOUT_SECONDS = 900.0
KIOSK_START_TIMEOUT_SECONDS = 300.0
# A byte in the bundle's first verity block (the squashfs superblock): the signature (over the manifest and
# the verity root hash) still verifies, so it is dm-verity that refuses the payload, at the bundle's mount,
# before RAUC opens the slot.
TAMPER_OFFSET = 100


@dataclass
class Bundles:
    """The bundles of this story, built once: ``good`` (V2), ``unbootable`` (V4: its slot has an empty
    initramfs, so it cannot start), ``tampered`` (a byte of V2 flipped), ``foreign`` (V2 re-signed by a CA the
    device does not trust)."""

    good: Path
    unbootable: Path
    tampered: Path
    foreign: Path


@pytest.fixture(scope="module")
def bundles(arm64_build: Path, fleet_keys: Path) -> Bundles:
    out = arm64_build / "bundles"  # beside the image they are made from (git-ignored build/)
    shutil.rmtree(out / "overlay-unbootable", ignore_errors=True)
    good = _bundle(arm64_build, fleet_keys, out, "2.0.0+test")
    dead = out / "overlay-unbootable"
    (dead / "boot").mkdir(parents=True)
    (dead / "boot" / "initrd.img").write_bytes(b"")
    unbootable = _bundle(arm64_build, fleet_keys, out, "4.0.0+unbootable", dead)
    tampered = out / "tampered.raucb"
    shutil.copy(good, tampered)
    with open(tampered, "r+b") as handle:
        handle.seek(TAMPER_OFFSET)
        byte = handle.read(1)
        handle.seek(TAMPER_OFFSET)
        handle.write(bytes([byte[0] ^ 0xFF]))
    other = make_fleet_keys(out / "other-fleet", name="Someone else")
    foreign = out / "foreign.raucb"
    foreign.unlink(missing_ok=True)
    # RAUC checks the old signature against --keyring (our CA), the new one against --signing-keyring.
    sys_conf = out / "verify-system.conf"
    sys_conf.write_text(f"[system]\ncompatible=eticket-arm64\nbootloader=noop\n[keyring]\n"
                        f"path={fleet_keys / 'keyring.pem'}\ncheck-purpose=codesign\n")
    resigned = subprocess.run(["rauc", f"--conf={sys_conf}", "resign", f"--cert={other / 'signing.crt'}",
                               f"--key={other / 'signing.key'}", f"--keyring={fleet_keys / 'keyring.pem'}",
                               f"--signing-keyring={other / 'keyring.pem'}",
                               str(good), str(foreign)], capture_output=True, text=True)
    assert resigned.returncode == 0, resigned.stderr
    return Bundles(good=good, unbootable=unbootable, tampered=tampered, foreign=foreign)


@pytest.fixture(scope="module")
def device(arm64_build: Path, ssh_key: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ABDevice]:
    workdir = tmp_path_factory.mktemp("ab-device")
    start = time.monotonic()
    dev = boot_ab_device(arm64_build, workdir, ssh_key)
    print(f"A/B device up in {time.monotonic() - start:.0f} s")
    (arm64_build / "boot-virt.json").write_text(json.dumps({"accel": choose_accel("arm64")[0],
                                                            "boot_to_healthz_seconds": round(dev.healthz_seconds, 1)})
                                                + "\n")
    try:
        yield dev
    finally:
        dev.guest.stop()
        (arm64_build / "serial-arm64-update.log").write_text(dev.guest.console_tail(2_000_000))


def _status(device: ABDevice) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(device.run("eticket update status --json"))
    return body


def _install(device: ABDevice, bundle: Path) -> tuple[int, dict[str, Any]]:
    """Upload ``bundle`` over SSH and install it with the device's own command (no reboot): (exit status,
    its JSON answer)."""
    device.run(f"mkdir -p {INCOMING}")
    target = f"{INCOMING}/{bundle.name}"
    device.upload(bundle, target)
    start = time.monotonic()
    result = device.ssh(f"eticket update install {target} --json --no-reboot", timeout=INSTALL_TIMEOUT_SECONDS)
    print(f"install {bundle.name}: exit {result.returncode} in {time.monotonic() - start:.0f} s")
    device.run(f"rm -f {target}")
    try:
        answer: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError:
        answer = {"stdout": result.stdout, "stderr": result.stderr}
    return result.returncode, answer


def _wait_committed(device: ABDevice, slot: str) -> dict[str, Any]:
    """Until the health gate committed ``slot`` (``boot_state`` committed, booted = primary = ``slot``)."""
    deadline = time.monotonic() + COMMIT_TIMEOUT_SECONDS
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = _status(device)
        if status["booted"] == slot and status["boot_state"] == "committed" and status["primary"] == slot:
            active = device.ssh("systemctl is-active eticket-update-commit.service").stdout.strip()
            if active == "active":
                return status
        time.sleep(5)
    journal = device.ssh("journalctl -b -u eticket-update-commit.service --no-pager -n 30").stdout
    raise AssertionError(f"slot {slot} not committed: {status}\n{journal}")


def _receipt_still_there(device: ABDevice) -> None:
    assert _receipt, "the receipt test did not run"
    assert _receipt[0].still_there(device)


_receipt: list[Receipt] = []


def test_boots_slot_a_through_u_boot_with_rauc_ready(device: ABDevice) -> None:
    """A fresh card: U-Boot's boot.scr picked slot A (first in BOOT_ORDER) and started slot A's own kernel (not
    qemu's -kernel), the card's host name applied, the health gate committed it (counter back to 3), RAUC sees
    both slots, the verity modules are loaded, systemd pets the watchdog."""
    assert device.run("hostname; systemctl show -p SubState --value eticket.service").split() == \
        ["pi-caisse", "running"]
    cmdline = device.run("cat /proc/cmdline").split()
    assert "root=LABEL=eticket-root-a" in cmdline and "rauc.slot=A" in cmdline, cmdline
    assert "eticket: booting slot A" in device.guest.console_tail(200_000)
    assert device.booted_slot() == "A"
    status = _wait_committed(device, "A")
    assert [s["bootname"] for s in status["slots"]] == ["A", "B"], status
    env = device.boot_env()
    assert env["BOOT_ORDER"].split() == ["A", "B"] and env["BOOT_A_LEFT"] == "3", env
    # Slot B is empty on a fresh card: no tries, bad for RAUC, nothing to roll back to.
    assert env["BOOT_B_LEFT"] == "0" and status["other_slot_good"] is False, (env, status)
    rollback = device.ssh("eticket update rollback --json")
    assert rollback.returncode == 12, (rollback.returncode, rollback.stdout, rollback.stderr)
    modules = device.run("cat /proc/modules /lib/modules/$(uname -r)/modules.builtin")
    for module in ("dm_verity", "squashfs", "loop"):
        assert module in modules, module
    watchdog = device.run("systemctl show -p RuntimeWatchdogUSec --value; cat /sys/class/watchdog/watchdog0/state")
    assert watchdog.split() == ["30s", "active"], watchdog
    assert status["version"] == device.image_version()


def test_the_kiosk_starts_with_the_images_own_wheels_and_waits_for_a_display(device: ABDevice) -> None:
    """The kiosk service runs with the image's own aarch64 wheels and stays up; qemu's virt machine here has no
    display, so it waits for one (as a Pi whose HDMI cable is not plugged in) instead of restarting."""
    kiosk: dict[str, str] = {}
    deadline = time.monotonic() + KIOSK_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline and kiosk.get("StatusText") != "waiting for a display":
        time.sleep(3)
        shown = device.run("systemctl show eticket-kiosk.service -p ActiveState -p SubState -p NRestarts "
                           "-p StatusText")
        kiosk = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    journal = device.run("journalctl -b -u eticket-kiosk.service --no-pager -o cat")
    assert kiosk.get("StatusText") == "waiting for a display", f"{kiosk}\n{journal[-3000:]}"
    assert kiosk["ActiveState"] == "active" and kiosk["SubState"] == "running" and kiosk["NRestarts"] == "0"
    assert journal.count("waiting for a display (") == 1 and "Traceback" not in journal, journal[-3000:]


def test_a_receipt_sent_before_the_updates(device: ABDevice, cli_env: dict[str, str]) -> None:
    """A till pairs (the code from the device's display state) and sends a receipt; later tests check that
    it is still downloadable after each update and rollback (the data partition survives)."""
    _receipt.append(send_receipt(device, cli_env))


@pytest.mark.parametrize("kind", ["tampered", "foreign"])
def test_a_tampered_or_foreign_bundle_is_refused_before_the_slot_is_written(device: ABDevice, bundles: Bundles,
                                                                            kind: str) -> None:
    """A bundle with one byte flipped, and one signed by a CA the device does not trust: refused (exit 10),
    slot B untouched (its first 64 MiB hash the same), the device still on A, committed."""
    before = device.slot_digest("B")
    code, answer = _install(device, getattr(bundles, kind))
    print(f"{kind}: exit {code}, {answer}")
    # The tampered one: RAUC names it a mount error (dm-verity: Input/output error); eticket update calls it
    # what it is, a refused bundle.
    assert code == 10 and answer.get("result") == "refused", answer
    assert device.slot_digest("B") == before
    assert device.booted_slot() == "A" and _status(device)["primary"] == "A"


def test_a_power_cut_during_the_install_boots_the_good_slot(device: ABDevice, bundles: Bundles) -> None:
    """The plug is pulled while RAUC writes slot B: the device comes back on A, healthy and committed."""
    device.run(f"mkdir -p {INCOMING}")
    target = f"{INCOMING}/{bundles.good.name}"
    device.upload(bundles.good, target)
    blank = device.slot_digest("B", mib=4)
    device.run(f"systemd-run --unit=test-install eticket update install {target} --no-reboot")
    deadline = time.monotonic() + INSTALL_TIMEOUT_SECONDS
    while time.monotonic() < deadline and device.slot_digest("B", mib=4) == blank:
        time.sleep(2)
    assert device.slot_digest("B", mib=4) != blank, "RAUC never started writing slot B"
    device.power_cycle()
    device.wait_up()
    assert device.booted_slot() == "A"
    _wait_committed(device, "A")
    _receipt_still_there(device)


def test_an_update_survives_a_power_cut_in_its_first_boot_and_commits(device: ABDevice, bundles: Bundles) -> None:
    """V2 installed over SSH into B; the reboot starts B and the plug is pulled during that first boot (after
    U-Boot counted the try). Powered on, B boots again, passes the health gate and commits (B first in
    BOOT_ORDER, its tries back to 3); the receipt sent before is still there."""
    code, answer = _install(device, bundles.good)
    assert code == 0 and answer["result"] == "installed" and answer["to_slot"] == "B", answer
    assert device.boot_env()["BOOT_ORDER"].split()[0] == "B"
    log = device.guest.serial_log
    seen = log.read_text(errors="replace").count("eticket: booting slot B")
    device.reboot()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and log.read_text(errors="replace").count("eticket: booting slot B") == seen:
        time.sleep(0.5)
    assert log.read_text(errors="replace").count("eticket: booting slot B") > seen, "U-Boot never chose B"
    time.sleep(8)  # the kernel is starting
    device.power_cycle()
    seconds = device.wait_up()
    print(f"power-cut first boot of B: up again in {seconds:.0f} s")
    assert device.booted_slot() == "B"
    assert device.image_version() == "2.0.0+test"
    status = _wait_committed(device, "B")
    assert status["last_update"]["result"] == "committed", status
    env = device.boot_env()
    assert env["BOOT_ORDER"].split()[0] == "B" and env["BOOT_B_LEFT"] == "3", env
    _receipt_still_there(device)


def test_a_slot_that_cannot_start_falls_back_through_the_boot_counter(device: ABDevice, bundles: Bundles) -> None:
    """V4's slot cannot start (empty initramfs: the kernel panics, panic=10 resets): U-Boot uses up A's three
    tries and boots B by itself, which is still V2 and committed."""
    code, answer = _install(device, bundles.unbootable)
    assert code == 0 and answer["to_slot"] == "A", answer
    device.reboot()
    device.wait_up(BAD_SLOT_FALLBACK_TIMEOUT_SECONDS)
    assert device.booted_slot() == "B" and device.image_version() == "2.0.0+test"
    assert device.boot_env()["BOOT_A_LEFT"] == "0"
    status = _wait_committed(device, "B")
    assert status["last_update"]["result"] == "rolled-back", status
    _receipt_still_there(device)
