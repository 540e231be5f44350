"""``eticket fleet deploy``: a bundle rolled out in waves, with a failure cap, over SSH.

1. Pre-flight: every device's ``eticket update status`` (``parallel`` at a time). Devices already on the
   bundle's version are ``skipped``; devices that do not answer (or whose host key is wrong) are reported and
   left out of the waves: nothing is sent to them.
2. The others are cut into waves (:func:`fleet._waves.plan_waves`, percentages of the whole inventory). In a
   wave up to ``parallel`` devices at once: upload (resumed, hashed on the device), ``eticket update install``,
   then watch the device reboot, run its health gate and commit, or roll back by itself.
3. After each wave: failures (failed, rolled back, unreachable) against the cap
   (:func:`fleet._waves.wave_exceeds_cap`, Ansible's semantics); past it the rollout stops and the devices of
   later waves are ``not-started``.

A device lost mid-rollout is ``unreachable`` and left alone: before the install nothing was changed (a partial
upload is continued by the next run); after it, RAUC wrote only the inactive slot and the device's boot loader
and health gate choose a good slot by themselves. It is never retried blindly: run ``eticket fleet status``.

Report (docs/fleet.md §7): ``{"bundle": {"path", "sha256", "version"}, "waves": [[names]], "stopped", "reason",
"devices": [{"name", "outcome", "from_version", "to_version", "slot", "message", "timings": {"upload_s",
"install_s", "reboot_to_committed_s", "total_s"}, "bytes_sent", "resumed_from"}]}``; ``total_s`` (wall time of
the device's deploy, seconds), ``bytes_sent`` and ``resumed_from`` (bytes) are in docs/fleet.md §7.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, TypeVar

from ._bundle import Bundle
from ._const import DEFAULT_PARALLEL, REBOOT_DEADLINE_SECONDS
from ._inventory import Device
from ._progress import Progress
from ._remote import (
    EXIT_CURRENT,
    EXIT_NO_GOOD_SLOT,
    EXIT_REFUSED,
    TERMINAL_RESULTS,
    install,
    read_status,
    rollback,
    upload,
    wait_back,
)
from ._ssh import AuthRefused, CommandFailed, HostKeyRefused, Unreachable, connect
from ._waves import WaveSize, plan_waves, wave_exceeds_cap

T = TypeVar("T")
DEFAULT_MAX_FAIL_PERCENT = 0.0
"""Any failure in a wave stops the rollout (Ansible's default, no cap, only stops when a whole wave fails)."""
FAILURES = {"failed", "rolled-back", "unreachable"}
EXIT_LOST = -1
"""The install's exit status when the SSH session ended without one (the device rebooted under it)."""
_STATE = {"updated": "healthy", "skipped": "skipped", "rolled-back": "rolled back", "failed": "failed",
          "unreachable": "unreachable", "not-started": "not started"}


@dataclass
class DeviceReport:
    """One device's outcome in a deploy or rollback report (docs/fleet.md §7)."""

    name: str
    outcome: str = "not-started"
    from_version: str | None = None
    to_version: str | None = None
    slot: str | None = None
    message: str | None = None
    timings: dict[str, float | None] = field(default_factory=lambda: {
        "upload_s": None, "install_s": None, "reboot_to_committed_s": None, "total_s": None})
    bytes_sent: int = 0
    resumed_from: int = 0


@dataclass
class Report:
    """A deploy's report; :meth:`as_json` is the docs/fleet.md §7 JSON."""

    bundle: Bundle
    waves: list[list[str]] = field(default_factory=list)
    stopped: bool = False
    reason: str | None = None
    devices: list[DeviceReport] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"bundle": {"path": str(self.bundle.path), "sha256": self.bundle.sha256,
                           "version": self.bundle.version, "size": self.bundle.size},
                "waves": self.waves, "stopped": self.stopped, "reason": self.reason,
                "devices": [asdict(d) for d in self.devices]}

    def failed(self) -> bool:
        """True when the rollout stopped or any device did not end updated or skipped."""
        return self.stopped or any(d.outcome not in ("updated", "skipped") for d in self.devices)


async def _limited(limit: int, jobs: list[Callable[[], Awaitable[T]]]) -> list[T]:
    gate = asyncio.Semaphore(max(1, limit))

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    return list(await asyncio.gather(*(one(j) for j in jobs)))


def _matches(status: dict[str, Any], bundle: Bundle) -> bool:
    """The device's last update is this bundle (by hash, or by version if the device records no hash)."""
    last = status.get("last_update") or {}
    if last.get("bundle_sha256"):
        return bool(last["bundle_sha256"] == bundle.sha256)
    return bool(last.get("version") == bundle.version)


