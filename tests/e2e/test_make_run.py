"""`make run` as the README's "Try it on a desk" has it: the screen language chosen with `LANGUAGE=`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import httpx

from tests.conftest import REPO, free_port, wait_healthy

STOP_TIMEOUT_SECONDS = 15.0


def test_make_run_language_sets_the_screen_language(tmp_path: Path) -> None:
    """`make run LANGUAGE=en` starts a device whose screen speaks English (the default is French); gettext's own
    LANGUAGE variable in a desktop session's environment (de_DE:de here) is not taken for it."""
    listen, api = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    data, log = tmp_path / "data", tmp_path / "make-run.log"
    env = {**os.environ, "LANGUAGE": "de_DE:de"}
    env.pop("ETICKET_LANGUAGE", None)
    make = subprocess.Popen(["make", "--no-print-directory", "run", "LANGUAGE=en", f"LISTEN={listen}",
                             f"API_LISTEN={api}", f"DATA={data}"], cwd=REPO, env=env, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(make, f"http://{listen}", 60, "make run", log.read_text)
        token = json.loads((data / "kiosk.json").read_text())["token"]
        state = httpx.get(f"http://{listen}/api/v1/display", headers={"Authorization": f"Bearer {token}"}).json()
        assert state["lang"] == "en", state
    finally:
        os.killpg(make.pid, signal.SIGTERM)
        make.wait(STOP_TIMEOUT_SECONDS)
    dry = subprocess.run(["make", "-n", "run"], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert "--language" not in dry.stdout  # the environment's LANGUAGE alone: the device's default (fr)
