"""``eticket update`` on device hosts: real sshd, real RAUC 1.8 with file-backed slots, the real command and
its health gate, over real SSH (tests/fleet/devicehost.py; the boot loader and the reboot are its stand-ins)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.fleet.bundles import Keys, make_bundle, tamper
from tests.fleet.conftest import require_device_hosts
from tests.fleet.devicehost import APPLIANCE_UNIT, KIOSK_UNIT, DeviceHosts

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def hosts(fleet_dir: Path, fleet_keys: Keys) -> Iterator[DeviceHosts]:
    """Four devices on release 1.0.0 in slot A: d1 (a kiosk drawing frames) updates and rolls back, d2 meets
    refused bundles and power cuts, d3 gets a bad release, d4 has its screen unplugged."""
    require_device_hosts()
    hosts = DeviceHosts(fleet_dir / "hosts", 4, version="1.0.0", keys=fleet_keys, kiosks={0: "dummy", 3: "kmsdrm"})
    try:
        yield hosts
    finally:
        hosts.close()


def _ssh_json(hosts: DeviceHosts, index: int, *remote: str) -> tuple[int, dict[str, Any]]:
    result = hosts.ssh(hosts.devices[index], *remote)
    assert result.stdout.strip(), result.stderr
    body: dict[str, Any] = json.loads(result.stdout)
    return result.returncode, body


def test_status_json_over_ssh(hosts: DeviceHosts) -> None:
    """The fleet tool's first look at a fresh device: slot A booted and committed with its release, slot B
    empty (bad), nothing to roll back to, no update yet."""
    code, body = _ssh_json(hosts, 1, "eticket", "update", "status", "--json")
    assert code == 0
    assert body["compatible"] == "eticket-test"
    assert (body["version"], body["booted"], body["primary"], body["boot_state"]) == ("1.0.0", "A", "A", "committed")
    assert body["slots"] == [{"bootname": "A", "state": "booted", "boot_status": "good", "version": "1.0.0"},
                             {"bootname": "B", "state": "inactive", "boot_status": "bad", "version": None}]
    assert body["other_slot_good"] is False
    assert body["last_update"] is None


def test_install_reboots_into_b_and_commits(hosts: DeviceHosts, fleet_keys: Keys, bundle_dir: Path) -> None:
    """An operator pushes release 2.0.0: it is written into slot B, the device reboots by itself, passes
    its health gate on B and commits there; slot A (1.0.0) stays good to roll back to."""
    bundle = make_bundle(bundle_dir / "v2.raucb", "2.0.0", fleet_keys)
    digest = hashlib.sha256(bundle.read_bytes()).hexdigest()
    device = hosts.devices[0]
    code, body = _ssh_json(hosts, 0, "eticket", "update", "install", str(bundle), "--sha256", digest, "--json")
    assert (code, body["result"], body["version"], body["to_slot"]) == (0, "installed", "2.0.0", "B"), body
    device.wait_boots(2)
    status = device.wait_commit()
    assert (status["booted"], status["version"], status["boot_state"]) == ("B", "2.0.0", "committed"), status
    last = status["last_update"]
    assert (last["result"], last["version"], last["from_slot"], last["to_slot"]) == ("committed", "2.0.0", "A", "B")
    assert last["bundle_sha256"] == digest
    assert status["other_slot_good"] is True
    assert {s["bootname"]: s["version"] for s in status["slots"]} == {"A": "1.0.0", "B": "2.0.0"}
    assert device.units[KIOSK_UNIT].state()["ActiveState"] == "active"  # the real kiosk drew on B


def test_same_version_again_is_current(hosts: DeviceHosts, fleet_keys: Keys, bundle_dir: Path) -> None:
    """Deploying the release a device already runs changes nothing: exit 11, result current, no reboot."""
    bundle = make_bundle(bundle_dir / "v1-again.raucb", "1.0.0", fleet_keys)
    device = hosts.devices[1]
    boots = device.boots
    code, body = _ssh_json(hosts, 1, "eticket", "update", "install", str(bundle), "--json")
    assert (code, body["result"], body["version"]) == (11, "current", "1.0.0"), body
    assert device.update_status()["last_update"] is None
    assert device.boots == boots


@pytest.mark.parametrize("kind", ["tampered", "foreign", "wrong-compatible", "hash"])
def test_refused_bundle_leaves_the_slot_untouched(hosts: DeviceHosts, fleet_keys: Keys, foreign_keys: Keys,
                                                  bundle_dir: Path, kind: str) -> None:
    """A bundle with a flipped bit, one signed by another fleet's key, one built for other hardware, and
    one whose hash is not what the operator said: exit 10 naming the fault, and slot B keeps every byte."""
    good = bundle_dir / "v5.raucb"
    if not good.exists():
        make_bundle(good, "5.0.0", fleet_keys)
    extra: list[str] = []
    if kind == "tampered":
        bundle, fault, extra = tamper(good, bundle_dir / "tampered.raucb"), "signature verification failed", []
    elif kind == "foreign":
        bundle = make_bundle(bundle_dir / "foreign.raucb", "5.0.0", foreign_keys)
        fault, extra = "signature verification failed", []
    elif kind == "wrong-compatible":
        bundle = make_bundle(bundle_dir / "other-hw.raucb", "5.0.0", fleet_keys, compatible="eticket-other")
        fault, extra = "wrong compatible", []
    else:
        bundle, fault, extra = good, "hash mismatch", ["--sha256", "0" * 64]
    device = hosts.devices[1]
    slot_b = (device.dir / "slot-b.img").read_bytes()
    code, body = _ssh_json(hosts, 1, "eticket", "update", "install", str(bundle), *extra, "--json")
    assert (code, body["result"]) == (10, "refused"), body
    assert fault in body["message"]
    assert (device.dir / "slot-b.img").read_bytes() == slot_b
    status = device.update_status()
    assert (status["booted"], status["last_update"]["result"]) == ("A", "refused")
    assert status["slots"][1]["boot_status"] == "bad"


def test_missing_bundle_is_named(hosts: DeviceHosts) -> None:
    """A path with no bundle (an upload that never arrived, a typo): exit 1 and the path in the message, and
    the device's last update stays what it was (nothing was tried); a --sha256 that is no SHA-256 is a usage
    error (exit 2) before anything is touched."""
    _, before = _ssh_json(hosts, 1, "eticket", "update", "status", "--json")
    code, body = _ssh_json(hosts, 1, "eticket", "update", "install", "/var/lib/eticket-update/incoming/x.raucb",
                           "--json")
    assert (code, body["result"]) == (1, "failed")
    assert "no bundle file at /var/lib/eticket-update/incoming/x.raucb" in body["message"]
    _, after = _ssh_json(hosts, 1, "eticket", "update", "status", "--json")
    assert after["last_update"] == before["last_update"]
    typo = hosts.ssh(hosts.devices[1], "eticket", "update", "install", "/var/lib/eticket-update/incoming/x.raucb",
                     "--sha256", "zz", "--json")
    assert typo.returncode == 2 and "not a SHA-256" in typo.stderr, typo


def test_second_install_at_once_is_refused(hosts: DeviceHosts, bundle_dir: Path) -> None:
    """While one install holds the device's update lock (a retrying fleet tool, an operator), another is
    refused at once, exit 1, naming the lock; nothing is recorded."""
    device = hosts.devices[1]
    before = device.update_status()["last_update"]
    holder = device.run("flock", "--nonblock", "/var/lib/eticket-update/lock", "/usr/bin/eticket", "update",
                        "install", str(bundle_dir / "v2.raucb"), "--json")
    assert holder.returncode == 1, holder.stdout
    assert "another install or rollback is running" in json.loads(holder.stdout)["message"]
    assert device.update_status()["last_update"] == before


def test_rollback_needs_a_good_other_slot(hosts: DeviceHosts) -> None:
    """On a device whose other slot never held a release, rollback refuses with exit 12."""
    code, body = _ssh_json(hosts, 2, "eticket", "update", "rollback", "--json")
    assert code == 12, body
    assert "no good slot" in body["message"]


def test_rollback_returns_to_the_previous_release(hosts: DeviceHosts) -> None:
    """After the update to 2.0.0 (slot B), the operator rolls back: the device reboots into slot A and runs
    1.0.0 again, committed, with the rollback recorded."""
    device = hosts.devices[0]
    assert device.update_status()["booted"] == "B", "needs test_install_reboots_into_b_and_commits first"
    boots = device.boots
    code, body = _ssh_json(hosts, 0, "eticket", "update", "rollback", "--json")
    assert (code, body["result"], body["to_slot"], body["version"]) == (0, "rolled-back", "A", "1.0.0"), body
    device.wait_boots(boots + 1)
    status = device.wait_commit()
    assert (status["booted"], status["version"], status["boot_state"]) == ("A", "1.0.0", "committed"), status
    assert status["last_update"]["result"] == "rolled-back"


def test_bad_release_rolls_back_by_itself(hosts: DeviceHosts, fleet_keys: Keys, bundle_dir: Path) -> None:
    """Release 3.0.0 is broken (its appliance does not start): the device boots it, its health gate fails at
    the deadline, it marks slot B bad and reboots into A, and says why."""
    device = hosts.devices[2]
    device.bad_versions.add("3.0.0")
    device.commit_deadline = 3
    bundle = make_bundle(bundle_dir / "v3-bad.raucb", "3.0.0", fleet_keys)
    code, body = _ssh_json(hosts, 2, "eticket", "update", "install", str(bundle), "--json")
    assert (code, body["result"]) == (0, "installed"), body
    device.wait_boots(3)  # 1.0.0, 3.0.0 on trial, 1.0.0 again
    status = device.wait_commit()
    assert (status["booted"], status["version"], status["boot_state"]) == ("A", "1.0.0", "committed"), status
    last = status["last_update"]
    assert (last["result"], last["version"], last["to_slot"]) == ("rolled-back", "3.0.0", "B")
    assert "health check ready failed" in last["message"], last
    assert status["slots"][1]["boot_status"] == "bad"
    assert device.bootenv()["left"]["B"] == 0


def test_root_of_another_release_is_not_committed(hosts: DeviceHosts, fleet_keys: Keys, bundle_dir: Path) -> None:
    """A mis-built bundle: its manifest says 7.0.0 but its root is stamped 7.0.0-rc1. The appliance on the new
    slot reports 7.0.0-rc1 in /healthz, so the gate does not commit and the device returns to its slot."""
    device = hosts.devices[2]
    device.commit_deadline = 3
    bundle = make_bundle(bundle_dir / "v7-misbuilt.raucb", "7.0.0", fleet_keys, image_version="7.0.0-rc1")
    boots = device.boots
    code, body = _ssh_json(hosts, 2, "eticket", "update", "install", str(bundle), "--json")
    assert (code, body["result"]) == (0, "installed"), body
    device.wait_boots(boots + 2)
    status = device.wait_commit()
    last = status["last_update"]
    assert (status["booted"], last["result"], last["version"]) == ("A", "rolled-back", "7.0.0"), status
    assert "health check healthz failed" in last["message"] and "'7.0.0-rc1'" in last["message"], last


def test_unplugged_screen_does_not_block_the_commit(hosts: DeviceHosts, fleet_keys: Keys, bundle_dir: Path) -> None:
    """A device whose screen is unplugged (its kiosk waits for a display) still commits a good release: the
    frame check applies only when a display is present."""
    device = hosts.devices[3]
    assert device.units[KIOSK_UNIT].state()["StatusText"] == "waiting for a display"
    bundle = bundle_dir / "v2.raucb"
    code, body = _ssh_json(hosts, 3, "eticket", "update", "install", str(bundle), "--json")
    assert (code, body["result"]) == (0, "installed"), body
    device.wait_boots(2)
    status = device.wait_commit()
    assert (status["booted"], status["version"], status["last_update"]["result"]) == ("B", "2.0.0", "committed")


def test_committed_slot_stays_good_when_the_appliance_is_down(hosts: DeviceHosts) -> None:
    """On a committed slot a failing appliance is no reason to leave it: commit answers 1, naming the unit,
    and neither marks the slot bad nor touches the boot loader."""
    device = hosts.devices[1]
    before = device.bootenv()
    device.stop_unit(APPLIANCE_UNIT)
    result = device.eticket("update", "commit", "--deadline", "1", "--json")
    assert result.returncode == 1, result.stdout
    assert "eticket.service is failed" in json.loads(result.stdout)["message"]
    status = device.update_status()
    assert (status["booted"], status["slots"][0]["boot_status"]) == ("A", "good")
    assert device.bootenv() == before
    device.reboot()
    device.wait_commit()


def test_power_cut_in_the_first_boot_of_the_new_slot(hosts: DeviceHosts, fleet_keys: Keys, bundle_dir: Path) -> None:
    """The power goes off while the new slot boots for the first time, before its commit: the boot loader
    tries it again (one attempt less) and it commits then."""
    device = hosts.devices[2]
    bundle = make_bundle(bundle_dir / "v4.raucb", "4.0.0", fleet_keys)
    code, body = _ssh_json(hosts, 2, "eticket", "update", "install", str(bundle), "--no-reboot", "--json")
    assert (code, body["result"]) == (0, "installed"), body
    device.power_off(graceful=False)
    assert device.boot() == "B"
    device.power_off(graceful=False)  # long before the appliance is READY: nothing committed
    assert device.bootenv()["left"]["B"] == 2
    assert device.boot() == "B"
    status = device.wait_commit()
    assert (status["booted"], status["version"], status["last_update"]["result"]) == ("B", "4.0.0", "committed")
    assert device.bootenv()["left"]["B"] == 3


def test_power_cut_during_the_install(hosts: DeviceHosts, fleet_keys: Keys, bundle_dir: Path) -> None:
    """The power goes off while RAUC writes the new slot (paused there by a hook in the bundle; status says
    it is busy meanwhile): the device boots its old slot, commits it, and says the install was interrupted;
    the half-written slot is not booted."""
    device = hosts.devices[3]
    marker = bundle_dir / "writing-d4"
    hook = f"#!/bin/sh\nif [ \"$1\" = slot-pre-install ]; then touch {marker}; sleep 600; fi\n"
    bundle = make_bundle(bundle_dir / "v9-paused.raucb", "9.0.0", fleet_keys, pre_install_hook=hook)
    booted = device.update_status()["booted"]
    install = subprocess.Popen(device.cmd("/usr/bin/eticket", "update", "install", str(bundle), "--json"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(marker.exists, 60, "RAUC to start writing the slot")
        during = device.update_status()  # RAUC's service answers nothing else while it installs
        assert (during["busy"], during["booted"], during["last_update"]["result"]) == (True, booted, "installing")
        device.power_off(graceful=False)
    finally:
        install.wait(30)
    assert device.boot() == booted
    status = device.wait_commit()
    assert (status["booted"], status["boot_state"]) == (booted, "committed"), status
    last = status["last_update"]
    assert (last["result"], last["version"]) == ("failed", "9.0.0")
    assert "the install was interrupted" in last["message"]
    assert status["primary"] == booted


def test_new_slot_that_never_boots_falls_back(hosts: DeviceHosts, fleet_keys: Keys, bundle_dir: Path) -> None:
    """The new slot never gets through a boot (the power is cut in each attempt): after its attempts the boot
    loader boots the old slot, and the device says the new slot did not boot."""
    device = hosts.devices[1]
    device.bad_versions.add("6.0.0")  # never commits by itself, whatever the timing
    bundle = make_bundle(bundle_dir / "v6.raucb", "6.0.0", fleet_keys)
    code, body = _ssh_json(hosts, 1, "eticket", "update", "install", str(bundle), "--no-reboot", "--json")
    assert (code, body["result"]) == (0, "installed"), body
    for _ in range(3):
        device.power_off(graceful=False)
        assert device.boot() == "B"
    device.power_off(graceful=False)
    assert device.boot() == "A"
    status = device.wait_commit()
    assert (status["booted"], status["version"], status["boot_state"]) == ("A", "1.0.0", "committed"), status
    assert (status["last_update"]["result"], status["last_update"]["message"]) == (
        "rolled-back", "the new slot did not boot")


def test_refusal_after_an_install_keeps_its_health_gate(hosts: DeviceHosts, fleet_keys: Keys,
                                                         bundle_dir: Path) -> None:
    """Release 8.0.0 is installed without a reboot, then a tampered bundle is pushed and refused. The
    refusal must not hide the waiting update: after the reboot slot B still goes through the health gate
    and is committed by it."""
    device = hosts.devices[1]
    bundle = make_bundle(bundle_dir / "v8.raucb", "8.0.0", fleet_keys)
    code, body = _ssh_json(hosts, 1, "eticket", "update", "install", str(bundle), "--no-reboot", "--json")
    assert (code, body["result"]) == (0, "installed"), body
    code, body = _ssh_json(hosts, 1, "eticket", "update", "install", str(tamper(bundle, bundle_dir / "v8-bad.raucb")),
                           "--json")
    assert (code, body["result"]) == (10, "refused"), body
    assert "installed earlier still waits for its reboot" in body["message"]
    assert device.update_status()["last_update"]["result"] == "installed"
    device.reboot()
    status = device.wait_commit()
    last = status["last_update"]
    assert (status["booted"], last["result"], last["version"]) == ("B", "committed", "8.0.0"), status
    assert "every health check passed" in last["message"]
