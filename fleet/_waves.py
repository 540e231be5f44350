"""Wave planning and the failure cap, with the semantics of Ansible's ``serial`` and ``max_fail_percentage``.

Sources (ansible-core, checked in its sources): ``PlaybookExecutor._get_serialized_batches`` (the batch sizes
``serial: [1, 5, "20%"]``: each item an integer or a percentage of *all* hosts, ``int(pct / 100 * total)`` and at
least 1, the last item repeating until every host is in a batch) and the linear strategy's failure test
(``failed / batch_size > max_fail_percentage / 100`` stops the play: the percentage must be *exceeded*, so with
batches of 4 and 49 % two failures stop it and one does not). Ansible also stops when a whole batch failed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")
DEFAULT_WAVES = "1,5,20%"
"""A canary, then five devices, then waves of a fifth of the fleet (the issue's example)."""

_ITEM = re.compile(r"^\s*(\d+)\s*(%?)\s*$")


class WaveSpecError(ValueError):
    """A ``--waves`` or ``--max-fail-percent`` value that cannot be used; the message says which item."""


WaveSize = int | str
"""A wave size as Ansible writes it: a count (5) or a percentage of the whole inventory ("20%")."""


MAX_WAVE_ITEM_CHARS = 12
"""A wave item longer than this is no count a fleet has (and Python refuses to read 4300 digits)."""


def parse_waves(text: str) -> list[WaveSize]:
    """``"1,5,20%"`` → ``[1, 5, "20%"]``. Counts must be >= 1, percentages 1..100; WaveSpecError otherwise."""
    items: list[WaveSize] = []
    for part in text.split(","):
        match = _ITEM.match(part) if len(part) <= MAX_WAVE_ITEM_CHARS else None
        if not match:
            raise WaveSpecError(f"--waves: {part.strip()!r} is neither a count (5) nor a percentage (20%)")
        number, percent = int(match.group(1)), match.group(2)
        if percent:
            if not 1 <= number <= 100:
                raise WaveSpecError(f"--waves: {part.strip()!r}: a percentage is 1..100")
            items.append(f"{number}%")
        else:
            if number < 1:
                raise WaveSpecError(f"--waves: {part.strip()!r}: a wave holds at least one device")
            items.append(number)
    return items


def wave_size(item: WaveSize, total: int) -> int:
    """Devices in a wave of ``item``: the count, or ``int(pct / 100 * total)`` with a minimum of 1 (Ansible's
    ``pct_to_int``), ``total`` being the size of the whole inventory."""
    if isinstance(item, str):
        return int(int(item.rstrip("%")) / 100.0 * total) or 1
    return item


def plan_waves(devices: Sequence[T], waves: Sequence[WaveSize], total: int | None = None) -> list[list[T]]:
    """``devices`` (in order) cut into waves: ``waves[0]`` devices first (the canary), then ``waves[1]``, ...,
    the last size repeating until every device has a wave; sizes in percent are of ``total`` (default
    ``len(devices)``: pass the whole inventory's size when some devices are left out, e.g. already current).

    ``plan_waves(list("abcdefghij"), [1, 5, "20%"])`` → ``[[a], [b..f], [g, h], [i, j]]``.
    An empty ``waves`` means one wave of everything. Pure; raises nothing.
    """
    pending = list(devices)
    total = len(pending) if total is None else total
    sizes = list(waves) or [len(pending) or 1]
    planned: list[list[T]] = []
    index = 0
    while pending:
        size = max(1, wave_size(sizes[index], total))
        planned.append(pending[:size])
        del pending[:size]
        index = min(index + 1, len(sizes) - 1)
    return planned


def parse_max_fail_percent(text: str) -> float:
    """``--max-fail-percent``: a number 0..100 (``"49"``, ``"12.5"``); WaveSpecError otherwise."""
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise WaveSpecError(f"--max-fail-percent: {text!r} is not a number (0..100)") from None
    if not 0 <= value <= 100:
        raise WaveSpecError(f"--max-fail-percent: {text!r} is not in 0..100")
    return value


def wave_exceeds_cap(failed: int, size: int, max_fail_percent: float) -> bool:
    """True when a wave of ``size`` devices with ``failed`` failures stops the rollout: the failure rate
    *exceeds* ``max_fail_percent`` (Ansible: ``failed / batch_size > pct / 100``), or the whole wave failed.
    With 0 (the default of ``eticket fleet deploy``) any failure stops; with 100 only a wave that failed
    entirely does."""
    if size <= 0 or failed <= 0:
        return False
    return failed == size or failed / size > max_fail_percent / 100.0
