"""Debian's Chromium driven by Playwright, for the web-screen tests: one browser per test module (a cold
start costs about a second and 365 MB), a fresh context per test, and the QR read from a screenshot."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import Appliance, run_cli

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FORCE_DARK_FLAG = "--enable-features=WebContentsForceDark"
"""Chromium's auto dark mode, what some tablets' system setting turns on for every page."""


@contextmanager
def chromium(*extra_flags: str) -> Iterator[Any]:
    """A running headless Chromium (a Playwright ``Browser``); skips on a desk without Chromium or Playwright
    (fails in CI, tests.conftest.require)."""
    from tests.conftest import require

    require(Path(CHROMIUM).exists(), "Debian's chromium is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "the playwright package is not installed")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_FLAGS, *extra_flags])
        try:
            yield browser
        finally:
            browser.close()


def qr_texts(png: bytes) -> list[str]:
    """Every QR text zxing-cpp reads from a PNG screenshot."""
    import zxingcpp
    from PIL import Image

    return [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)), formats=zxingcpp.BarcodeFormat.QRCode)]


def claim_screen(appliance: Appliance, cli_env: dict[str, str], name: str = "Tablet") -> str:
    """Pair a screen as ``eticket kiosk --claim`` does (``screens add``, then the link spent as JSON); its token,
    which survives a restart of the appliance (stored hashed in its database)."""
    import httpx

    run_cli("screens", "add", "--name", name, "--data-dir", str(appliance.data_dir), env=cli_env)
    link = appliance.display()["screen_link"]["url"]  # type: ignore[index]
    answer = httpx.post(link, headers={"Accept": "application/json"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["token"])
