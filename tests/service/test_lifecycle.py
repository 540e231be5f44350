"""Stopping the appliance is prompt and clean, even with screens following the display stream."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx

from tests.conftest import ETICKET, REPO, Appliance, free_port, run_cli, wait_healthy


def test_sigterm_with_open_streams_stops_promptly_without_errors(appliance: Appliance) -> None:
    headers = {"Authorization": f"Bearer {appliance.screen_token()}"}
    ended = threading.Event()

    def follow() -> None:
        try:
            with httpx.stream("GET", appliance.url + "/api/v1/display/stream", headers=headers,
                              timeout=httpx.Timeout(5, read=60)) as r:
                for _ in r.iter_lines():
                    pass
        except httpx.HTTPError:
            pass
        ended.set()

    followers = [threading.Thread(target=follow, daemon=True) for _ in range(3)]
    for f in followers:
        f.start()
    time.sleep(1.0)
    started = time.monotonic()
    appliance.stop()
    took = time.monotonic() - started
    assert took < 2.5, f"shutdown took {took:.1f} s"
    assert ended.wait(5), "the stream did not end"
    logs = appliance.logs()
    assert "Traceback" not in logs and " ERROR " not in logs, logs[-3000:]


def test_the_device_address_in_a_browser_shows_a_plain_page(appliance: Appliance) -> None:
    r = httpx.get(appliance.url + "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "eTicket" in r.text and "<script" not in r.text


def test_a_second_appliance_on_the_same_data_directory_refuses_to_start(
        appliance: Appliance, cli_env: dict[str, str]) -> None:
    """This is a user starting `make run` twice with the default DATA: the second must say the data
    directory is in use and exit, instead of sharing the store and device id and, when it stops, deleting
    the first one's admin socket (after which `eticket status` said no appliance was running)."""
    second = run_cli("serve", "--data-dir", str(appliance.data_dir), "--listen", f"127.0.0.1:{free_port()}",
                     "--api-listen", f"127.0.0.1:{free_port()}", "--mdns-interfaces", "127.0.0.1",
                     env=cli_env, check=False, timeout=30)
    assert second.returncode == 2
    assert f"data directory {appliance.data_dir} is in use by another appliance (pid {appliance.proc.pid})" \
        in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    status = run_cli("status", "--data-dir", str(appliance.data_dir), env=cli_env)  # the first one's socket
    assert appliance.api_port and json.loads(status.stdout)["device_id"].startswith("et-"), status.stdout
    assert httpx.get(appliance.url + "/healthz").status_code == 200


def test_ctrl_c_stops_the_appliance_without_tracebacks(tmp_path: Path, mdns_loopback: None) -> None:
    """Ctrl-C in a terminal sends SIGINT to the whole process group, PDF check workers included: they used
    to print a KeyboardInterrupt traceback each. The appliance runs in a process group of its own here."""
    port, log_path = free_port(), tmp_path / "serve.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([*ETICKET, "serve", "--data-dir", str(tmp_path / "data"), "--listen",
                                 f"127.0.0.1:{port}", "--api-listen", f"127.0.0.1:{free_port()}",
                                 "--mdns-interfaces", "127.0.0.1"], stdout=log, stderr=subprocess.STDOUT,
                                cwd=REPO, start_new_session=True)
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}", 20, "eticket serve", lambda: log_path.read_text())
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(10) == 0
        time.sleep(0.5)  # let the workers' last words reach the log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    logs = log_path.read_text()
    assert "Traceback" not in logs and "KeyboardInterrupt" not in logs, logs[-3000:]
