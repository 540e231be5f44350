"""``eticket fleet discover`` on a LAN of network namespaces: a real ``eticket serve`` advertises itself over
mDNS, the operator's host lists it as an inventory entry whose host key is left to be filled in out of band."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from fleet._inventory import InventoryError, parse_inventory
from tests.network.netns import Lan, start_device


def test_discover_lists_devices_as_inventory_entries_without_host_keys(lan: Lan, tmp_path: Path) -> None:
    device, operator = lan.add_host("shop", 20), lan.add_host("op", 2)
    start_device(device, tmp_path / "device", name="Boulangerie Martin")
    done = operator.eticket("fleet", "discover", "--timeout", "3", "--mdns-interfaces", "eth0")
    assert done.returncode == 0, done.stderr
    entries = tomllib.loads(done.stdout)["device"]
    assert [(e["name"], e["host"], e["host_key"]) for e in entries] == [("boulangerie-martin", device.address, "")]
    assert "out of band" in done.stdout.lower()
    with pytest.raises(InventoryError, match="'boulangerie-martin': host_key must be a non-empty string"):
        parse_inventory(done.stdout, "discovered.toml")
