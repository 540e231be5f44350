"""Extra screens pair with a one-time link shown on the device screen; their tokens open the stream."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import Appliance, decode_qr_png, run_cli


def test_a_second_screen_pairs_by_the_link_on_screen_and_can_be_revoked(
    appliance: Appliance, cli_env: dict[str, str], tmp_path: Path
) -> None:
    added = run_cli("screens", "add", "--name", "Tablet", "--data-dir", str(appliance.data_dir), env=cli_env)
    assert "one-time link" in added.stdout
    shot = tmp_path / "link.png"
    run_cli("kiosk", "--data-dir", str(appliance.data_dir), "--snapshot", str(shot), env=cli_env)
    (link,) = decode_qr_png(shot)
    assert link.startswith(appliance.url + "/screen/claim/")

    page = httpx.get(link)  # opening (or previewing) the link spends nothing
    assert page.status_code == 200 and "<form" in page.text and "<script" not in page.text
    other = tmp_path / "second-screen"
    claimed = run_cli("kiosk", "--claim", link, "--data-dir", str(other), "--snapshot", str(tmp_path / "s.png"),
                      env=cli_env)
    assert "paired" in claimed.stdout
    assert (other / "kiosk.json").stat().st_mode & 0o777 == 0o600
    token = json.loads((other / "kiosk.json").read_text())["token"]
    stream = httpx.get(appliance.url + "/api/v1/display", headers={"Authorization": f"Bearer {token}"})
    assert stream.status_code == 200 and stream.json()["scene"] == "pairing"  # back from the link scene

    again = httpx.post(link, headers={"Accept": "application/json"})  # a retry within a minute: the same key
    assert again.status_code == 201 and again.json()["token"] == token

    (screen,) = json.loads(run_cli("screens", "list", "--json", "--data-dir", str(appliance.data_dir),
                                   env=cli_env).stdout)
    assert screen["name"] == "Tablet"
    run_cli("screens", "revoke", screen["id"], "--data-dir", str(appliance.data_dir), env=cli_env)
    refused = httpx.get(appliance.url + "/api/v1/display", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401
    assert httpx.post(link, headers={"Accept": "application/json"}).status_code == 403  # single use


def test_a_refused_screen_link_prints_the_devices_own_reason(
    appliance: Appliance, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """``eticket kiosk --claim`` with a used or unknown link says what the device said (its RFC 9457 detail and
    problem type), as ``eticket send`` does, not the HTTP library's text."""
    link = appliance.url + "/screen/claim/" + "A" * 22
    refused = run_cli("kiosk", "--claim", link, "--data-dir", str(tmp_path / "other"), env=cli_env, check=False)
    assert refused.returncode == 1
    assert "screen link is unknown, used or expired" in refused.stderr and "pairing-refused" in refused.stderr
    assert "mozilla" not in refused.stderr and "Client error" not in refused.stderr
    assert not (tmp_path / "other" / "kiosk.json").exists()


def test_screen_links_cannot_be_guessed(appliance: Appliance) -> None:
    r = httpx.post(appliance.url + "/screen/claim/" + "A" * 22, headers={"Accept": "application/json"})
    assert r.status_code == 403 and r.json()["type"].endswith("/pairing-refused")
    page = httpx.post(appliance.url + "/screen/claim/x", headers={"Accept-Language": "en"})
    assert page.status_code == 403 and "not valid" in page.text


