"""Benchmark: the fleet tool's own overhead per device, with N = 5 and N = 20 device hosts.

Each device is a network + mount namespace running OpenSSH's sshd, Debian's RAUC and ``eticket update``
(tests/fleet/devicehost.py, the quick tests' harness). ``eticket fleet deploy`` runs on the LAN's operator
host, one wave of every device (``--waves 100%``, ``--parallel 10``), a signed plain bundle of release 2.0.0.

Per device the deploy report gives ``total_s`` (the device's wall time in the deploy), ``install_s`` (the
on-device ``eticket update install``: RAUC writing the slot) and ``reboot_to_committed_s`` (the device
rebooting, its health gate, its commit). The fleet tool's own overhead per device is
``total_s - install_s - reboot_to_committed_s``: SSH handshakes, the status read, the upload and its SHA-256 on
the device, and noticing that the device is back (reconnect polling). The pre-flight (every device's status
before the waves) is reported apart, as is ``eticket fleet status`` for the whole fleet, and the upload rate of
a 64 MiB file through the same code (``fleet._remote.upload``, SFTP into the device, hashed there).

    .venv/bin/python bench/fleet.py [--sizes 5,20]      (root: namespaces; make bench-fleet)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _report import publish  # noqa: E402

from tests.fleet.bundles import make_bundle  # noqa: E402
from tests.fleet.devicehost import DeviceHosts  # noqa: E402

UPLOAD_BYTES = 64 * 1024 * 1024
PARALLEL = 10
COMMIT_DEADLINE_SECONDS = 180.0
"""The devices' health-gate deadline in this bench (the harness's 30 s is short for twenty appliances starting
at once on two cores; a real device has 600 s)."""

_UPLOAD_PROBE = """
import asyncio, hashlib, json, sys, time
from pathlib import Path
from fleet._inventory import load_inventory
from fleet._remote import upload
from fleet._ssh import connect
async def main():
    device = load_inventory(Path(sys.argv[1]))[0]
    path = Path(sys.argv[2])
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    async with await connect(device) as conn:
        start = time.monotonic()
        await upload(conn, path, sha, path.stat().st_size, lambda d, t: None)
        took = time.monotonic() - start
        await conn.run(f"rm -f /var/lib/eticket-update/incoming/{sha}.raucb")
    print(json.dumps({"seconds": took}))
