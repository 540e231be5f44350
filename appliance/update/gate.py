"""``eticket update commit``: the health gate, run as root at every boot by ``eticket-update-commit.service``
(after ``eticket.service`` and ``eticket-kiosk.service``), as the RAUC docs advise: mark a slot good only once
the system proved itself (https://rauc.readthedocs.io/en/v1.8/integration.html#marking-slots-as-good).

On the first boot of a slot just installed (``boot_state`` ``trying``) it waits, up to the deadline, for:
1. ``ready``: ``eticket.service`` READY (``systemctl show``: ``ActiveState=active``, ``SubState=running``; a
   ``Type=notify`` unit is active only after READY=1);
2. ``healthz``: ``GET /healthz`` on the local listener answers ``image_version`` equal to the booted slot's
   version as RAUC installed it (the bundle's manifest): the appliance that answers runs from the new root,
   and that root is the release the bundle said it was;
3. ``kiosk``: the kiosk drew its first frame (``eticket-kiosk.service`` active: it sends READY=1 after its
   first frame; skipped when the unit is absent or disabled, or when its STATUS says "waiting for a display":
   no display is plugged in, kiosk/app.py);
4. ``selftest``: ``POST /selftest`` on the admin socket took a receipt through intake → store → display and
   off again (appliance/web/admin.py).
All pass: ``rauc status mark-good booted``, ``last_update.result = committed``. A check still failing at the
deadline: ``rauc status mark-bad booted``, ``result = rolled-back`` with the check and its reason, and a reboot,
which the boot loader takes into the other slot.

On any other boot (a committed slot) it marks the booted slot good (resetting the boot loader's counter) once
``eticket.service`` is READY, and never marks it bad (an unplugged display is no reason to leave a good slot).
A boot of the old slot while ``last_update`` says ``installed`` is the boot loader's fallback: result
``rolled-back``, "the new slot did not boot". An ``installing`` record left by a power cut becomes ``failed``.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import rauc
from .command import EXIT_FAILED, EXIT_OK, Outcome, boot_state, booted_version, reboot_later
from .rauc import RaucError
from .state import UpdateState, boot_id, now_rfc3339

COMMIT_DEADLINE_SECONDS = 600.0
"""How long a new slot has to prove healthy (docs/fleet.md §11)."""
CHECK_INTERVAL_SECONDS = 1.0
MARK_BUSY_WAIT_SECONDS = 1800.0
"""How long a mark-good/bad waits for RAUC to finish an install that an operator started meanwhile (RAUC's
service takes one call at a time): as long as an install may take (rauc.INSTALL_TIMEOUT_SECONDS)."""
HTTP_TIMEOUT_SECONDS = 5.0
SELFTEST_TIMEOUT_SECONDS = 30.0
DEVICE_DATA_DIR = Path("/var/lib/eticket")
"""``StateDirectory=eticket`` of systemd/eticket.service."""
APPLIANCE_UNIT = "eticket.service"
KIOSK_UNIT = "eticket-kiosk.service"
KIOSK_WAITING_STATUS = "waiting for a display"
"""The kiosk's STATUS= while no display is plugged in (kiosk/app.py ``_Panel.describe``)."""


@dataclass(frozen=True, slots=True)
class GateConfig:
    """``deadline_seconds`` for a new slot; the appliance's settings file (``config``, None: its default) and
    data dir (``data_dir``: admin.sock)."""

    deadline_seconds: float = COMMIT_DEADLINE_SECONDS
    config: Path | None = None
    data_dir: Path = DEVICE_DATA_DIR


