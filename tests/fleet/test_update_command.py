"""``eticket update`` on device hosts: real sshd, real RAUC 1.8 with file-backed slots, the real command and
its health gate, over real SSH (tests/fleet/devicehost.py; the boot loader and the reboot are its stand-ins)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.bundles import Keys, make_bundle, tamper
from tests.fleet.conftest import require_device_hosts
from tests.fleet.devicehost import DeviceHosts

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def hosts(fleet_dir: Path, fleet_keys: Keys) -> Iterator[DeviceHosts]:
    """Three devices on release 1.0.0 in slot A: d1 updates and rolls back, d2 meets refused bundles,
    d3 gets a bad release."""
    require_device_hosts()
    hosts = DeviceHosts(fleet_dir / "hosts", 3, version="1.0.0", keys=fleet_keys)
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
    """A path with no bundle (an upload that never arrived): exit 1 and the path in the message."""
    code, body = _ssh_json(hosts, 1, "eticket", "update", "install", "/var/lib/eticket-update/incoming/x.raucb",
                           "--json")
    assert (code, body["result"]) == (1, "failed")
    assert "no bundle at /var/lib/eticket-update/incoming/x.raucb" in body["message"]


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
