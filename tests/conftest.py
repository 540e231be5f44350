"""Shared fixtures: real appliance processes on loopback, the CLI, QR decoding from pixels.

mDNS stays on loopback (``--mdns-interfaces 127.0.0.1``): nothing leaves this machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = Path(os.environ.get("ETICKET_SAMPLES", REPO.parent / "shared" / "samples"))
IN_CI = os.environ.get("CI", "").lower() == "true"
ETICKET = [sys.executable, "-m", "appliance.cli"]


def require(condition: bool, reason: str) -> None:
    """Skip with ``reason`` on a desk when a system part is missing; in CI (CI=true) fail instead."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


def wait_for(predicate: object, timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``predicate()`` until it is true, or fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what}")


def wait_healthy(proc: subprocess.Popen[bytes], url: str, timeout: float, what: str,
                 logs: Callable[[], str]) -> None:
    """Wait until ``url/healthz`` answers 200; RuntimeError with the log tail if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {logs()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready in {timeout} s: {logs()[-2000:]}")


def samples(kind: str) -> list[Path]:
    """The sample files of ``kind`` (``pdf``, ``pdf-bad``, ``escpos``), sorted."""
    folder = SAMPLES / kind
    return sorted(folder.glob("*")) if folder.is_dir() else []


def link_secret(url: str) -> str:
    """The secret of a receipt link: the fragment of ``<relay>/r#<secret>``, the last segment of ``…/r/<token>``."""
    return url.rpartition("#")[2] if "/r#" in url else url.rsplit("/", 1)[1]


def fetch_link(url: str, client: httpx.Client | None = None) -> httpx.Response:
    """What a phone gets from a receipt link, in Python: a ``/r/<token>`` link (the device on the LAN, a v1
    relay link) is one GET; a blind ``<relay>/r#<secret>`` link does what the relay's download page does
    (derive, ``GET /o/<rid>?issued=``, decrypt, ``POST /api/v1/downloaded/<rid>``) and answers the PDF as a 200
    with ``application/pdf``, or the object request's own response when there is no PDF. The page itself is
    proven in Chromium (tests/relay/test_blind_page.py)."""
    http = client or httpx.Client(timeout=10)
    if "/r#" not in url:
        return http.get(url)
    from cryptography.exceptions import InvalidTag

    from relay.crypto import parse_token

    base, _, secret = url.partition("/r#")
    keys = parse_token(secret)
    got = http.get(f"{base}/o/{keys.rid}", params={"issued": keys.issued})
    if got.status_code != 200:
        return got
    try:
        pdf = keys.open(got.content)
    except InvalidTag:
        return httpx.Response(422, content=b"the object does not open with this secret")
    http.post(f"{base}/api/v1/downloaded/{keys.rid}")
    return httpx.Response(200, content=pdf, headers={"content-type": "application/pdf"})


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def decode_qr_png(path: Path) -> list[str]:
    """Every QR text zxing-cpp reads from the PNG at ``path``."""
    import zxingcpp
    from PIL import Image

    with Image.open(path) as image:
        return [r.text for r in zxingcpp.read_barcodes(image.convert("L"), formats=zxingcpp.BarcodeFormat.QRCode)]


def loopback_multicast() -> bool:
    """True when ``lo`` carries multicast (turned on here when we are root)."""
    if os.geteuid() == 0:
        subprocess.run(["ip", "link", "set", "lo", "multicast", "on"], check=False)
    out = subprocess.run(["ip", "link", "show", "lo"], capture_output=True, text=True, check=False).stdout
    return "MULTICAST" in out


