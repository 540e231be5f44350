"""Every command starts with only the project's runtime requirements installed, exactly as on the device image.

The test extras (numpy, zxing-cpp, ...) are installed in the development venv, so an import of one of them in the
product passes every other test and then dies on the device (``eticket kiosk`` did, importing numpy for its
framebuffer writer). Here a clean venv holds only the image's pinned wheels, ``image-build/requirements.lock``
(the runtime ``[project] dependencies`` of pyproject.toml resolved by ``make image-lock``; from PyPI, hashes
checked, cached under ``build/runtime-venv/<hash of the lock>`` so only the first run pays for it), the source
tree is put on its path, and every module is imported and every command's start path is run in it: ``--help``
of each subcommand, ``serve`` until ``/healthz``, the kiosk drawing the pairing QR headless, a till pairing and
sending a receipt with the CLI, the phone download, the device-side admin commands, the relay, provisioning.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, SAMPLES, decode_qr_png, free_port, require, samples, wait_for, wait_healthy

VENV_ROOT = REPO / "build" / "runtime-venv"
INSTALL_TIMEOUT_SECONDS = 900
PACKAGES = ("eticket_core", "appliance", "kiosk", "relay", "provisioning", "fleet")
TEST_ONLY = ("numpy", "zxingcpp", "boto3", "pytest")  # installed with the test extras, never at run time


LOCK = REPO / "image-build" / "requirements.lock"
# The clean-venv tests are slow (a venv of the image's wheels, then every command started in it: about 30 s):
# `make test-slow`, in CI too. The lock's completeness (below) stays in the quick suite.


def _name(requirement: str) -> str:
    """The normalised project name of a requirement line (PEP 503: runs of -_. become -, lower case)."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def test_the_image_lock_pins_every_runtime_requirement() -> None:
    """A dependency added to pyproject.toml but not re-locked would be missing on the device."""
    runtime = {_name(r) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    pinned = {_name(line) for line in LOCK.read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert runtime <= pinned, f"not in {LOCK.name} (run make image-lock): {sorted(runtime - pinned)}"


@dataclass(frozen=True)
class RuntimeVenv:
    """A venv with only the runtime requirements; runs this source tree's ``eticket`` in it."""

    python: Path
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        """A minimal environment: nothing of the development venv leaks in (no VIRTUAL_ENV, no PYTHONPATH but
        the source tree, which child processes such as the PDF workers inherit)."""
        env = {"PATH": f"{self.python.parent}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.home),
               "XDG_CONFIG_HOME": str(self.home / "config"), "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
               "LANG": "C.UTF-8", "SDL_VIDEODRIVER": "dummy"}
        env.update(extra)
        return env

    def argv(self, *args: str) -> list[str]:
        return [str(self.python), "-m", "appliance.cli", *args]

    def run(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.argv(*args), env=self.env(), capture_output=True, text=True, timeout=timeout,
                              cwd=self.home)
        if check:
            assert done.returncode == 0, f"eticket {' '.join(args)} exited {done.returncode}: {done.stderr[-3000:]}"
        return done

    def start(self, log: Path, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv(*args), env=self.env(), stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                                cwd=self.home)


def _make_venv(lock: Path) -> Path:
    """The cached venv holding the wheels pinned in ``lock`` (made once, under a lock file, by whichever test
    run comes first); its python."""
    key = hashlib.sha256(lock.read_bytes() + f"{sys.version_info[:2]} {platform.machine()}".encode()).hexdigest()
    venv = VENV_ROOT / key[:16]
    python = venv / "bin" / "python"
    VENV_ROOT.mkdir(parents=True, exist_ok=True)
    with open(VENV_ROOT / ".lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if (venv / "complete").exists():
            return python
        subprocess.run(["rm", "-rf", str(venv)], check=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                  "--only-binary=:all:", "--require-hashes", "-r", str(lock)],
                                 capture_output=True, text=True, timeout=INSTALL_TIMEOUT_SECONDS)
        require(install.returncode == 0, f"cannot install {lock.name}: {install.stderr[-2000:]}")
        (venv / "complete").write_text(f"{lock}\n")
    return python


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> RuntimeVenv:
    venv = RuntimeVenv(python=_make_venv(LOCK), home=tmp_path_factory.mktemp("runtime-home"))
    leaked = subprocess.run([str(venv.python), "-c", "import importlib.util, sys; print(' '.join(m for m in "
                             f"{TEST_ONLY!r} if importlib.util.find_spec(m)))"], env=venv.env(), capture_output=True,
                            text=True, check=True).stdout.split()
    assert leaked == [], f"the runtime venv must not hold test-only packages: {leaked}"
    return venv


@pytest.mark.slow
def test_every_module_imports_with_only_the_runtime_requirements(runtime: RuntimeVenv) -> None:
    code = ("import importlib, pkgutil, sys\n"
            "failed = []\n"
            f"for package in {PACKAGES!r}:\n"
            "    root = importlib.import_module(package)\n"
            "    for info in pkgutil.walk_packages(root.__path__, package + '.'):\n"
            "        if info.name.endswith('__main__'):\n"
            "            continue\n"
            "        try:\n"
            "            importlib.import_module(info.name)\n"
            "        except Exception as exc:\n"
            "            failed.append(f'{info.name}: {type(exc).__name__}: {exc}')\n"
            "print('\\n'.join(failed))\n")
    done = subprocess.run([str(runtime.python), "-c", code], env=runtime.env(), capture_output=True, text=True,
                          timeout=120, cwd=runtime.home)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "", f"modules that do not import at run time:\n{done.stdout}"


def _commands() -> list[list[str]]:
    """Every command path of the ``eticket`` parser: [], ["serve"], ["relay", "serve"], ..."""
    import argparse

    from appliance.cli import build_parser

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> Iterator[list[str]]:
        yield path
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from walk(child, [*path, name])

    return list(walk(build_parser(), []))


@pytest.mark.slow
def test_every_command_answers_help(runtime: RuntimeVenv) -> None:
    commands = _commands()
    assert ["kiosk"] in commands and ["relay", "serve"] in commands and ["provision", "watch"] in commands
    for command in commands:
        done = runtime.run(*command, "--help")
        assert done.stdout.startswith("usage: eticket"), (command, done.stdout[:200])
    assert runtime.run("--version").stdout.startswith("eticket ")


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _qr(png: Path) -> list[str]:
    try:
        return decode_qr_png(png)
    except (OSError, SyntaxError, ValueError):
        return []


@pytest.mark.slow
def test_the_device_and_till_commands_start_and_do_their_job(runtime: RuntimeVenv, tmp_path: Path,
                                                              mdns_loopback: None) -> None:
    """serve, the kiosk (run headless, and --snapshot), status, pairings, screens, discover, pair, send, and a
    till printing to the printer port (the conversion worker: reportlab, pdf417gen, pillow, the font)."""
    data = tmp_path / "data"
    port, api_port, printer_port = free_port(), free_port(), free_port()
    serve_log, kiosk_log = tmp_path / "serve.log", tmp_path / "kiosk.log"
    serve = runtime.start(serve_log, "serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}",
                          "--api-listen", f"127.0.0.1:{api_port}", "--mdns-interfaces", "127.0.0.1",
                          "--printer-listen", f"127.0.0.1:{printer_port}")
    kiosk: subprocess.Popen[bytes] | None = None
    try:
        wait_healthy(serve, f"http://127.0.0.1:{port}", 30, "eticket serve",
                     lambda: serve_log.read_text(errors="replace"))
        device_id = httpx.get(f"http://127.0.0.1:{port}/healthz").json()["device_id"]
        kiosk = runtime.start(kiosk_log, "kiosk", "--data-dir", str(data), "--size", "800x480")
        screen = data / "screen.png"
        wait_for(lambda: kiosk.poll() is not None or any(u.startswith("eticket://pair") for u in _qr(screen)),
                 30, "the kiosk's pairing QR")
        assert kiosk.poll() is None, f"eticket kiosk exited: {kiosk_log.read_text(errors='replace')[-3000:]}"
        shot = tmp_path / "snapshot.png"
        runtime.run("kiosk", "--data-dir", str(data), "--snapshot", str(shot))
        (uri,) = _qr(shot)

        assert json.loads(runtime.run("status", "--data-dir", str(data)).stdout)["paired"] is False
        found = json.loads(runtime.run("discover", "--json", "--timeout", "3", "--mdns-interfaces",
                                       "127.0.0.1").stdout)
        assert [d["port"] for d in found if d["id"] == device_id] == [api_port], found  # (other devices on lo)
        runtime.run("pair", "--uri", uri, "--pos-name", "Till 1")
        assert "Till 1" in runtime.run("pairings", "list", "--data-dir", str(data)).stdout
        runtime.run("screens", "list", "--data-dir", str(data))
        pdf = samples("pdf")[0]
        url = json.loads(runtime.run("send", str(pdf), "--total", "4.20", "--currency", "EUR", "--json").stdout)["url"]
        wait_for(lambda: _qr(screen) == [url], 20, "the receipt's QR on the kiosk's screen")
        assert httpx.get(url).content == pdf.read_bytes()
        runtime.run("printers", "allow", "127.0.0.1", "--data-dir", str(data))
        from tests.service.test_printer import send_job

        send_job(printer_port, (SAMPLES / "takepos" / "cafe-logo.bin").read_bytes())
        wait_for(lambda: len(_qr(screen)) == 1 and _qr(screen) != [url], 30, "the printed receipt's QR")
        printed = httpx.get(_qr(screen)[0])
        assert printed.status_code == 200 and printed.content.startswith(b"%PDF"), serve_log.read_text()[-2000:]
        assert kiosk.poll() is None
    finally:
        if kiosk is not None:
            _stop(kiosk)
        _stop(serve)


NETLINK_KOBJECT_UEVENT = 15  # linux/netlink.h: the protocol udev monitors listen on


def _listens_to_uevents(pid: int) -> bool:
    """True when process ``pid`` holds a kernel-uevent netlink socket (its udev monitor is open)."""
    try:
        inodes = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        rows = Path("/proc/net/netlink").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(int(row.split()[1]) == NETLINK_KOBJECT_UEVENT and f"socket:[{row.split()[-1]}]" in inodes
               for row in rows)


@pytest.mark.slow
def test_the_relay_and_provisioning_commands_start(runtime: RuntimeVenv, tmp_path: Path) -> None:
    storage = str(tmp_path / "relay-data")
    port = free_port()
    log = tmp_path / "relay.log"
    relay = runtime.start(log, "relay", "serve", "--storage", storage, "--listen", f"127.0.0.1:{port}")
    try:
        wait_healthy(relay, f"http://127.0.0.1:{port}", 30, "eticket relay serve",
                     lambda: log.read_text(errors="replace"))
    finally:
        assert _stop(relay) in (0, -signal.SIGTERM), log.read_text(errors="replace")[-3000:]
    device = "A" * 43  # a relay device id: 32 bytes in base64url
    runtime.run("relay", "block", device, "--storage", storage, "--reason", "test")
    runtime.run("relay", "unblock", device, "--storage", storage)
    runtime.run("relay", "sweep", "--storage", storage)

    root = tmp_path / "root"
    root.mkdir()
    runtime.run("provision", "seed", "--root", str(root))
    settings = tmp_path / "eticket.toml"
    settings.write_text('shop_name = "Boulangerie"\n')
    status = tmp_path / "status.json"
    runtime.run("provision", "apply", "--from", str(settings), "--root", str(root), "--status", str(status))
    assert json.loads(status.read_text())["ok"] is True

    watch_log = tmp_path / "watch.log"
    watch = runtime.start(watch_log, "provision", "watch", "--root", str(root), "--status", str(status))
    try:
        wait_for(lambda: watch.poll() is not None or _listens_to_uevents(watch.pid), 20,
                 "provision watch to listen to udev")
        assert watch.poll() is None, watch_log.read_text(errors="replace")[-3000:]
    finally:
        _stop(watch)
