"""``eticket fleet status``: every device's version, slot, boot state, health, last update and reachability.

JSON (a list, inventory order): ``{"name", "host", "port", "reachable": bool, "version", "slot" (booted
bootname), "primary", "boot_state", "health", "other_slot_good", "last_update" (docs/fleet.md §11's object or null),
"error" (null, or why the device could not be read)}``. ``health``: ``good`` (committed on a good slot),
``trying`` (a new slot booted, its health gate still running), ``bad`` (the booted slot is not marked good),
``unknown`` (not reachable or not readable).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ._const import DEFAULT_PARALLEL
from ._deploy import _limited
from ._inventory import Device
from ._remote import read_status
from ._ssh import FleetError, connect


def health(status: dict[str, Any]) -> str:
    """``good`` | ``trying`` | ``bad`` | ``unknown`` from an ``eticket update status`` object (docs/fleet.md §11)."""
    if status.get("boot_state") == "trying":
        return "trying"
    booted = next((s for s in status.get("slots") or [] if s.get("bootname") == status.get("booted")), None)
    if booted is None or status.get("boot_state") != "committed":
        return "unknown"
    return "good" if booted.get("boot_status") == "good" else "bad"


async def _one(device: Device) -> dict[str, Any]:
    row: dict[str, Any] = {"name": device.name, "host": device.host, "port": device.port, "reachable": False,
                           "version": None, "slot": None, "primary": None, "boot_state": None, "health": "unknown",
                           "other_slot_good": None, "last_update": None, "error": None}
    try:
        async with await connect(device) as conn:
            row["reachable"] = True
            status = await read_status(conn, device)
    except FleetError as exc:
        row["error"] = str(exc)
        return row
    row.update(version=status.get("version"), slot=status.get("booted"), primary=status.get("primary"),
               boot_state=status.get("boot_state"), health=health(status),
               other_slot_good=status.get("other_slot_good"), last_update=status.get("last_update"))
    return row


async def fleet_status(devices: list[Device], parallel: int = DEFAULT_PARALLEL) -> list[dict[str, Any]]:
    """One row per device (see the module docstring), ``parallel`` devices at a time; raises nothing."""
    return await _limited(parallel, [partial(_one, d) for d in devices])


def _last(update: dict[str, Any] | None) -> str:
    if not update:
        return "-"
    when = str(update.get("finished_at") or update.get("started_at") or "")[:16]
    return f"{update.get('result')} {update.get('version')} {when}".strip()


def status_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a fixed-width text table (one line per device, then the errors, one per line)."""
    header = ("DEVICE", "HOST", "REACHABLE", "VERSION", "SLOT", "BOOT", "HEALTH", "LAST UPDATE")
    lines = [header] + [(r["name"], f"{r['host']}:{r['port']}", "yes" if r["reachable"] else "no",
                         r["version"] or "-", r["slot"] or "-", r["boot_state"] or "-", r["health"],
                         _last(r["last_update"])) for r in rows]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    text = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    text += [f"{r['name']}: {r['error']}" for r in rows if r["error"]]
    return "\n".join(text) + "\n"
