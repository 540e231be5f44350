"""provisioning/ansible/: the playbook for shops that already run Ansible, checked by the real ansible-core
(the test extra): its syntax, the example inventory, and the waves and failure cap it declares."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
