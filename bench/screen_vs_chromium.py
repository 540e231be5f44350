"""Benchmark: the pygame kiosk against what many kiosks run today, a full Chromium on a web page.

Same appliance, same tickets, one after the other on an idle machine:

* **pygame**: the real ``eticket kiosk`` process, headless; its frames are the PNGs it writes.
* **Chromium**: Debian's ``chromium`` (headless, driven by Playwright) showing ``/screen``; its frames are
  screenshots taken back to back.

For each ticket: time from the start of the POS's POST to the first frame available to an observer whose
QR decodes (zxing-cpp) to the ticket's URL. Memory: peak PSS summed over each screen's process tree,
sampled every 50 ms (``/proc/<pid>/smaps_rollup``).

    .venv/bin/python bench/screen_vs_chromium.py [--tickets 30]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import zxingcpp
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _report import publish  # noqa: E402
from device_memory import tree as _tree  # noqa: E402  (children of every thread, not only the main one)

from appliance.identity import pinned_client_context  # noqa: E402
from appliance.pairing import parse_pairing_uri  # noqa: E402

ETICKET = [sys.executable, "-m", "appliance.cli"]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SIZE = (800, 480)


def _decode(png: bytes) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)), formats=zxingcpp.BarcodeFormat.QRCode)]


def _pss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


class PeakPss:
    """Samples the summed PSS of a process tree until stopped; ``peak`` in MiB."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak_kib = max(self.peak_kib, _pss_kib(_tree(self.pid)))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return round(self.peak_kib / 1024, 1)


def _percentiles(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(sorted(values), n=100, method="inclusive")
    return {"p50": round(q[49] * 1000, 1), "p95": round(q[94] * 1000, 1), "max": round(max(values) * 1000, 1),
            "n": len(values)}


def run(tickets: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="eticket-screens-"))
    data = work / "data"
    port = 19000 + os.getpid() % 500 * 2
    serve = subprocess.Popen([*ETICKET, "serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}",
                              "--api-listen", f"127.0.0.1:{port + 1}", "--mdns-interfaces", "none",
                              "--log-level", "warning"], cwd=REPO, stderr=open(work / "serve.log", "wb"))
    base, api = f"http://127.0.0.1:{port}", f"https://127.0.0.1:{port + 1}"
    for _ in range(200):
        try:
            httpx.get(base + "/healthz", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    screen_key = json.loads((data / "kiosk.json").read_text())["token"]
    state = httpx.get(base + "/api/v1/display", headers={"Authorization": f"Bearer {screen_key}"}).json()
    pinned = pinned_client_context((data / "tls" / "cert.pem").read_text())
    token = httpx.post(api + "/api/v1/pair", json={"secret": parse_pairing_uri(state["pairing"]["uri"])["s"]},
                       verify=pinned).json()["token"]
    pos = httpx.Client(base_url=api, verify=pinned, timeout=60,
                       headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"})
    pdf = (REPO.parent / "shared" / "samples" / "pdf" / "escpos-php_example-document.pdf").read_bytes()
    results: dict[str, Any] = {}
    try:
        # --- pygame kiosk -------------------------------------------------------------------------------
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
        kiosk = subprocess.Popen([*ETICKET, "kiosk", "--data-dir", str(data), "--size", f"{SIZE[0]}x{SIZE[1]}"],
                                 cwd=REPO, env=env, stderr=open(work / "kiosk.log", "wb"))
        meter = PeakPss(kiosk.pid)
        png = data / "screen.png"
        time.sleep(2.0)
        times = []
        for i in range(tickets):
            before = png.stat().st_mtime_ns if png.exists() else 0
            t0 = time.perf_counter()
            url = pos.post("/api/v1/tickets", content=pdf, params={"total": f"{i}.00"}).json()["url"]
            while True:
                stat = png.stat() if png.exists() else None
                if stat and stat.st_mtime_ns != before:
                    seen = time.perf_counter()
                    before = stat.st_mtime_ns
                    if _decode(png.read_bytes()) == [url]:
                        times.append(seen - t0)
                        break
                time.sleep(0.002)
        results["pygame kiosk"] = {"post_to_decodable_frame_ms": _percentiles(times), "peak_pss_mib": meter.stop()}
        kiosk.terminate()
        kiosk.wait(10)

        # --- Chromium on /screen -----------------------------------------------------------------------
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            meter = PeakPss(_chromium_root())
            page = browser.new_context(viewport={"width": SIZE[0], "height": SIZE[1]}).new_page()
            page.goto(f"{base}/screen?key={screen_key}")
            time.sleep(2.0)
            times = []
            for i in range(tickets):
                t0 = time.perf_counter()
                url = pos.post("/api/v1/tickets", content=pdf, params={"total": f"{i}.50"}).json()["url"]
                while True:
                    try:
                        shot = page.screenshot()
                    except PlaywrightError:  # the page is between two documents (it reloads on a change)
                        continue
                    seen = time.perf_counter()
                    if _decode(shot) == [url]:
                        times.append(seen - t0)
                        break
            results["Chromium /screen"] = {"post_to_decodable_frame_ms": _percentiles(times),
                                           "peak_pss_mib": meter.stop()}
            browser.close()
    finally:
        serve.terminate()
        serve.wait(10)
    k, c = results["pygame kiosk"], results["Chromium /screen"]
    return {"benchmark": "screen-vs-chromium", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "chromium": subprocess.run([CHROMIUM, "--version"], capture_output=True,
                                                   text=True).stdout.strip()},
            "screen": f"{SIZE[0]}x{SIZE[1]}", "tickets": tickets, "results": results,
            "ratios": {"memory": round(c["peak_pss_mib"] / k["peak_pss_mib"], 1),
                       "latency_p50": round(c["post_to_decodable_frame_ms"]["p50"]
                                            / k["post_to_decodable_frame_ms"]["p50"], 1)}}


def _cmdline(pid: int | str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _chromium_root() -> int:
    """The Chromium browser process Playwright started (it talks to Playwright over a pipe): the root of the
    tree whose memory is measured (renderer, GPU, utility and zygote processes are its descendants)."""
    roots = [int(e.name) for e in Path("/proc").iterdir()
             if e.name.isdigit() and "--remote-debugging-pipe" in _cmdline(e.name)
             and "chromium" in _cmdline(e.name).split(" ")[0]]
    return max(roots)


def table(data: dict[str, Any]) -> str:
    lines = [f"{data['tickets']} tickets per screen at {data['screen']}, one run {data['date']}, "
             f"{data['machine']['cpus']} cores, {data['machine']['chromium']}.", "",
             "| screen | POST→decodable frame p50 | p95 | max | peak PSS |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, r in data["results"].items():
        f = r["post_to_decodable_frame_ms"]
        lines.append(f"| {name} | {f['p50']} ms | {f['p95']} ms | {f['max']} ms | {r['peak_pss_mib']} MiB |")
    lines += ["", f"Chromium needs {data['ratios']['memory']}x the memory and takes {data['ratios']['latency_p50']}x "
              "as long (p50) to show a scannable QR."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=30)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "screen-vs-chromium.json")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    args = parser.parse_args()
    data = run(args.tickets)
    publish(data, table(data), args.out, args.readme, "screen-vs-chromium")


if __name__ == "__main__":
    main()
