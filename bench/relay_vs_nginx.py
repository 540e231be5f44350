"""Benchmark: blind relay downloads against nginx serving the same bytes as a static file, in the same run.

One 50 KiB receipt (a real sample PDF, padded with a trailing PDF comment to 51,200 bytes), sealed:

* **nginx static file**: Debian's nginx, one worker, ``sendfile on``, serving the sealed bytes as a plain file:
  the ceiling.
* **relay deployment** (docs/relay.md): nginx with ``docs/deploy/nginx-relay.conf`` (one worker) in front of
  ``eticket relay serve``; ``GET /o/<rid>`` is served by nginx from the relay's storage directory.
* **relay alone, /o/<rid>**: the relay process answering object requests itself (no nginx in front).
* **relay, deprecated /r/<token>**: the v1 route, where the relay derives the key and decrypts every GET.

Load: Debian's ``wrk`` on 127.0.0.1 (``-t1 -c16 -d<seconds>s --latency``), one server at a time, the same
settings for all. Then the customer's wait: headless Chromium with its CPU slowed 4x (DevTools' "mid-tier
mobile" throttling), a fresh browser context per sample (nothing cached, as a phone scanning a QR), timed
from ``page.goto`` to the PDF handed over: the blind page (fetch, HKDF, AES-GCM in the browser) through the
deployment until its download event, beside the v1 link (the relay decrypts and sends the PDF) until the PDF
response is complete and loaded in the viewer, p50/p95.

    .venv/bin/python bench/relay_vs_nginx.py [--seconds 15] [--connections 16] [--samples 20]
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

from relay.crypto import Signer, link, new_secret, new_token, parse_token  # noqa: E402
from tests.relay.nginx import start_nginx  # noqa: E402

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


def _upload(base: str, secret: str, pdf: bytes, key: bytes) -> bytes:
    keys = parse_token(secret)
    sealed = keys.seal(pdf)
    path = f"/api/v1/receipts/{keys.rid}"
    r = httpx.put(base + path, content=sealed,
                  headers=Signer(key).headers("PUT", path, sealed, expires=int(time.time()) + 3600))
    r.raise_for_status()
    return sealed


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))]


def time_to_pdf(urls: dict[str, str], samples: int, throttle: float) -> dict[str, dict[str, float]]:
    """Seconds from ``goto`` to the download event in Chromium with the CPU slowed ``throttle`` times, per URL
    kind, samples interleaved; p50/p95/max and the mean."""
    from tests.e2e.chromium import chromium

    times: dict[str, list[float]] = {name: [] for name in urls}
    with chromium() as browser:
        for _ in range(samples):
            for name, url in urls.items():
                context = browser.new_context(accept_downloads=True)
                page = context.new_page()
                context.new_cdp_session(page).send("Emulation.setCPUThrottlingRate", {"rate": throttle})
                started = time.perf_counter()
                if "/r#" in url:  # the blind page hands the decrypted PDF over as a download
                    with page.expect_download(timeout=30_000) as caught:
                        page.goto(url)
                    caught.value.path()  # the whole file is there
                else:  # a v1 link is the PDF itself: Chromium's viewer gets it once the response is complete
                    response = page.goto(url, wait_until="load")
                    assert response is not None and response.headers["content-type"] == "application/pdf"
                    response.finished()
                times[name].append(time.perf_counter() - started)
                context.close()
    return {name: {"p50_ms": round(_percentile(v, 50) * 1000, 1), "p95_ms": round(_percentile(v, 95) * 1000, 1),
                   "max_ms": round(max(v) * 1000, 1), "mean_ms": round(sum(v) / len(v) * 1000, 1),
                   "samples": len(v)} for name, v in times.items()}


def run(seconds: int, connections: int, samples: int, throttle: float) -> dict[str, Any]:
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} is missing: apt-get install wrk nginx-light (or: make bench-sysdeps)")
    pdf = receipt()
    secret, token = new_secret(), new_token()
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:  # /var/tmp: traversable by nginx's workers
        root = Path(tmp)
        root.chmod(0o711)
        port = _port()
        relay = subprocess.Popen([sys.executable, "-m", "appliance.cli", "relay", "serve", "--storage",
                                  str(root / "store"), "--listen", f"127.0.0.1:{port}", "--log-level", "warning"],
                                 cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        relay_url = f"http://127.0.0.1:{port}"
        try:
            _wait(f"{relay_url}/healthz")
            sealed = _upload(relay_url, secret, pdf, key)
            _upload(relay_url, token, pdf, key)
            rid = parse_token(secret).rid
            assert httpx.get(f"{relay_url}/r/{token}").content == pdf
            # --- nginx, a plain file of the same bytes
            (root / "www").mkdir()
            (root / "www" / "object").write_bytes(sealed)
            (root / "www").chmod(0o755)
            (root / "www" / "object").chmod(0o644)
            plain = _port()
            conf = root / "nginx.conf"
            conf.write_text(f"""daemon off; worker_processes 1; pid {root}/nginx.pid; error_log {root}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; sendfile on; tcp_nopush on; default_type application/octet-stream;
  client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp;
  uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
  server {{ listen 127.0.0.1:{plain}; root {root}/www; }} }}
