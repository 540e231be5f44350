"""Text shared by the kiosk's scenes and the web screen (no pygame here, so the appliance can import it): the
shop owner's bands, and a till's customer-display lines cut as the sale scene draws them."""

from __future__ import annotations

import re
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


def sale_line_parts(line: object) -> tuple[str, ...]:
    """A customer-display line as the till padded it (``"Croissant       1,20"``) without its padding: the
    label and the amount when a run of spaces right-aligns the last word (``("Croissant", "1,20")``), else the
    text alone; ``()`` for an empty line."""
    text = str(line or "").strip()
    if not text:
        return ()
    parts = re.split(r"\s{2,}", text)
    return (" ".join(parts[:-1]), parts[-1]) if len(parts) > 1 else (" ".join(text.split()),)
