"""The text of the shop owner's bands, shared by the kiosk's scenes and the web screen (no pygame here, so the
appliance can import it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def storage_lines(storage: Any, t: Callable[[str], str]) -> tuple[str, str] | None:
    """The two lines of the storage band (``state["storage"]``: the appliance repaired its database, found a
    receipt damaged on the card, cannot use its storage at all or had an operation refused; ``full``: the
    card is full), or None when the storage is fine."""
    if not isinstance(storage, dict) or storage.get("status") not in ("repaired", "damaged", "failed", "refusing"):
        return None
    if storage["status"] in ("failed", "refusing"):
        cause = t("The SD card is full.") if storage.get("full") else t("The SD card may be failing.")
        return t("Storage damaged:"), f"{t('Receipts cannot be stored now.')} {cause}"
    if storage.get("database_lost"):  # the whole database was gone: nothing counted, everything lost
        return t("Storage repaired:"), t("All receipts and pairings were lost: pair every till again.")
    lost, tills = int(storage.get("receipts_lost") or 0), int(storage.get("pairings_lost") or 0)
    parts = [t("Receipts lost: {n}").format(n=lost)]
    if tills:
        parts.append(t("Tills to pair again: {n}").format(n=tills))
    if storage["status"] == "damaged":
        parts.append(t("The SD card may be failing."))
    return (t("Storage repaired:") if storage["status"] == "repaired" else t("Storage damaged:")), " · ".join(parts)


def till_bound_lines(till_bound: Any, t: Callable[[str], str]) -> tuple[str, str] | None:
    """The two lines of the band saying that a till may print now (``state["till_bound"]``,
    ``{"address": "192.168.1.30"}``: it printed while pairing was open and was allowed to), or None."""
    if not isinstance(till_bound, dict) or not isinstance(till_bound.get("address"), str) or not till_bound["address"]:
        return None
    return t("New till:"), t("The till at {address} may print receipts now.").format(address=till_bound["address"])
