"""``eticket fleet`` against five real devices: network + mount namespaces each running OpenSSH's sshd, Debian's
RAUC and this repository's ``eticket update`` (tests/fleet/devicehost.py), the fleet tool run as a user would
run it on the operator's host of the same LAN.

The five devices are shared by the module (booting them is the expensive part) and the tests run in file
order, each saying which state it starts from: status on a fresh fleet, a changed host key, a canary whose
release fails its health check, a rollout to all, an unreachable device, a resumed upload.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.bundles import make_bundle
from tests.fleet.conftest import require_device_hosts
from tests.fleet.devicehost import Device, DeviceHosts

INCOMING = "/var/lib/eticket-update/incoming"
DEVICES = 5
BAD_RELEASE_DEADLINE_SECONDS = 5.0
"""The canary's health-gate deadline in the canary test (600 s on a real device, 30 s in the harness): the bad
release never gets READY, so the gate waits it out before rolling back."""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeviceHosts]:
    require_device_hosts()
    hosts = DeviceHosts(tmp_path_factory.mktemp("fleet"), DEVICES, version="1.0.0")
    try:
        yield hosts
    finally:
        hosts.close()


def inventory(hosts: DeviceHosts, path: Path, devices: list[Device] | None = None,
              host_keys: dict[str, str] | None = None) -> Path:
    """An inventory of ``devices`` (default all) with their real host keys unless ``host_keys`` says otherwise."""
    lines = ["[defaults]", 'user = "root"', f'identity = "{hosts.client_key}"', ""]
    for device in devices or hosts.devices:
        key = (host_keys or {}).get(device.name, device.host_key)
        lines += ["[[device]]", f'name = "{device.name}"', f'host = "{device.host.address}"',
                  f'host_key = "{key}"', ""]
    path.write_text("\n".join(lines))
    return path


def fleet_cli(hosts: DeviceHosts, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``eticket fleet ARGS`` on the operator's host of the LAN."""
    return hosts.client.run(sys.executable, "-m", "appliance.cli", "fleet", *args, timeout=timeout)


def deploy(hosts: DeviceHosts, tmp_path: Path, bundle: Path, inv: Path, *extra: str) -> dict[str, Any]:
    report = tmp_path / "report.json"
    done = fleet_cli(hosts, "deploy", str(bundle), "--inventory", str(inv), "--json-report", str(report), *extra)
    assert report.exists(), done.stderr
    data: dict[str, Any] = json.loads(report.read_text())
    data["exit"], data["stderr"] = done.returncode, done.stderr
    return data


def outcomes(report: dict[str, Any]) -> dict[str, str]:
    return {d["name"]: d["outcome"] for d in report["devices"]}


def incoming(device: Device) -> list[str]:
    done = device.run("sh", "-c", f"ls -A {INCOMING} 2>/dev/null || true")
    return done.stdout.split()


def test_status_lists_every_device_as_a_table_and_as_json(fleet: DeviceHosts, tmp_path: Path) -> None:
    """A fresh fleet: five devices on 1.0.0, slot A, committed."""
    inv = inventory(fleet, tmp_path / "fleet.toml")
    table = fleet_cli(fleet, "status", "--inventory", str(inv))
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:3] == ["DEVICE", "HOST", "REACHABLE"]
    assert [r.split()[:5] for r in rows] == [[d.name, f"{d.host.address}:22", "yes", "1.0.0", "A"]
                                             for d in fleet.devices]
    as_json = fleet_cli(fleet, "status", "--inventory", str(inv), "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert [(r["name"], r["reachable"], r["version"], r["slot"], r["boot_state"], r["health"]) for r in data] == [
        (d.name, True, "1.0.0", "A", "committed", "good") for d in fleet.devices]


def test_a_changed_host_key_is_refused_and_nothing_is_uploaded(fleet: DeviceHosts, tmp_path: Path) -> None:
    """The inventory knows canary by another key (a re-imaged device, or a man in the middle): no trust on first
    use, the deploy sends nothing and says why."""
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    canary = fleet.devices[0]
    inv = inventory(fleet, tmp_path / "fleet.toml", [canary], {canary.name: wrong})
    bundle = make_bundle(tmp_path / "eticket-test-1.5.0.raucb", "1.5.0", fleet.keys)
    report = deploy(fleet, tmp_path, bundle, inv)
    (device,) = report["devices"]
    assert device["outcome"] == "failed" and "host key does not match" in device["message"], device
    assert report["exit"] == 1
    assert incoming(canary) == [] and canary.update_status()["version"] == "1.0.0"
    (row,) = json.loads(fleet_cli(fleet, "status", "--inventory", str(inv), "--json").stdout)
    assert row["reachable"] is False and "host key does not match" in row["error"], row


