"""Benchmark: a till printing to the device — last byte of a print job to a screen frame whose QR decodes —
beside the HTTPS PDF intake in the same run; receipts per second the device converts; peak memory while
converting a 2 MB raster job.

Real processes on loopback: ``eticket serve --printer-listen``, one screen client following the display
stream and drawing with the kiosk's scene code (bench/post_to_qr.py's StreamScreen), zxing-cpp decoding each
frame. Jobs: TakePOS's bakery receipt (text and a barcode, 547 bytes), the café receipt with its logo
(2 kB), and a 2 MB full-width raster (a till that sends the receipt as one picture). Side by side: the
bakery receipt as a PDF (what the converter made of it) posted to ``POST /api/v1/tickets``.

    .venv/bin/python bench/printer.py [--jobs 60] [--out bench/results/printer.json]

Writes JSON and rewrites the table between the markers in README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
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
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame  # noqa: E402
from _report import publish  # noqa: E402
from post_to_qr import RENDER_LOCK, StreamScreen, decode, peak_rss_kib, percentiles  # noqa: E402

from kiosk.follow import read_endpoint  # noqa: E402

SAMPLES = Path(os.environ.get("ETICKET_SAMPLES", REPO.parent / "shared" / "samples"))


def raster_job(rows: int = 29_000, seed: int = 1) -> bytes:
    """A 576-dot-wide ``GS v 0`` image of ``rows`` rows (72 bytes a row: 29,000 rows is 2.09 MB), bands of
    noise and white, then a cut."""
    rng = random.Random(seed)
    width = 72
    body = bytearray()
    for y in range(rows):
        body += bytes(rng.getrandbits(8) for _ in range(width)) if (y // 64) % 2 else bytes(width)
    return (b"\x1b@\x1dv0\x00" + bytes([width & 255, width >> 8, rows & 255, rows >> 8]) + bytes(body)
            + b"\x1dV\x00")


def send_job(port: int, data: bytes) -> float:
    """Send a job as a network print connector does; the perf_counter time its last byte left."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(data)
        sent = time.perf_counter()
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1)  # the device closes once it has the job
    return sent