def _settled(bundle: Bundle) -> Callable[[dict[str, Any]], bool]:
    """The device is done with this bundle: committed and running the new slot, or rolled back and running
    the old one again (the health gate records ``rolled-back`` on the new slot, then reboots), or refused."""
    def done(status: dict[str, Any]) -> bool:
        last = status.get("last_update") or {}
        if not _matches(status, bundle) or last.get("result") not in TERMINAL_RESULTS:
            return False
        if last["result"] == "committed":
            return bool(status.get("booted") == last.get("to_slot"))
        if last["result"] == "rolled-back":
            return bool(status.get("booted") == last.get("from_slot"))
        return True
    return done


def _classify(report: DeviceReport, status: dict[str, Any], bundle: Bundle) -> None:
    last = status.get("last_update") or {}
    report.to_version, report.slot = status.get("version"), status.get("booted")
    result = last.get("result")
    if result == "committed" and status.get("version") == bundle.version and status.get("boot_state") == "committed":
        report.outcome, report.message = "updated", None
    elif result == "rolled-back":
        report.outcome = "rolled-back"
        report.message = f"the device rolled back by itself: {last.get('message') or 'no reason given'}"
    else:
        report.outcome = "failed"
        report.message = f"update {result}: {last.get('message') or 'no message'}"


async def _deploy_one(device: Device, bundle: Bundle, report: DeviceReport, progress: Progress,
                      reboot_deadline: float) -> None:
    start = time.monotonic()
    stage = "connecting"
    try:
        progress.set(device.name, "connecting")
        async with await connect(device) as conn:
            status = await read_status(conn, device)
            report.from_version, report.slot = status.get("version"), status.get("booted")
            if status.get("version") == bundle.version:
                report.outcome, report.to_version = "skipped", bundle.version
                report.message = "already on this version"
                return
            if bundle.compatible and status.get("compatible") and status["compatible"] != bundle.compatible:
                report.outcome = "failed"
                report.message = f"the bundle is for {bundle.compatible}, the device is {status['compatible']}"
                return
            stage = "uploading"
            began = time.monotonic()
            path, report.bytes_sent, report.resumed_from = await upload(
                conn, bundle.path, bundle.sha256, bundle.size,
                lambda done, total: progress.upload(device.name, done, total),
                lambda: progress.set(device.name, "verifying", "sha256 on the device"))
            report.timings["upload_s"] = round(time.monotonic() - began, 3)
            stage = "installing"
            progress.set(device.name, "installing")
            began = time.monotonic()
            try:
                code, answer = await install(conn, device, path, bundle.sha256)
            except Unreachable:  # the link (or the device) went down mid-install: watch what it does next
                code, answer = EXIT_LOST, {"result": "installing", "message": "connection lost during the install"}
            report.timings["install_s"] = round(time.monotonic() - began, 3)
        if code == EXIT_CURRENT:
            report.outcome, report.to_version, report.message = "skipped", bundle.version, "already on this version"
            return
        if code not in (0, EXIT_LOST) and answer.get("result") != "installed":
            report.outcome = "failed"
            verdict = "refused by the device" if code == EXIT_REFUSED else f"install exited {code}"
            report.message = f"{verdict}: {answer.get('message') or answer.get('result')}"
            return
        stage = "rebooting"  # or the install still running, if the connection was lost: the device says which
        progress.set(device.name, "rebooting", f"into slot {answer.get('to_slot') or '?'}")
        began = time.monotonic()
        status = await wait_back(device, _settled(bundle), reboot_deadline)
        report.timings["reboot_to_committed_s"] = round(time.monotonic() - began, 3)
        _classify(report, status, bundle)
    except HostKeyRefused as exc:
        report.outcome, report.message = "failed", str(exc)
    except AuthRefused as exc:
        report.outcome, report.message = "failed", str(exc)
    except CommandFailed as exc:
        report.outcome, report.message = "failed", f"{stage}: {exc}"
    except Unreachable as exc:
        report.outcome = "unreachable"
        if stage in ("connecting", "uploading"):
            left = ("nothing was installed; the partial upload stays on the device and the next deploy continues "
                    "it" if stage == "uploading" else "nothing was sent")
        else:
            left = ("left alone: RAUC wrote only the inactive slot, the device's boot loader and health gate keep "
                    "or restore a good slot by themselves; check it with eticket fleet status")
        report.message = f"{exc} while {stage}: {left}"
    finally:
        report.timings["total_s"] = round(time.monotonic() - start, 3)
        progress.set(device.name, _STATE[report.outcome], report.message or report.to_version or "")


async def _preflight(device: Device, bundle: Bundle, report: DeviceReport) -> bool:
    """True when ``device`` needs the bundle; else ``report`` says why not (skipped, unreachable, failed)."""
    try:
        async with await connect(device) as conn:
            status = await read_status(conn, device)
    except Unreachable as exc:
        report.outcome, report.message = "unreachable", f"{exc}: not touched"
        return False
    except (HostKeyRefused, AuthRefused, CommandFailed) as exc:
        report.outcome, report.message = "failed", f"{exc}: not touched"
        return False
    report.from_version, report.slot = status.get("version"), status.get("booted")
    if status.get("version") == bundle.version:
        report.outcome, report.to_version, report.message = "skipped", bundle.version, "already on this version"
        return False
    return True