def test_a_canary_that_fails_its_health_check_stops_the_rollout(fleet: DeviceHosts, tmp_path: Path) -> None:
    """Release 1.1.0 cannot start its appliance on canary, the canary: canary rolls back by itself, the report
    says so, the rollout stops and the others are not touched (no upload, still 1.0.0)."""
    canary, *others = fleet.devices
    canary.bad_versions.add("1.1.0")
    canary.commit_deadline = BAD_RELEASE_DEADLINE_SECONDS
    bundle = make_bundle(tmp_path / "eticket-test-1.1.0.raucb", "1.1.0", fleet.keys)
    report = deploy(fleet, tmp_path, bundle, inventory(fleet, tmp_path / "fleet.toml"), "--waves", "1,2")
    n = [d.name for d in fleet.devices]
    assert report["waves"] == [n[:1], n[1:3], n[3:5]]
    assert outcomes(report) == {n[0]: "rolled-back"} | {name: "not-started" for name in n[1:]}
    assert report["stopped"] is True and "wave 1" in report["reason"] and report["exit"] == 1
    first = report["devices"][0]
    assert first["from_version"] == "1.0.0" and first["to_version"] == "1.0.0" and first["slot"] == "A"
    assert "rolled back" in first["message"]
    assert canary.update_status()["version"] == "1.0.0"
    assert incoming(canary) == []  # the installed bundle is not left to fill the data partition
    for device in others:
        assert incoming(device) == [], device.name
        status = device.update_status()
        assert (status["version"], status["last_update"]) == ("1.0.0", None), device.name
    canary.commit_deadline = 30.0


def test_a_deploy_updates_every_device_and_a_second_one_skips_them(fleet: DeviceHosts, tmp_path: Path) -> None:
    """Release 2.0.0 to all five, a canary then a wave of four run in parallel: every device ends committed on
    2.0.0 in slot B; the same deploy again has nothing to do."""
    bundle = make_bundle(tmp_path / "eticket-test-2.0.0.raucb", "2.0.0", fleet.keys)
    inv = inventory(fleet, tmp_path / "fleet.toml")
    report = deploy(fleet, tmp_path, bundle, inv, "--waves", "1,100%", "--parallel", "4")
    n = [d.name for d in fleet.devices]
    assert report["waves"] == [n[:1], n[1:]]
    assert outcomes(report) == {d.name: "updated" for d in fleet.devices}, report["devices"]
    assert report["exit"] == 0 and report["stopped"] is False
    for entry in report["devices"]:
        assert (entry["from_version"], entry["to_version"], entry["slot"]) == ("1.0.0", "2.0.0", "B")
        assert entry["bytes_sent"] == bundle.stat().st_size
        assert all(entry["timings"][k] is not None for k in ("upload_s", "install_s", "reboot_to_committed_s"))
    for device in fleet.devices:
        status = device.update_status()
        assert (status["version"], status["booted"], status["boot_state"]) == ("2.0.0", "B", "committed")
        assert incoming(device) == [], device.name  # installed bundles do not fill the data partition
    again = deploy(fleet, tmp_path, bundle, inv)
    assert outcomes(again) == {d.name: "skipped" for d in fleet.devices} and again["waves"] == []


def test_an_unreachable_device_is_reported_and_the_others_go_on(fleet: DeviceHosts, tmp_path: Path) -> None:
    """dev5 is off (a shop closed for the night): status says so, a deploy reports it unreachable, untouched,
    and still handles the others."""
    dev5 = fleet.devices[-1]
    dev5.power_off()
    try:
        inv = inventory(fleet, tmp_path / "fleet.toml")
        status = fleet_cli(fleet, "status", "--inventory", str(inv), "--json")
        assert status.returncode == 1
        rows = {r["name"]: r for r in json.loads(status.stdout)}
        assert rows[dev5.name]["reachable"] is False and "unreachable" in rows[dev5.name]["error"]
        assert all(rows[d.name]["reachable"] for d in fleet.devices[:-1])
        bundle = make_bundle(tmp_path / "eticket-test-2.0.0.raucb", "2.0.0", fleet.keys)
        report = deploy(fleet, tmp_path, bundle, inv)
        assert outcomes(report) == {d.name: "skipped" for d in fleet.devices[:-1]} | {dev5.name: "unreachable"}
        assert "not touched" in report["devices"][-1]["message"] and report["exit"] == 1
    finally:
        dev5.boot()