""")
            nginx = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(root)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            try:
                url = f"http://127.0.0.1:{plain}/object"
                _wait(url)
                assert httpx.get(url).content == sealed
                results["nginx"] = wrk(url, seconds, connections)
            finally:
                nginx.terminate()
                nginx.wait(10)
            # --- the deployment of docs/relay.md
            deployment = start_nginx(root / "deploy", root / "store", f"127.0.0.1:{port}", access_log=False)
            try:
                url = f"{deployment.url}/o/{rid}"
                assert httpx.get(url).content == sealed
                results["deployment"] = wrk(url, seconds, connections)
                results["relay_objects"] = wrk(f"{relay_url}/o/{rid}", seconds, connections)
                results["relay_decrypting"] = wrk(f"{relay_url}/r/{token}", seconds, connections)
                results["time_to_pdf"] = time_to_pdf(
                    {"blind page via the deployment": link(deployment.url, secret),
                     "v1 link (relay decrypts)": f"{relay_url}/r/{token}"}, samples, throttle)
            finally:
                deployment.stop()
        finally:
            relay.terminate()
            relay.wait(10)
    nginx_version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    return {"benchmark": "relay-vs-nginx", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "receipt_bytes": SIZE, "sealed_bytes": SIZE + 16, "seconds": seconds, "connections": connections,
            "cpu_throttle": throttle,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "nginx": nginx_version},
            **results}


def table(data: dict[str, Any]) -> str:
    rows = [("nginx static file (1 worker, sendfile)", data["nginx"]),
            ("relay deployment: nginx serving /o/<rid> from the relay's storage (docs/relay.md)",
             data["deployment"]),
            ("relay alone, GET /o/<rid> (1 process)", data["relay_objects"]),
            ("relay, deprecated GET /r/<token> (decrypts each GET)", data["relay_decrypting"])]
    lines = [f"wrk -t1 -c{data['connections']} -d{data['seconds']}s on 127.0.0.1, a {data['receipt_bytes']} byte "
             f"receipt ({data['sealed_bytes']} sealed), one run {data['date']}, {data['machine']['cpus']} cores, "
             f"{data['machine']['nginx']}.", "",
             "| server | requests/s | vs nginx | p50 | p90 | p99 | non-2xx |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    base = data["nginx"]["requests_per_second"]
    for name, r in rows:
        lines.append(f"| {name} | {r['requests_per_second']:.0f} | {r['requests_per_second'] / base:.2f} | "
                     f"{r['p50_ms']:.2f} ms | {r['p90_ms']:.2f} ms | {r['p99_ms']:.2f} ms | {r['non_2xx']:.0f} |")
    ttp = data["time_to_pdf"]
    lines += ["", f"Time from opening the link to the PDF handed over, headless Chromium with the CPU slowed "
              f"{data['cpu_throttle']:g}x, a fresh context per sample, same run:", "",
              "| link | samples | p50 | p95 | max |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, r in ttp.items():
        lines.append(f"| {name} | {r['samples']} | {r['p50_ms']:.0f} ms | {r['p95_ms']:.0f} ms | "
                     f"{r['max_ms']:.0f} ms |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--samples", type=int, default=20, help="Chromium opens per link kind")
    parser.add_argument("--throttle", type=float, default=4.0, help="Chromium CPU slowdown factor")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "relay-vs-nginx.json")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    args = parser.parse_args()
    data = run(args.seconds, args.connections, args.samples, args.throttle)
    publish(data, table(data), args.out, args.readme, "relay-vs-nginx")


if __name__ == "__main__":
    main()
