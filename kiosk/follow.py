"""Following the appliance's display stream (Server-Sent Events) from a background thread."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger(__name__)

BACKOFF_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)
"""Delays between reconnection attempts; the last one repeats."""
READ_TIMEOUT_SECONDS = 40.0
"""Longer than the appliance's 15 s keepalive: a silent stream this long is a dead connection."""
KIOSK_FILE = "kiosk.json"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the appliance is and the screen token that lets us read its state. ``claimed``: the token came
    from a screen link (``--claim``), so a refusal is final (the screen was revoked), not a restart of the
    appliance."""

    url: str
    token: str
    claimed: bool = False


def read_endpoint(data_dir: Path) -> Endpoint:
    """Read ``<data_dir>/kiosk.json`` (written by the appliance at start, mode 0600).

    Raises:
        OSError: the file is missing or unreadable (the appliance has not started yet).
        ValueError: the file is not the expected JSON.
    """
    raw = json.loads((data_dir / KIOSK_FILE).read_text())
    return Endpoint(url=str(raw["url"]), token=str(raw["token"]), claimed=raw.get("claimed") is True)


def claim_screen(link: str, data_dir: Path, timeout: float = 10.0) -> Endpoint:
    """Spend a one-time screen link (``eticket screens add`` on the device) and keep the screen token in
    ``<data_dir>/kiosk.json`` (mode 0600), so this kiosk follows that appliance from now on.

    Raises:
        httpx.HTTPError: unreachable or timed out.
        appliance.client.RefusedError: the device refused the link (used, expired, unknown): its RFC 9457
            problem detail (``detail``, ``slug`` e.g. ``pairing-refused``, ``status``).
        ValueError: not a screen link.
    """
    from urllib.parse import urlsplit

    from appliance._paths import write_private
    from appliance.client._api import _refusal

    parts = urlsplit(link)
    if parts.scheme not in ("http", "https") or not parts.path.startswith("/screen/claim/"):
        raise ValueError("not a screen link (expected http://<device>/screen/claim/<secret>)")
    response = httpx.post(link, headers={"Accept": "application/json"}, timeout=timeout)
    if response.is_error:
        raise _refusal(response)
    endpoint = Endpoint(url=f"{parts.scheme}://{parts.netloc}", token=str(response.json()["token"]), claimed=True)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(data_dir / KIOSK_FILE, json.dumps({"url": endpoint.url, "token": endpoint.token,
                                                     "claimed": True}))
    return endpoint


def fetch_state(endpoint: Endpoint, timeout: float = 5.0) -> dict[str, Any]:
    """``GET /api/v1/display`` once.

    Raises:
        httpx.HTTPError: unreachable or refused.
    """
    response = httpx.get(f"{endpoint.url}/api/v1/display", headers={"Authorization": f"Bearer {endpoint.token}"},
                         timeout=timeout)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def iter_events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """Parse SSE lines (WHATWG HTML §9.2.6) into ``(event, data)``; comments are skipped."""
    event, data = "message", list[str]()
    for line in lines:
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", list[str]()
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)


REFUSALS_BEFORE_GIVING_UP = 3
SCREEN_REMOVED_LOG = (
    "the device no longer accepts this screen: it was revoked ('eticket screens revoke'), or the device lost its "
    "screen pairings. To show receipts here again, run 'eticket screens add' on the device and start this screen "
    "with 'eticket kiosk --claim <the new link>'")


class Follower:
    """Keeps ``state`` equal to the appliance's display state; ``None`` while disconnected.

    ``on_change`` is called (from the follower thread) after every change. Reconnects with backoff; re-reads
    ``kiosk.json`` each time, since the appliance makes a new screen token when it restarts. When the same
    token is refused (401/403) REFUSALS_BEFORE_GIVING_UP times in a row, :attr:`refused` is set: on a device
    the kiosk holds a copy of the token made when its service started, so only a restart brings a fresh one.
    A claimed screen's token (:attr:`Endpoint.claimed`) is never made again: :attr:`revoked` is set instead
    (the screen says it was removed, also after a restart) and the follower keeps looking, slowly, so that
    pairing the screen again (``eticket kiosk --claim`` writes a new ``kiosk.json``) brings it back.
    :attr:`lang` is the language of the last state seen (for that message).
    """

    def __init__(self, data_dir: Path, on_change: Any = None) -> None:
        self._data_dir = data_dir
        self._on_change = on_change
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state: dict[str, Any] | None = None
        self._client: httpx.Client | None = None
        self._thread = threading.Thread(target=self._run, name="display-follower", daemon=True)
        self.refused = threading.Event()
        self.revoked = threading.Event()
        self.lang: str | None = None

    @property
    def state(self) -> dict[str, Any] | None:
        """The latest state, or None while not connected."""
        with self._lock:
            return self._state

    def start(self) -> None:
        """Start following in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop following and close the connection."""
        self._stop.set()
        client = self._client
        if client is not None:
            client.close()

    def _set(self, state: dict[str, Any] | None) -> None:
        with self._lock:
            changed = state != self._state
            self._state = state
            if state is not None and isinstance(state.get("lang"), str):
                self.lang = state["lang"]
        if changed and self._on_change is not None:
            self._on_change()

    def _run(self) -> None:
        failures = 0
        refusals: tuple[str, int] = ("", 0)
        while not self._stop.is_set():
            try:
                endpoint = read_endpoint(self._data_dir)
                self._follow(endpoint)
                failures = 0
            except httpx.HTTPStatusError as exc:
                failures += 1
                if exc.response.status_code in (401, 403):
                    token = endpoint.token
                    refusals = (token, refusals[1] + 1 if refusals[0] == token else 1)
                    if refusals[1] >= REFUSALS_BEFORE_GIVING_UP and endpoint.claimed:
                        if not self.revoked.is_set():
                            log.error(SCREEN_REMOVED_LOG)
                            self.revoked.set()
                            if self._on_change is not None:
                                self._on_change()
                    elif refusals[1] >= REFUSALS_BEFORE_GIVING_UP:
                        log.warning("the appliance refuses our screen token (it restarted?): asking for a restart")
                        self.refused.set()
                        if self._on_change is not None:
                            self._on_change()
            except (OSError, ValueError, KeyError, httpx.HTTPError) as exc:
                # Appliance not started yet, restarting, or our token is stale: show "connecting" and retry.
                log.debug("display stream unavailable: %s", exc)
                failures += 1
            self._set(None)
            self._stop.wait(BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS) - 1)])

    def _follow(self, endpoint: Endpoint) -> None:
        timeout = httpx.Timeout(5.0, read=READ_TIMEOUT_SECONDS)
        with httpx.Client(timeout=timeout) as client:
            self._client = client
            headers = {"Authorization": f"Bearer {endpoint.token}", "Accept": "text/event-stream"}
            with client.stream("GET", f"{endpoint.url}/api/v1/display/stream", headers=headers) as response:
                response.raise_for_status()
                if self.revoked.is_set():  # paired again (a new kiosk.json)
                    log.info("this screen was paired again")
                    self.revoked.clear()
                for event, data in iter_events(response.iter_lines()):
                    if event == "state":
                        self._set(json.loads(data))
                    if self._stop.is_set():
                        return
