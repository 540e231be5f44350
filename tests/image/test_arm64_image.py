"""The Raspberry Pi image (arm64), an A/B system: its structure read from the image file itself (partition
table: boot FAT, root slots A and B of one size with B empty, data; the FAT's config.txt starting U-Boot,
boot.scr, the boot counter's uboot.env, firmware, device trees for the Pi 3, Pi 4 and Zero 2 W; slot A's own
kernel and host-built initramfs, RAUC's configuration), the appliance installed in the root and importable by
the image's own aarch64 Python (run through binfmt qemu-aarch64 in a chroot of the read-only-mounted root
partition), and the manifest matching the image. Its boot (qemu's ``virt`` machine through U-Boot from the image's own
disk: the same boot.scr as on the Pi) is the first step of tests/image/test_arm64_update.py's story, which also
checks the kiosk there.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.image.qemu import extract_boot_file

# The first test also builds the image.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

SECTOR = 512
PI_DEVICE_TREES = ("bcm2837-rpi-3-b.dtb", "bcm2837-rpi-3-b-plus.dtb", "bcm2711-rpi-4-b.dtb",
                   "bcm2837-rpi-zero-2-w.dtb")
PI_FIRMWARE = ("bootcode.bin", "start.elf", "fixup.dat", "start4.elf", "fixup4.dat")
ARM64_IMAGE_MAGIC = b"ARM\x64"  # at offset 0x38 of an arm64 kernel Image
ELF_MACHINE_AARCH64 = 0xB7


def _image(build: Path) -> Path:
    return build / "eticket-arm64.img"


def _partitions(image: Path) -> list[dict[str, object]]:
    table = json.loads(subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    assert table["label"] == "dos"
    parts: list[dict[str, object]] = table["partitions"]
    return parts


def test_partition_table_is_mbr_with_boot_two_root_slots_and_data(arm64_build: Path) -> None:
    """MBR (the Pi 3's boot ROM reads no GPT): boot FAT, slot A, slot B (same size, nothing written: the raw
    image holds no data there, so it costs nothing compressed), data; fixed disk id 6574696b (RAUC's slots
    are by-partuuid/6574696b-02 and -03)."""
    image = _image(arm64_build)
    boot, slot_a, slot_b, data = _partitions(image)
    assert boot["type"] == "c" and boot.get("bootable") is True and boot["start"] == 2048
    assert slot_a["type"] == slot_b["type"] == data["type"] == "83"
    assert slot_a["size"] == slot_b["size"]
    assert slot_b["start"] == int(slot_a["start"]) + int(slot_a["size"])  # type: ignore[call-overload]
    assert data["start"] == int(slot_b["start"]) + int(slot_b["size"])  # type: ignore[call-overload]
    labels = [_probe(image, p, "LABEL") for p in (boot, slot_a, slot_b, data)]
    assert labels == ["ETICKETBOOT", "eticket-root-a", "", "eticket-data"]
    start = int(slot_b["start"]) * SECTOR  # type: ignore[call-overload]
    end = start + int(slot_b["size"]) * SECTOR  # type: ignore[call-overload]
    with open(image, "rb") as handle:
        try:
            next_data = os.lseek(handle.fileno(), start, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after start at all
            next_data = end
    assert next_data >= end, f"slot B holds data at byte {next_data}"
    table = subprocess.run(["sfdisk", "--dump", str(image)], capture_output=True, text=True, check=True).stdout
    assert "label-id: 0x6574696b" in table


def _probe(image: Path, part: dict[str, object], tag: str) -> str:
    offset = int(part["start"]) * SECTOR  # type: ignore[call-overload]
    found = subprocess.run(["blkid", "-p", "-O", str(offset), "-s", tag, "-o", "value", str(image)],
                           capture_output=True, text=True)
    assert found.returncode in (0, 2), found.stderr  # 2: nothing found (an empty slot)
    return found.stdout.strip()


def test_boot_partition_holds_firmware_u_boot_boot_script_and_device_trees(arm64_build: Path, tmp_path: Path) -> None:
    """The Pi firmware starts U-Boot (config.txt), whose boot.scr keeps the A/B counter in uboot.env (slot A
    first, three tries each); the kernel is no longer on the FAT but in each slot."""
    image = _image(arm64_build)
    listing = subprocess.run(["mdir", "-b", "-i", f"{image}@@1M", "::/"], capture_output=True, text=True,
                             check=True).stdout
    names = {line.rsplit("/", 1)[-1] for line in listing.split()}
    missing = [n for n in (*PI_FIRMWARE, *PI_DEVICE_TREES, "u-boot.bin", "boot.scr", "uboot.env", "config.txt",
                           "eticket.toml.example") if n not in names]
    assert not missing, f"missing on the FAT: {missing}"
    assert "vmlinuz" not in names and "cmdline.txt" not in names
    config = extract_boot_file(image, "config.txt", tmp_path / "config.txt").read_text()
    for line in ("arm_64bit=1", "upstream_kernel=1", "kernel=u-boot.bin"):
        assert line in config.splitlines()
    script = extract_boot_file(image, "boot.scr", tmp_path / "boot.scr")
    header = subprocess.run(["mkimage", "-l", str(script)], capture_output=True, text=True, check=True).stdout
    assert "Script" in header, header
    text = script.read_bytes().decode(errors="replace")
    assert "root=LABEL=${ab_label} rauc.slot=${ab_slot}" in text and "fatwrite" in text
    env_file = extract_boot_file(image, "uboot.env", tmp_path / "uboot.env")
    (tmp_path / "fw_env.config").write_text(f"{env_file} 0x0000 0x4000\n")
    env = subprocess.run(["fw_printenv", "-c", str(tmp_path / "fw_env.config")], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert sorted(line for line in env if line) == ["BOOT_A_LEFT=3", "BOOT_B_LEFT=0", "BOOT_ORDER=A B"]


def test_slot_a_carries_its_kernel_initramfs_and_rauc_configuration(root_mount: Path) -> None:
    """Slot A boots by itself: Debian's kernel (an uncompressed Image: booti takes it as is) and the
    host-built initramfs in its /boot; RAUC's system.conf (uboot backend, both slots, the keyring on the data
    partition), fw_env.config pointing at the FAT's uboot.env, the verity modules loaded at boot, the
    watchdog armed, the commit unit enabled, the release's version stamped."""
    kernel = (root_mount / "boot" / "vmlinuz").read_bytes()
    assert kernel[0x38:0x3C] == ARM64_IMAGE_MAGIC
    initrd = (root_mount / "boot" / "initrd.img").read_bytes()
    system_conf = (root_mount / "etc/rauc/system.conf").read_text()
    for line in ("compatible=eticket-arm64", "bootloader=uboot", "path=/etc/rauc/keyring.pem",
                 "device=/dev/disk/by-partuuid/6574696b-02", "device=/dev/disk/by-partuuid/6574696b-03",
                 "bootname=A", "bootname=B", "use-bundle-signing-time=true"):
        assert line in system_conf.splitlines(), line
    assert os.readlink(root_mount / "etc/rauc/keyring.pem") == "/var/lib/eticket-system/rauc/keyring.pem"
    assert (root_mount / "usr/share/eticket/rauc-keyring.pem").read_text().startswith("-----BEGIN CERTIFICATE")
    assert (root_mount / "etc/fw_env.config").read_text().splitlines()[-1].split() == [
        "/boot/firmware/uboot.env", "0x0000", "0x4000"]
    assert (root_mount / "etc/modules-load.d/eticket-rauc.conf").read_text().split()[-4:] == [
        "dm_mod", "dm_verity", "loop", "squashfs"]
    assert "RuntimeWatchdogSec=30s" in (root_mount / "etc/systemd/system.conf.d/eticket-watchdog.conf").read_text()
    links = [name for _, _, names in os.walk(root_mount / "etc/systemd/system") for name in names]
    assert "eticket-update-commit.service" in links
    assert re.search(r"^version=\S+$", (root_mount / "etc/eticket-image-id").read_text(), re.M)
    assert not list((root_mount / "usr/lib/modules").glob("*/kernel/sound"))  # trimmed
    listing_cpio = subprocess.run(["cpio", "-it", "--quiet"], input=gzip.decompress(initrd), capture_output=True,
                                  check=True).stdout.decode()
    for member in ("init", "bin/busybox", "etc/modules.order", "lib/modules/kernel/drivers/mmc/host/sdhci-iproc.ko",
                   "lib/modules/kernel/drivers/mmc/host/bcm2835.ko", "lib/modules/kernel/fs/ext4/ext4.ko"):
        assert member in listing_cpio.split(), member


