"""Benchmark: does a phone read the ticket QR on the first try, at every supported screen size?

Each ticket scene is rendered by the kiosk's own code, then photographed by a simulated phone: a 1280x720
camera frame (the preview resolution scanners use), 65° horizontal field of view, held 30–60 cm from a panel
of the physical size that goes with the resolution (given to the scene as the kiosk gives it: under 4" it
asks to hold the phone close, on a 21.5" monitor it caps the QR's size), tilted up to 25° (perspective),
slightly out of focus, with sensor noise, exposure (gamma) error and a glare spot. zxing-cpp then decodes QR
codes only, as a camera app does. Reports the decode rate per screen size and URL length (up to 100
characters; 56 is a relay URL, ``https://relay.example.org/r#`` and a 28-character secret).

    .venv/bin/python bench/qr_first_scan.py [--trials 40] [--out bench/results/qr-first-scan.json]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame  # noqa: E402
import zxingcpp  # noqa: E402
from _report import publish  # noqa: E402

from kiosk.scenes import render  # noqa: E402

CAMERA = (1280, 720)
FOV_DEGREES = 65.0
PANELS = {  # resolution -> physical width of a typical panel of that resolution, cm
    (240, 320): 4.9,    # 2.8" portrait SPI panel
    (320, 240): 5.7,    # 2.8"/3.5" SPI panel
    (480, 320): 7.4,    # 3.5" HAT
    (320, 480): 4.9,    # 3.5" HAT in portrait
    (800, 480): 15.4,   # 7" official touch display
    (1024, 600): 15.4,  # 7" HDMI panel
    (1280, 720): 22.1,  # 10" tablet
    (1920, 1080): 47.6,  # 21.5" monitor
}
URL_LENGTHS = (40, 56, 70, 100)
RELAY_URL_CHARS = 56
"""``https://relay.example.org/r#`` (image-build/eticket.toml.example) and a 28-character secret
(appliance.service.ticket_url, relay.crypto.TOKEN_CHARS)."""


def url_of_length(n: int, rng: random.Random) -> str:
    """A capability-URL-shaped string of ``n`` characters: a relay's for ``RELAY_URL_CHARS``, else the LAN's."""
    base = "https://relay.example.org/r#" if n == RELAY_URL_CHARS else "http://192.168.1.20:8080/r/"
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return base + "".join(rng.choice(alphabet) for _ in range(n - len(base)))


def _perspective_coeffs(src: list[tuple[float, float]], dst: list[tuple[float, float]]) -> list[float]:
    """Coefficients for PIL's PERSPECTIVE transform mapping output (dst) points back to input (src)."""
    rows = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    a = np.array(rows, dtype=float)
    b = np.array([c for point in src for c in point], dtype=float)
    return list(np.linalg.solve(a, b))


def photograph(screen: Image.Image, panel_cm: float, rng: random.Random,
               distance_cm: tuple[float, float] = (30, 60)) -> Image.Image:
    """What a phone camera sees of ``screen`` (a PIL RGB image of the panel) from ``distance_cm`` (min, max)."""
    distance = rng.uniform(*distance_cm)
    view_cm = 2 * distance * math.tan(math.radians(FOV_DEGREES / 2))
    width = max(8, int(CAMERA[0] * panel_cm / view_cm))
    height = max(8, int(width * screen.height / screen.width))
    shot = screen.resize((width, height), Image.LANCZOS)
    # Perspective: turn the panel up to 25° about a vertical or horizontal axis; the far edge shrinks.
    tilt = math.radians(rng.uniform(0, 25))
    shrink = math.cos(tilt) * (1 - 0.35 * math.sin(tilt) * panel_cm / (distance + panel_cm))
    x0 = (CAMERA[0] - width) / 2 + rng.uniform(-80, 80)
    y0 = (CAMERA[1] - height) / 2 + rng.uniform(-40, 40)
    near_w, far = width, width * shrink
    if rng.random() < 0.5:  # turned about the vertical axis: the right edge is further
        dst = [(x0, y0), (x0 + far, y0 + height * (1 - shrink) / 2), (x0 + far, y0 + height * (1 + shrink) / 2),
               (x0, y0 + height)]
    else:  # tilted back: the top edge is further
        inset = (near_w - far) / 2
        dst = [(x0 + inset, y0), (x0 + width - inset, y0), (x0 + width, y0 + height), (x0, y0 + height)]
    src = [(0, 0), (width, 0), (width, height), (0, height)]
    frame = Image.new("RGB", CAMERA, (90, 90, 90))
    warped = shot.transform(CAMERA, Image.PERSPECTIVE, _perspective_coeffs(src, dst), Image.BILINEAR,
                            fillcolor=(90, 90, 90))
    mask = Image.new("L", shot.size, 255).transform(CAMERA, Image.PERSPECTIVE, _perspective_coeffs(src, dst),
                                                     Image.BILINEAR)
    frame.paste(warped, (0, 0), mask)
    frame = frame.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.2)))
    pixels = np.asarray(frame, dtype=float) / 255.0
    pixels = pixels ** rng.uniform(0.75, 1.35)  # exposure error
    gy, gx = np.mgrid[0:CAMERA[1], 0:CAMERA[0]]  # glare: a soft bright spot somewhere on the panel
    cx, cy = x0 + rng.uniform(0, width), y0 + rng.uniform(0, height)
    radius = rng.uniform(0.1, 0.3) * width
    glare = rng.uniform(0.0, 0.35) * np.exp(-((gx - cx) ** 2 + (gy - cy) ** 2) / (2 * radius ** 2))
    pixels = pixels * (1 - glare[..., None]) + glare[..., None]
    pixels = pixels + np.random.default_rng(rng.randrange(2**32)).normal(0, rng.uniform(0.01, 0.03), pixels.shape)
    return Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8))


