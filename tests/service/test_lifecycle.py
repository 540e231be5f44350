"""Stopping the appliance is prompt and clean, even with screens following the display stream."""

from __future__ import annotations

import threading
import time

import httpx

from tests.conftest import Appliance


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
