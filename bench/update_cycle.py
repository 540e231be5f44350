"""Benchmark: one update cycle of a real arm64 A/B device (the test image booted in qemu through U-Boot, TCG).

One guest (tests/image/ab.py ``boot_ab_device``), bundles built by image-build/bundle.sh from the image build
(tests/image/story.py, the slow tests' helpers), the guest's host key read from its card, then three steps with
the operator's tools, each timed as the fleet tool reports it:

1. ``eticket fleet deploy`` of V2 (a good release): upload (SFTP, hashed on the device), install (RAUC writes
   the other slot), reboot to committed (the new slot boots, passes its health gate, commits);
2. ``eticket fleet rollback``: the operator sends the device back to its other, good slot (V1): the wall time
   until it runs V1 committed again;
3. ``eticket fleet deploy`` of V3, whose appliance never gets READY (health-gate deadline ``--gate-deadline``,
   60 s here; 600 s on a real device): the time until the device rolled itself back (``--skip-unhealthy``
   leaves it out).

Times are seconds (float) from one run; an emulated arm64 guest on a 2-core x86 host is several times slower
than a Raspberry Pi 4 at RAUC's hashing and the appliance's start, so read them as an upper bound of the
mechanism, not a Pi's numbers.

    .venv/bin/python bench/update_cycle.py [--skip-unhealthy] [--out bench/results/update-cycle.json]
    (root: the image build; make bench-update; ETICKET_IMAGE_REUSE=1 reuses build/test-image-arm64)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _report import publish  # noqa: E402

from tests.image.ab import boot_ab_device  # noqa: E402
from tests.image.conftest import _build  # noqa: E402
from tests.image.keys import make_fleet_keys  # noqa: E402
from tests.image.story import build_bundle, host_key_from_card, unhealthy_overlay  # noqa: E402

GOOD_VERSION = "2.0.0+test"
UNHEALTHY_VERSION = "3.0.0+unhealthy"
GATE_DEADLINE_SECONDS = 60
REBOOT_TIMEOUT_SECONDS = 1200
FLEET_TIMEOUT_SECONDS = 2400
MIB = 1024 * 1024


def _fleet(inventory: Path, *args: str) -> tuple[float, int, Any]:
    """``eticket fleet ARGS --inventory INVENTORY --json``: (wall seconds, exit status, its JSON)."""
    start = time.monotonic()
    done = subprocess.run([str(REPO / ".venv" / "bin" / "eticket"), "fleet", *args, "--inventory", str(inventory),
                           "--json", "--reboot-timeout", str(REBOOT_TIMEOUT_SECONDS)],
                          capture_output=True, text=True, timeout=FLEET_TIMEOUT_SECONDS)
    took = time.monotonic() - start
    sys.stderr.write(done.stderr)
    if not done.stdout.strip():
        raise SystemExit(f"eticket fleet {args[0]} printed no report (exit {done.returncode})")
    return took, done.returncode, json.loads(done.stdout)


def _device_row(took: float, code: int, report: Any) -> dict[str, Any]:
    entry = (report["devices"] if isinstance(report, dict) else report)[0]
    return {"wall_s": round(took, 1), "exit": code, "outcome": entry["outcome"], "slot": entry["slot"],
            "to_version": entry["to_version"], "message": entry["message"], "timings": entry["timings"]}


def run(work: Path, skip_unhealthy: bool) -> dict[str, Any]:
    """Boot one guest and time the cycle (module docstring); the JSON of the run."""
    build = _build("arm64")
    keys = make_fleet_keys(REPO / "build" / "test-fleet-keys")
    out = build / "bundles"
    good = build_bundle(build, keys, out, GOOD_VERSION)
    unhealthy = None if skip_unhealthy else build_bundle(
        build, keys, out, UNHEALTHY_VERSION, unhealthy_overlay(out / "overlay-unhealthy", GATE_DEADLINE_SECONDS))
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    start = time.monotonic()
    device = boot_ab_device(build, work / "guest", key, hostname="bench-01")
    first_boot = time.monotonic() - start
    data: dict[str, Any] = {"when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "cpus": os.cpu_count(),
                            "machine": platform.machine(), "guest": "qemu virt cortex-a72, TCG, 2 vCPU, 1 GiB",
                            "first_boot_to_healthz_s": round(first_boot, 1),
                            "bundle_bytes": good.stat().st_size, "bundle": good.name}
    try:
        inventory = work / "fleet.toml"
        inventory.write_text(f'[[device]]\nname = "bench-01"\nhost = "127.0.0.1"\nport = {device.guest.ssh_port}\n'
                             f'identity = "{key}"\nhost_key = "{host_key_from_card(device)}"\n')
        data["from_version"] = json.loads(device.run("eticket update status --json"))["version"]
        data["deploy"] = _device_row(*_fleet(inventory, "deploy", str(good)))
        data["rollback"] = _device_row(*_fleet(inventory, "rollback", "--all"))
        if unhealthy is not None:
            data["unhealthy_gate_deadline_s"] = GATE_DEADLINE_SECONDS
            data["self_rollback"] = _device_row(*_fleet(inventory, "deploy", str(unhealthy)))
    finally:
        device.guest.stop()
    return data


def _s(value: Any) -> str:
    return "–" if value is None else f"{value:.1f} s"


def table(data: dict[str, Any]) -> str:
    """The README's table of one run."""
    deploy, back = data["deploy"], data["rollback"]
    t = deploy["timings"]
    lines = [f"One arm64 A/B device in qemu ({data['guest']}) on a {data['cpus']}-core {data['machine']} host, "
             f"one run {data['when']}; bundle {data['bundle']}: {data['bundle_bytes'] / MIB:.1f} MiB "
             f"(verity). First boot to /healthz: {data['first_boot_to_healthz_s']:.0f} s.", "",
             "| step (`eticket fleet`) | outcome | upload | install | reboot to committed | whole step |",
             "| --- | --- | ---: | ---: | ---: | ---: |",
             f"| deploy {data['from_version']} → {deploy['to_version']} | {deploy['outcome']} (slot "
             f"{deploy['slot']}) | {_s(t['upload_s'])} | {_s(t['install_s'])} | {_s(t['reboot_to_committed_s'])} "
             f"| {deploy['wall_s']:.1f} s |",
             f"| rollback (operator) | {back['outcome']} (slot {back['slot']}) | – | – | "
             f"{_s(back['timings']['reboot_to_committed_s'])} | {back['wall_s']:.1f} s |"]
    if "self_rollback" in data:
        sick = data["self_rollback"]
        st = sick["timings"]
        lines.append(f"| deploy of a release failing its health gate ({data['unhealthy_gate_deadline_s']} s "
                     f"deadline) | {sick['outcome']} by the device (slot {sick['slot']}) | {_s(st['upload_s'])} | "
                     f"{_s(st['install_s'])} | {_s(st['reboot_to_committed_s'])} | {sick['wall_s']:.1f} s |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-unhealthy", action="store_true", help="leave out step 3 (the self-rollback)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "update-cycle.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="eticket-update-bench-") as tmp:
        data = run(Path(tmp), args.skip_unhealthy)
    publish(data, table(data), args.out, REPO / "README.md", "update-cycle")


if __name__ == "__main__":
    main()
