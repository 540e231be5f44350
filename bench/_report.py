"""Writing a benchmark's results: the JSON file and the table between its markers in the README."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def publish(data: dict[str, Any], table: str, out: Path, readme: Path, marker: str) -> None:
    """Write ``data`` to ``out`` and put ``table`` between ``<!-- bench:<marker>:begin/end -->`` in ``readme``
    (left alone when the markers are absent); print the table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    begin, end = f"<!-- bench:{marker}:begin -->", f"<!-- bench:{marker}:end -->"
    text = readme.read_text() if readme.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        readme.write_text(f"{head}{begin}\n{table}\n{end}{tail}")
    print(table)
