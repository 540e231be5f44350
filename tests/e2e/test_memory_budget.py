"""The device stays light: its real processes after 100 receipts fit a 512 MB Raspberry Pi Zero 2 W.

The measurement is bench/device_memory.py's, run here as a process: ``eticket serve`` with one PDF check
worker (what a board under 1 GiB runs) and a headless ``eticket kiosk`` that draws every receipt, then
PSS per process. With root the bench counts PSS as if the device ran alone (page frames from
``/proc/PID/pagemap``), which on a desk is more than the kernel's PSS (other programs share the libraries
here, not on the device); without root, the kernel's PSS.

A budget, not a timing: nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import REPO

RECEIPTS = 100
SERVER_PACKAGES = {"cryptography", "pydantic_core", "zeroconf", "pikepdf", "pypdfium2_raw"}
"""Compiled code of the appliance's libraries (TLS and signing, FastAPI's models, mDNS, the PDF engines): a
screen client has no use for them."""
NOT_IN_THE_APPLIANCE = {"pikepdf", "pypdfium2_raw", "pygame", "pygame_ce"}
"""qpdf and PDFium (only the check workers read PDFs) and pygame (only the kiosk draws)."""


def _measure(tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "device-memory.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "device_memory.py"), "--receipts", str(RECEIPTS), "--workers", "1",
         "--no-chromium", "--out", str(out), "--readme", str(tmp_path / "no-readme.md")],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def _mib(entry: dict[str, Any]) -> float:
    """PSS as if alone when the bench could count it, else the kernel's."""
    value = entry.get("alone_pss_mib")
    return float(value if value is not None else entry["pss_mib"])


def test_the_device_fits_a_512_mb_board_after_100_receipts(tmp_path: Path) -> None:
    """A shop's device after a morning's sales: the screen has drawn 100 receipts. The kiosk loads none of
    the server's libraries, the appliance neither the PDF engines nor pygame, and memory stays within the budgets."""
    data = _measure(tmp_path)
    result, budgets = data["results"]["pygame kiosk"], data["budgets_mib"]  # bench: 150 MiB device, 60 kiosk
    table = "\n".join(f"  {p['role']}: PSS {p['pss_mib']} MiB, alone {p['alone_pss_mib']} MiB, peak RSS "
                      f"{p['peak_rss_mib']} MiB, native {p['native']}" for p in result["processes"])
    by_role: dict[str, list[dict[str, Any]]] = {}
    for p in result["processes"]:
        by_role.setdefault(p["role"], []).append(p)
    assert set(by_role) == {"appliance", "PDF check worker", "kiosk"}, table
    assert len(by_role["PDF check worker"]) == 1, f"ETICKET_PDF_WORKERS=1 not honoured:\n{table}"
    (kiosk,) = by_role["kiosk"]
    assert not SERVER_PACKAGES & set(kiosk["native"]), f"the kiosk loads the server's libraries:\n{table}"
    (appliance,) = by_role["appliance"]
    assert not NOT_IN_THE_APPLIANCE & set(appliance["native"]), f"the appliance loads PDF engines or pygame:\n{table}"
    assert _mib(kiosk) <= budgets["kiosk"], f"kiosk over {budgets['kiosk']} MiB:\n{table}"
    total = sum(_mib(p) for p in result["processes"])
    assert total <= budgets["device"], f"device {total:.1f} MiB, over {budgets['device']} MiB:\n{table}"
