"""The display stream behind a reverse proxy: a real nginx (Debian's nginx-light) on loopback in front of a
real appliance. With nginx's defaults (response buffering on) and with the settings docs/protocol.md §6
gives, a screen receives the first state event through the proxy within a few seconds."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, Appliance, free_port, require

FIRST_EVENT_SECONDS = 5.0
"""How long a screen may wait for the state through the proxy (a liveness bound, not a timing)."""
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _documented_location() -> str:
    """The ``location`` block of docs/protocol.md §6, as a shop would paste it."""
    block = re.search(r"```nginx\n(.*?)```", (REPO / "docs" / "protocol.md").read_text(), re.S)
    assert block, "docs/protocol.md lost its nginx example"
    return block[1]


@pytest.fixture
def proxies(appliance: Appliance, tmp_path: Path) -> Iterator[dict[str, str]]:
    """nginx with two servers in front of the appliance: ``default`` (a bare proxy_pass) and ``documented``."""
    require(Path(NGINX).exists(), "Debian's nginx-light is not installed (scripts/sysdeps.sh)")
    root = tmp_path / "nginx"
    (root / "tmp").mkdir(parents=True)
    for folder in (root, root / "tmp"):  # nginx's workers may run as another user
        folder.chmod(0o777)
    ports = {"default": free_port(), "documented": free_port()}
    documented = _documented_location().replace("http://192.168.1.20:8080", appliance.url)
    (root / "nginx.conf").write_text(f"""daemon off; worker_processes 1; pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 64; }}
http {{ access_log off; client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp;
  fastcgi_temp_path {root}/tmp; uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
  server {{ listen 127.0.0.1:{ports['default']}; location / {{ proxy_pass {appliance.url}; }} }}
  server {{ listen 127.0.0.1:{ports['documented']}; {documented} }}
}}
""")
    nginx = subprocess.Popen([NGINX, "-c", str(root / "nginx.conf"), "-p", str(root)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        deadline = time.monotonic() + 10
        for url in urls.values():
            while True:
                try:
                    httpx.get(url + "/healthz", timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    assert nginx.poll() is None and time.monotonic() < deadline, (root / "error.log").read_text()
                    time.sleep(0.1)
        yield urls
    finally:
        nginx.terminate()
        nginx.wait(10)


def test_the_stream_tells_proxies_not_to_buffer_it(appliance: Appliance) -> None:
    with httpx.stream("GET", appliance.url + "/api/v1/display/stream",
                      params={"key": appliance.screen_token()}) as stream:
        assert stream.headers["x-accel-buffering"] == "no"
        assert "no-cache" in stream.headers["cache-control"] and "no-store" in stream.headers["cache-control"]


@pytest.mark.parametrize("proxy", ["default", "documented"])
def test_a_screen_behind_nginx_gets_the_state_at_once(appliance: Appliance, proxies: dict[str, str],
                                                      proxy: str) -> None:
    """A tablet that reaches the device through the shop's nginx: the first ``state`` event arrives through
    the proxy (behind a default nginx it used to sit in nginx's buffer, and the screen got nothing)."""
    timeout = httpx.Timeout(10.0, read=FIRST_EVENT_SECONDS)
    with httpx.stream("GET", proxies[proxy] + "/api/v1/display/stream", params={"key": appliance.screen_token()},
                      timeout=timeout) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        try:
            while not next(lines).startswith("event: state"):
                pass
            data = next(lines)
        except httpx.ReadTimeout:
            pytest.fail(f"no state event through nginx ({proxy}) within {FIRST_EVENT_SECONDS} s")
    assert data.startswith("data: {") and '"scene": "pairing"' in data
