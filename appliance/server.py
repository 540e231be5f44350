"""``eticket serve``: the appliance process — the HTTPS POS API, plain-HTTP customer downloads and screen
stream, the local admin socket — and, optionally, its kiosk."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

import uvicorn

from ._paths import configure_logging, split_host_port
from ._sdnotify import Notifier
from .admin_cli import ADMIN_SOCKET
from .admission import MAX_CONNECTIONS
from .config import Settings
from .printer.listener import PrintListener
from .service import Appliance
from .web.admin import create_admin_app
from .web.app import create_app
from .web.framing import StrictH11Protocol

log = logging.getLogger(__name__)

KIOSK_RESTART_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0)
TLS_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
"""Forward-secret AEAD suites only (TLS 1.2; TLS 1.3 suites are always AEAD): no CBC, no RSA key exchange."""
ADMIN_MAX_CONNECTIONS = 16
"""Concurrent connections on the admin socket (owner-only; ``eticket pairings`` and friends)."""


class KioskSupervisor:
    """Runs ``eticket kiosk`` as a child process and restarts it when it dies, with backoff.

    A crash of the screen never takes the appliance down; on a device systemd does this job instead.
    """

    def __init__(self, data_dir: str) -> None:
        self._cmd = [sys.executable, "-m", "appliance.cli", "kiosk", "--data-dir", data_dir]
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._run, name="kiosk-supervisor", daemon=True)

    def start(self) -> None:
        """Start supervising in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the kiosk and stop restarting it."""
        self._stop.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._proc = subprocess.Popen(self._cmd, env=os.environ.copy())
            code = self._proc.wait()
            if code in INTERRUPTED_EXIT_STATUSES and self._stop.wait(INTERRUPT_GRACE_SECONDS):
                return  # Ctrl-C in a terminal reached the kiosk and the appliance alike: this is a stop, not a crash
            if self._stop.is_set():
                return
            delay = KIOSK_RESTART_BACKOFF_SECONDS[min(failures, len(KIOSK_RESTART_BACKOFF_SECONDS) - 1)]
            log.warning("kiosk exited with status %s; restarting in %.0f s", code, delay)
            failures += 1
            self._stop.wait(delay)


INTERRUPTED_EXIT_STATUSES = frozenset({130, -signal.SIGINT})
"""How a kiosk child ends on SIGINT: 128 + 2 by Python's convention for KeyboardInterrupt, or killed by it."""
INTERRUPT_GRACE_SECONDS = 3.0
"""After such an end, how long the supervisor waits for the appliance's own stop (the same Ctrl-C) before it
takes the end for a crash and restarts the kiosk."""


UVICORN_LIFECYCLE_MESSAGES = frozenset({
    "Started server process [%d]", "Waiting for application startup.", "Application startup complete.",
    "Shutting down", "Waiting for connections to close. (CTRL+C to force quit)",
    "Waiting for background tasks to complete. (CTRL+C to force quit)", "Waiting for application shutdown.",
    "Application shutdown complete.", "Finished server process [%d]",
})
"""uvicorn's start and stop lines (``uvicorn/server.py``, ``uvicorn/lifespan/on.py``): each of our listeners is
its own ``uvicorn.Server``, so each would say them; :class:`_OncePerProcess` lets one of each through."""