async def deploy(devices: list[Device], bundle: Bundle, waves: list[WaveSize],
                 max_fail_percent: float = DEFAULT_MAX_FAIL_PERCENT, parallel: int = DEFAULT_PARALLEL,
                 progress: Progress | None = None,
                 reboot_deadline: float = REBOOT_DEADLINE_SECONDS) -> Report:
    """Roll ``bundle`` out to ``devices`` (inventory order) and return the report (see the module docstring).

    ``waves``: sizes as parsed by :func:`fleet._waves.parse_waves`; ``max_fail_percent`` 0..100;
    ``parallel``: devices handled at once (pre-flight and within a wave); ``reboot_deadline``: seconds a
    device has from the install's return to a settled update. Raises nothing per device: every fault is in
    the report.
    """
    progress = progress or Progress([d.name for d in devices])
    reports = {d.name: DeviceReport(d.name) for d in devices}
    report = Report(bundle=bundle, devices=[reports[d.name] for d in devices])
    for d in devices:
        progress.set(d.name, "connecting")
    needed = await _limited(parallel, [partial(_preflight, d, bundle, reports[d.name]) for d in devices])
    for d, need in zip(devices, needed, strict=True):
        if need:
            progress.set(d.name, "waiting", f"from {reports[d.name].from_version}")
        else:
            progress.set(d.name, _STATE[reports[d.name].outcome], reports[d.name].message or "")
    planned = plan_waves([d for d, need in zip(devices, needed, strict=True) if need], waves, total=len(devices))
    report.waves = [[d.name for d in wave] for wave in planned]
    for number, wave in enumerate(planned, 1):
        await _limited(parallel, [partial(_deploy_one, d, bundle, reports[d.name], progress, reboot_deadline)
                                  for d in wave])
        failed = [d.name for d in wave if reports[d.name].outcome in FAILURES]
        if wave_exceeds_cap(len(failed), len(wave), max_fail_percent):
            report.stopped = True
            report.reason = (f"wave {number} of {len(planned)}: {len(failed)} of {len(wave)} device(s) failed "
                             f"({', '.join(failed)}), more than --max-fail-percent {max_fail_percent:g}: stopped")
            for later in planned[number:]:
                for d in later:
                    reports[d.name].message = "not started: the rollout stopped"
                    progress.set(d.name, "not started")
            break
    progress.close()
    return report


async def roll_back(devices: list[Device], parallel: int = DEFAULT_PARALLEL, progress: Progress | None = None,
                    reboot_deadline: float = REBOOT_DEADLINE_SECONDS) -> list[DeviceReport]:
    """``eticket update rollback`` on each device whose other slot is good, then wait until it runs that slot.

    Outcomes: ``rolled-back`` (now on the other slot, ``to_version``), ``skipped`` (the other slot is not good:
    nothing to roll back to), ``failed``, ``unreachable``.
    """
    progress = progress or Progress([d.name for d in devices])

    async def one(device: Device) -> DeviceReport:
        report = DeviceReport(device.name)
        start = time.monotonic()
        stage = "connecting"
        try:
            progress.set(device.name, "connecting")
            async with await connect(device) as conn:
                status = await read_status(conn, device)
                report.from_version, report.slot = status.get("version"), status.get("booted")
                if not status.get("other_slot_good"):
                    report.outcome, report.message = "skipped", "the other slot is not good: nothing to roll back to"
                    return report
                code, answer = await rollback(conn, device)
            if code == EXIT_NO_GOOD_SLOT:
                report.outcome, report.message = "skipped", answer.get("message") or "the other slot is not good"
                return report
            if code != 0:
                report.outcome, report.message = "failed", f"rollback exited {code}: {answer.get('message')}"
                return report
            stage = "rebooting"
            progress.set(device.name, "rebooting")
            began = time.monotonic()
            before = report.slot
            status = await wait_back(device, lambda s: s.get("booted") not in (None, before), reboot_deadline)
            report.timings["reboot_to_committed_s"] = round(time.monotonic() - began, 3)
            report.outcome, report.to_version, report.slot = "rolled-back", status.get("version"), status.get("booted")
        except (HostKeyRefused, AuthRefused, CommandFailed) as exc:
            report.outcome, report.message = "failed", str(exc)
        except Unreachable as exc:
            report.outcome, report.message = "unreachable", f"{exc} while {stage}"
        finally:
            report.timings["total_s"] = round(time.monotonic() - start, 3)
            progress.set(device.name, _STATE.get(report.outcome, report.outcome), report.message or "")
        return report

    reports = await _limited(parallel, [partial(one, d) for d in devices])
    progress.close()
    return reports