@dataclass
class Appliance:
    """One real ``eticket serve`` process on 127.0.0.1: plain HTTP (downloads, screens) on ``port``, the
    HTTPS POS API on ``api_port``."""

    data_dir: Path
    port: int
    api_port: int = field(default_factory=free_port)
    extra: list[str] = field(default_factory=list)
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    _api: httpx.Client | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def api_address(self) -> str:
        return f"127.0.0.1:{self.api_port}"

    def cert_pem(self) -> str:
        return (self.data_dir / "tls" / "cert.pem").read_text()

    def ssl_context(self) -> ssl.SSLContext:
        """A client context pinned to this device's certificate (what a paired POS uses)."""
        from appliance.identity import pinned_client_context

        return pinned_client_context(self.cert_pem())

    @property
    def api(self) -> httpx.Client:
        """An HTTPS client for the POS API, pinned to the device certificate (no auth header by default)."""
        if self._api is None:
            self._api = httpx.Client(base_url=self.api_url, verify=self.ssl_context(), timeout=30)
        return self._api

    def start(self, timeout: float = 20.0) -> Appliance:
        self.log_path = self.log_path or self.data_dir.parent / f"serve-{self.port}.log"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*ETICKET, "serve", "--data-dir", str(self.data_dir), "--listen", self.address,
             "--api-listen", self.api_address,
             "--mdns-interfaces", "127.0.0.1", "--log-level", "debug", *self.extra],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
        )
        wait_healthy(self.proc, self.url, timeout, "eticket serve", self.logs)
        return self

    def stop(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def screen_token(self) -> str:
        return str(json.loads((self.data_dir / "kiosk.json").read_text())["token"])

    def display(self) -> dict[str, object]:
        r = httpx.get(self.url + "/api/v1/display", headers={"Authorization": f"Bearer {self.screen_token()}"})
        r.raise_for_status()
        result: dict[str, object] = r.json()
        return result

    def pairing_code(self) -> str:
        state = self.display()
        assert state["scene"] == "pairing", state
        return str(state["pairing"]["code"])  # type: ignore[index]

    def pairing_uri(self) -> str:
        state = self.display()
        assert state["scene"] == "pairing", state
        return str(state["pairing"]["uri"])  # type: ignore[index]

    def pairing_secret(self) -> str:
        from appliance.pairing import parse_pairing_uri

        return parse_pairing_uri(self.pairing_uri())["s"]

    def pair(self, name: str = "test-till") -> str:
        """Pair as a POS would after scanning the QR (secret over the pinned channel); return the token."""
        r = self.api.post("/api/v1/pair", json={"secret": self.pairing_secret(), "name": name})
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    def admin(self, method: str, path: str) -> httpx.Response:
        """Call the local admin socket, as ``eticket pairings`` does."""
        transport = httpx.HTTPTransport(uds=str(self.data_dir / "admin.sock"))
        with httpx.Client(transport=transport, base_url="http://device") as client:
            return client.request(method, path)

    def ticket_rows(self) -> int:
        """Tickets in the database, read directly (read-only) to prove nothing was stored."""
        db = sqlite3.connect(f"file:{self.data_dir / 'eticket.sqlite3'}?mode=ro", uri=True)
        try:
            return int(db.execute("SELECT COUNT(*) FROM tickets").fetchone()[0])
        finally:
            db.close()


@pytest.fixture(scope="session")
def mdns_loopback() -> None:
    """mDNS tests need multicast on loopback."""
    require(loopback_multicast(), "multicast on lo is off and we are not root to turn it on")


@pytest.fixture
def appliance_factory(tmp_path: Path, mdns_loopback: None) -> Iterator[object]:
    """Start appliances: ``appliance_factory(*extra_flags, data_dir=None)``; all are stopped afterwards."""
    started: list[Appliance] = []

    def make(*extra: str, data_dir: Path | None = None, port: int | None = None) -> Appliance:
        app = Appliance(data_dir=data_dir or tmp_path / f"data{len(started)}", port=port or free_port(),
                        extra=list(extra))
        started.append(app)
        return app.start()

    yield make
    for app in started:
        app.stop()


@pytest.fixture
def appliance(appliance_factory: object) -> Appliance:
    """One running, unpaired appliance with default settings."""
    return appliance_factory()  # type: ignore[operator,no-any-return]


@pytest.fixture
def pos_token(appliance: Appliance) -> str:
    """The appliance above, paired; the POS's bearer token."""
    return appliance.pair()


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for ``eticket`` CLI runs with a private config dir (POS credentials)."""
    env = dict(os.environ)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "pos-config")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(
    *args: str, env: dict[str, str], check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``eticket ARGS`` as a separate process."""
    result = subprocess.run([*ETICKET, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check and result.returncode != 0:
        raise AssertionError(f"eticket {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result
