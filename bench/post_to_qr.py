"""Benchmark: time from a POS's POST to a rendered screen frame whose QR decodes, and peak memory.

Real processes on loopback: ``eticket serve`` and a headless ``eticket kiosk`` (for its memory). The
measuring screen client follows the display stream exactly as the kiosk does (kiosk.follow) and renders
with the kiosk's scene code; each frame is decoded with zxing-cpp to prove the QR is the ticket's URL.

Side by side in the same run: the same client polling ``GET /api/v1/display`` once a second (what a
page with a meta refresh does) instead of following the stream.

    .venv/bin/python bench/post_to_qr.py [--tickets 200] [--out bench/results/post-to-qr.json]

Writes JSON and rewrites the table between the markers in README.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame  # noqa: E402
import zxingcpp  # noqa: E402
from _report import publish  # noqa: E402

from kiosk.follow import Endpoint, iter_events, read_endpoint  # noqa: E402
from kiosk.scenes import render  # noqa: E402

SIZES = {"20KB": 20_000, "200KB": 200_000, "2MB": 2_000_000}
SCREEN = (800, 480)
POLL_INTERVAL_SECONDS = 1.0
RENDER_LOCK = threading.Lock()
"""pygame's font renderer is not thread-safe: the two screen clients draw one at a time (the kiosk itself
draws from one thread only)."""


def make_pdf(target: int, seed: int) -> bytes:
    """A one-page PDF of about ``target`` bytes: a noise image (JPEG-compressed) sized to reach it."""
    rng = np.random.default_rng(seed)
    side = 64
    while True:
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "PDF", resolution=300, quality=85)
        if out.tell() >= target * 0.9:
            return out.getvalue()
        side = int(side * max(1.05, (target / max(out.tell(), 1)) ** 0.5))


def peak_rss_kib(pid: int) -> int:
    """VmHWM (peak resident set) of a process, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds."""
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": round(q[49] * 1000, 1), "p95": round(q[94] * 1000, 1), "p99": round(q[98] * 1000, 1),
            "max": round(ordered[-1] * 1000, 1), "n": len(ordered)}


class StreamScreen:
    """A screen client on the display stream; ``wait_for(url)`` returns the time its frame was drawn."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._cond = threading.Condition()
        self._frames: dict[str, tuple[float, pygame.Surface]] = {}
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self._endpoint.token}"}
        with httpx.stream("GET", self._endpoint.url + "/api/v1/display/stream", headers=headers,
                          timeout=httpx.Timeout(5, read=None)) as response:
            for event, data in iter_events(response.iter_lines()):
                if event != "state":
                    continue
                state = json.loads(data)
                if state["scene"] != "ticket":
                    continue
                with RENDER_LOCK:
                    frame = render(state, SCREEN)
                with self._cond:
                    self._frames[state["ticket"]["url"]] = (time.perf_counter(), frame)
                    self._cond.notify_all()

    def wait_for(self, url: str, timeout: float = 30) -> tuple[float, pygame.Surface]:
        with self._cond:
            if not self._cond.wait_for(lambda: url in self._frames, timeout):
                raise TimeoutError(url)
            return self._frames.pop(url)


class PollingScreen:
    """The alternative: fetch the state once a second and draw it when it changed."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint

    def wait_for(self, url: str, timeout: float = 30) -> tuple[float, pygame.Surface]:
        headers = {"Authorization": f"Bearer {self._endpoint.token}"}
        deadline = time.perf_counter() + timeout
        # A poller's phase is random relative to the sale.
        time.sleep(random.uniform(0, POLL_INTERVAL_SECONDS))
        while time.perf_counter() < deadline:
            state = httpx.get(self._endpoint.url + "/api/v1/display", headers=headers).json()
            if state["scene"] == "ticket" and state["ticket"]["url"] == url:
                with RENDER_LOCK:
                    frame = render(state, SCREEN)
                return time.perf_counter(), frame
            time.sleep(POLL_INTERVAL_SECONDS)
        raise TimeoutError(url)


def decode(frame: pygame.Surface) -> list[str]:
    """QR codes only, as a phone's camera app looks for them (all formats once read a spurious 1D code
    out of a QR's rows)."""
    pixels = np.ascontiguousarray(pygame.surfarray.array3d(frame).swapaxes(0, 1))
    return [r.text for r in zxingcpp.read_barcodes(pixels, formats=zxingcpp.BarcodeFormat.QRCode)]


