"""Fixtures for the fleet's quick tests: device hosts (tests/fleet/devicehost.py) and signed test bundles."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.fleet.bundles import Keys, make_keys
from tests.network.conftest import lan  # noqa: F401  (the namespace LAN fixture, shared with tests/network)
from tests.network.netns import netns_available

TOOLS = ("rauc", "mksquashfs", "openssl", "ssh", "ssh-keygen", "dbus-daemon", "debugfs", "mkfs.ext4", "nsenter",
         "unshare")


def require_device_hosts() -> None:
    """Skip (fail in CI) unless device hosts can be made here: root, network namespaces, the tools."""
    reason = netns_available()
    require(reason is None, reason or "")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    require(not missing and Path("/usr/sbin/sshd").exists(),
            f"device hosts need {', '.join(missing) or 'sshd'} (scripts/sysdeps.sh installs them)")


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fleet")


@pytest.fixture(scope="module")
def fleet_keys(fleet_dir: Path) -> Keys:
    """The fleet's CA (the devices' keyring) and its signing leaf."""
    require_device_hosts()
    return make_keys(fleet_dir / "keys")


@pytest.fixture(scope="module")
def foreign_keys(fleet_dir: Path) -> Keys:
    """Another fleet's CA and leaf: bundles signed with these must be refused."""
    require_device_hosts()
    return make_keys(fleet_dir / "foreign-keys", name="another fleet")


@pytest.fixture(scope="module")
def bundle_dir(fleet_dir: Path) -> Iterator[Path]:
    path = fleet_dir / "bundles"
    path.mkdir()
    yield path
