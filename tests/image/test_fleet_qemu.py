"""Proof by boot of the fleet tools on real arm64 A/B images (qemu's virt machine through U-Boot, as
tests/image/test_arm64_update.py boots them): two devices booted once for the module (two guests at most at a
time), the scenarios chained, each starting where the previous one left the devices:

1. ``eticket fleet deploy`` over SSH updates shop-1 to V2, which commits; the JSON report says updated; a
   receipt sent before the update is still downloadable after it;
2. ``eticket fleet deploy --waves 1,1`` of V3, whose appliance never gets READY, to both: the canary (shop-1)
   boots it, fails its health gate and rolls back to V2 by itself; the report says rolled-back and stopped;
   shop-2 is untouched (still V1, nothing uploaded to it, no update recorded);
3. the real ``ansible-playbook provisioning/ansible/update.yml`` updates shop-2 to V2.

The inventory names each guest's forwarded SSH port and its real host key, read out of band from the guest's
card (tests/image/story.py ``host_key_from_card``); the fleet tool and Ansible both check it. Bundles are those
of tests/image/story.py (image-build/bundle.sh, signed by the CA the image trusts), built once per session.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.image.ab import ABDevice, boot_ab_device
from tests.image.story import Receipt, build_bundle, host_key_from_card, send_receipt, unhealthy_overlay

pytestmark = [pytest.mark.slow, pytest.mark.timeout(5400)]

BIN = REPO / ".venv" / "bin"
GOOD_VERSION = "2.0.0+test"
UNHEALTHY_VERSION = "3.0.0+unhealthy"
UNHEALTHY_DEADLINE_SECONDS = 60  # the failing release's own gate deadline (the default is 600 s)
FLEET_TIMEOUT_SECONDS = 2400
REBOOT_TIMEOUT_SECONDS = 1200  # a device's reboot, health gate and commit (or roll-back) under TCG
INCOMING = "/var/lib/eticket-update/incoming"
_started = time.monotonic()


@dataclass
class Fleet:
    """The module's two booted devices, the inventory TOML that names them, and their host keys."""

    devices: dict[str, ABDevice]
    host_keys: dict[str, str]
    inventory: Path