class _OncePerProcess(logging.Filter):
    """On the ``uvicorn.error`` logger: each of UVICORN_LIFECYCLE_MESSAGES once, other records untouched."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        if message not in UVICORN_LIFECYCLE_MESSAGES:
            return True
        if message in self._seen:
            return False
        self._seen.add(message)
        return True


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to :func:`serve` (several servers share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _unix_socket(path: Path) -> socket.socket:
    """A listening Unix socket at ``path`` with mode 0600 (uvicorn's own ``uds`` would make it 0666)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(16)
    return sock


class BindError(Exception):
    """A listen address is in use or not ours; the message names it."""


DATA_DIR_LOCK = "appliance.lock"
"""File in the data directory that the running appliance holds an exclusive ``flock`` on."""


def _lock_data_dir(data_dir: Path) -> int:
    """Hold an exclusive lock on ``data_dir`` for the life of the process (the returned descriptor; the
    kernel drops the lock when the process ends, however it ends). Two appliances on one data directory
    would share one SQLite store and device id, and the one that stops would delete the other's admin socket.

    Raises:
        BindError: another process holds the lock (its pid, when it wrote one, is in the message).
    """
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(data_dir / DATA_DIR_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise BindError(f"data directory {data_dir} is in use by another appliance (pid {holder})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _tcp_socket(host: str, port: int) -> socket.socket:
    """Bind ``host:port`` now, before anything starts, so a taken port is one clear error and an exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted connections
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _tls_context(appliance: Appliance) -> ssl.SSLContext:
    """The HTTPS listener's server context: the device certificate, forward-secret AEAD suites only."""
    identity = appliance.identity
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(identity.cert_path), str(identity.key_path))
    context.set_ciphers(TLS_CIPHERS)
    return context


READY_POLL_SECONDS = 0.05
"""How often the start-up waits for every listener to report started before READY=1."""
STATUS_CHECK_SECONDS = 2.0
"""How often the storage state is looked at for the unit's ``STATUS=`` line (sent only when it changes)."""


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def status_line(notice: dict[str, Any] | None) -> str:
    """The unit's ``STATUS=`` text (``systemctl status eticket`` shows it) for :meth:`Appliance.storage_notice`
    ``notice``: ``"serving"`` while the storage is fine (``/healthz`` ``ok``), else what ``/healthz`` says
    (``degraded``), e.g. ``"serving; storage repaired (2 receipts lost)"``, ``"serving; storage unavailable
    (card full)"``. One line, no text from outside the device."""
    if notice is None:
        return "serving"
    status = str(notice["status"])
    full = " (card full)" if notice.get("full") else ""
    receipts, pairings = int(notice.get("receipts_lost", 0)), int(notice.get("pairings_lost", 0))
    if status == "repaired":
        lost = _plural(receipts, "receipt") + " lost" + (f", {_plural(pairings, 'till')} to pair again"
                                                        if pairings else "")
        return f"serving; storage repaired ({lost})"
    if status == "damaged":
        return f"serving; storage damaged ({_plural(receipts, 'receipt')} unreadable; the SD card may be failing)"
    if status == "failed":
        return f"serving; storage unavailable{full}: receipts cannot be stored"
    if status == "refusing":
        return f"serving; storage refusing writes{full}"
    return f"serving; storage {status}"


async def _async_ready(servers: list[_Server], notifier: Notifier, appliance: Appliance) -> None:
    """Tell systemd READY=1 (with the :func:`status_line`) once every listener has started, then feed the
    watchdog from this loop and send a new ``STATUS=`` whenever the storage state changes."""
    while not all(server.started for server in servers):
        if any(server.should_exit for server in servers):
            return
        await asyncio.sleep(READY_POLL_SECONDS)
    line = status_line(appliance.storage_notice())
    notifier.notify(f"READY=1\nSTATUS={line}")
    log.info("ready: every listener started")
    await asyncio.gather(notifier.async_watchdog(), _async_status(notifier, appliance, line))


async def _async_status(notifier: Notifier, appliance: Appliance, line: str) -> None:
    """Forever (with a notify socket): send ``STATUS=`` when :func:`status_line` no longer says ``line``."""
    if notifier.address is None:
        return
    while True:
        await asyncio.sleep(STATUS_CHECK_SECONDS)
        try:
            now = status_line(appliance.storage_notice())
        except Exception:  # a bug here must not stop the watchdog pings beside it (systemd would kill us)
            log.exception("the STATUS= line could not be made")
            continue
        if now != line:
            line = now
            notifier.notify(f"STATUS={line}")


async def _async_serve(settings: Settings, notifier: Notifier) -> None:
    public_sock = _tcp_socket(settings.host, settings.port)
    api_sock = _tcp_socket(*settings.api_host_port) if settings.tls else None
    printer_sock = _tcp_socket(*split_host_port(settings.printer_listen)) if settings.printer_listen else None
    appliance = Appliance(settings)
    printer: PrintListener | None = None
    if printer_sock is not None:
        appliance.printer_port = printer_sock.getsockname()[1]
        printer = PrintListener(appliance.printer, printer_sock)
    common = dict(access_log=False, log_config=None, log_level=settings.log_level, proxy_headers=False,
                  server_header=False, timeout_graceful_shutdown=3, lifespan="off")
    # The TCP listeners run behind appliance/admission.py (caps, a reserve for trusted clients, the request
    # head deadline, dead-peer detection) on appliance/web/framing.py's strict h11 (CL+TE refused, one log
    # line per malformed request); admission counts connections, so uvicorn's own limit stays a backstop
    # above its cap. The HTTPS listener's TLS handshake happens there too, after admission.
    gated = dict(common, limit_concurrency=MAX_CONNECTIONS + 1)
    admission = appliance.admission
    configs: list[tuple[uvicorn.Config, list[socket.socket] | None]] = []
    if settings.tls:
        host, port = settings.api_host_port
        tls = _tls_context(appliance)
        configs.append((uvicorn.Config(create_app(appliance, public=False), host=host, port=port,
                                       http=admission.protocol_class("https", tls), **gated),  # type: ignore[arg-type]
                        [api_sock]))  # type: ignore[list-item]
        configs.append((uvicorn.Config(create_app(appliance, pos_api=False), host=settings.host,
                                       port=settings.port, http=admission.protocol_class("http"), **gated),  # type: ignore[arg-type]
                        [public_sock]))
    else:
        configs.append((uvicorn.Config(create_app(appliance), host=settings.host, port=settings.port,
                                       http=admission.protocol_class("http"), **gated),  # type: ignore[arg-type]
                        [public_sock]))
    admin_sock = _unix_socket(settings.data_dir / ADMIN_SOCKET)
    configs.append((uvicorn.Config(create_admin_app(appliance), limit_concurrency=ADMIN_MAX_CONNECTIONS,
                                   http=StrictH11Protocol,
                                   **common), [admin_sock]))  # type: ignore[arg-type]
    servers = [(_Server(config), sockets) for config, sockets in configs]

    loop = asyncio.get_running_loop()

    def stop() -> None:
        appliance.begin_shutdown()
        for server, _ in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    await appliance.async_start()
    if printer is not None:
        await printer.async_start()
    ready = asyncio.create_task(_async_ready([server for server, _ in servers], notifier, appliance))
    try:
        await asyncio.gather(*(server.serve(sockets=sockets) for server, sockets in servers))
    finally:
        ready.cancel()
        notifier.notify("STOPPING=1")
        if printer is not None:
            await printer.async_stop()
        await appliance.async_stop()
        with contextlib.suppress(FileNotFoundError):
            (settings.data_dir / ADMIN_SOCKET).unlink()


def serve(settings: Settings) -> None:
    """Run the appliance until SIGINT/SIGTERM; mDNS says goodbye on the way out. Under systemd
    (``$NOTIFY_SOCKET``) it sends READY=1 once every listener has started, WATCHDOG=1 pings from the
    event loop when the unit sets ``WatchdogSec=``, and a ``STATUS=`` line saying whether the storage is fine
    (:func:`status_line`), updated when that changes."""
    configure_logging(settings.log_level)
    once = _OncePerProcess()
    logging.getLogger("uvicorn.error").addFilter(once)
    try:
        lock = _lock_data_dir(settings.data_dir)
    except BindError as exc:
        log.error("%s. Stop it first, or give this one its own --data-dir.", exc)
        raise SystemExit(2) from exc
    notifier = Notifier.from_environ(os.environ)
    supervisor = KioskSupervisor(str(settings.data_dir)) if settings.kiosk else None
    if supervisor is not None:
        supervisor.start()
    try:
        asyncio.run(_async_serve(settings, notifier))
    except BindError as exc:
        log.error("%s. Is another appliance running? Choose other ports with --listen / --api-listen / "
                  "--printer-listen.", exc)
        raise SystemExit(2) from exc
    finally:
        if supervisor is not None:
            supervisor.stop()
        os.close(lock)
        logging.getLogger("uvicorn.error").removeFilter(once)
