"""Device hosts for quick tests of A/B updates: N "devices", each in its own network namespace (on a
:class:`tests.network.netns.Lan`) and its own mount namespace, each running the real programs a device runs:

- OpenSSH's ``sshd`` (keys only, its own host key, root login by key), as the fleet tool and Ansible reach it;
- a private system D-Bus (``dbus-daemon``) and ``rauc service`` (Debian's RAUC 1.8 needs its service for
  ``rauc install`` and ``rauc status``), with this device's ``/etc/rauc/system.conf``: file-backed slots
  ``rootfs.0`` (A) and ``rootfs.1`` (B), ``bootloader=custom``, the test CA as keyring;
- ``eticket serve`` from this repository's ``.venv`` (``/usr/bin/eticket`` in the device runs it), and at every
  boot ``eticket update commit``, as ``eticket-update-commit.service`` does.

The device's own files are overlays on ``/etc`` (root's home is the device's own directory, not this
machine's shell profile), ``/var`` and ``/usr/bin`` and a tmpfs on ``/run``, inside its mount namespace only;
``/proc/cmdline`` (``rauc.slot=X``) and the boot id are bind-mounted per boot.

Stand-ins, each small and each for a part of the machine, never for our code:
- the boot loader (U-Boot and its environment): ``bootenv.json`` ``{"order": ["A", "B"], "left": {"A": 3,
  "B": 0}}`` (``BOOT_ORDER``, ``BOOT_x_LEFT``) edited by RAUC through a custom backend script (get-primary,
  set-primary, get-state, set-state: RAUC's ``bootloader=custom`` interface), and read by :meth:`Device.boot`
  as U-Boot's boot script does: the first slot in the order with attempts left, one attempt less;
- the reboot (``systemctl reboot``, scheduled by ``systemd-run --on-active=N``): ``/usr/bin/systemctl`` and
  ``/usr/bin/systemd-run`` of the device are small scripts; ``reboot`` leaves a request the harness acts on
  (every process of the device is ended, then :meth:`Device.boot`);
- systemd's unit state: ``systemctl show UNIT`` answers from what ``eticket serve`` told the harness over its
  ``$NOTIFY_SOCKET`` (READY=1, STATUS=), so the health gate sees ``ActiveState=active`` as on a device.

A release the test declares bad (:attr:`Device.bad_versions`) boots with an appliance that cannot start (its
settings name a port that does not exist): its health check fails as a broken release's would.

Use (a module fixture shares the hosts; each boot takes about a second):

    hosts = DeviceHosts(tmp / "hosts", 5, version="1.0.0")  # d1..d5 at 10.77.0.11.., booted on slot A
    hosts.client                      # the fleet tool's host (10.77.0.2): hosts.client.run(argv...)
    hosts.client_key, hosts.known_hosts(), hosts.ssh(device, "eticket", "update", "status", "--json")
    device = hosts.devices[0]         # .name, .host.address, .host_key, .state_dir (its incoming/ uploads)
    make_bundle(path, "2.0.0", hosts.keys)   # tests/fleet/bundles.py; also make_keys, tamper
    device.wait_commit()              # after an install: its reboot, boot and commit done; its status
    device.bad_versions.add("3.0.0"); device.commit_deadline = 3   # a release that fails its health gate
    device.power_off()                # unreachable (or graceful=False: a power cut); device.boot() again
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.fleet.bundles import COMPATIBLE, ROOTFS_BYTES, Keys, make_keys, make_rootfs
from tests.network.netns import REPO, Host, Lan

VENV_BIN = REPO / ".venv" / "bin"
BOOT_ATTEMPTS = 3
"""Attempts a slot gets from the boot loader after set-primary or mark-good (RAUC's uboot default)."""
START_TIMEOUT_SECONDS = 30.0
COMMIT_DEADLINE_SECONDS = 30.0
"""``eticket update commit --deadline`` at each boot of a test device (600 on a real one)."""
REBOOT_POLL_SECONDS = 0.1
APPLIANCE_UNIT = "eticket.service"
KIOSK_UNIT = "eticket-kiosk.service"
GRACE_SECONDS = 5.0
"""A reboot's SIGTERM before its SIGKILL (systemd's DefaultTimeoutStopSec is longer; the test's services stop
in well under a second)."""

_BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/>
  </policy>
</busconfig>
"""

_BACKEND = """#!/usr/bin/python3
# RAUC bootloader=custom backend of the test device: the stand-in for U-Boot's environment
# (BOOT_ORDER, BOOT_x_LEFT), kept in {env}.
import json, sys
ENV = {env!r}
with open(ENV) as f:
    env = json.load(f)
verb, args = sys.argv[1], sys.argv[2:]
if verb == "get-primary":
    print(next((b for b in env["order"] if env["left"][b] > 0), env["order"][0]))
elif verb == "get-state":
    print("good" if env["left"][args[0]] > 0 else "bad")
elif verb == "set-primary":
    env["order"] = [args[0]] + [b for b in env["order"] if b != args[0]]
    env["left"][args[0]] = {attempts}
elif verb == "set-state":
    env["left"][args[0]] = {attempts} if args[1] == "good" else 0
else:
    sys.exit("unknown verb " + verb)
with open(ENV + ".tmp", "w") as f:
    json.dump(env, f)
import os
os.replace(ENV + ".tmp", ENV)
"""

_SYSTEMCTL = """#!/usr/bin/python3
# The test device's systemctl: `reboot` asks the harness to reboot this device; `show -p P,... UNIT` answers
# from the unit state the harness keeps (from the service's sd_notify messages). Nothing else.
import json, os, sys
DIR = {dir!r}
args = sys.argv[1:]
if args and args[0] == "reboot":
    open(os.path.join(DIR, "reboot-requested"), "w").close()
    sys.exit(0)
if args and args[0] == "show":
    props, unit = [], None
    i = 1
    while i < len(args):
        if args[i] in ("-p", "--property"):
            props += args[i + 1].split(","); i += 2
        elif args[i].startswith("--property="):
            props += args[i].split("=", 1)[1].split(","); i += 1
        else:
            unit = args[i]; i += 1
    try:
        with open(os.path.join(DIR, "units", unit + ".json")) as f:
            state = json.load(f)
    except OSError:
        state = {{"LoadState": "not-found", "ActiveState": "inactive", "SubState": "dead"}}
    for p in props or sorted(state):
        print(p + "=" + str(state.get(p, "")))
    sys.exit(0)
sys.exit("systemctl stand-in of the test device: only reboot and show")
"""

_SYSTEMD_RUN = """#!/usr/bin/python3
# The test device's systemd-run: --on-active=SECONDS CMD... runs CMD that much later, detached (as a transient
# timer unit would: no terminal, no inherited output).
import os, sys, time
args, delay = sys.argv[1:], 0.0
while args and args[0].startswith("-"):
    if args[0].startswith("--on-active="):
        delay = float(args[0].split("=", 1)[1].rstrip("s"))
    args = args[1:]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        time.sleep(delay)
        os.execvp(args[0], args)
    os._exit(0)
"""


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def _mnt_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


class Device:
    """One device host: ``name``, its LAN ``host`` (address ``host.address``), its directory ``dir`` (slot
    images, boot environment, overlays, logs) and its SSH host key (``host_key``: ``ssh-ed25519 AAAA…``)."""

    def __init__(self, host: Host, directory: Path, keys: Keys, client_pub: str, version: str,
                 mdns: bool = False, kiosk: str | None = None, appliance: bool = True) -> None:
        """``kiosk``: None for a device without a screen (no ``eticket-kiosk.service``), else the SDL video
        driver the real ``eticket kiosk`` runs with: ``"kmsdrm"`` finds no display on this host (it waits for
        one, as a device with its screen unplugged), ``"dummy"`` draws frames (a display is present).
        ``appliance`` False: no ``eticket serve`` (light hosts for measuring the fleet tool over many devices;
        ``eticket update status`` works, a new slot cannot pass its health gate)."""
        self.host, self.name, self.dir = host, host.name, directory
        self.keys = keys
        self.commit_deadline = COMMIT_DEADLINE_SECONDS
        self.bad_versions: set[str] = set()
        """Releases whose appliance fails to start on this device (the test's "bad release")."""
        self.boots = 0
        self.booted: str | None = None
        self._holder: subprocess.Popen[bytes] | None = None
        self._commit: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._mdns = mdns
        self.kiosk = kiosk
        self.appliance = appliance
        self.state_dir = directory / "var-up" / "lib" / "eticket-update"
        """The device's /var/lib/eticket-update seen from the test (state.json, incoming/ uploads)."""
        d = directory
        for sub in ("etc-up", "etc-work", "var-up", "var-work", "bin-up", "bin-work", "units", "logs", "root"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        make_rootfs(d / "slot-a.img", version)
        # Slot B: an empty file system, no system in it (RAUC mounts a slot before a bundle's slot hooks)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(d / "slot-b.img"), str(ROOTFS_BYTES // 1024)], check=True,
                       capture_output=True)
        _write(d / "bootenv.json", json.dumps({"order": ["A", "B"], "left": {"A": BOOT_ATTEMPTS, "B": 0}}))
        _write(d / "cmdline", "")
        _write(d / "boot_id", "")
        _write(d / "bus.conf", _BUS_CONF)
        etc = d / "etc-up"
        _write(etc / "rauc" / "system.conf", self._system_conf())
        (etc / "rauc" / "keyring.pem").write_bytes(keys.ca.read_bytes())
        _write(etc / "rauc" / "bootloader-backend",
               _BACKEND.format(env=str(d / "bootenv.json"), attempts=BOOT_ATTEMPTS), 0o755)
        _write(etc / "eticket-image-id", "")
        passwd = [f"root:x:0:0:root:{d / 'root'}:/bin/sh" if line.startswith("root:") else line
                  for line in Path("/etc/passwd").read_text().splitlines()]
        _write(etc / "passwd", "\n".join(passwd) + "\n")
        _write(etc / "eticket" / "eticket.toml", self._eticket_toml(bad=False))
        _write(d / "bin-up" / "systemctl", _SYSTEMCTL.format(dir=str(d)), 0o755)
        _write(d / "bin-up" / "systemd-run", _SYSTEMD_RUN, 0o755)
        _write(d / "bin-up" / "eticket", f"#!/bin/sh\nexec {VENV_BIN / 'eticket'} \"$@\"\n", 0o755)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{self.name} host key",
                        "-f", str(d / "ssh_host_ed25519_key")], check=True)
        self.host_key = " ".join((d / "ssh_host_ed25519_key.pub").read_text().split()[:2])
        _write(d / "authorized_keys", client_pub + "\n", 0o600)
        _write(d / "sshd_config", "\n".join([
            "ListenAddress 0.0.0.0:22", f"HostKey {d / 'ssh_host_ed25519_key'}",
            "PermitRootLogin prohibit-password", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes", f"AuthorizedKeysFile {d / 'authorized_keys'}", "StrictModes no",
            "UsePAM no", f"PidFile {d / 'sshd.pid'}", "Subsystem sftp internal-sftp", "LogLevel VERBOSE", ""]))
        self.units = {unit: _Unit(self, unit) for unit in (APPLIANCE_UNIT, KIOSK_UNIT)[:2 if kiosk else 1]}
        threading.Thread(target=self._reboot_loop, name=f"{self.name}-reboot", daemon=True).start()

    # --- configuration ------------------------------------------------------------------------------
    def _system_conf(self) -> str:
        d = self.dir
        return "\n".join([
            "[system]", f"compatible={COMPATIBLE}", "bootloader=custom", "bundle-formats=plain",
            f"statusfile={d / 'rauc.status'}", "", "[keyring]", "path=/etc/rauc/keyring.pem",
            "check-purpose=codesign", "use-bundle-signing-time=true", "", "[handlers]",
            "bootloader-custom-backend=/etc/rauc/bootloader-backend", "",
            "[slot.rootfs.0]", f"device={d / 'slot-a.img'}", "type=ext4", "bootname=A", "",
            "[slot.rootfs.1]", f"device={d / 'slot-b.img'}", "type=ext4", "bootname=B", ""])

    def _eticket_toml(self, bad: bool) -> str:
        listen = "0.0.0.0:70000" if bad else "0.0.0.0:8080"  # a bad release: its appliance cannot start
        return (f'listen = "{listen}"\napi_listen = "0.0.0.0:8443"\nname = "{self.name}"\n'
                f'mdns_interfaces = "{"eth0" if self._mdns else "none"}"\n')

    # --- running things inside the device -----------------------------------------------------------
    def cmd(self, *argv: str) -> list[str]:
        """``argv`` run inside this device (its network and mount namespaces)."""
        assert self._holder is not None, f"{self.name} is not booted"
        return ["nsenter", "-t", str(self._holder.pid), "-m", "-n", "--", *argv]

    def run(self, *argv: str, timeout: float = 60, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the device as root (as an SSH session would, without SSH)."""
        return subprocess.run(self.cmd(*argv), capture_output=True, text=True, timeout=timeout, check=False,
                              env=env or self._env())

    def _env(self) -> dict[str, str]:
        return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
                "LANG": "C.UTF-8"}

    def _spawn(self, name: str, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(self.dir / "logs" / f"{name}.log", "ab") as log:
            log.write(f"--- boot {self.boots}\n".encode())
            log.flush()
            return subprocess.Popen(self.cmd(*argv), stdout=log, stderr=subprocess.STDOUT, env=env or self._env(),
                                    start_new_session=True)

    def eticket(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``eticket ARGS`` inside the device as root."""
        return self.run("/usr/bin/eticket", *args, timeout=timeout)

    def update_status(self) -> dict[str, Any]:
        """``eticket update status --json`` inside the device."""
        result = self.eticket("update", "status", "--json")
        assert result.returncode == 0, result.stderr
        status: dict[str, Any] = json.loads(result.stdout)
        return status

    def bootenv(self) -> dict[str, Any]:
        """The boot loader stand-in's environment: ``{"order": [...], "left": {"A": n, "B": n}}``."""
        env: dict[str, Any] = json.loads((self.dir / "bootenv.json").read_text())
        return env

    # --- the boot loader and the reboot ---------------------------------------------------------------
    def boot(self) -> str:
        """Boot the device as U-Boot's boot script would: the first slot in the boot order with attempts
        left, one attempt less; then start its services and, in the background, ``eticket update commit``.
        Returns the booted bootname.

        Raises:
            RuntimeError: no slot has attempts left (the device would not boot), or a service did not start.
        """
        with self._lock:
            env = self.bootenv()
            slot: str | None = next((str(b) for b in env["order"] if env["left"][b] > 0), None)
            if slot is None:
                raise RuntimeError(f"{self.name}: no bootable slot in {env}")
            env["left"][slot] -= 1
            _write(self.dir / "bootenv.json", json.dumps(env))
            self.boots += 1
            self.booted = slot
            image = self.dir / ("slot-a.img" if slot == "A" else "slot-b.img")
            image_id = subprocess.run(["debugfs", "-R", "cat /etc/eticket-image-id", str(image)],
                                      capture_output=True, text=True, check=False).stdout
            if "version=" not in image_id:
                raise RuntimeError(f"{self.name}: slot {slot} holds no system (no /etc/eticket-image-id)")
            version = image_id.partition("version=")[2].split()[0]
            _write(self.dir / "etc-up" / "eticket-image-id", image_id)
            _write(self.dir / "etc-up" / "eticket" / "eticket.toml", self._eticket_toml(version in self.bad_versions))
            _write(self.dir / "cmdline", f"root=LABEL=eticket-root-{slot.lower()} rauc.slot={slot} quiet\n")
            _write(self.dir / "boot_id", f"{uuid.uuid4()}\n")
            for unit in self.units.values():
                unit.set("activating", "start")
            (self.dir / "reboot-requested").unlink(missing_ok=True)
            self._start_namespace()
            self._spawn("dbus", "dbus-daemon", f"--config-file={self.dir / 'bus.conf'}", "--nofork", "--nopidfile")
            self._wait(lambda: self.run("test", "-S", "/run/dbus/system_bus_socket").returncode == 0, "D-Bus")
            self._spawn("rauc", "rauc", "--mount=/run/rauc", "service")
            self._wait(lambda: self.run("rauc", "status").returncode == 0, "rauc service")
            self._spawn("sshd", "/usr/sbin/sshd", "-D", "-e", "-f", str(self.dir / "sshd_config"))
            if self.appliance:
                self.units[APPLIANCE_UNIT].start("eticket", "/usr/bin/eticket", "serve", "--config",
                                                 "/etc/eticket/eticket.toml", "--data-dir", "/var/lib/eticket")
            if self.kiosk is not None:
                self.units[KIOSK_UNIT].start("kiosk", "/usr/bin/eticket", "kiosk", "--data-dir", "/var/lib/eticket",
                                             env={"SDL_VIDEODRIVER": self.kiosk, "SDL_AUDIODRIVER": "dummy"})
            self._wait(self._sshd_listening, "sshd")
            self._commit = self._spawn("commit", "/usr/bin/eticket", "update", "commit",
                                       "--deadline", f"{self.commit_deadline:g}")
            return slot

    def _sshd_listening(self) -> bool:
        return ":22 " in self.run("ss", "-ltnH").stdout

    def _start_namespace(self) -> None:
        d = self.dir
        mounts = " && ".join([
            "mount -t tmpfs -o mode=0755 tmpfs /run", "mkdir -p /run/dbus /run/sshd /run/rauc",
            # an SSH session must not run this machine's root dotfiles (pyenv there takes a lock that a device's
            # SIGKILLed session can leave behind, stalling every later login 60 s): a device's root has none
            "for f in /root/.bashrc /root/.profile /root/.bash_profile; do "
            "[ ! -e $f ] || mount --bind /dev/null $f; done",
            f"mount -t overlay overlay -o lowerdir=/etc,upperdir={d}/etc-up,workdir={d}/etc-work /etc",
            f"mount -t overlay overlay -o lowerdir=/var,upperdir={d}/var-up,workdir={d}/var-work /var",
            f"mount -t overlay overlay -o lowerdir=/usr/bin,upperdir={d}/bin-up,workdir={d}/bin-work /usr/bin",
            f"mount --bind {d}/cmdline /proc/cmdline",
            f"mount --bind {d}/boot_id /proc/sys/kernel/random/boot_id",
            f"touch {d}/mounted", "exec sleep infinity"])
        (d / "mounted").unlink(missing_ok=True)
        with open(d / "logs" / "namespace.log", "ab") as log:
            self._holder = subprocess.Popen(
                self.host.cmd("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", mounts),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait(lambda: (d / "mounted").exists() or self._holder is None or self._holder.poll() is not None,
                   "the mount namespace")
        if not (d / "mounted").exists():
            raise RuntimeError(f"{self.name}: mounts failed: {(d / 'logs' / 'namespace.log').read_text()[-800:]}")

    def _wait(self, ready: Any, what: str) -> None:
        end = time.monotonic() + START_TIMEOUT_SECONDS
        while not ready():
            if time.monotonic() > end:
                logs = "\n".join(f"{p.name}: {p.read_text()[-600:]}" for p in (self.dir / "logs").iterdir())
                raise RuntimeError(f"{self.name}: {what} did not start\n{logs}")
            time.sleep(0.05)

    def processes(self) -> list[int]:
        """Every process in this device's mount namespace (the holder included)."""
        if self._holder is None:
            return []
        ns = _mnt_ns(self._holder.pid)
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid() and ns is not None and _mnt_ns(int(entry)) == ns:
                pids.append(int(entry))
        return pids

    def power_off(self, graceful: bool = True) -> None:
        """End every process of the device: SIGTERM then SIGKILL (a reboot), or SIGKILL at once (a power
        cut, ``graceful=False``)."""
        with self._lock:
            pids = self.processes()
            holder = self._holder.pid if self._holder is not None else None
            if graceful:
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
                end = time.monotonic() + GRACE_SECONDS
                while time.monotonic() < end and any(_mnt_ns(p) for p in pids if p != holder):
                    time.sleep(0.05)
            else:  # a power cut stops everything at once: freeze all first, so that no process sees another
                for pid in pids:  # die and acts on it (a client recording its server's failure) before its turn
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGSTOP)
            for pid in self.processes():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if self._holder is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._holder.wait(10)
            self._holder = None
            self.booted = None
            for unit in self.units.values():
                unit.stopped()

    def reboot(self, graceful: bool = True) -> str:
        """What ``systemctl reboot`` does to a device: every process ends, then :meth:`boot`."""
        self.power_off(graceful)
        return self.boot()

    def wait_boots(self, count: int, timeout: float = 60) -> None:
        """Wait until the device has booted ``count`` times (reboots it asked for included)."""
        end = time.monotonic() + timeout
        while self.boots < count or (self.dir / "reboot-requested").exists():
            if time.monotonic() > end:
                error = self.dir / "logs" / "reboot-error.log"
                raise AssertionError(f"{self.name}: {self.boots} boots after {timeout:g} s, expected {count}"
                                     + (f"; the last reboot failed: {error.read_text()}" if error.exists() else ""))
            time.sleep(0.1)

    def wait_commit(self, timeout: float = 90) -> dict[str, Any]:
        """Wait until no reboot is pending and this boot's ``eticket update commit`` has ended; the status."""
        end = time.monotonic() + timeout
        while True:
            with self._lock:
                running = self._commit is None or self._commit.poll() is None
                pending = (self.dir / "reboot-requested").exists()
                if not running and not pending and self._holder is not None:
                    return self.update_status()
            if time.monotonic() > end:
                raise AssertionError(f"{self.name}: commit still running after {timeout:g} s\n"
                                     + (self.dir / "logs" / "commit.log").read_text()[-1500:])
            time.sleep(0.2)

    def _reboot_loop(self) -> None:
        while not self._stop.wait(REBOOT_POLL_SECONDS):
            if (self.dir / "reboot-requested").exists() and self._holder is not None:
                try:
                    self.reboot()
                except Exception as exc:  # shown by the test that waits for the boot
                    (self.dir / "logs" / "reboot-error.log").write_text(repr(exc))
                    (self.dir / "reboot-requested").unlink(missing_ok=True)

    def stop_unit(self, unit: str) -> None:
        """End a service of the device (as a crash would: the unit becomes ``failed``)."""
        self.units[unit].kill()

    def close(self) -> None:
        """Power off and stop the harness threads."""
        self._stop.set()
        self.power_off(graceful=False)
        for unit in self.units.values():
            unit.close()


class _Unit:
    """The service manager stand-in for one ``Type=notify`` unit of a device: starts its process with a
    ``$NOTIFY_SOCKET`` of its own and keeps what ``systemctl show`` answers (``units/UNIT.json``): activating
    until READY=1, then active/running with the last STATUS=; failed when the process ends by itself."""

    def __init__(self, device: Device, name: str) -> None:
        self.device, self.name = device, name
        self.path = device.dir / "units" / f"{name}.json"
        self.socket_path = device.dir / f"notify-{name}.sock"
        self.socket_path.unlink(missing_ok=True)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(self.socket_path))
        self.proc: subprocess.Popen[bytes] | None = None
        threading.Thread(target=self._listen, name=f"{device.name}-{name}", daemon=True).start()

    def state(self) -> dict[str, str]:
        """What ``systemctl show`` answers for the unit now."""
        state: dict[str, str] = json.loads(self.path.read_text())
        return state

    def set(self, active: str, sub: str, status: str | None = None) -> None:
        """Write the state ``systemctl show`` answers."""
        try:
            state = json.loads(self.path.read_text())
        except (OSError, ValueError):
            state = {}
        state.update(LoadState="loaded", ActiveState=active, SubState=sub, UnitFileState="enabled")
        if status is not None:
            state["StatusText"] = status
        elif active != "active":
            state["StatusText"] = ""
        _write(self.path, json.dumps(state))

    def start(self, log: str, *argv: str, env: dict[str, str] | None = None) -> None:
        """Start the unit's process inside the device."""
        self.set("activating", "start")
        self.proc = self.device._spawn(log, *argv, env={**self.device._env(), **(env or {}),
                                                       "NOTIFY_SOCKET": str(self.socket_path)})
        threading.Thread(target=self._watch, args=(self.proc,), daemon=True).start()

    def kill(self) -> None:
        """End the process as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stopped(self) -> None:
        """The device powered off."""
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        self.set("inactive", "dead")

    def _listen(self) -> None:
        while True:
            try:
                data = self._socket.recv(4096).decode(errors="replace")
            except OSError:
                return
            fields = dict(line.partition("=")[::2] for line in data.splitlines() if "=" in line)
            with self.device._lock:
                if fields.get("READY") == "1":
                    self.set("active", "running", fields.get("STATUS"))
                elif "STATUS" in fields:
                    state = json.loads(self.path.read_text())
                    _write(self.path, json.dumps({**state, "StatusText": fields["STATUS"]}))
                if fields.get("STOPPING") == "1":
                    self.set("deactivating", "stop-sigterm")

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        with self.device._lock:
            if proc is self.proc:
                self.set("failed", "failed", f"exited with status {code}")

    def close(self) -> None:
        self._socket.close()


class DeviceHosts:
    """``DeviceHosts(directory, count)``: a LAN with ``count`` devices (``devices``, named ``d1``…,
    10.77.0.11…), each booted on slot A with release ``version``, trusting ``keys.ca``; and a ``client``
    host (10.77.0.2) for the fleet tool, whose SSH key is ``client_key`` (private; ``.pub`` beside it)."""

    def __init__(self, directory: Path, count: int, version: str = "1.0.0", keys: Keys | None = None,
                 mdns: bool = False, kiosks: Mapping[int, str] | None = None, appliance: bool = True) -> None:
        """``kiosks``: ``{device index: SDL video driver}`` for the devices that run a kiosk (see :class:`Device`);
        ``mdns``: the appliances advertise on their eth0 (else mDNS is off); ``appliance`` False: no
        ``eticket serve`` on any device (see :class:`Device`)."""
        self.dir = directory
        self.keys = keys or make_keys(directory / "keys")
        self.client_key = directory / "client" / "id_ed25519"
        self.client_key.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleet test", "-f",
                        str(self.client_key)], check=True)
        client_pub = self.client_key.with_suffix(".pub").read_text().strip()
        self.lan = Lan()
        self.devices: list[Device] = []
        try:
            self.client = self.lan.add_host("client", 2)
            for i in range(count):
                host = self.lan.add_host(f"d{i + 1}", 11 + i)  # Lan names links by 3 characters
                device = Device(host, directory / host.name, self.keys, client_pub, version, mdns=mdns,
                                kiosk=(kiosks or {}).get(i), appliance=appliance)
                self.devices.append(device)
                device.boot()
        except BaseException:
            self.close()
            raise

    def known_hosts(self) -> str:
        """An OpenSSH ``known_hosts`` text naming every device by address."""
        return "".join(f"{d.host.address} {d.host_key}\n" for d in self.devices)

    def ssh(self, device: Device, *remote: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Real ``ssh`` from the client host to ``device`` as root, host key checked, then ``remote``."""
        known = self.dir / "client" / "known_hosts"
        known.write_text(self.known_hosts())
        argv = ["ssh", "-i", str(self.client_key), "-o", f"UserKnownHostsFile={known}", "-o",
                "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                f"root@{device.host.address}", shlex.join(remote)]
        return subprocess.run(self.client.cmd(*argv), capture_output=True, text=True, timeout=timeout, check=False)

    def close(self) -> None:
        for device in self.devices:
            with contextlib.suppress(Exception):
                device.close()
        self.lan.close()


@contextlib.contextmanager
def device_hosts(directory: Path, count: int, **kwargs: Any) -> Iterator[DeviceHosts]:
    """:class:`DeviceHosts` for the length of a ``with``."""
    hosts = DeviceHosts(directory, count, **kwargs)
    try:
        yield hosts
    finally:
        hosts.close()
