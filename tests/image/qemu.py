"""Boot a built image in qemu, each from its own disk: amd64 through UEFI firmware (systemd-boot on the FAT),
arm64 on the ``virt`` machine through U-Boot (Debian's u-boot-qemu as the firmware, ``-bios``), which runs the
image's boot.scr from the FAT: the same A/B boot counter as on the Raspberry Pi, loading the kernel and
initramfs from the chosen root slot.

Networking never leaves this machine: the first NIC is qemu user networking with ``restrict=on`` (no way
out) and port forwards on 127.0.0.1 (HTTP, SSH); an optional second NIC is a tap device the test puts on a
bridge inside its own network namespace (tests/network/netns.py) for mDNS. With ``display`` the amd64 guest
gets qemu's standard VGA (Linux's bochs-drm: a DRM device with an EDID preferred mode of DISPLAY_SIZE), shown
nowhere (``-display none``) but readable with :meth:`Guest.screendump`: the customer screen as the guest
draws it. The arm64 guest's display is a virtio-gpu-pci (Linux's virtio-gpu DRM driver, fbdev on /dev/fb0).

Reboots: by default qemu exits when the guest reboots (``-no-reboot``); with ``reboot=True`` the guest
restarts inside the same qemu (update tests: the new slot boots), and :meth:`Guest.power_cut` kills qemu
(SIGKILL: what the guest had not written is lost) for :meth:`Guest.start` to boot the same disk again. With
``watchdog=True`` the guest has an i6300esb watchdog whose expiry resets it (``-action watchdog=reset``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import free_port

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
UBOOT_QEMU_ARM64 = Path("/usr/lib/u-boot/qemu_arm64/u-boot.bin")  # package u-boot-qemu
GUEST_MIB = 1024
GUEST_CPUS = 2
DISPLAY_SIZE = (800, 480)  # the 7-inch panel's pixels, as the EDID's preferred mode
PARTITION_OFFSET = "@@1M"  # mtools: the FAT boot partition starts at 1 MiB
SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
               "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"]


def choose_accel(arch: str) -> tuple[str, str]:
    """(``kvm`` or ``tcg``, why). ``ETICKET_QEMU_ACCEL`` forces one. KVM only for amd64 guests on a host
    whose /dev/kvm can run a stock kernel: a PVM host (module kvm_pvm: /dev/kvm without hardware
    virtualisation) runs only PVM-enabled guest kernels, and Debian's hangs there right after the boot
    loader, so it boots under TCG (full emulation) instead."""
    forced = os.environ.get("ETICKET_QEMU_ACCEL")
    if forced:
        return forced, "forced by ETICKET_QEMU_ACCEL"
    if arch != "amd64":
        return "tcg", "arm64 guest on an x86 host: emulated"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg", "/dev/kvm is missing or not accessible"
    if Path("/sys/module/kvm_pvm").exists():
        return "tcg", "/dev/kvm is PVM (kvm_pvm), which cannot run Debian's stock kernel"
    return "kvm", "KVM"


def extract_boot_file(image: Path, name: str, dest: Path) -> Path:
    """Copy ``name`` out of the image's FAT boot partition with mtools (no mount)."""
    subprocess.run(["mcopy", "-o", "-i", f"{image}{PARTITION_OFFSET}", f"::/{name}", str(dest)], check=True)
    return dest


def put_boot_file(image: Path, source: Path, name: str) -> None:
    """Write ``source`` as ``name`` onto the image's FAT boot partition with mtools (as a shop owner would
    with a card reader)."""
    subprocess.run(["mcopy", "-o", "-i", f"{image}{PARTITION_OFFSET}", str(source), f"::/{name}"], check=True)


def make_usb_stick(path: Path, settings: Path) -> Path:
    """A 16 MiB FAT image holding ``settings`` as ``eticket.toml`` at its root (a shop owner's USB stick)."""
    path.unlink(missing_ok=True)
    subprocess.run(["mkfs.vfat", "-n", "STICK", "-C", str(path), str(16 * 1024)], check=True, capture_output=True)
    subprocess.run(["mcopy", "-i", str(path), str(settings), "::/eticket.toml"], check=True)
    return path


def read_boot_file(image: Path, name: str) -> str:
    """The text of ``name`` on the image's FAT boot partition."""
    return subprocess.run(["mtype", "-i", f"{image}{PARTITION_OFFSET}", f"::/{name}"], check=True,
                          capture_output=True, text=True).stdout


