"""The POS's ``devices.json`` ($XDG_CONFIG_HOME/eticket) damaged by hand or on disk: every command that uses
it says which device's entry in which file is damaged and to pair again, instead of a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Appliance, run_cli, samples


@pytest.mark.parametrize("token", ["tökén", "a b", ""])
def test_a_damaged_token_is_named_instead_of_a_traceback(appliance: Appliance, cli_env: dict[str, str],
                                                          token: str) -> None:
    run_cli("pair", "--uri", appliance.pairing_uri(), env=cli_env)
    path = Path(cli_env["XDG_CONFIG_HOME"]) / "eticket" / "devices.json"
    data = json.loads(path.read_text())
    (device_id,) = data["devices"]
    data["devices"][device_id]["token"] = token
    path.write_text(json.dumps(data))
    commands = (["send", str(samples("pdf")[0])], ["clear"],
                ["discover", "--timeout", "1", "--mdns-interfaces", "127.0.0.1"])
    for command in commands:
        result = run_cli(*command, env=cli_env, check=False)
        assert result.returncode == 1, (command, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        assert f"the token for {device_id} in {path} is damaged; pair again" in result.stderr, (command, result)


def test_a_file_that_is_not_json_is_named(appliance: Appliance, cli_env: dict[str, str]) -> None:
    path = Path(cli_env["XDG_CONFIG_HOME"]) / "eticket" / "devices.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"devices": {"dev-1": {"name": ')  # cut short
    result = run_cli("clear", env=cli_env, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"{path} is damaged" in result.stderr and "pair again" in result.stderr
