"""Fixtures for tests across hosts: a LAN of network namespaces made (and removed) by the test itself."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.conftest import require
from tests.network.netns import Lan, netns_available


@pytest.fixture
def lan() -> Iterator[Lan]:
    reason = netns_available()
    require(reason is None, reason or "")
    require(shutil.which("curl") is not None, "curl is needed inside the namespaces")
    network = Lan()
    try:
        yield network
    finally:
        network.close()


@pytest.fixture
def pos_env(cli_env: dict[str, str]) -> dict[str, str]:
    """Environment of the POS host's CLI: its own credentials directory (the shared ``cli_env``)."""
    return cli_env
