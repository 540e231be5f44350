"""nginx started with the relay deployment of docs/relay.md (docs/deploy/nginx-relay.conf), on 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import REPO, free_port, require

DEPLOY_CONF = REPO / "docs" / "deploy" / "nginx-relay.conf"


@dataclass
class Nginx:
    """A running nginx: ``url``, its ``access_log`` path, and the process."""

    url: str
    access_log: Path
    error_log: Path
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def open_to_web_server(storage: Path) -> None:
    """Let nginx's workers (an unprivileged user) reach ``storage``: every ancestor traversable (o+x), as a
    directory like /var/lib is; the storage itself keeps the modes the relay gives it."""
    for folder in list(storage.resolve().parents)[:-1]:
        mode = folder.stat().st_mode & 0o777
        if not mode & 0o001:
            folder.chmod(mode | 0o001)


def start_nginx(root: Path, storage: Path, upstream: str, access_log: bool = True,
                workers: int = 1) -> Nginx:
    """nginx serving docs/deploy/nginx-relay.conf for the relay at ``upstream`` (host:port) whose storage
    directory is ``storage``; its own files under ``root``."""
    require(shutil.which("nginx") is not None, "nginx is not installed (apt-get install nginx-light)")
    root.mkdir(parents=True, exist_ok=True)
    (root / "tmp").mkdir(exist_ok=True)
    locations = DEPLOY_CONF.read_text().replace("/var/lib/eticket-relay", str(storage)).replace(
        "127.0.0.1:8090", upstream)
    (root / "relay-locations.conf").write_text(locations)
    port = free_port()
    log = f"access_log {root}/access.log;" if access_log else "access_log off;"
    (root / "nginx.conf").write_text(f"""daemon off; worker_processes {workers}; pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 1024; }}
http {{ {log} sendfile on; tcp_nopush on;
  client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp;
  uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
  server {{ listen 127.0.0.1:{port}; include {root}/relay-locations.conf; }} }}
""")
    open_to_web_server(storage)
    proc = subprocess.Popen(["nginx", "-c", str(root / "nginx.conf"), "-p", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            error = (root / "error.log").read_text() if (root / "error.log").exists() else ""
            raise RuntimeError(f"nginx did not start: {error[-1500:]}")
        time.sleep(0.1)
    return Nginx(url=url, access_log=root / "access.log", error_log=root / "error.log", proc=proc)
