"""provisioning/ansible/: the playbook for shops that already run Ansible, checked by the real ansible-core
(the test extra): its syntax, the example inventory, and the waves and failure cap it declares."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

ANSIBLE = REPO / "provisioning" / "ansible"
BIN = Path(sys.executable).parent


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, timeout=120, cwd=ANSIBLE,
                          env={"PATH": f"{BIN}:/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1",
                               "ANSIBLE_LOCAL_TEMP": "/tmp/eticket-ansible-local", "HOME": "/tmp"})


def test_the_playbook_passes_ansible_syntax_check() -> None:
    result = _run("ansible-playbook", "--syntax-check", "-i", "inventory.example.yml", "update.yml",
                  "-e", "eticket_bundle=eticket-arm64-0.2.0.raucb")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "playbook: update.yml" in result.stdout


def test_the_example_inventory_lists_the_devices_with_keys_only_and_checked_host_keys() -> None:
    result = _run("ansible-inventory", "-i", "inventory.example.yml", "--list")
    assert result.returncode == 0, result.stderr
    inventory = json.loads(result.stdout)
    assert inventory["eticket"]["hosts"] == ["paris-01", "paris-02", "lyon-01"]
    host = inventory["_meta"]["hostvars"]["lyon-01"]
    assert (host["ansible_host"], host["ansible_port"], host["ansible_user"]) == ("10.1.0.21", 2222, "root")
    ssh = host["ansible_ssh_common_args"]
    assert "StrictHostKeyChecking=yes" in ssh and "PasswordAuthentication=no" in ssh


def test_the_play_declares_the_waves_and_failure_cap_of_the_issue() -> None:
    """serial [1, 5, "20%"] (a canary, then 5, then 20 % at a time) and max_fail_percentage 0 by default, and
    ansible-playbook resolves the play's hosts from the example inventory (the waves run in the real run)."""
    result = _run("ansible-playbook", "--list-hosts", "-i", "inventory.example.yml", "update.yml",
                  "-e", "eticket_bundle=eticket-arm64-0.2.0.raucb")
    assert result.returncode == 0, result.stderr
    text = (ANSIBLE / "update.yml").read_text()
    assert "serial: \"{{ eticket_serial | default([1, 5, '20%']) }}\"" in text
    assert 'max_fail_percentage: "{{ eticket_max_fail_percentage | default(0) }}"' in text
    assert "hosts (3)" in result.stdout


@pytest.mark.parametrize("extra", [[], ["-e", "eticket_bundle=/tmp/not-a-bundle-name.bin"]])
def test_a_play_without_a_usable_bundle_stops_before_touching_a_device(extra: list[str]) -> None:
    """No bundle given, or one whose name carries no version: the play fails on the controller at once,
    before any device is contacted (the inventory's hosts do not exist here)."""
    result = _run("ansible-playbook", "-i", "inventory.example.yml", "update.yml", *extra)
    assert result.returncode != 0
    assert "give the bundle with -e eticket_bundle=PATH" in result.stdout
    assert "paris-01]" not in result.stdout.replace("paris-01 -> localhost]", "")


# The real run: ansible-playbook on the client host of tests/fleet/devicehost.py, over real SSH (host keys
# checked) to device hosts running real sshd, RAUC and `eticket update`.

