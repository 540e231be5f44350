"""A compressed PDF bomb costs one receipt, never the device: each check worker stops at its memory cap, the
receipt gets ``pdf-too-complex`` and the next receipt is taken as usual (issue 10, "PDF check workers")."""

from __future__ import annotations

import io
import re
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pikepdf

from appliance.pdfworker import WORKER_MEMORY_BYTES
from tests.conftest import REPO, Appliance, samples

INFLATED_MIB = 2000
"""What the bomb's one content stream inflates to; its body is about 3 MB."""
SAMPLE_SECONDS = 0.002


def content_bomb(inflated_mib: int = INFLATED_MIB) -> bytes:
    """A one-page PDF whose Flate content stream inflates to ``inflated_mib`` MiB of path operators."""
    pdf = pikepdf.new()
    page = pdf.add_blank_page(page_size=(200, 400))
    packer = zlib.compressobj(9)
    chunk = b"0 0 m " * (1024 * 1024 // 6)
    data = b"".join(packer.compress(chunk) for _ in range(inflated_mib)) + packer.flush()
    stream = pikepdf.Stream(pdf, data)
    stream[pikepdf.Name.Filter] = pikepdf.Name.FlateDecode
    page.obj[pikepdf.Name.Contents] = pdf.make_indirect(stream)
    out = io.BytesIO()
    pdf.save(out, compress_streams=False, stream_decode_level=pikepdf.StreamDecodeLevel.none)
    return out.getvalue()


def _unit_memory_max(unit: Path) -> int:
    """The unit's ``MemoryMax=`` in bytes (K, M, G suffixes); fails when the unit sets none."""
    match = re.search(r"^MemoryMax=(\d+)([KMG]?)$", unit.read_text(), re.MULTILINE)
    assert match, f"{unit.name} sets no MemoryMax="
    return int(match.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[match.group(2)]


def _status_bytes(pid: int, key: str) -> int:
    """A ``/proc/PID/status`` memory line (``VmRSS``, ``VmHWM``) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} for {pid}")


def _worker_rss_bytes(appliance_pid: int) -> dict[int, int]:
    """Resident memory of each PDF check worker (a child of the appliance), bytes."""
    rss: dict[int, int] = {}
    children: list[str] = []
    for task in Path(f"/proc/{appliance_pid}/task").glob("*"):  # workers start from the thread pool
        try:
            children += (task / "children").read_text().split()
        except OSError:
            continue
    for pid in map(int, children):
        try:
            if b"appliance.pdfworker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            rss[pid] = _status_bytes(pid, "VmRSS")
        except (OSError, AssertionError):
            continue  # it just died
    return rss


def test_two_bombs_at_once_cost_two_receipts_and_the_next_receipt_is_taken(appliance: Appliance,
                                                                           pos_token: str) -> None:
    assert appliance.proc is not None
    auth = {"Authorization": f"Bearer {pos_token}", "Content-Type": "application/pdf"}
    good = samples("pdf")[0].read_bytes()
    assert appliance.api.post("/api/v1/tickets", content=good, headers=auth).status_code == 201
    bomb = content_bomb()

    peak: dict[int, int] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid, rss in _worker_rss_bytes(appliance.proc.pid).items():  # type: ignore[union-attr]
                peak[pid] = max(peak.get(pid, 0), rss)
            time.sleep(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda _: appliance.api.post("/api/v1/tickets", content=bomb, headers=auth),
                                    range(2)))
    finally:
        done.set()
        sampler.join(5)
    for r in answers:
        assert r.status_code == 422, r.text
        assert r.json()["type"].endswith("/pdf-too-complex")
    assert peak, "no PDF check worker was seen"
    worst = max(peak.values())
    main = _status_bytes(appliance.proc.pid, "VmHWM")
    budget = _unit_memory_max(REPO / "systemd" / "eticket.service")
    print(f"peak RSS on two bombs at once: workers {', '.join(f'{v / 2**20:.0f}' for v in peak.values())} MiB, "
          f"appliance {main / 2**20:.0f} MiB; MemoryMax {budget / 2**20:.0f} MiB")
    assert worst <= WORKER_MEMORY_BYTES, f"a worker reached {worst / 2**20:.0f} MiB"
    assert sum(peak.values()) + main <= budget, "two bombs at once would make the unit's cgroup kill something"

    assert appliance.api.post("/api/v1/tickets", content=good, headers=auth).status_code == 201
    assert httpx.get(appliance.url + "/healthz").json()["status"] == "ok"
    assert appliance.proc.poll() is None