@pytest.fixture(scope="module")
def fleet(arm64_build: Path, ssh_key: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    names = ["shop-1", "shop-2"]
    workdirs = [tmp_path_factory.mktemp(name) for name in names]
    start = time.monotonic()
    with ThreadPoolExecutor(len(names)) as pool:
        futures = [pool.submit(boot_ab_device, arm64_build, workdir, ssh_key, hostname=name)
                   for name, workdir in zip(names, workdirs, strict=True)]
        booted = []
        try:
            for future in futures:
                booted.append(future.result())
        except BaseException:
            for future in futures:
                if future.exception() is None:
                    future.result().guest.stop()
            raise
    devices = dict(zip(names, booted, strict=True))
    print(f"two A/B devices up in {time.monotonic() - start:.0f} s")
    try:
        keys = {name: host_key_from_card(device) for name, device in devices.items()}
        inventory = workdirs[0] / "fleet.toml"
        lines = ["[defaults]", 'user = "root"', f'identity = "{ssh_key}"']
        for name, device in devices.items():
            lines += ["[[device]]", f'name = "{name}"', 'host = "127.0.0.1"', f"port = {device.guest.ssh_port}",
                      f'host_key = "{keys[name]}"']
        inventory.write_text("\n".join(lines) + "\n")
        yield Fleet(devices=devices, host_keys=keys, inventory=inventory)
    finally:
        for name, device in devices.items():
            device.guest.stop()
            (arm64_build / f"serial-fleet-{name}.log").write_text(device.guest.console_tail(2_000_000))
        print(f"test_fleet_qemu: module wall time {time.monotonic() - _started:.0f} s")


@pytest.fixture(scope="module")
def good(arm64_build: Path, fleet_keys: Path) -> Path:
    return build_bundle(arm64_build, fleet_keys, arm64_build / "bundles", GOOD_VERSION)


@pytest.fixture(scope="module")
def unhealthy(arm64_build: Path, fleet_keys: Path) -> Path:
    out = arm64_build / "bundles"
    overlay = unhealthy_overlay(out / "overlay-unhealthy", UNHEALTHY_DEADLINE_SECONDS)
    return build_bundle(arm64_build, fleet_keys, out, UNHEALTHY_VERSION, overlay)


def _status(device: ABDevice) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(device.run("eticket update status --json"))
    return body


def _deploy(fleet: Fleet, bundle: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    """``eticket fleet deploy`` as an operator runs it: (exit status, the JSON report, its progress lines)."""
    start = time.monotonic()
    result = subprocess.run([str(BIN / "eticket"), "fleet", "deploy", str(bundle), "--inventory",
                             str(fleet.inventory), "--json", "--reboot-timeout", str(REBOOT_TIMEOUT_SECONDS), *extra],
                            capture_output=True, text=True, timeout=FLEET_TIMEOUT_SECONDS)
    print(f"fleet deploy {bundle.name}: exit {result.returncode} in {time.monotonic() - start:.0f} s\n{result.stderr}")
    assert result.stdout.strip(), result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return result.returncode, report, result.stderr


_receipts: list[Receipt] = []


def test_fleet_deploy_updates_a_device_that_commits_and_keeps_its_receipts(
        fleet: Fleet, good: Path, cli_env: dict[str, str]) -> None:
    """A till sends a receipt to shop-1; ``eticket fleet deploy V2 --device shop-1`` uploads over SSH (the
    host key from the card checked), installs into B; B boots, passes its health gate and commits. The report
    says updated 1.0 → 2.0 on slot B, with its timings; the device agrees; the receipt is still downloadable."""
    device = fleet.devices["shop-1"]
    before = _status(device)
    assert before["booted"] == "A" and before["last_update"] is None, before
    _receipts.append(send_receipt(device, cli_env))
    code, report, _ = _deploy(fleet, good, "--device", "shop-1")
    assert code == 0, report
    assert report["stopped"] is False and report["bundle"]["version"] == GOOD_VERSION, report
    (entry,) = report["devices"]
    assert entry["name"] == "shop-1" and entry["outcome"] == "updated", entry
    assert entry["from_version"] == before["version"] and entry["to_version"] == GOOD_VERSION, entry
    assert entry["slot"] == "B", entry
    assert all(entry["timings"][k] is not None for k in ("upload_s", "install_s", "reboot_to_committed_s")), entry
    after = _status(device)
    assert after["booted"] == "B" and after["boot_state"] == "committed", after
    assert after["version"] == GOOD_VERSION and after["last_update"]["result"] == "committed", after
    assert device.image_version() == GOOD_VERSION
    assert _receipts[0].still_there(device)


def test_a_canary_that_fails_its_health_check_rolls_back_and_stops_the_rollout(
        fleet: Fleet, unhealthy: Path) -> None:
    """V3's appliance never gets READY. ``--waves 1,1``: the canary shop-1 installs it into A, boots it, its
    gate gives up and the device reboots into B (V2) by itself; the report says rolled-back and stopped, and
    shop-2 was never started: still V1 on A, nothing uploaded, no update recorded."""
    canary, other = fleet.devices["shop-1"], fleet.devices["shop-2"]
    other_before = _status(other)
    assert other_before["booted"] == "A" and other_before["last_update"] is None, other_before
    code, report, _ = _deploy(fleet, unhealthy, "--waves", "1,1")
    assert code == 1, report
    assert report["waves"] == [["shop-1"], ["shop-2"]], report
    assert report["stopped"] is True and report["reason"], report
    outcomes = {d["name"]: d for d in report["devices"]}
    assert outcomes["shop-1"]["outcome"] == "rolled-back", outcomes
    assert outcomes["shop-2"]["outcome"] == "not-started", outcomes
    status = _status(canary)
    assert status["booted"] == "B" and status["version"] == GOOD_VERSION, status
    assert status["last_update"]["result"] == "rolled-back", status
    assert status["last_update"]["version"] == UNHEALTHY_VERSION, status
    canary.wait_up()  # the fleet tool read the result over SSH; the appliance may still be starting
    assert _receipts and _receipts[0].still_there(canary)
    other_after = _status(other)
    assert other_after["version"] == other_before["version"] and other_after["booted"] == "A", other_after
    assert other_after["last_update"] is None, other_after
    assert other.run(f"ls -A {INCOMING} 2>/dev/null || true").strip() == ""


def test_ansible_playbook_updates_a_device(fleet: Fleet, good: Path, tmp_path: Path) -> None:
    """The real ``ansible-playbook provisioning/ansible/update.yml`` (host key checked against known_hosts
    holding the key from the card) updates shop-2 to V2: the play succeeds and the device is committed on B."""
    device = fleet.devices["shop-2"]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{device.guest.ssh_port} {fleet.host_keys['shop-2']}\n")
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("\n".join([
        "eticket:", "  vars:", "    ansible_user: root", "    ansible_python_interpreter: /usr/bin/python3",
        f"    ansible_ssh_private_key_file: {device.key}",
        f"    ansible_ssh_common_args: -o StrictHostKeyChecking=yes -o UserKnownHostsFile={known}"
        " -o PasswordAuthentication=no -o ConnectTimeout=10", "  hosts:", "    shop-2:",
        "      ansible_host: 127.0.0.1", f"      ansible_port: {device.guest.ssh_port}"]) + "\n")
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_HOST_KEY_CHECKING": "True"}
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="eticket-cp-") as control:  # SSH control sockets: paths <= 107 bytes
        env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = control
        result = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory),
                                 str(REPO / "provisioning" / "ansible" / "update.yml"), "-e",
                                 f"eticket_bundle={good}", "-e", f"eticket_update_timeout_s={REBOOT_TIMEOUT_SECONDS}"],
                                capture_output=True, text=True, timeout=FLEET_TIMEOUT_SECONDS, env=env, cwd=tmp_path)
    print(f"ansible-playbook: exit {result.returncode} in {time.monotonic() - start:.0f} s")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    status = _status(device)
    assert status["booted"] == "B" and status["version"] == GOOD_VERSION, status
    assert status["boot_state"] == "committed" and status["last_update"]["result"] == "committed", status