def _inventory(hosts: Any, directory: Path) -> Path:
    known = directory / "known_hosts"
    known.write_text(hosts.known_hosts())
    lines = ["eticket:", "  vars:", "    ansible_user: root", "    ansible_python_interpreter: /usr/bin/python3",
             f"    ansible_ssh_private_key_file: {hosts.client_key}",
             f"    ansible_ssh_common_args: -o StrictHostKeyChecking=yes -o UserKnownHostsFile={known}"
             " -o PasswordAuthentication=no -o ConnectTimeout=5", "  hosts:"]
    for device in hosts.devices:
        lines += [f"    {device.name}:", f"      ansible_host: {device.host.address}"]
    path = directory / "inventory.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _play(hosts: Any, inventory: Path, bundle: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """update.yml run by the real ansible-playbook on the client host (its own network namespace)."""
    home = inventory.parent / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_FORKS": "10"}
    argv = [str(BIN / "ansible-playbook"), "-i", str(inventory), str(ANSIBLE / "update.yml"),
            "-e", f"eticket_bundle={bundle}", "-e", "eticket_poll_interval_s=1", "-e", "eticket_update_timeout_s=120",
            *extra]
    # SSH's control sockets in a short directory: a Unix socket path has at most 107 bytes, and the test's
    # own directory (under xdist's popen-gwN/) made ansible's ~/.ansible/cp/… longer ("too long for Unix
    # domain socket": every host unreachable).
    with tempfile.TemporaryDirectory(prefix="eticket-cp-") as control:
        env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = control
        return subprocess.run(hosts.client.cmd(*argv), capture_output=True, text=True, timeout=600, env=env,
                              cwd=inventory.parent)


def _recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP's counters per host: ``{"d1": {"ok": 12, "failed": 0, ...}}``."""
    recap: dict[str, dict[str, int]] = {}
    for line in output.split("PLAY RECAP")[-1].splitlines()[1:]:
        if ":" in line:
            name, _, counts = line.partition(":")
            recap[name.strip()] = {k: int(v) for k, v in (p.split("=") for p in counts.split())}
    return recap


@pytest.fixture(scope="module")
def ansible_hosts(fleet_dir: Path, fleet_keys: Any) -> Any:
    from tests.fleet.conftest import require_device_hosts
    from tests.fleet.devicehost import DeviceHosts

    require_device_hosts()
    hosts = DeviceHosts(fleet_dir / "ansible-hosts", 3, version="1.0.0", keys=fleet_keys)
    try:
        yield hosts
    finally:
        hosts.close()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_failing_canary_stops_the_play_and_leaves_the_other_devices_untouched(
        ansible_hosts: Any, fleet_keys: Any, bundle_dir: Path, tmp_path: Path) -> None:
    """This is a release whose appliance cannot start: the canary (first wave of one) installs it, fails its
    health check and rolls back by itself; the play reports it failed (a roll-back is a failure) and stops
    before the next wave, so the two other devices never see the bundle."""
    from tests.fleet.bundles import make_bundle

    hosts = ansible_hosts
    bundle = make_bundle(bundle_dir / "eticket-test-6.6.6.raucb", "6.6.6", fleet_keys)
    for device in hosts.devices:
        device.bad_versions.add("6.6.6")
    result = _play(hosts, _inventory(hosts, tmp_path), bundle)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    recap = _recap(result.stdout)
    assert recap["d1"]["failed"] == 1, output
    assert "d1: not updated: rolled-back on 1.0.0" in output, output
    assert set(recap) == {"d1"}, output  # the play stopped before wave 2 (d2, d3)
    canary = hosts.devices[0].wait_commit()
    assert (canary["version"], canary["booted"], canary["boot_state"]) == ("1.0.0", "A", "committed"), canary
    assert canary["last_update"]["result"] == "rolled-back"
    for device in hosts.devices[1:]:
        status = device.update_status()
        assert (status["version"], status["last_update"]) == ("1.0.0", None), status


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_playbook_updates_every_device_in_waves_and_skips_those_already_current(
        ansible_hosts: Any, fleet_keys: Any, bundle_dir: Path, tmp_path: Path) -> None:
    """Release 2.0.0 over the three devices (canary d1, then d2 and d3): each installs, reboots into B and
    commits there; run again, the play changes nothing (every device is already on 2.0.0)."""
    from tests.fleet.bundles import make_bundle

    hosts = ansible_hosts
    bundle = make_bundle(bundle_dir / "eticket-test-2.0.0.raucb", "2.0.0", fleet_keys)
    inventory = _inventory(hosts, tmp_path)
    result = _play(hosts, inventory, bundle)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in _recap(result.stdout).values()), output
    for device in hosts.devices:
        status = device.wait_commit()
        assert (status["version"], status["booted"], status["boot_state"]) == ("2.0.0", "B", "committed"), status
        assert status["last_update"]["result"] == "committed"
        assert f"{device.name}: 1.0.0 -> 2.0.0, slot B" in output
    again = _play(hosts, inventory, bundle)
    assert again.returncode == 0, again.stdout + again.stderr
    assert all(c["changed"] == 0 for c in _recap(again.stdout).values()), again.stdout