@pytest.fixture
def root_mount(arm64_build: Path, tmp_path: Path) -> Iterator[Path]:
    """The image's root partition, loop-mounted read-only (as on the device)."""
    require(os.geteuid() == 0, "mounting the root partition needs root")
    _, root, _, _ = _partitions(_image(arm64_build))
    mountpoint = tmp_path / "root"
    mountpoint.mkdir()
    offset = int(root["start"]) * SECTOR  # type: ignore[call-overload]
    subprocess.run(["mount", "-o", f"ro,loop,offset={offset}", str(_image(arm64_build)), str(mountpoint)],
                   check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=False)


def test_the_appliance_is_installed_and_imports_with_the_images_own_python(root_mount: Path) -> None:
    require(Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists(), "binfmt qemu-aarch64 is off")
    python = (root_mount / "usr/bin/python3").resolve()
    assert python.read_bytes()[18] == ELF_MACHINE_AARCH64  # e_machine: the image's Python is aarch64
    code = ("import sys; sys.path.insert(0, '/usr/lib/eticket/site'); "
            "import appliance, appliance.server, kiosk.app, kiosk.cli, kiosk.fbdev, kiosk.hotplug, provisioning, "
            "pydantic_core, cryptography, pikepdf, "
            "pypdfium2, zeroconf, pygame; print(appliance.__version__, pygame.version.ver)")
    result = subprocess.run(["chroot", str(root_mount), "/usr/bin/python3", "-IB", "-c", code],
                            capture_output=True, text=True, timeout=300, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert result.returncode == 0, result.stderr
    version = subprocess.run(["chroot", str(root_mount), "/usr/bin/eticket", "--version"], capture_output=True,
                             text=True, timeout=300, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert version.returncode == 0 and version.stdout.startswith("eticket "), version.stderr
    for unit in ("eticket.service", "eticket-kiosk.service", "eticket-firstboot.service"):
        assert (root_mount / "usr/lib/systemd/system" / unit).is_file()
        links = [name for _, _, names in os.walk(root_mount / "etc/systemd/system") for name in names]
        assert unit in links, f"{unit} is not enabled"  # (links to /lib/...: Path.glob would follow them)
    assert (root_mount / "etc/machine-id").read_text() == ""
    assert not list((root_mount / "etc/ssh").glob("ssh_host_*"))  # made per device at first boot
    passwd = (root_mount / "etc/passwd").read_text()
    assert "\neticket:" in passwd and "\neticket-kiosk:" in passwd


def test_manifest_lists_packages_and_the_image_checksum(arm64_build: Path) -> None:
    manifest = (arm64_build / "eticket-arm64.manifest").read_text()
    digest = hashlib.sha256(_image(arm64_build).read_bytes()).hexdigest()
    assert f"image_sha256: {digest}" in manifest
    for package in ("linux-image-arm64 ", "raspi-firmware ", "firmware-brcm80211 ", "python3 ", "systemd "):
        assert f"\n{package}" in manifest, package
    assert "eticket-0.1.0-py3-none-any.whl" in manifest and "pygame_ce-" in manifest
