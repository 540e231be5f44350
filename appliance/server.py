"""``eticket serve``: the appliance process (uvicorn on the configured address) and, optionally, its kiosk."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from types import FrameType

import uvicorn

from ._paths import configure_logging
from .config import Settings
from .service import Appliance
from .web import create_app

log = logging.getLogger(__name__)

KIOSK_RESTART_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0)
MAX_CONNECTIONS = 256
"""Concurrent connections and tasks; beyond it uvicorn answers 503 instead of exhausting descriptors."""


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
            if self._stop.is_set():
                return
            delay = KIOSK_RESTART_BACKOFF_SECONDS[min(failures, len(KIOSK_RESTART_BACKOFF_SECONDS) - 1)]
            log.warning("kiosk exited with status %s; restarting in %.0f s", code, delay)
            failures += 1
            self._stop.wait(delay)


class _Server(uvicorn.Server):
    """uvicorn's server, telling the appliance first when a stop signal arrives (streams end at once)."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)


def serve(settings: Settings) -> None:
    """Run the appliance until SIGINT/SIGTERM; mDNS says goodbye on the way out."""
    configure_logging(settings.log_level)
    appliance = Appliance(settings)
    app = create_app(appliance)
    supervisor = KioskSupervisor(str(settings.data_dir)) if settings.kiosk else None
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, access_log=False, log_config=None,
        log_level=settings.log_level, proxy_headers=False, server_header=False, timeout_graceful_shutdown=3,
        limit_concurrency=MAX_CONNECTIONS,
    )
    server = _Server(config, on_exit=appliance.begin_shutdown)
    if supervisor is not None:
        supervisor.start()
    try:
        server.run()
    finally:
        if supervisor is not None:
            supervisor.stop()
