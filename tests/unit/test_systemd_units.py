"""The units in systemd/: ``systemd-analyze verify`` accepts each one, and ``systemd-analyze security`` rates
the appliance's exposure at or below APPLIANCE_EXPOSURE_MAX (the kiosk's at or below KIOSK_EXPOSURE_MAX).

verify runs with ``--root`` on a small tree holding this machine's systemd units and the executables the
units name (the image's real ``/usr/bin/eticket`` wrapper), so a unit that names a
missing program, an unknown key or a bad value fails here. The image's boot test verifies them again inside
the built root.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, require

UNITS = sorted((REPO / "systemd").glob("*.service"))
ROOTFS = REPO / "image-build" / "rootfs"
APPLIANCE_EXPOSURE_MAX = 1.5
KIOSK_EXPOSURE_MAX = 2.0
HOST_PROGRAMS = ("/usr/bin/install", "/usr/bin/mkdir", "/usr/bin/ssh-keygen", "/usr/bin/python3", "/bin/sh")


def _analyze() -> str:
    path = shutil.which("systemd-analyze")
    require(path is not None, "systemd-analyze is missing (Debian package systemd)")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def unit_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root for ``systemd-analyze verify --root``: systemd's own units, ours, and the programs they run."""
    _analyze()
    root = tmp_path_factory.mktemp("unit-root")
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for unit in UNITS:
        shutil.copy(unit, root / "usr/lib/systemd/system" / unit.name)
    for program in ("usr/bin/eticket", "usr/lib/eticket/splash"):
        (root / program).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOTFS / program, root / program)
    for program in HOST_PROGRAMS:
        require(Path(program).exists(), f"{program} is missing on this machine")
        (root / program.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(program, root / program.lstrip("/"))
    return root


def _verify(root: Path, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_analyze(), "verify", f"--root={root}", name], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_verifies_clean(unit_root: Path, unit: Path) -> None:
    result = _verify(unit_root, unit.name)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_verify_would_catch_a_broken_unit(unit_root: Path) -> None:
    """The check can fail: an unknown key and a missing program are reported."""
    broken = unit_root / "usr/lib/systemd/system/eticket-broken.service"
    broken.write_text("[Service]\nExecStart=/usr/bin/eticket-missing\nProtectSystm=strict\n")
    result = _verify(unit_root, broken.name)
    assert "Unknown key" in result.stderr and "eticket-missing" in result.stderr


def _exposure(unit: str) -> float:
    result = subprocess.run([_analyze(), "security", "--offline=true", str(REPO / "systemd" / unit)],
                            capture_output=True, text=True, timeout=60)
    match = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


RELAY_UNIT = REPO / "docs" / "deploy" / "eticket-relay.service"
RELAY_EXPOSURE_MAX = 1.5


def test_the_relays_example_unit_verifies_and_is_confined(unit_root: Path) -> None:
    """docs/relay.md's unit for an operator's relay: verify accepts it with the venv's eticket where it says,
    the sandbox rates at most RELAY_EXPOSURE_MAX, and the storage directory stays traversable for nginx."""
    shutil.copy(RELAY_UNIT, unit_root / "usr/lib/systemd/system" / RELAY_UNIT.name)
    program = unit_root / "opt/eticket-relay/bin/eticket"
    program.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOTFS / "usr/bin/eticket", program)
    result = _verify(unit_root, RELAY_UNIT.name)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    security = subprocess.run([_analyze(), "security", "--offline=true", str(RELAY_UNIT)], capture_output=True,
                              text=True, timeout=60)
    match = re.search(r"Overall exposure level for eticket-relay.service: (\d+\.\d+)", security.stdout)
    assert match and float(match.group(1)) <= RELAY_EXPOSURE_MAX, security.stdout
    text = RELAY_UNIT.read_text()
    assert "StateDirectoryMode=0711\n" in text and "--storage ${STATE_DIRECTORY}" in text


def test_appliance_exposure_is_at_most_the_stated_level() -> None:
    assert _exposure("eticket.service") <= APPLIANCE_EXPOSURE_MAX


def test_kiosk_exposure_is_at_most_the_stated_level() -> None:
    assert _exposure("eticket-kiosk.service") <= KIOSK_EXPOSURE_MAX


def test_services_that_notify_say_so() -> None:
    """Type=notify with a watchdog for the two long-running services; the unprivileged ones run as their
    dedicated users from sysusers.d."""
    users = (REPO / "systemd/sysusers.d/eticket.conf").read_text()
    for name, user in (("eticket.service", "eticket"), ("eticket-kiosk.service", "eticket-kiosk")):
        text = (REPO / "systemd" / name).read_text()
        assert "Type=notify" in text and "WatchdogSec=" in text and "Restart=" in text
        assert f"User={user}\n" in text and f"u {user} " in users


SMALL_BOARD_MIB = 512
"""The smallest supported board (Raspberry Pi Zero 2 W): the two services' memory caps fit in it."""


def _memory_mib(text: str, key: str) -> int:
    match = re.search(rf"^{key}=(\d+)M$", text, re.MULTILINE)
    assert match, f"no {key}= in MiB"
    return int(match.group(1))


def test_the_services_memory_caps_fit_a_512_mb_board() -> None:
    """Both long-running services are capped (MemoryHigh= throttles before MemoryMax= kills), and the caps
    together fit the smallest board, so a PDF bomb or a leak costs a worker or a restart, never the device."""
    total = 0
    for name in ("eticket.service", "eticket-kiosk.service"):
        text = (REPO / "systemd" / name).read_text()
        high, cap = _memory_mib(text, "MemoryHigh"), _memory_mib(text, "MemoryMax")
        assert 0 < high < cap, name
        total += cap
    assert total <= SMALL_BOARD_MIB