class _Stream:
    """One display stream read in a background thread: every line with its arrival time, and when it ended."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        import threading

        self.lines: list[str] = []
        self.ended_at: float | None = None
        self.started = threading.Event()
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, headers or {}), daemon=True)
        self._thread.start()

    def _run(self, url: str, headers: dict[str, str]) -> None:
        import time

        try:
            with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(5, read=40)) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    self.lines.append(line)
                    self.started.set()
        finally:
            self.ended_at = time.monotonic()
            self.ended.set()

    def text(self) -> str:
        return "\n".join(self.lines)


def test_revoking_a_screen_ends_its_open_streams_at_once(
    appliance: Appliance, pos_token: str, cli_env: dict[str, str]
) -> None:
    """The shop owner revokes a tablet that still has the screen open: its streams (header or ``?key=``, as
    the web screen uses) end within a second and never carry the next receipt's URL; the local kiosk's
    stream goes on. The revoke is logged, without the token."""
    import time

    from tests.conftest import samples

    data_dir = str(appliance.data_dir)
    run_cli("screens", "add", "--name", "Tablet", "--data-dir", data_dir, env=cli_env)
    link = str(appliance.display()["screen_link"]["url"])  # type: ignore[index]
    claimed = httpx.post(link, headers={"Accept": "application/json"}).json()
    token, screen_id = claimed["token"], claimed["screen_id"]
    stream_url = appliance.url + "/api/v1/display/stream"
    by_header = _Stream(stream_url, {"Authorization": f"Bearer {token}"})
    by_key = _Stream(f"{stream_url}?key={token}")
    kiosk = _Stream(stream_url, {"Authorization": f"Bearer {appliance.screen_token()}"})
    for stream in (by_header, by_key, kiosk):
        assert stream.started.wait(10), "the stream sent no state"

    run_cli("screens", "revoke", screen_id, "--data-dir", data_dir, env=cli_env)
    revoked_at = time.monotonic()
    for stream in (by_header, by_key):
        assert stream.ended.wait(1.0), "a revoked screen's stream is still open a second later"
        assert stream.ended_at is not None and stream.ended_at - revoked_at < 1.0
    sent = appliance.api.post("/api/v1/tickets", content=samples("pdf")[0].read_bytes(),
                              headers={"Authorization": f"Bearer {pos_token}",
                                       "Content-Type": "application/pdf"}).json()
    deadline = time.monotonic() + 5
    while sent["url"] not in kiosk.text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sent["url"] in kiosk.text() and not kiosk.ended.is_set()  # the local kiosk is not affected
    assert sent["url"] not in by_header.text() + by_key.text()
    again = httpx.get(f"{stream_url}?key={token}")
    assert again.status_code == 401
    logs = appliance.logs()
    assert f"revoked screen {screen_id}" in logs and token not in logs


def test_an_open_screen_link_stays_on_screen_through_clears_and_receipts(
    appliance: Appliance, pos_token: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """A till's clear or a receipt in between does not wipe the "add a screen" QR while its link is open: the
    screen comes back to it; once claimed, back to rest (idle on a paired device)."""
    from tests.conftest import samples

    auth = {"Authorization": f"Bearer {pos_token}"}
    run_cli("screens", "add", "--name", "Tablet", "--data-dir", str(appliance.data_dir), env=cli_env)
    state = appliance.display()
    assert state["scene"] == "screen-link"
    link = str(state["screen_link"]["url"])  # type: ignore[index]

    assert appliance.api.delete("/api/v1/display", headers=auth).status_code == 204  # the till clears
    assert appliance.display()["scene"] == "screen-link"

    posted = appliance.api.post("/api/v1/tickets", content=samples("pdf")[0].read_bytes(),
                                headers={**auth, "Content-Type": "application/pdf"})
    assert posted.status_code == 201 and appliance.display()["scene"] == "ticket"
    assert appliance.api.delete("/api/v1/display", headers=auth).status_code == 204
    after = appliance.display()
    assert after["scene"] == "screen-link" and after["screen_link"]["url"] == link  # type: ignore[index]

    run_cli("kiosk", "--claim", link, "--data-dir", str(tmp_path / "other"), "--snapshot",
            str(tmp_path / "s.png"), env=cli_env)
    assert appliance.display()["scene"] == "idle"
    assert appliance.api.delete("/api/v1/display", headers=auth).status_code == 204
    assert appliance.display()["scene"] == "idle"


def test_screen_names_follow_the_shop_names_rules_and_are_refused_not_cut(
    appliance: Appliance, cli_env: dict[str, str]
) -> None:
    """A blank name, one with a newline or a bidi override, or one over 64 characters is refused with the fault
    named (CLI: non-zero exit; admin API: an RFC 9457 problem); no link opens. 64 characters are kept whole."""
    from urllib.parse import quote

    faults = {"   ": "blank", "a\nb": "visible characters", "a\u202eb": "bidi override",
              "x" * 65: "65 characters long; at most 64"}
    for name, fault in faults.items():
        refused = run_cli("screens", "add", "--name", name, "--data-dir", str(appliance.data_dir), env=cli_env,
                          check=False)
        assert refused.returncode != 0 and "screen name" in refused.stderr and fault in refused.stderr, name
        assert "\u202e" not in refused.stderr and "a\nb" not in refused.stderr
        problem = appliance.admin("POST", f"/screens?name={quote(name)}")
        assert problem.status_code == 400 and problem.json()["type"].endswith("/bad-request")
        assert fault in problem.json()["detail"]
    assert appliance.display()["scene"] == "pairing"  # no link was opened

    longest = "Tablet near the door, " + "y" * 42
    added = json.loads(run_cli("screens", "add", "--json", "--name", longest, "--data-dir",
                               str(appliance.data_dir), env=cli_env).stdout)
    assert len(longest) == 64 and added["name"] == longest
    assert appliance.display()["screen_link"]["name"] == longest  # type: ignore[index]
