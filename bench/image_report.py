"""Image numbers for the README: size (raw, sparse on disk, xz), build time, boot-to-ready, reproducibility.

Reads what ``make test-slow`` left in build/test-image-{amd64,arm64}/ (build-time.json, boot.json,
boot-virt.json, the images) and build/repro-amd64.json (image-build/repro.sh), compresses each image with
``xz -6`` to measure it, then writes bench/results/image.json and the table in README.md.

    .venv/bin/python bench/image_report.py
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from _report import publish

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build"
MIB = 1024 * 1024


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _xz_bytes(image: Path) -> int:
    """Size of ``image`` compressed as ``make image`` does (xz -6, all cores)."""
    result = subprocess.run(["xz", "-T0", "-6", "-c", str(image)], stdout=subprocess.PIPE, check=True)
    return len(result.stdout)


def main() -> None:
    rows: dict[str, dict[str, Any]] = {}
    for arch in ("arm64", "amd64"):
        out = BUILD / f"test-image-{arch}"
        image = out / f"eticket-{arch}.img"
        if not image.exists():
            continue
        rows[arch] = {
            "raw_mib": round(image.stat().st_size / MIB),
            "allocated_mib": round(image.stat().st_blocks * 512 / MIB),
            "xz_mib": round(_xz_bytes(image) / MIB, 1),
            "build_seconds": _json(out / "build-time.json").get("seconds"),
            "boot": _json(out / ("boot.json" if arch == "amd64" else "boot-virt.json")),
        }
    repro = _json(BUILD / "repro-amd64.json")
    data = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "images": rows, "reproducibility": repro}
    lines = [f"One run, {data['when']}, 2 cores, no KVM for these guests (see below).", "",
             "| image | raw | xz | build (clean, `make test-slow`) | boot to appliance ready |",
             "| --- | ---: | ---: | ---: | --- |"]
    for arch, row in rows.items():
        boot = row["boot"]
        if arch == "amd64" and boot:
            ready = (f"{boot['kernel_to_appliance_ready_seconds']} s kernel→READY, "
                     f"{boot['host_start_to_healthz_seconds']} s qemu start→/healthz ({boot['accel']})")
        elif boot:
            ready = f"{boot['boot_to_healthz_seconds']} s qemu start→/healthz (virt, {boot['accel']})"
        else:
            ready = "not measured"
        lines.append(f"| {arch} | {row['raw_mib']} MiB ({row['allocated_mib']} MiB allocated) | {row['xz_mib']} MiB "
                     f"| {row['build_seconds']} s | {ready} |")
    if repro:
        lines += ["", f"Reproducibility (amd64, two clean builds, same SOURCE_DATE_EPOCH): {repro['summary']}"]
    publish(data, "\n".join(lines), REPO / "bench" / "results" / "image.json", REPO / "README.md", "image")


if __name__ == "__main__":
    main()
