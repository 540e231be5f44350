"""Benchmark: the device's memory after 100 receipts, process by process, beside a Chromium kiosk.

Real processes on loopback, as the device runs them (two units): ``eticket serve`` with its PDF check
workers, and a headless ``eticket kiosk`` that draws every receipt (its PNG output proves each frame). A
POS pairs and posts ``--receipts`` receipts over pinned HTTPS, waiting for the kiosk's frame after each. Then
the proportional set size (PSS: shared pages divided among the processes that map them, so the sum over
processes is what they take together) is read from ``/proc/<pid>/smaps_rollup`` for every process; peak
RSS (``VmHWM``) beside it, the figure older runs reported.

On a desk, other programs (other Python processes, a test run) map the same libraries and take their share
of those pages, so the kernel's PSS here is less than on the device, where nothing else does. So the bench
also counts the device's physical pages itself (``/proc/<pid>/pagemap``, root only): each page divided
among the device's processes that map it, **PSS as if the device ran alone**, the figure the budgets hold.

The same appliance then serves a Chromium kiosk (Debian's ``chromium``, driven by Playwright, showing
``/screen``) for the same number of receipts, in place of the pygame kiosk: what the device would hold
with a browser as its screen (``--no-chromium`` skips it).

Budgets for a 512 MB Raspberry Pi Zero 2 W (Debian, about 420 MiB left for services):
DEVICE_BUDGET_MIB for the whole device and KIOSK_BUDGET_MIB for the kiosk, PSS after 100 receipts
(tests/e2e/test_memory_budget.py holds them).

    .venv/bin/python bench/device_memory.py [--receipts 100] [--workers 1] [--no-chromium]

Writes JSON (``bench/results/device-memory.json``) and the table between the markers in README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _report import publish  # noqa: E402

from appliance.identity import pinned_client_context  # noqa: E402
from appliance.pairing import parse_pairing_uri  # noqa: E402

ETICKET = [sys.executable, "-m", "appliance.cli"]
SAMPLES = Path(os.environ.get("ETICKET_SAMPLES", REPO.parent / "shared" / "samples")) / "pdf"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SIZE = (800, 480)
DEVICE_BUDGET_MIB = 150.0
"""The whole device (appliance, PDF check workers, kiosk), PSS after 100 receipts, MiB."""
KIOSK_BUDGET_MIB = 60.0
"""The kiosk alone, PSS after 100 receipts, MiB."""
SETTLE_SECONDS = 1.0
"""Pause after the last receipt before reading memory (the last frame written, the last response sent)."""
FRAME_TIMEOUT_SECONDS = 60.0
STALL_SECONDS = 10.0
"""A Chromium page that shows no new QR this long after a receipt is loaded again (counted as a stall: the
web screen's page reloads on every change and can stop following)."""


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (``/proc/PID/task/TID/children``)."""
    pids, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            tasks = [int(t.name) for t in Path(f"/proc/{parent}/task").iterdir()]
        except OSError:
            continue
        for tid in tasks:
            try:
                children = Path(f"/proc/{parent}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                pids.append(child)
                frontier.append(child)
    return pids


PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
PFN_MASK = (1 << 55) - 1
"""pagemap(5): bits 0-54 of an entry are the page frame number (zero unless CAP_SYS_ADMIN), bit 63 "present"."""


def frames(pid: int) -> set[int]:
    """The physical page frames ``pid`` maps now (resident pages only)."""
    found: set[int] = set()
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            if line.endswith("[vsyscall]"):
                continue
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            pagemap.seek(start // PAGE_BYTES * 8)
            for (entry,) in struct.iter_unpack("<Q", pagemap.read((end - start) // PAGE_BYTES * 8)):
                if entry >> 63:
                    found.add(entry & PFN_MASK)
    return found


def alone_pss_mib(pids: list[int]) -> dict[int, float] | None:
    """PSS of each of ``pids`` counting only their own sharing (a page mapped by k of them: 1/k to each),
    MiB; None without the right to read page frame numbers (not root)."""
    try:
        sets = {pid: frames(pid) for pid in pids}
    except OSError:
        return None
    if not any(f - {0} for f in sets.values()):
        return None
    mappers = Counter(frame for found in sets.values() for frame in found)
    return {pid: round(sum(1 / mappers[f] for f in found) * PAGE_BYTES / 2**20, 1) for pid, found in sets.items()}


def native_packages(pid: int) -> list[str]:
    """The installed packages whose compiled code ``pid`` has loaded (``pydantic_core``, ``pygame_ce``, ...),
    from the shared objects it maps out of a ``site-packages`` directory."""
    found = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        _, marker, rest = line.partition("-packages/")
        if marker and (rest.endswith(".so") or ".so." in rest):
            found.add(rest.split("/")[0].split(".")[0])
    return sorted(found)


def memory_of(pid: int) -> dict[str, Any]:
    """One process: ``{"pid", "command", "pss_mib", "peak_rss_mib", "native"}`` (MiB, from smaps_rollup and
    status; ``native``: :func:`native_packages`)."""
    pss = 0
    peak = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1])
    command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    return {"pid": pid, "command": command, "pss_mib": round(pss / 1024, 1), "peak_rss_mib": round(peak / 1024, 1),
            "native": native_packages(pid)}


def role(command: str) -> str:
    """A process's role on the device, from its command line."""
    if "appliance.pdfworker" in command:
        return "PDF check worker"
    if " kiosk" in command:
        return "kiosk"
    if " serve" in command:
        return "appliance"
    return "Chromium" if "chrom" in command.split(" ")[0] else command.split(" ")[0]


def processes(root: int) -> list[dict[str, Any]]:
    """Memory of every process in ``root``'s tree (those that ended while being read are left out)."""
    found = []
    for pid in tree(root):
        try:
            entry = memory_of(pid)
        except OSError:
            continue
        entry["role"] = role(entry["command"])
        found.append(entry)
    return found


def receipts() -> list[bytes]:
    """The receipts posted in turn: the real sample PDFs when present, else a small generated one."""
    files = sorted(SAMPLES.glob("*.pdf")) if SAMPLES.is_dir() else []
    if files:
        return [f.read_bytes() for f in files]
    import io

    from PIL import Image, ImageDraw

    page = Image.new("L", (384, 600), 255)
    ImageDraw.Draw(page).text((20, 20), "eTicket sample receipt\nTotal 12.50 EUR", fill=0)
    out = io.BytesIO()
    page.save(out, "PDF", resolution=203)
    return [out.getvalue()]


class Device:
    """``eticket serve`` on free loopback ports, paired with one POS."""

    def __init__(self, work: Path, workers: int | None) -> None:
        self.data = work / "data"
        port = 20000 + os.getpid() % 2000 * 2
        self.base, self.api = f"http://127.0.0.1:{port}", f"https://127.0.0.1:{port + 1}"
        env = dict(os.environ)
        if workers is not None:
            env["ETICKET_PDF_WORKERS"] = str(workers)
        mdns = "127.0.0.1" if "MULTICAST" in subprocess.run(["ip", "link", "show", "lo"], capture_output=True,
                                                            text=True).stdout else "none"
        self.proc = subprocess.Popen(
            [*ETICKET, "serve", "--data-dir", str(self.data), "--listen", f"127.0.0.1:{port}",
             "--api-listen", f"127.0.0.1:{port + 1}", "--mdns-interfaces", mdns, "--log-level", "warning"],
            cwd=REPO, env=env, stderr=open(work / "serve.log", "wb"))
        for _ in range(300):
            try:
                httpx.get(self.base + "/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        self.screen_key = json.loads((self.data / "kiosk.json").read_text())["token"]
        state = httpx.get(self.base + "/api/v1/display",
                          headers={"Authorization": f"Bearer {self.screen_key}"}).json()
        pinned = pinned_client_context((self.data / "tls" / "cert.pem").read_text())
        token = httpx.post(self.api + "/api/v1/pair", json={"secret": parse_pairing_uri(state["pairing"]["uri"])["s"]},
                           verify=pinned).json()["token"]
        self.pos = httpx.Client(base_url=self.api, verify=pinned, timeout=60,
                                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"})

    def post(self, pdf: bytes, i: int) -> str:
        r = self.pos.post("/api/v1/tickets", content=pdf, params={"total": f"{i}.50", "currency": "EUR"})
        assert r.status_code == 201, r.text
        return str(r.json()["url"])

    def stop(self) -> None:
        self.pos.close()
        self.proc.terminate()
        self.proc.wait(15)


def with_pygame_kiosk(device: Device, work: Path, count: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
    kiosk = subprocess.Popen([*ETICKET, "kiosk", "--data-dir", str(device.data), "--size", f"{SIZE[0]}x{SIZE[1]}"],
                             cwd=REPO, env=env, stderr=open(work / "kiosk.log", "wb"))
    png = device.data / "screen.png"
    try:
        deadline = time.monotonic() + FRAME_TIMEOUT_SECONDS
        while not png.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        pdfs = receipts()
        for i in range(count):
            before = png.stat().st_mtime_ns
            device.post(pdfs[i % len(pdfs)], i)
            deadline = time.monotonic() + FRAME_TIMEOUT_SECONDS
            while png.stat().st_mtime_ns == before:  # the kiosk drew this receipt's frame
                if time.monotonic() > deadline or kiosk.poll() is not None:
                    raise RuntimeError(f"the kiosk drew no frame for receipt {i}: {(work / 'kiosk.log').read_text()}")
                time.sleep(0.005)
        time.sleep(SETTLE_SECONDS)
        return summary(processes(device.proc.pid) + processes(kiosk.pid))
    finally:
        kiosk.terminate()
        kiosk.wait(10)


def _chromium_root() -> int:
    """The Chromium browser process this bench started (under Playwright's driver, a child of this
    process): the root of the tree measured (zygotes, renderers, GPU and utility processes descend from it).
    Other Chromium processes on the machine are not ours."""
    def command(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            return ""

    ours = tree(os.getpid())
    browsers = [pid for pid in ours if "chrom" in Path(command(pid)).name
                and "chrom" not in Path(command(_parent(pid))).name]
    if len(browsers) != 1:
        raise RuntimeError(f"expected one Chromium browser process under this bench, found {browsers}")
    return browsers[0]


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def with_chromium(device: Device, count: int) -> dict[str, Any]:
    """The same receipts on Chromium showing ``/screen``: each one waited for until a screenshot's QR
    decodes to its URL (what a customer's phone needs)."""
    import io

    import zxingcpp
    from PIL import Image
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    def shows(page: Any, url: str) -> bool:
        try:
            shot = page.screenshot()
        except PlaywrightError:  # between two documents
            return False
        found = zxingcpp.read_barcodes(Image.open(io.BytesIO(shot)), formats=zxingcpp.BarcodeFormat.QRCode)
        return [r.text for r in found] == [url]

    pdfs = receipts()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_context(viewport={"width": SIZE[0], "height": SIZE[1]}).new_page()
            page.goto(f"{device.base}/screen?key={device.screen_key}")
            stalls = 0
            for i in range(count):
                url = device.post(pdfs[i % len(pdfs)], i)
                deadline = time.monotonic() + FRAME_TIMEOUT_SECONDS
                stalled_at = time.monotonic() + STALL_SECONDS
                while not shows(page, url):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"Chromium showed no QR for receipt {i}")
                    if time.monotonic() > stalled_at:  # the page stopped following: load it again, count it
                        stalls += 1
                        stalled_at = time.monotonic() + STALL_SECONDS
                        page.goto(f"{device.base}/screen?key={device.screen_key}")
            time.sleep(SETTLE_SECONDS)
            result = summary(processes(device.proc.pid) + processes(_chromium_root()))
            result["stalls"] = stalls
            return result
        finally:
            browser.close()


def summary(found: list[dict[str, Any]]) -> dict[str, Any]:
    """Per role: processes, PSS, PSS as if alone and the largest peak RSS; and the totals. ``found`` gains
    each process's ``alone_pss_mib`` (None when page frames cannot be read)."""
    alone = alone_pss_mib([p["pid"] for p in found])
    roles: dict[str, dict[str, Any]] = {}
    for p in found:
        p["alone_pss_mib"] = alone.get(p["pid"]) if alone else None
        r = roles.setdefault(p["role"], {"processes": 0, "pss_mib": 0.0, "alone_pss_mib": 0.0, "peak_rss_mib": 0.0})
        r["processes"] += 1
        r["pss_mib"] = round(r["pss_mib"] + p["pss_mib"], 1)
        r["alone_pss_mib"] = round(r["alone_pss_mib"] + (p["alone_pss_mib"] or 0.0), 1) if alone else None
        r["peak_rss_mib"] = max(r["peak_rss_mib"], p["peak_rss_mib"])
    return {"roles": roles, "total_pss_mib": round(sum(p["pss_mib"] for p in found), 1),
            "total_alone_pss_mib": round(sum(alone.values()), 1) if alone else None, "processes": found}


def run(count: int, workers: int | None, chromium: bool) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="eticket-memory-"))
    results: dict[str, Any] = {}
    device = Device(work, workers)
    try:
        results["pygame kiosk"] = with_pygame_kiosk(device, work, count)
        if chromium:
            results["Chromium /screen"] = with_chromium(device, count)
    finally:
        device.stop()
    data: dict[str, Any] = {
        "benchmark": "device-memory",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "receipts": count, "pdf_workers": workers or "default", "screen": f"{SIZE[0]}x{SIZE[1]}",
        "budgets_mib": {"device": DEVICE_BUDGET_MIB, "kiosk": KIOSK_BUDGET_MIB}, "results": results,
    }
    if chromium:
        data["machine"]["chromium"] = subprocess.run([CHROMIUM, "--version"], capture_output=True,
                                                     text=True).stdout.strip()
    return data


def table(data: dict[str, Any]) -> str:
    def cell(r: dict[str, Any] | None) -> str:
        if not r:
            return "–"
        alone = f"**{r['alone_pss_mib']}**" if r.get("alone_pss_mib") is not None else "n/a"
        return f"{alone} ({r['pss_mib']})"

    lines = [f"After {data['receipts']} receipts, each drawn by the screen; {data['pdf_workers']} PDF check worker "
             f"as on a 512 MB board; {data['screen']}; one run {data['date']}, {data['machine']['cpus']} cores. "
             "MiB of PSS as if the device ran alone (in brackets: the kernel's PSS on this desk, where other "
             "programs share the libraries).", "",
             "| device with | appliance | PDF check worker | screen | whole device |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, r in data["results"].items():
        roles = r["roles"]
        screen = roles.get("kiosk") or roles.get("Chromium")
        whole = {"alone_pss_mib": r["total_alone_pss_mib"], "pss_mib": r["total_pss_mib"]}
        lines.append(f"| {name} | {cell(roles.get('appliance'))} | {cell(roles.get('PDF check worker'))} "
                     f"| {cell(screen)} | {cell(whole)} |")
    stalls = data["results"].get("Chromium /screen", {}).get("stalls")
    if stalls:
        lines += ["", f"Chromium's page stopped following the stream {stalls} times in {data['receipts']} receipts "
                  f"(no new QR for {STALL_SECONDS:g} s; loaded again each time)."]
    b = data["budgets_mib"]
    lines += ["", f"Budgets for a 512 MB Raspberry Pi Zero 2 W: whole device ≤ {b['device']:g} MiB, kiosk ≤ "
              f"{b['kiosk']:g} MiB (tests/e2e/test_memory_budget.py)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--receipts", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1, help="PDF check workers (1: a 512 MB board's default)")
    parser.add_argument("--no-chromium", action="store_true", help="measure the pygame kiosk only")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "device-memory.json")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    args = parser.parse_args()
    data = run(args.receipts, args.workers, not args.no_chromium)
    publish(data, table(data), args.out, args.readme, "device-memory")


if __name__ == "__main__":
    main()