def run(tickets: int, poll_tickets: int) -> dict[str, Any]:
    pygame.font.init()
    work = Path(tempfile.mkdtemp(prefix="eticket-bench-"))
    port = 18000 + random.randrange(1000)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    eticket = [sys.executable, "-m", "appliance.cli"]
    serve = subprocess.Popen([*eticket, "serve", "--data-dir", str(work / "data"), "--listen", f"127.0.0.1:{port}",
                              "--api-listen", f"127.0.0.1:{port + 1}", "--mdns-interfaces", "none",
                              "--log-level", os.environ.get("BENCH_LOG_LEVEL", "warning")], cwd=REPO, env=env,
                             stderr=open(work / "serve.log", "wb"))
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(base + "/healthz", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    kiosk = subprocess.Popen([*eticket, "kiosk", "--data-dir", str(work / "data")], cwd=REPO, env=env,
                             stderr=open(work / "kiosk.log", "wb"))
    try:
        endpoint = read_endpoint(work / "data")
        state = httpx.get(base + "/api/v1/display", headers={"Authorization": f"Bearer {endpoint.token}"}).json()
        from appliance.identity import pinned_client_context
        from appliance.pairing import parse_pairing_uri

        pinned = pinned_client_context((work / "data" / "tls" / "cert.pem").read_text())
        api = f"https://127.0.0.1:{port + 1}"
        secret = parse_pairing_uri(state["pairing"]["uri"])["s"]
        token = httpx.post(api + "/api/v1/pair", json={"secret": secret}, verify=pinned).json()["token"]
        # The POS keeps one pinned HTTPS connection open, as a till does between sales.
        post = httpx.Client(base_url=api, verify=pinned, timeout=60,
                            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"})
        stream = StreamScreen(endpoint)
        poller = PollingScreen(endpoint)
        time.sleep(0.5)
        results: dict[str, Any] = {}
        failures: list[dict[str, Any]] = []
        for label, target in SIZES.items():
            pdfs = [make_pdf(target, seed) for seed in range(4)]
            for client_name, screen, count in (("stream", stream, tickets), ("poll-1s", poller, poll_tickets)):
                post_ms: list[float] = []
                frame_s: list[float] = []
                decode_ms: list[float] = []
                for i in range(count):
                    pdf = pdfs[i % len(pdfs)]
                    t0 = time.perf_counter()
                    r = post.post("/api/v1/tickets", content=pdf, params={"total": f"{i}.00", "currency": "EUR"})
                    t1 = time.perf_counter()
                    assert r.status_code == 201, r.text
                    url = r.json()["url"]
                    drawn_at, frame = screen.wait_for(url)
                    d0 = time.perf_counter()
                    with RENDER_LOCK:
                        decoded = decode(frame)
                    decode_ms.append(time.perf_counter() - d0)
                    if decoded != [url]:
                        failures.append({"size": label, "client": client_name, "url_length": len(url),
                                         "decoded": decoded})
                        out = REPO / "bench" / "out"
                        out.mkdir(parents=True, exist_ok=True)
                        pygame.image.save(frame, str(out / f"undecoded-{len(failures)}.png"))
                    post_ms.append(t1 - t0)
                    frame_s.append(drawn_at - t0)
                results.setdefault(label, {})[client_name] = {
                    "pdf_bytes": statistics.mean(len(p) for p in pdfs),
                    "post_to_frame_ms": percentiles(frame_s),
                    "post_201_ms": percentiles(post_ms),
                    "zxing_decode_ms": percentiles(decode_ms),
                }
        time.sleep(1.0)
        memory = {"serve_peak_rss_mib": round(peak_rss_kib(serve.pid) / 1024, 1),
                  "kiosk_peak_rss_mib": round(peak_rss_kib(kiosk.pid) / 1024, 1)}
    finally:
        kiosk.terminate()
        serve.terminate()
        kiosk.wait(10)
        serve.wait(10)
    return {
        "benchmark": "post-to-qr",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "screen": f"{SCREEN[0]}x{SCREEN[1]}",
        "tickets_per_size": {"stream": tickets, "poll-1s": poll_tickets},
        "results": results,
        "memory": memory,
        "undecodable_frames": failures,
    }


def table(data: dict[str, Any]) -> str:
    lines = [
        "The POS posts over HTTPS (pinned certificate, kept-alive connection). "
        f"POST → rendered {data['screen']} frame whose QR decodes; {data['tickets_per_size']['stream']} tickets per "
        f"size on the stream, {data['tickets_per_size']['poll-1s']} with 1 s polling; one run, {data['date']}, "
        f"{data['machine']['cpus']} cores. Milliseconds.",
        "",
        "| PDF | screen client | POST→frame p50 | p95 | p99 | POST→201 p50 | p99 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, clients in data["results"].items():
        for name, r in clients.items():
            f, p = r["post_to_frame_ms"], r["post_201_ms"]
            lines.append(f"| {label} ({r['pdf_bytes'] / 1000:.0f} kB) | {name} | {f['p50']} | {f['p95']} | {f['p99']} "
                         f"| {p['p50']} | {p['p99']} |")
    bad = len(data["undecodable_frames"])
    lines += ["", f"Frames whose QR zxing-cpp could not read: {bad} (saved in bench/out/)." if bad
              else "Every frame's QR decoded to its ticket's URL."]
    m = data["memory"]
    lines += ["", f"Peak RSS over the run: `eticket serve` {m['serve_peak_rss_mib']} MiB, "
              f"`eticket kiosk` (headless) {m['kiosk_peak_rss_mib']} MiB."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument("--poll-tickets", type=int, default=30)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "post-to-qr.json")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    args = parser.parse_args()
    data = run(args.tickets, args.poll_tickets)
    publish(data, table(data), args.out, args.readme, "post-to-qr")


if __name__ == "__main__":
    main()