def run(jobs: int) -> dict[str, Any]:
    pygame.font.init()
    work = Path(tempfile.mkdtemp(prefix="eticket-bench-printer-"))
    port = 19000 + random.randrange(1000)
    printer_port = port + 2
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    eticket = [sys.executable, "-m", "appliance.cli"]
    serve = subprocess.Popen([*eticket, "serve", "--data-dir", str(work / "data"), "--listen", f"127.0.0.1:{port}",
                              "--api-listen", f"127.0.0.1:{port + 1}", "--printer-listen",
                              f"127.0.0.1:{printer_port}", "--mdns-interfaces", "none", "--log-level",
                              os.environ.get("BENCH_LOG_LEVEL", "warning")], cwd=REPO, env=env,
                             stderr=open(work / "serve.log", "wb"))
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(base + "/healthz", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    try:
        endpoint = read_endpoint(work / "data")
        from appliance.identity import pinned_client_context
        from appliance.pairing import parse_pairing_uri

        state = httpx.get(base + "/api/v1/display", headers={"Authorization": f"Bearer {endpoint.token}"}).json()
        pinned = pinned_client_context((work / "data" / "tls" / "cert.pem").read_text())
        secret = parse_pairing_uri(state["pairing"]["uri"])["s"]
        api = f"https://127.0.0.1:{port + 1}"
        token = httpx.post(api + "/api/v1/pair", json={"secret": secret}, verify=pinned).json()["token"]
        post = httpx.Client(base_url=api, verify=pinned, timeout=60,
                            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"})
        transport = httpx.HTTPTransport(uds=str(work / "data" / "admin.sock"))
        with httpx.Client(transport=transport, base_url="http://device") as admin:
            admin.post("/printers?address=127.0.0.1").raise_for_status()
        screen = StreamScreen(endpoint)
        time.sleep(0.5)
        bakery = (SAMPLES / "takepos" / "bakery.bin").read_bytes()
        inputs = {"bakery (text, barcode)": bakery, "café (font B, logo, QR)":
                  (SAMPLES / "takepos" / "cafe-logo.bin").read_bytes(), "2 MB raster": raster_job()}
        counts = {"bakery (text, barcode)": jobs, "café (font B, logo, QR)": jobs, "2 MB raster": max(5, jobs // 6)}
        results: dict[str, Any] = {}
        failures: list[dict[str, Any]] = []
        bakery_pdf = b""
        for label, job in inputs.items():
            latencies: list[float] = []
            started = time.perf_counter()
            for _ in range(counts[label]):
                seq = httpx.get(base + "/api/v1/display", headers={"Authorization": f"Bearer {endpoint.token}"}
                                ).json()["seq"]
                sent = send_job(printer_port, job)
                url = _next_ticket_url(base, endpoint.token, seq)
                drawn_at, frame = screen.wait_for(url)
                with RENDER_LOCK:
                    if decode(frame) != [url]:
                        failures.append({"job": label, "url_length": len(url)})
                latencies.append(drawn_at - sent)
                if label.startswith("bakery") and not bakery_pdf:
                    bakery_pdf = httpx.get(url).content
            elapsed = time.perf_counter() - started
            results[label] = {"job_bytes": len(job), "last_byte_to_frame_ms": percentiles(latencies),
                              "receipts_per_second": round(counts[label] / elapsed, 2)}
        # The alternative in the same run: the same receipt as a PDF over the HTTPS intake.
        latencies = []
        started = time.perf_counter()
        for i in range(jobs):
            t0 = time.perf_counter()
            r = post.post("/api/v1/tickets", content=bakery_pdf, params={"total": f"{i}.00", "currency": "EUR"})
            assert r.status_code == 201, r.text
            drawn_at, frame = screen.wait_for(r.json()["url"])
            latencies.append(drawn_at - t0)
        results["the bakery's PDF over HTTPS (POST /api/v1/tickets)"] = {
            "job_bytes": len(bakery_pdf), "last_byte_to_frame_ms": percentiles(latencies), "receipts_per_second":
            round(jobs / (time.perf_counter() - started), 2)}
        converter = _converter_peak_rss_kib(work)
        memory = {"serve_peak_rss_mib": round(peak_rss_kib(serve.pid) / 1024, 1),
                  "converter_peak_rss_mib": round(converter / 1024, 1) if converter else None}
    finally:
        serve.terminate()
        serve.wait(15)
    return {
        "benchmark": "printer",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "results": results, "memory": memory, "undecodable_frames": failures,
    }


def _next_ticket_url(base: str, token: str, seq: int, timeout: float = 60) -> str:
    """The URL of the first ticket shown after display state ``seq`` (the job's receipt)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = httpx.get(base + "/api/v1/display", headers={"Authorization": f"Bearer {token}"}).json()
        if state["seq"] > seq and state["scene"] == "ticket":
            return str(state["ticket"]["url"])
        time.sleep(0.005)
    raise TimeoutError("no receipt on screen after the print job")


def _converter_peak_rss_kib(work: Path) -> int:
    """VmHWM of the conversion worker (``python -m appliance.printer.worker``), KiB, 0 if not found."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"appliance.printer.worker" in cmdline:
                return peak_rss_kib(int(proc.name))
    return 0


def table(data: dict[str, Any]) -> str:
    lines = [
        "A till prints over raw TCP (port 9100, as escpos-php's NetworkPrintConnector does); time from the job's "
        "last byte to a rendered 800x480 frame whose QR decodes, beside the same receipt as a PDF over the HTTPS "
        f"intake (POST to frame). One run, {data['date']}, {data['machine']['cpus']} cores. Milliseconds.",
        "",
        "| job | bytes | last byte→frame p50 | p95 | p99 | receipts/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, r in data["results"].items():
        f = r["last_byte_to_frame_ms"]
        lines.append(f"| {label} | {r['job_bytes']} | {f['p50']} | {f['p95']} | {f['p99']} | "
                     f"{r['receipts_per_second']} |")
    bad = len(data["undecodable_frames"])
    lines += ["", f"Frames whose QR did not decode: {bad}." if bad else "Every frame's QR decoded to its ticket's URL."]
    m = data["memory"]
    lines += ["", f"Peak RSS over the run: `eticket serve` {m['serve_peak_rss_mib']} MiB; the conversion worker "
              f"{m['converter_peak_rss_mib']} MiB (its peak is the 2 MB raster job)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "printer.json")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    args = parser.parse_args()
    data = run(args.jobs)
    publish(data, table(data), args.out, args.readme, "printer")


if __name__ == "__main__":
    main()