asyncio.run(main())
"""


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q * 100) - 1]


def _inventory(hosts: DeviceHosts, path: Path) -> Path:
    lines = ["[defaults]", f'identity = "{hosts.client_key}"', ""]
    for d in hosts.devices:
        lines += ["[[device]]", f'name = "{d.name}"', f'host = "{d.host.address}"', f'host_key = "{d.host_key}"', ""]
    path.write_text("\n".join(lines))
    return path


def _fleet(hosts: DeviceHosts, *args: str) -> tuple[float, str]:
    """``eticket fleet ARGS`` on the operator host: (wall seconds, stdout)."""
    start = time.monotonic()
    done = hosts.client.run(sys.executable, "-m", "appliance.cli", "fleet", *args, timeout=1800)
    took = time.monotonic() - start
    if done.returncode not in (0, 1):  # 1: a device did not end updated (kept in the results)
        raise RuntimeError(f"eticket fleet {args[0]} exited {done.returncode}: {done.stderr[-2000:]}")
    return took, done.stdout


def run_size(count: int, work: Path) -> dict[str, Any]:
    started = time.monotonic()
    hosts = DeviceHosts(work / f"n{count}", count, version="1.0.0")
    try:
        boot_s = time.monotonic() - started
        for device in hosts.devices:  # twenty devices booting at once on two cores: give the gate time
            device.commit_deadline = COMMIT_DEADLINE_SECONDS
        inv = _inventory(hosts, work / f"n{count}" / "fleet.toml")
        status_s, _ = _fleet(hosts, "status", "--inventory", str(inv), "--parallel", str(PARALLEL))
        bundle = make_bundle(work / f"n{count}" / "eticket-test-2.0.0.raucb", "2.0.0", hosts.keys)
        report_path = work / f"n{count}" / "report.json"
        deploy_s, _ = _fleet(hosts, "deploy", str(bundle), "--inventory", str(inv), "--waves", "100%",
                             "--parallel", str(PARALLEL), "--json-report", str(report_path))
        report = json.loads(report_path.read_text())
        outcomes: dict[str, int] = {}
        for d in report["devices"]:
            outcomes[d["outcome"]] = outcomes.get(d["outcome"], 0) + 1
        rows = [d["timings"] for d in report["devices"] if d["timings"]["reboot_to_committed_s"] is not None]
        if not rows:
            raise RuntimeError(f"N={count}: no device went through install and reboot: {report['devices']}")
        overhead = [t["total_s"] - t["install_s"] - t["reboot_to_committed_s"] for t in rows]
        longest_device = max(t["total_s"] for t in rows)
        return {
            "devices": count, "parallel": PARALLEL, "outcomes": outcomes, "bundle_bytes": bundle.stat().st_size,
            "harness_boot_s": round(boot_s, 1), "status_wall_s": round(status_s, 2),
            "deploy_wall_s": round(deploy_s, 2),
            "preflight_and_startup_s": round(deploy_s - longest_device, 2) if count <= PARALLEL else None,
            "overhead_per_device_s": {"median": round(statistics.median(overhead), 3),
                                      "p90": round(_quantile(overhead, 0.9), 3), "max": round(max(overhead), 3)},
            "upload_s_median": round(statistics.median(t["upload_s"] for t in rows), 3),
            "install_s_median": round(statistics.median(t["install_s"] for t in rows), 3),
            "reboot_to_committed_s_median": round(statistics.median(t["reboot_to_committed_s"] for t in rows), 3),
            "per_device": [{"name": d["name"], **d["timings"]} for d in report["devices"]],
        }
    finally:
        hosts.close()


def upload_rate(work: Path) -> dict[str, Any]:
    hosts = DeviceHosts(work / "upload", 1, version="1.0.0")
    try:
        inv = _inventory(hosts, work / "upload" / "fleet.toml")
        blob = work / "upload" / "blob.raucb"
        blob.write_bytes(os.urandom(UPLOAD_BYTES))
        done = hosts.client.run(sys.executable, "-c", _UPLOAD_PROBE, str(inv), str(blob), timeout=600)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        seconds = json.loads(done.stdout)["seconds"]
        return {"bytes": UPLOAD_BYTES, "seconds": round(seconds, 2),
                "mib_per_s": round(UPLOAD_BYTES / 1048576 / seconds, 1)}
    finally:
        hosts.close()


def table(data: dict[str, Any]) -> str:
    runs = data["runs"]
    lines = [f"`eticket fleet deploy --waves 100% --parallel {PARALLEL}` on the LAN's operator host, a "
             f"{runs[0]['bundle_bytes']} byte signed bundle, one run {data['date']}, {data['cores']} cores, "
             "namespace device hosts (tests/fleet/devicehost.py).", "",
             "| devices (outcomes) | tool overhead per device: median | p90 | max | upload (median) | install (median) "
             "| reboot to committed (median) | whole deploy | fleet status |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in runs:
        o = r["overhead_per_device_s"]
        lines.append(f"| {r['devices']} ({', '.join(f'{n} {k}' for k, n in sorted(r['outcomes'].items()))}) "
                     f"| {o['median']:.2f} s | {o['p90']:.2f} s | {o['max']:.2f} s | "
                     f"{r['upload_s_median']:.2f} s | {r['install_s_median']:.2f} s | "
                     f"{r['reboot_to_committed_s_median']:.2f} s | {r['deploy_wall_s']:.1f} s | "
                     f"{r['status_wall_s']:.1f} s |")
    if len(runs) >= 2:
        a, b = runs[0], runs[-1]
        lines += ["", f"From {a['devices']} to {b['devices']} devices the median overhead per device goes "
                      f"{a['overhead_per_device_s']['median']:.2f} s → {b['overhead_per_device_s']['median']:.2f} s "
                      f"(×{b['overhead_per_device_s']['median'] / a['overhead_per_device_s']['median']:.1f}), the "
                      f"whole deploy {a['deploy_wall_s']:.1f} s → {b['deploy_wall_s']:.1f} s."]
    up = data["upload"]
    lines += ["", f"Upload through the tool's SFTP path (resumable writes, then SHA-256 on the device): "
                  f"{up['bytes'] // 1048576} MiB in {up['seconds']:.2f} s ({up['mib_per_s']} MiB/s) over a veth pair."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5,20")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "fleet.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        work = Path(tmp)
        runs = [run_size(int(n), work) for n in args.sizes.split(",")]
        upload = upload_rate(work)
    data = {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "cores": os.cpu_count(),
            "python": platform.python_version(), "runs": runs, "upload": upload}
    publish(data, table(data), args.out, REPO / "README.md", "fleet")


if __name__ == "__main__":
    main()
