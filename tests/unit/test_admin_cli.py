"""``eticket pairings``/``status`` talk to the appliance's admin socket: whatever it answers, one line."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.fixture
def plain_500(tmp_path: Path) -> Iterator[Path]:
    """A data dir whose admin.sock answers every request with a plain-text 500 (what an error outside the
    problem handlers gives), as a real Unix-socket server."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(tmp_path / "admin.sock"))
    server.listen(4)
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\n"
                             b"content-length: 21\r\nconnection: close\r\n\r\nInternal Server Error")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield tmp_path
    stop.set()
    server.close()
    thread.join(5)


@pytest.mark.parametrize("command", [["status"], ["pairings", "list"], ["screens", "list"]])
def test_a_plain_text_error_is_one_line_not_a_traceback(plain_500: Path, cli_env: dict[str, str],
                                                        command: list[str]) -> None:
    result = run_cli(*command, "--data-dir", str(plain_500), env=cli_env, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "eticket: error: the appliance answered 500: Internal Server Error"], result.stderr
