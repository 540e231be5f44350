"""Wave planning and the failure cap of ``eticket fleet deploy`` (unit): Ansible's ``serial`` list and
``max_fail_percentage`` semantics, the inventory's validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet._inventory import InventoryError, parse_inventory, select
from fleet._waves import (
    WaveSpecError,
    parse_max_fail_percent,
    parse_waves,
    plan_waves,
    wave_exceeds_cap,
    wave_size,
)

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def names(n: int) -> list[str]:
    return [f"d{i:03d}" for i in range(1, n + 1)]


def sizes(waves: list[list[str]]) -> list[int]:
    return [len(w) for w in waves]


@pytest.mark.parametrize(("spec", "total", "expected"), [
    ("1,5,20%", 10, [1, 5, 2, 2]),            # the example: canary, five, then a fifth of the fleet
    ("1,5,20%", 200, [1, 5, 40, 40, 40, 40, 34]),
    ("1,5,20%", 3, [1, 2]),                   # fewer devices than the second wave
    ("1,5,20%", 1, [1]),
    ("4", 10, [4, 4, 2]),                     # Ansible's serial: 4 (the last item repeats)
    ("1", 3, [1, 1, 1]),
    ("10%", 5, [1, 1, 1, 1, 1]),              # int(10 % of 5) = 0 -> at least one (Ansible's pct_to_int)
    ("30%", 10, [3, 3, 3, 1]),
    ("100%", 7, [7]),
    ("2,50%", 9, [2, 4, 3]),                  # int(4.5) = 4
    ("1,1,100%", 6, [1, 1, 4]),
])
def test_waves_follow_ansible_serial(spec: str, total: int, expected: list[int]) -> None:
    waves = plan_waves(names(total), parse_waves(spec))
    assert sizes(waves) == expected
    assert [d for w in waves for d in w] == names(total)  # every device once, inventory order kept


def test_percentages_are_of_the_whole_inventory_even_when_devices_are_left_out() -> None:
    """Already-updated devices are not in the plan but still count for the 20 % (as Ansible counts all
    hosts of the play): 200 devices of which 150 are current → waves of 1, 5, 40, 4."""
    assert sizes(plan_waves(names(50), [1, 5, "20%"], total=200)) == [1, 5, 40, 4]
    assert wave_size("20%", 200) == 40 and wave_size(3, 200) == 3


def test_no_device_no_wave() -> None:
    assert plan_waves([], [1, 5, "20%"]) == []


@pytest.mark.parametrize("bad", ["", "0", "1,,5", "five", "0%", "101%", "-1", "1.5"])
def test_bad_wave_specs_are_refused_with_the_item(bad: str) -> None:
    with pytest.raises(WaveSpecError, match="--waves"):
        parse_waves(bad)


@pytest.mark.parametrize(("failed", "size", "percent", "stops"), [
    (2, 4, 49, True),     # Ansible's example: serial 4, max_fail_percentage 49 -> 2 failures (50 %) stop
    (1, 4, 49, False),    # 25 % does not exceed 49 %
    (2, 4, 50, False),    # exactly 50 % does not EXCEED 50 %
    (3, 4, 50, True),
    (1, 1, 0, True),      # the canary failed
    (0, 1, 0, False),
    (1, 10, 0, True),     # the default cap 0: any failure stops
    (1, 10, 10, False),   # 10 % is not more than 10 %
    (2, 10, 10, True),
    (4, 5, 100, False),   # 100: only a wave that failed entirely stops
    (5, 5, 100, True),
    (5, 5, 99.9, True),
    (0, 0, 0, False),
])
def test_failure_cap_must_be_exceeded(failed: int, size: int, percent: float, stops: bool) -> None:
    assert wave_exceeds_cap(failed, size, percent) is stops


@pytest.mark.parametrize(("text", "value"), [("0", 0.0), ("49", 49.0), ("12.5", 12.5), ("20%", 20.0)])
def test_max_fail_percent_parses(text: str, value: float) -> None:
    assert parse_max_fail_percent(text) == value


@pytest.mark.parametrize("bad", ["-1", "101", "lots"])
def test_max_fail_percent_refuses_nonsense(bad: str) -> None:
    with pytest.raises(WaveSpecError, match="--max-fail-percent"):
        parse_max_fail_percent(bad)


def test_inventory_defaults_and_overrides(tmp_path: Path) -> None:
    text = f"""
[defaults]
user = "admin"
port = 2222
identity = "keys/fleet"
[[device]]
name = "paris-01"
host = "10.0.0.12"
host_key = "{KEY}"
[[device]]
name = "lyon-01"
host = "10.0.0.13"
port = 22
user = "root"
host_key = "{KEY} root@lyon"
"""
    paris, lyon = parse_inventory(text, "fleet.toml", tmp_path)
    assert (paris.user, paris.port, paris.identity) == ("admin", 2222, tmp_path / "keys" / "fleet")
    assert (lyon.user, lyon.port, lyon.command) == ("root", 22, "eticket")
    assert [d.name for d in select([paris, lyon], ["lyon-01"])] == ["lyon-01"]
    with pytest.raises(InventoryError, match="no device named 'nice-01'"):
        select([paris, lyon], ["nice-01"])


@pytest.mark.parametrize(("body", "message"), [
    ('[[device]]\nname = "a"\nhost = "h"\n', r"fleet\.toml: device 'a': missing key 'host_key'"),
    (f'[[device]]\nhost = "h"\nhost_key = "{KEY}"\n', r"fleet\.toml: device #1: missing key 'name'"),
    (f'[[device]]\nname = "a"\nhost = "h"\nhost_key = "{KEY}"\n[[device]]\nname = "a"\nhost = "i"\n'
     f'host_key = "{KEY}"\n', r"device 'a': duplicate name \(also device #1\)"),
    (f'[[device]]\nname = "a"\nhost = "h"\nhost_key = "{KEY}"\n[[device]]\nname = "b"\nhost = "h"\n'
     f'host_key = "{KEY}"\n', r"device 'b': host h port 22 is also device 'a'"),
    (f'[[device]]\nname = "a"\nhost = "h"\nport = "22"\nhost_key = "{KEY}"\n', r"device 'a': port must be"),
    (f'[[device]]\nname = "a"\nhost = "h"\nport = 70000\nhost_key = "{KEY}"\n', r"port must be 1\.\.65535"),
    ('[[device]]\nname = "a"\nhost = "h"\nhost_key = "ssh-ed25519 notbase64"\n',
     r"device 'a': host_key is not an OpenSSH public key"),
    ('[[device]]\nname = "a"\nhost = "h"\nhost_key = ""\n', r"device 'a': host_key must be a non-empty"),
    (f'[[device]]\nname = "a"\nhost = "h"\npassword = "x"\nhost_key = "{KEY}"\n', r"unknown key 'password'"),
    (f'[defaults]\nport = 0\n[[device]]\nname = "a"\nhost = "h"\nhost_key = "{KEY}"\n',
     r"fleet\.toml: \[defaults\]: port must be"),
    ('[defaults]\nuser = "root"\n', r"no device"),
    ("[[device]\n", r"fleet\.toml: not valid TOML"),
])
def test_inventory_errors_name_file_device_and_key(body: str, message: str) -> None:
    with pytest.raises(InventoryError, match=message):
        parse_inventory(body, "fleet.toml")