def unit_properties(unit: str) -> dict[str, str]:
    """``systemctl show -p LoadState,ActiveState,SubState,StatusText,UnitFileState UNIT`` as a dict (empty when
    systemctl fails)."""
    try:
        result = subprocess.run(["systemctl", "show", "-p", "LoadState,ActiveState,SubState,StatusText,UnitFileState",
                                 unit], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return dict(line.partition("=")[::2] for line in result.stdout.splitlines() if "=" in line)


def check_ready() -> str | None:
    """None when ``eticket.service`` is READY, else what it is doing."""
    props = unit_properties(APPLIANCE_UNIT)
    if props.get("ActiveState") == "active" and props.get("SubState") == "running":
        return None
    return (f"{APPLIANCE_UNIT} is {props.get('ActiveState', '?')}/{props.get('SubState', '?')}"
            + (f" ({props['StatusText']})" if props.get("StatusText") else ""))


def _local_url(gate: GateConfig) -> str:
    from ..config import load_settings

    settings = load_settings(gate.config, data_dir=gate.data_dir)
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(settings.host, settings.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def check_healthz(gate: GateConfig, expected: str | None) -> str | None:
    """None when the local ``/healthz`` answers ``image_version == expected``, else why not."""
    import httpx

    try:
        url = _local_url(gate) + "/healthz"
        answer = httpx.get(url, timeout=HTTP_TIMEOUT_SECONDS).json()
    except Exception as exc:  # ConfigError, transport errors, not JSON: each is "not healthy yet"
        return f"/healthz did not answer: {exc}"
    if not isinstance(answer, dict) or answer.get("image_version") != expected:
        found = answer.get("image_version") if isinstance(answer, dict) else answer
        return f"/healthz reports image_version {found!r}, not the booted slot's {expected!r}"
    return None


def check_kiosk() -> tuple[str | None, str]:
    """``(problem, what was seen)``: problem None when the kiosk drew its first frame, or there is no kiosk
    unit or no display to draw on."""
    props = unit_properties(KIOSK_UNIT)
    if props.get("LoadState") != "loaded" or props.get("UnitFileState") in ("disabled", "masked"):
        return None, "no kiosk on this device"
    if props.get("ActiveState") == "active":
        if props.get("StatusText") == KIOSK_WAITING_STATUS:
            return None, "no display plugged in"
        return None, "first frame drawn"
    return f"{KIOSK_UNIT} is {props.get('ActiveState', '?')}/{props.get('SubState', '?')}", ""


def check_selftest(gate: GateConfig) -> str | None:
    """None when ``POST /selftest`` on the admin socket says every step passed, else the first failed step."""
    import httpx

    sock = gate.data_dir / "admin.sock"
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://device",
                          timeout=SELFTEST_TIMEOUT_SECONDS) as client:
            answer = client.post("/selftest").json()
    except Exception as exc:  # no socket yet, refused, not JSON
        return f"the self-test could not run on {sock}: {exc}"
    if isinstance(answer, dict) and answer.get("ok") is True:
        return None
    steps = answer.get("steps") if isinstance(answer, dict) else None
    failed = [s for s in steps or [] if isinstance(s, dict) and not s.get("ok")]
    if failed:
        return f"self-test step {failed[0].get('step')} failed: {failed[0].get('detail')}"
    return f"the self-test failed: {str(answer)[:200]}"


def health_checks(gate: GateConfig, expected: str | None) -> list[tuple[str, Callable[[], str | None]]]:
    """The gate's checks in order, each ``(name, check)``; a check returns None when it passes."""
    return [("ready", check_ready), ("healthz", lambda: check_healthz(gate, expected)),
            ("kiosk", lambda: check_kiosk()[0]), ("selftest", lambda: check_selftest(gate))]


def wait_healthy(checks: list[tuple[str, Callable[[], str | None]]], deadline_seconds: float,
                 sleep: Callable[[float], None] = time.sleep) -> tuple[str, str] | None:
    """Run ``checks`` in order, each until it passes, all within ``deadline_seconds``; None when all passed,
    else ``(name, reason)`` of the check that was still failing at the deadline."""
    end = time.monotonic() + deadline_seconds
    for name, check in checks:
        while (problem := check()) is not None:
            if time.monotonic() >= end:
                return name, problem
            sleep(min(CHECK_INTERVAL_SECONDS, max(0.0, end - time.monotonic())))
    return None


def _answer(code: int, result: str, message: str, last: dict[str, Any] | None) -> Outcome:
    return Outcome(code, message, {"result": result, "message": message,
                                   "version": (last or {}).get("version"), "slot": (last or {}).get("to_slot")})


def commit(state: UpdateState, gate: GateConfig) -> Outcome:
    """``eticket update commit``: see the module docstring. Exit 0 when the booted slot was marked good; 1
    when it was marked bad (and a reboot scheduled), or a committed slot's appliance never became READY (it
    stays good), or RAUC failed."""
    try:
        st = rauc.status()
    except RaucError as exc:
        return _answer(EXIT_FAILED, "failed", f"cannot read the slots from RAUC: {exc}", None)
    last = state.last_update()
    result = (last or {}).get("result")
    if boot_state(st, last) == "trying":
        slot = st.slot(st.booted)
        expected = slot.version if slot is not None and slot.version else booted_version(st)
        failed = wait_healthy(health_checks(gate, expected), gate.deadline_seconds)
        if failed is None:
            try:
                rauc.mark("good", "booted", MARK_BUSY_WAIT_SECONDS)
            except RaucError as exc:
                return _answer(EXIT_FAILED, "failed", f"rauc could not mark slot {st.booted} good: {exc}", last)
            message = f"version {expected} committed in slot {st.booted}: every health check passed"
            last = state.update(result="committed", message=message, finished_at=now_rfc3339())
            return _answer(EXIT_OK, "committed", message, last)
        name, reason = failed
        message = (f"health check {name} failed within {gate.deadline_seconds:g} s: {reason}; slot {st.booted} "
                   f"marked bad, back to slot {(last or {}).get('from_slot')}")
        try:
            rauc.mark("bad", "booted", MARK_BUSY_WAIT_SECONDS)
        except RaucError as exc:  # the boot counter still runs out by itself
            message += f" (rauc could not mark it bad: {exc})"
        last = state.update(result="rolled-back", message=message, finished_at=now_rfc3339())
        problem = reboot_later()
        return _answer(EXIT_FAILED, "rolled-back", message + (f"; {problem}" if problem else ""), last)
    if (last is not None and st.booted == last.get("from_slot") and result in ("installed", "installing")
            and last.get("boot_id") != boot_id()):  # a later boot than the install's
        if result == "installed":
            last = state.update(result="rolled-back", message="the new slot did not boot", finished_at=now_rfc3339())
        else:
            last = state.update(result="failed", message="the install was interrupted (a power cut or a crash); "
                                "the old slot kept running", finished_at=now_rfc3339())
    failed = wait_healthy([("ready", check_ready)], gate.deadline_seconds)
    if failed is not None:
        return _answer(EXIT_FAILED, "failed", f"slot {st.booted} left good but not marked again: {failed[1]}", last)
    try:
        rauc.mark("good", "booted", MARK_BUSY_WAIT_SECONDS)
    except RaucError as exc:
        return _answer(EXIT_FAILED, "failed", f"rauc could not mark slot {st.booted} good: {exc}", last)
    return _answer(EXIT_OK, "good", f"slot {st.booted} is good (boot counter reset)", last)


__all__ = ["COMMIT_DEADLINE_SECONDS", "GateConfig", "commit"]