def run(trials: int, seed: int, distance_cm: tuple[float, float] = (30, 60),
        screens: set[str] | None = None) -> dict[str, Any]:
    pygame.font.init()
    rng = random.Random(seed)
    results = []
    for (w, h), panel_cm in PANELS.items():
        if screens and f"{w}x{h}" not in screens:
            continue
        for length in URL_LENGTHS:
            ok = 0
            for _ in range(trials):
                url = url_of_length(length, rng)
                panel_mm = [panel_cm * 10, panel_cm * 10 * h / w]
                state = {"scene": "ticket", "shop": "x", "lang": "fr", "panel_mm": panel_mm,
                         "ticket": {"url": url, "total": "12.50", "currency": "EUR", "valid_days": 30}}
                surface = render(state, (w, h))
                screen = Image.frombytes("RGB", (w, h), pygame.image.tobytes(surface, "RGB"))
                photo = photograph(screen, panel_cm, rng, distance_cm)
                found = [r.text for r in zxingcpp.read_barcodes(photo, formats=zxingcpp.BarcodeFormat.QRCode)]
                ok += found == [url]
            results.append({"screen": f"{w}x{h}", "panel_cm": panel_cm, "url_chars": length, "trials": trials,
                            "decoded": ok, "rate": round(ok / trials, 3)})
    return {"benchmark": "qr-first-scan", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seed": seed,
            "camera": f"{CAMERA[0]}x{CAMERA[1]}, {FOV_DEGREES:g}° FOV, {distance_cm[0]:g}-{distance_cm[1]:g} cm, "
                      "tilt 0-25°",
            "machine": {"python": platform.python_version(), "zxing_cpp": importlib.metadata.version("zxing-cpp")},
            "results": results}


def table(data: dict[str, Any]) -> str:
    lengths = sorted({r["url_chars"] for r in data["results"]})
    lines = [f"Simulated phone photos ({data['camera']}, blur, noise, exposure, glare), {data['results'][0]['trials']}"
             f" per cell, one run {data['date']}: share decoded on the first try.", "",
             "| screen | panel width | "
             + " | ".join(f"URL {n} chars" + " (relay)" * (n == RELAY_URL_CHARS) for n in lengths) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in lengths) + " |"]
    screens: dict[str, dict[int, float]] = {}
    widths: dict[str, float] = {}
    for r in data["results"]:
        screens.setdefault(r["screen"], {})[r["url_chars"]] = r["rate"]
        widths[r["screen"]] = r["panel_cm"]
    for screen, rates in screens.items():
        lines.append(f"| {screen} | {widths[screen]:g} cm | " + " | ".join(f"{rates[n]:.0%}" for n in lengths) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "qr-first-scan.json")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    parser.add_argument("--distance", type=float, nargs=2, default=(30.0, 60.0), metavar=("MIN_CM", "MAX_CM"),
                        help="phone-to-panel distance range (default 30 60)")
    parser.add_argument("--screens", nargs="*", help="only these sizes, e.g. 320x240 240x320")
    parser.add_argument("--name", default="qr-first-scan", help="README section and result name")
    args = parser.parse_args()
    data = run(args.trials, args.seed, tuple(args.distance), set(args.screens or ()))
    publish(data, table(data), args.out, args.readme, args.name)


if __name__ == "__main__":
    main()
