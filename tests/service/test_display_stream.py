"""Screens whose connections drop while the display changes never lock the display up: the next receipt is
taken, a fresh screen follows, and SIGTERM still stops the appliance promptly (issue 10, "the display can
lock up")."""

from __future__ import annotations

import socket
import struct
import time

import httpx
import pytest

from tests.conftest import Appliance, samples

STREAMS = 8
ROUNDS = 60
LIVENESS_SECONDS = 1.0
"""The issue's bound: after the storm, a receipt and a fresh stream answer within a second."""


def _open_stream(appliance: Appliance) -> socket.socket:
    """A screen following the stream over a raw socket, once its first event has arrived."""
    sock = socket.create_connection(("127.0.0.1", appliance.port), timeout=5)
    sock.sendall(f"GET /api/v1/display/stream HTTP/1.1\r\nHost: device\r\n"
                 f"Authorization: Bearer {appliance.screen_token()}\r\n\r\n".encode())
    got = b""
    while b"event: state" not in got:
        chunk = sock.recv(65536)
        assert chunk, "the stream closed before its first event"
        got += chunk
    return sock


def _drop(sock: socket.socket) -> None:
    """The tablet left the Wi-Fi: the connection ends at once (RST, nothing more read)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _first_event_within(appliance: Appliance, seconds: float) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {appliance.screen_token()}"}
    with httpx.stream("GET", appliance.url + "/api/v1/display/stream", headers=headers,
                      timeout=seconds) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: "):
                import json

                state: dict[str, object] = json.loads(line[6:])
                return state
    raise AssertionError("the stream ended without an event")


def test_streams_dropped_around_display_changes_never_lock_the_display(appliance: Appliance,
                                                                       pos_token: str) -> None:
    pdf = samples("pdf")[0].read_bytes()
    auth = {"Authorization": f"Bearer {pos_token}"}

    def post() -> httpx.Response:
        return appliance.api.post("/api/v1/tickets", content=pdf, timeout=LIVENESS_SECONDS,
                                  headers={**auth, "Content-Type": "application/pdf"})

    assert post().status_code == 201  # warm: the TLS session and the PDF worker are up
    till = appliance.ssl_context().wrap_socket(socket.create_connection(("127.0.0.1", appliance.api_port)),
                                               server_hostname="device")
    clear = (f"DELETE /api/v1/display HTTP/1.1\r\nHost: device\r\nAuthorization: Bearer {pos_token}\r\n"
             "\r\n").encode()
    for round_ in range(ROUNDS):
        streams = [_open_stream(appliance) for _ in range(STREAMS)]
        # The till clears the screen; the tablets drop a little later each round (0 to 4 ms), so that some
        # drop while the change is being sent to them. Half of them stay and follow the change.
        till.sendall(clear)
        time.sleep((round_ % 20) * 0.0002)
        for sock in streams[::2]:
            _drop(sock)
        till.settimeout(10)
        try:
            answer = till.recv(4096)
        except TimeoutError:
            pytest.fail(f"round {round_}: DELETE /api/v1/display got no answer within 10 s (display locked up)")
        assert answer.startswith(b"HTTP/1.1 204"), f"round {round_}: DELETE /api/v1/display: {answer!r}"
        for sock in streams[1::2]:
            _drop(sock)
    till.close()

    started = time.monotonic()
    assert post().status_code == 201, "a receipt after the storm"
    state = _first_event_within(appliance, LIVENESS_SECONDS)
    assert state["scene"] == "ticket"
    assert time.monotonic() - started < 2 * LIVENESS_SECONDS

    assert appliance.proc is not None
    appliance.proc.terminate()
    try:
        appliance.proc.wait(10)
    except Exception:
        appliance.proc.kill()
        raise AssertionError("SIGTERM did not stop the appliance within 10 s") from None
    assert "Lock is not acquired" not in appliance.logs()