def test_a_device_cut_off_mid_install_is_reported_and_boots_a_good_slot(fleet: DeviceHosts, tmp_path: Path) -> None:
    """The third device loses power the moment its upload is complete (during the install): the deploy reports
    it unreachable and leaves it alone; powered on again it boots a good slot, committed."""
    import hashlib
    import threading
    import time

    dev3 = fleet.devices[2]
    bundle = make_bundle(tmp_path / "eticket-test-3.0.0.raucb", "3.0.0", fleet.keys)
    final = f"{INCOMING}/{hashlib.sha256(bundle.read_bytes()).hexdigest()}.raucb"

    def power_cut() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if dev3.run("test", "-e", final).returncode == 0:
                dev3.power_off(graceful=False)
                return
            time.sleep(0.02)

    cutter = threading.Thread(target=power_cut)
    cutter.start()
    try:
        report = deploy(fleet, tmp_path, bundle, inventory(fleet, tmp_path / "fleet.toml"), "--device", dev3.name,
                        "--reboot-timeout", "3")
    finally:
        cutter.join()
    (entry,) = report["devices"]
    assert entry["outcome"] == "unreachable" and "left alone" in entry["message"], entry
    assert report["exit"] == 1
    dev3.boot()
    status = dev3.wait_commit()
    assert status["boot_state"] == "committed" and status["version"] in ("2.0.0", "3.0.0"), status
    assert status["last_update"]["result"] in ("failed", "committed"), status["last_update"]


def test_an_interrupted_upload_is_resumed_not_restarted(fleet: DeviceHosts, tmp_path: Path) -> None:
    """Half of release 2.1.0 is already on dev2 (a link that dropped mid-upload): the next deploy sends only the
    rest, the device checks the whole file's SHA-256 and installs it."""
    import hashlib

    dev2 = fleet.devices[1]
    bundle = make_bundle(tmp_path / "eticket-test-2.1.0.raucb", "2.1.0", fleet.keys)
    data = bundle.read_bytes()
    half = len(data) // 2
    part = f"{INCOMING}/{hashlib.sha256(data).hexdigest()}.raucb.part"
    done = dev2.run("sh", "-c", f"mkdir -p {INCOMING} && head -c {half} {bundle} > {part}")
    assert done.returncode == 0, done.stderr
    report = deploy(fleet, tmp_path, bundle, inventory(fleet, tmp_path / "fleet.toml"), "--device", dev2.name)
    (entry,) = report["devices"]
    assert entry["outcome"] == "updated", entry
    assert (entry["resumed_from"], entry["bytes_sent"]) == (half, len(data) - half)
    assert dev2.update_status()["version"] == "2.1.0"


def test_rollback_boots_the_other_slot_where_it_is_good(fleet: DeviceHosts, tmp_path: Path) -> None:
    """After the resumed upload the second device runs 2.1.0 and its other slot holds a good 2.0.0: a rollback
    boots 2.0.0 again. Naming no device is refused (a whole fleet is rolled back only with --all)."""
    dev2 = fleet.devices[1]
    inv = inventory(fleet, tmp_path / "fleet.toml")
    refused = fleet_cli(fleet, "rollback", "--inventory", str(inv))
    assert refused.returncode == 2 and "--device NAME" in refused.stderr
    before = dev2.update_status()
    assert before["version"] == "2.1.0" and before["other_slot_good"] is True, before
    done = fleet_cli(fleet, "rollback", "--inventory", str(inv), "--device", dev2.name, "--json")
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(done.stdout)
    assert (entry["outcome"], entry["from_version"], entry["to_version"]) == ("rolled-back", "2.1.0", "2.0.0")
    after = dev2.update_status()
    assert (after["version"], after["booted"]) == ("2.0.0", {"A": "B", "B": "A"}[before["booted"]])
