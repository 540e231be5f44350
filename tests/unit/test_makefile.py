"""``make run`` installs what running needs; ``make test`` (and lint, bench) the test tools as well.

``make -n`` (GNU make's dry run) on a copy of the Makefile in an empty checkout prints the commands each
target would run, so the install lines are read without installing anything.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, require


def _dry_run(tmp_path: Path, target: str) -> list[str]:
    require(shutil.which("make") is not None, "GNU make is not installed")
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    done = subprocess.run(["make", "-n", target], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if "pip install" in line and "--upgrade pip" not in line]


def test_make_run_installs_the_runtime_dependencies_only(tmp_path: Path) -> None:
    """A newcomer's ``make run`` in a fresh clone: the project and its dependencies, not pytest, mypy,
    playwright... (which made a 745 MB .venv)."""
    assert _dry_run(tmp_path, "run") == [".venv/bin/python -m pip install --quiet -e ."]


@pytest.mark.parametrize("target", ["test", "lint", "bench"])
def test_the_test_targets_install_the_test_tools(tmp_path: Path, target: str) -> None:
    assert _dry_run(tmp_path, target) == [".venv/bin/python -m pip install --quiet -e '.[test]'"]