@dataclass
class Guest:
    """One qemu guest booted from ``disk`` (a copy of the image the test may change)."""

    arch: str
    disk: Path
    workdir: Path
    tap: str | None = None
    accel: str = "tcg"
    http_port: int = field(default_factory=free_port)
    ssh_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    usb_stick: Path | None = None
    display: bool = False
    reboot: bool = False
    watchdog: bool = False
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    @property
    def monitor_socket(self) -> Path:
        return self.workdir / "monitor.sock"

    @property
    def serial_log(self) -> Path:
        return self.workdir / f"serial-{self.arch}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def argv(self) -> list[str]:
        forwards = (f"hostfwd=tcp:127.0.0.1:{self.http_port}-:8080,hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22,"
                    f"hostfwd=tcp:127.0.0.1:{self.api_port}-:8443")
        net = ["-netdev", f"user,id=lan0,restrict=on,{forwards}", "-device", "virtio-net-pci,netdev=lan0"]
        if self.tap:
            net += ["-netdev", f"tap,id=lan1,ifname={self.tap},script=no,downscript=no",
                    "-device", "virtio-net-pci,netdev=lan1,mac=52:54:00:e7:1c:01"]
        common = ["-smp", str(GUEST_CPUS), "-m", str(GUEST_MIB), "-nodefaults", "-display", "none",
                  "-monitor", f"unix:{self.monitor_socket},server=on,wait=off",
                  # appended to, so that the console of every boot of this disk stays in one log
                  "-chardev", f"file,id=console,path={self.serial_log},append=on", "-serial", "chardev:console",
                  *([] if self.reboot else ["-no-reboot"]), *net]
        if self.watchdog:
            common += ["-device", "i6300esb", "-action", "watchdog=reset"]
        if self.display and self.arch == "amd64":
            common += ["-device", f"VGA,edid=on,xres={DISPLAY_SIZE[0]},yres={DISPLAY_SIZE[1]}"]
        elif self.display:
            common += ["-device", f"virtio-gpu-pci,edid=on,xres={DISPLAY_SIZE[0]},yres={DISPLAY_SIZE[1]}"]
        if self.usb_stick:  # a USB controller now; the stick itself is plugged in later (plug_usb_stick)
            common += ["-device", "qemu-xhci,id=xhci",
                       "-drive", f"if=none,id=stick,format=raw,file={self.usb_stick}"]
        if self.arch == "amd64":
            vars_copy = self.workdir / "OVMF_VARS.fd"
            shutil.copy(OVMF_VARS, vars_copy)
            return ["qemu-system-x86_64", "-machine", "q35", "-accel", self.accel, *common,
                    "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                    "-drive", f"if=pflash,format=raw,file={vars_copy}",
                    "-drive", f"file={self.disk},format=raw,if=virtio"]
        # U-Boot's distro boot finds boot.scr on the disk's bootable FAT (virtio 0); the script's console and
        # kernel command line for this machine are in image-build/boot.cmd.
        return ["qemu-system-aarch64", "-machine", "virt", "-cpu", "cortex-a72", "-accel", self.accel, *common,
                "-bios", str(UBOOT_QEMU_ARM64),
                "-drive", f"file={self.disk},format=raw,if=none,id=disk0", "-device", "virtio-blk-pci,drive=disk0"]

    def start(self) -> Guest:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = self.argv()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=open(self.workdir / f"qemu-{self.arch}.log", "ab"),
                                     stderr=subprocess.STDOUT)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_healthz(self, timeout: float) -> tuple[float, dict[str, object]]:
        """Seconds from qemu's start until ``/healthz`` answered 200 through the port forward, and its body.

        Raises:
            TimeoutError: not answering within ``timeout`` seconds from now (or qemu exited); the serial
                console's tail says why.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            try:
                r = httpx.get(self.url + "/healthz", timeout=2)
                if r.status_code == 200:
                    body: dict[str, object] = r.json()
                    return time.monotonic() - self.started, body
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.arch} guest: /healthz not answering after {timeout:.0f} s "
                           f"(qemu {'running' if self.alive() else 'exited'}); console:\n{self.console_tail()}")

    def monitor(self, command: str) -> str:
        """Send one human-monitor command (e.g. ``device_add …``) and return what qemu answered."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(self.monitor_socket))
            sock.settimeout(2)
            sock.sendall(command.encode() + b"\n")
            time.sleep(1)
            chunks = []
            try:
                while data := sock.recv(4096):
                    chunks.append(data)
            except TimeoutError:
                pass
        return b"".join(chunks).decode(errors="replace")

    def plug_usb_stick(self) -> str:
        """Hot-plug the ``usb_stick`` image as a USB mass-storage device (as a person plugs a stick in)."""
        return self.monitor("device_add usb-storage,bus=xhci.0,drive=stick,id=stick0")

    def screendump(self, dest: Path) -> Path:
        """The guest's screen now, as qemu's display shows it: ``dest`` (PPM), written by HMP ``screendump``.

        Raises:
            RuntimeError: qemu wrote no picture (no display device, or the monitor refused).
        """
        dest.unlink(missing_ok=True)
        answer = self.monitor(f"screendump {dest}")
        if not dest.exists() or dest.stat().st_size == 0:
            raise RuntimeError(f"qemu wrote no screendump to {dest}: {answer.strip()[-500:]}")
        return dest

    def console_tail(self, chars: int = 3000) -> str:
        return self.serial_log.read_text(errors="replace")[-chars:] if self.serial_log.exists() else ""

    def ssh(self, key: Path, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in the guest as root over the forwarded SSH port, authenticated by ``key``."""
        return subprocess.run(["ssh", "-i", str(key), "-p", str(self.ssh_port), *SSH_OPTIONS, "root@127.0.0.1",
                               command], capture_output=True, text=True, timeout=timeout)

    def power_cut(self) -> None:
        """Kill qemu at once (SIGKILL), as pulling the plug: the guest's unwritten data is lost; the disk keeps
        what qemu had written. :meth:`start` boots the same disk again."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
