"""Benchmark: relay downloads against nginx serving the same bytes as a static file, in the same run.

One 50 KiB receipt (a real sample PDF, padded with a trailing PDF comment to 51,200 bytes):

* **relay**: ``eticket relay serve`` (one uvicorn process, directory storage), the receipt uploaded sealed by
  a device key; every ``GET /r/<token>`` reads the sealed object, derives the key (HKDF) and decrypts
  (AES-256-GCM) before answering.
* **nginx**: Debian's nginx, one worker process, ``sendfile on``, serving the plain PDF as a static file.

Load: Debian's ``wrk`` on 127.0.0.1 (``-t1 -c16 -d<seconds>s --latency``), one server at a time, the same
settings for both. Reports requests per second and latency p50/p90/p99 as wrk measures them.

    .venv/bin/python bench/relay_vs_nginx.py [--seconds 15] [--connections 16]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _report import publish  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from relay.crypto import Signer, new_token, parse_token  # noqa: E402

SIZE = 50 * 1024
SAMPLE = REPO.parent / "shared" / "samples" / "pdf" / "invoice2data_AzureInterior-odoo.pdf"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def receipt() -> bytes:
    """The 50 KiB receipt: the sample PDF then a PDF comment line padding it to exactly SIZE bytes."""
    pdf = SAMPLE.read_bytes()
    pad = SIZE - len(pdf) - 2
    return pdf + b"%" + b" " * pad + b"\n"


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, seconds: int, connections: int) -> dict[str, float]:
    """Run wrk against ``url``; requests/s, latency percentiles in ms, non-2xx count."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = {"requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])}  # type: ignore[index]
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        result[f"p{pct}_ms"] = round(float(m[1]) * _UNITS[m[2]], 3)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    result["non_2xx"] = float(errors[1]) if errors else 0.0
    return result


def run(seconds: int, connections: int) -> dict[str, Any]:
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} is missing: apt-get install wrk nginx-light (or: make bench-sysdeps)")
    pdf = receipt()
    token = new_token()
    keys = parse_token(token)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # --- relay
        port = _port()
        relay = subprocess.Popen([sys.executable, "-m", "appliance.cli", "relay", "serve", "--storage",
                                  str(root / "store"), "--listen", f"127.0.0.1:{port}", "--log-level", "warning"],
                                 cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait(f"http://127.0.0.1:{port}/healthz")
            key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            sealed = keys.seal(pdf)
            path = f"/api/v1/receipts/{keys.rid}"
            r = httpx.put(f"http://127.0.0.1:{port}{path}", content=sealed,
                          headers=Signer(key).headers("PUT", path, sealed, expires=int(time.time()) + 3600))
            r.raise_for_status()
            url = f"http://127.0.0.1:{port}/r/{token}"
            assert httpx.get(url).content == pdf
            relay_result = wrk(url, seconds, connections)
        finally:
            relay.terminate()
            relay.wait(10)
        # --- nginx
        port = _port()
        (root / "www" / "r").mkdir(parents=True)
        (root / "www" / "r" / token).write_bytes(pdf)
        for folder in (root, root / "www", root / "www" / "r"):  # nginx's workers run as www-data under root
            folder.chmod(0o755)
        (root / "www" / "r" / token).chmod(0o644)
        conf = root / "nginx.conf"
        conf.write_text(f"""daemon off; worker_processes 1; pid {root}/nginx.pid; error_log {root}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; sendfile on; tcp_nopush on; default_type application/pdf;
  client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp;
  uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
  server {{ listen 127.0.0.1:{port}; root {root}/www; }} }}
""")
        nginx = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(root)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/r/{token}"
            _wait(url)
            got = httpx.get(url)
            assert got.content == pdf, (got.status_code, (root / "error.log").read_text()[-500:])
            nginx_result = wrk(url, seconds, connections)
        finally:
            nginx.terminate()
            nginx.wait(10)
    nginx_version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    return {"benchmark": "relay-vs-nginx", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "receipt_bytes": SIZE, "seconds": seconds, "connections": connections,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "nginx": nginx_version},
            "relay": relay_result, "nginx": nginx_result}


def table(data: dict[str, Any]) -> str:
    rows = [("eTicket relay (1 process, decrypts each GET)", data["relay"]),
            ("nginx static file (1 worker, sendfile)", data["nginx"])]
    lines = [f"wrk -t1 -c{data['connections']} -d{data['seconds']}s on 127.0.0.1, a {data['receipt_bytes']} byte "
             f"receipt, one run {data['date']}, {data['machine']['cpus']} cores, {data['machine']['nginx']}.", "",
             "| server | requests/s | p50 | p90 | p99 | non-2xx |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in rows:
        lines.append(f"| {name} | {r['requests_per_second']:.0f} | {r['p50_ms']:.2f} ms | {r['p90_ms']:.2f} ms | "
                     f"{r['p99_ms']:.2f} ms | {r['non_2xx']:.0f} |")
    ratio = data["nginx"]["requests_per_second"] / data["relay"]["requests_per_second"]
    lines += ["", f"nginx serves {ratio:.1f}x the requests per second of one relay process; the relay's p99 is "
              f"{data['relay']['p99_ms'] / data['nginx']['p99_ms']:.1f}x nginx's."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "relay-vs-nginx.json")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    args = parser.parse_args()
    data = run(args.seconds, args.connections)
    publish(data, table(data), args.out, args.readme, "relay-vs-nginx")


if __name__ == "__main__":
    main()
