"""An A/B device under qemu for the slow update tests (and the fleet tool's): the arm64 image booted through
U-Boot from its own disk, reachable as root over SSH with a test key, reboots kept inside qemu (the new slot
boots), an i6300esb watchdog, and helpers to read the boot state (RAUC, U-Boot's counter) and to copy files
in. ``boot_ab_device`` is the one entry point: it returns a device whose appliance answered /healthz.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.image.conftest import copy_image
from tests.image.qemu import SSH_OPTIONS, Guest, choose_accel, put_boot_file

BOOT_TIMEOUT_SECONDS = 900.0  # TCG, U-Boot to /healthz: about 90 s here; generous for a loaded CI runner
SSH_TIMEOUT_SECONDS = 120.0
SLOT_PARTUUIDS = {"A": "6574696b-02", "B": "6574696b-03"}  # the image's fixed MBR disk id + partition number


@dataclass
class ABDevice:
    """A booted A/B guest: ``guest`` (qemu), ``key`` (the SSH identity root accepts)."""

    guest: Guest
    key: Path
    healthz_seconds: float = 0.0  # from qemu's start to /healthz answering, at the last wait_up

    def ssh(self, command: str, timeout: float = SSH_TIMEOUT_SECONDS) -> subprocess.CompletedProcess[str]:
        """``command`` as root in the guest (exit status and output as they are)."""
        return self.guest.ssh(self.key, command, timeout=timeout)

    def run(self, command: str, timeout: float = SSH_TIMEOUT_SECONDS) -> str:
        """``command``'s stdout; an AssertionError naming its stderr when it fails."""
        result = self.ssh(command, timeout)
        assert result.returncode == 0, f"{command!r} exited {result.returncode}: {result.stderr}{result.stdout}"
        return result.stdout

    def upload(self, source: Path, dest: str, timeout: float = 600) -> None:
        """Copy ``source`` to ``dest`` in the guest over SSH (scp)."""
        result = subprocess.run(["scp", "-i", str(self.key), "-P", str(self.guest.ssh_port), *SSH_OPTIONS,
                                 str(source), f"root@127.0.0.1:{dest}"], capture_output=True, text=True,
                                timeout=timeout)
        assert result.returncode == 0, result.stderr

    def booted_slot(self) -> str:
        """The slot the running kernel was started from: ``rauc.slot=`` on its command line (A or B)."""
        found = re.search(r"\brauc\.slot=(\w+)", self.run("cat /proc/cmdline"))
        assert found, "no rauc.slot= on the kernel command line"
        return found.group(1)

    def boot_env(self) -> dict[str, str]:
        """U-Boot's boot state as the running system reads it (fw_printenv: BOOT_ORDER, BOOT_x_LEFT)."""
        return dict(line.split("=", 1) for line in self.run("fw_printenv").splitlines() if "=" in line)

    def image_version(self) -> str:
        """``version=`` of the booted slot's /etc/eticket-image-id."""
        found = re.search(r"^version=(.+)$", self.run("cat /etc/eticket-image-id"), re.M)
        assert found, "no version= in /etc/eticket-image-id"
        return found.group(1)

    def slot_digest(self, slot: str, mib: int = 64) -> str:
        """SHA-256 of the first ``mib`` MiB of ``slot``'s partition (RAUC writes a slot from its start)."""
        device = f"/dev/disk/by-partuuid/{SLOT_PARTUUIDS[slot]}"
        return self.run(f"head -c {mib}M {device} | sha256sum").split()[0]

    def wait_up(self, timeout: float = BOOT_TIMEOUT_SECONDS) -> float:
        """Seconds until the appliance answers /healthz and SSH works (after a boot or reboot)."""
        start = time.monotonic()
        self.healthz_seconds, _ = self.guest.wait_healthz(timeout)
        deadline = start + timeout
        while time.monotonic() < deadline:
            if self.ssh("true", timeout=30).returncode == 0:
                return time.monotonic() - start
            time.sleep(2)
        raise TimeoutError(f"SSH not answering after {timeout:.0f} s; console:\n{self.guest.console_tail()}")

    def wait_down(self, timeout: float = 300) -> None:
        """Until the guest stops answering SSH (it is rebooting)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ssh("true", timeout=10).returncode != 0:
                return
            time.sleep(1)
        raise TimeoutError(f"the guest did not go down within {timeout:.0f} s")

    def reboot(self) -> None:
        """Reboot the guest (stays inside qemu) and wait until it went down."""
        self.ssh("systemctl reboot", timeout=30)
        self.wait_down()

    def power_cycle(self) -> None:
        """Pull the plug (kill qemu) and power on again from the same disk."""
        self.guest.power_cut()
        self.guest.start()


def boot_ab_device(build: Path, workdir: Path, ssh_key: Path, *, display: bool = False,
                   hostname: str = "pi-caisse", grow_mib: int = 256) -> ABDevice:
    """A fresh copy of the arm64 image in ``workdir``, with an ``eticket.toml`` on its FAT (``hostname``, the
    shop name, ``ssh_key``'s public half for root), booted in qemu (U-Boot, watchdog, in-qemu reboots,
    ``display``: a virtio-gpu screen), returned once /healthz answers and SSH works. The caller stops it
    (``device.guest.stop()``).

    Raises:
        TimeoutError: not up within BOOT_TIMEOUT_SECONDS; the message holds the console's tail.
    """
    accel, _ = choose_accel("arm64")
    disk = copy_image(build, "arm64", workdir / "disk.img", grow_mib=grow_mib)
    settings = workdir / "eticket.toml"
    settings.write_text(f'hostname = "{hostname}"\nshop_name = "Pi Test"\n'
                        f'ssh_authorized_keys = ["{ssh_key.with_suffix(".pub").read_text().strip()}"]\n')
    put_boot_file(disk, settings, "eticket.toml")
    guest = Guest(arch="arm64", disk=disk, workdir=workdir, accel=accel, display=display, reboot=True,
                  watchdog=True)
    device = ABDevice(guest=guest, key=ssh_key)
    guest.start()
    try:
        device.wait_up()
    except BaseException:
        guest.stop()
        raise
    return device
