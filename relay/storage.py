"""Where a relay keeps sealed receipts: a local directory, or an S3-compatible bucket shared by replicas.

Every replica is stateless: everything it must agree on with the others lives in storage, under these keys
(``rid`` and device ids are base64url, so keys are plain ASCII)::

    o/<rid>                         a sealed receipt's bytes alone (no metadata), served as a static object
    r/<rid>                         the receipt's record; metadata: device, expires (Unix s), sha256, created,
                                    object ("o": the bytes are o/<rid>; absent: the bytes are this object's
                                    data, as relays before blind links stored them)
    d/<rid>                         the receipt was downloaded; metadata: at (Unix s)
    q/<device>/<YYYYMMDD>/<rid>.<n> quota ledger: one empty object per receipt accepted that UTC day, n bytes
    n/<net>/<YYYYMMDD>/r/<rid>.<n>  network quota ledger: the same per client network, any device key
    n/<net>/<YYYYMMDD>/k/<device>   a device key first seen from this network that day
    k/<device>                      this device key stored a receipt before (metadata: since, YYYYMMDD)
    b/<device>                      the operator blocked this device; metadata: reason
    t/<rid>                         tombstone of an expired receipt; metadata: until (Unix s)

Quota keys are explained in :mod:`relay.quotas`. ``o/<rid>`` is written before ``r/<rid>`` and deleted after it,
so a record always has its bytes. In a directory, ``o/`` holds plain files that a web server can serve as they
are (docs/relay.md): the root and ``o/`` may be traversed but not listed (0711), objects are readable (0644: they
are ciphertext under unguessable names); everything else stays private to the relay (0700/0600).

Operations are blocking (boto3 is); the relay calls them from worker threads.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

OBJECT_CACHE_CONTROL = "public, max-age=86400, immutable"
"""Caching of a sealed receipt's bytes: they never change under their id (RFC 8246 ``immutable``); a day bounds
how long a shared cache may keep ciphertext after the receipt expired (useless without the secret)."""


class DamagedObject(ValueError):
    """A stored object that cannot be parsed (truncated file, bad metadata)."""


_KEY = re.compile(r"[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-.]+)*")


def check_key(key: str) -> str:
    """Return ``key`` if it is a storage key this module writes; ValueError otherwise (no ``..``, no ``//``)."""
    if not _KEY.fullmatch(key) or ".." in key:
        raise ValueError(f"bad storage key {key!r}")
    return key


class Storage(Protocol):
    """Objects with small string metadata. Missing objects are None, never an exception."""

    def put(self, key: str, data: bytes, meta: dict[str, str]) -> None:
        """Write ``key`` atomically (readers see the old object or the new one, never a part)."""

    def get(self, key: str) -> tuple[bytes, dict[str, str]] | None:
        """``(data, metadata)`` or None."""

    def head(self, key: str) -> dict[str, str] | None:
        """Metadata or None."""

    def delete(self, key: str) -> None:
        """Remove ``key``; no error if absent."""

    def keys(self, prefix: str) -> Iterator[str]:
        """Every key starting with ``prefix`` (which ends with ``/``)."""

    def describe(self) -> str:
        """For the log: where objects live (no credentials)."""

    def put_object(self, rid: str, data: bytes) -> None:
        """Write a sealed receipt's bytes as ``o/<rid>``, atomically, with no metadata."""

    def get_object(self, rid: str) -> bytes | None:
        """The bytes of ``o/<rid>``, or None."""

    def delete_object(self, rid: str) -> None:
        """Remove ``o/<rid>``; no error if absent."""


OBJECTS = "o"
"""The prefix of static objects (sealed receipts' bytes alone)."""


class DirStorage:
    """Objects as files under ``root``: 4-byte metadata length, metadata JSON, data. Written to a temporary
    file, fsync'd and renamed, so a power cut leaves the old object or the new one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o711)
        (root / OBJECTS).mkdir(exist_ok=True, mode=0o711)
        for folder in (root, root / OBJECTS):  # a web server's user may reach o/<rid>, never list or read the rest
            if folder.stat().st_mode & 0o777 != 0o711 and folder.stat().st_uid == os.geteuid():
                folder.chmod(0o711)
        self._tighten_private_dirs()

    def _tighten_private_dirs(self) -> None:
        """Every directory but the root and ``o/`` made 0700, also those an earlier release left 0755 (it gave
        parents the umask's mode): directories only, so a store of many receipts is walked quickly."""
        pending = [entry.path for entry in os.scandir(self.root)
                   if entry.is_dir(follow_symlinks=False) and entry.name != OBJECTS]
        while pending:
            path = pending.pop()
            info = os.stat(path, follow_symlinks=False)
            if info.st_mode & 0o077 and info.st_uid == os.geteuid():
                os.chmod(path, 0o700)
            with os.scandir(path) as entries:
                pending += [e.path for e in entries if e.is_dir(follow_symlinks=False)]

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def object_path(self, rid: str) -> Path:
        """The file holding ``o/<rid>`` (which may not exist): what a web server serves for ``/o/<rid>``."""
        return self._path(f"{OBJECTS}/{rid}")

    def _write(self, path: Path, content: bytes, mode: int) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(content)
                out.flush()
                os.fchmod(out.fileno(), mode)
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def put(self, key: str, data: bytes, meta: dict[str, str]) -> None:
        path = self._path(key)
        self._make_private_dirs(path.parent)
        header = json.dumps(meta, sort_keys=True).encode()
        self._write(path, struct.pack(">I", len(header)) + header + data, 0o600)

    def _make_private_dirs(self, directory: Path) -> None:
        """``directory`` and every missing parent below the root, each 0700 (``Path.mkdir(parents=True)`` gives
        the parents the umask's mode: a web server's user could then list quota ledgers' addresses)."""
        missing = []
        while not directory.is_dir() and directory != self.root:
            missing.append(directory)
            directory = directory.parent
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):
                path.mkdir(mode=0o700)
            os.chmod(path, 0o700)

    def put_object(self, rid: str, data: bytes) -> None:
        self._write(self.object_path(rid), data, 0o644)

    def get_object(self, rid: str) -> bytes | None:
        try:
            return self.object_path(rid).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def delete_object(self, rid: str) -> None:
        self.object_path(rid).unlink(missing_ok=True)

    def _read(self, key: str, with_data: bool) -> tuple[bytes, dict[str, str]] | None:
        try:
            with open(self._path(key), "rb") as f:
                head = f.read(4)
                if len(head) != 4:
                    raise DamagedObject(f"{key}: truncated header")
                (n,) = struct.unpack(">I", head)
                raw = f.read(n)
                if len(raw) != n or n > 64 * 1024:
                    raise DamagedObject(f"{key}: truncated metadata")
                try:
                    meta = json.loads(raw)
                except ValueError as exc:
                    raise DamagedObject(f"{key}: metadata is not JSON") from exc
                if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
                    raise DamagedObject(f"{key}: metadata is not a string map")
                return (f.read() if with_data else b""), meta
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def get(self, key: str) -> tuple[bytes, dict[str, str]] | None:
        return self._read(key, True)

    def head(self, key: str) -> dict[str, str] | None:
        found = self._read(key, False)
        return None if found is None else found[1]

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self, prefix: str) -> Iterator[str]:
        base = self.root / check_key(prefix.rstrip("/"))
        if not base.is_dir():
            return
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if not name.startswith(".tmp-"):
                    yield str(Path(dirpath, name).relative_to(self.root))

    def describe(self) -> str:
        return f"directory {self.root}"

    def remove_stale_temporaries(self, older_than: float) -> int:
        """Delete ``.tmp-*`` files (writes interrupted by a crash) last modified before ``older_than``."""
        removed = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                path = Path(dirpath, name)
                if name.startswith(".tmp-") and path.stat().st_mtime < older_than:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed


class S3Storage:
    """Objects in an S3-compatible bucket through boto3; metadata as ``x-amz-meta-*`` headers.

    Credentials and region come from boto3's usual sources (``AWS_ACCESS_KEY_ID``…, ``~/.aws``).
    ``endpoint_url`` points at a non-AWS server (SeaweedFS, MinIO, Garage, Ceph RGW).
    """

    def __init__(self, bucket: str, endpoint_url: str | None = None, prefix: str = "") -> None:
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix, self.endpoint_url = bucket, prefix, endpoint_url
        self._s3: Any = boto3.client(
            "s3", endpoint_url=endpoint_url,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=20,
                          s3={"addressing_style": "path"}),
        )

    def _missing(self, exc: Exception) -> bool:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound")

    def put(self, key: str, data: bytes, meta: dict[str, str]) -> None:
        self._s3.put_object(Bucket=self.bucket, Key=self.prefix + check_key(key), Body=data, Metadata=meta)

    def get(self, key: str) -> tuple[bytes, dict[str, str]] | None:
        try:
            obj = self._s3.get_object(Bucket=self.bucket, Key=self.prefix + check_key(key))
        except self._s3.exceptions.ClientError as exc:
            if self._missing(exc):
                return None
            raise
        return obj["Body"].read(), dict(obj.get("Metadata", {}))

    def head(self, key: str) -> dict[str, str] | None:
        try:
            obj = self._s3.head_object(Bucket=self.bucket, Key=self.prefix + check_key(key))
        except self._s3.exceptions.ClientError as exc:
            if self._missing(exc):
                return None
            raise
        return dict(obj.get("Metadata", {}))

    def delete(self, key: str) -> None:
        self._s3.delete_object(Bucket=self.bucket, Key=self.prefix + check_key(key))

    def put_object(self, rid: str, data: bytes) -> None:
        self._s3.put_object(Bucket=self.bucket, Key=self.prefix + check_key(f"{OBJECTS}/{rid}"), Body=data,
                            ContentType="application/octet-stream", CacheControl=OBJECT_CACHE_CONTROL)

    def get_object(self, rid: str) -> bytes | None:
        found = self.get(f"{OBJECTS}/{rid}")
        return None if found is None else found[0]

    def delete_object(self, rid: str) -> None:
        self.delete(f"{OBJECTS}/{rid}")

    def keys(self, prefix: str) -> Iterator[str]:
        full = self.prefix + check_key(prefix.rstrip("/")) + "/"
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"][len(self.prefix):]

    def ensure_bucket(self, retention_days: int) -> str:
        """Create the bucket if missing and ask for a lifecycle rule expiring every object after
        ``retention_days`` + 1 days (a backstop behind the relay's own sweep). Returns what happened, for the
        log: some S3-compatible servers do not implement lifecycle rules."""
        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except self._s3.exceptions.ClientError:
            self._s3.create_bucket(Bucket=self.bucket)
        rule = {"ID": "eticket-expiry", "Status": "Enabled", "Filter": {"Prefix": self.prefix},
                "Expiration": {"Days": retention_days + 1}}
        try:
            self._s3.put_bucket_lifecycle_configuration(Bucket=self.bucket,
                                                        LifecycleConfiguration={"Rules": [rule]})
        except self._s3.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            return f"lifecycle rule not set ({code}); the relay's own sweep expires receipts"
        return f"lifecycle rule: objects expire after {retention_days + 1} days"

    def describe(self) -> str:
        return f"s3 bucket {self.bucket} at {self.endpoint_url or 'AWS'}"


def open_storage(spec: str, endpoint_url: str | None = None) -> DirStorage | S3Storage:
    """``s3://bucket[/prefix]`` -> :class:`S3Storage`; anything else is a directory path."""
    if spec.startswith("s3://"):
        bucket, _, prefix = spec[5:].partition("/")
        if not bucket:
            raise ValueError("s3:// needs a bucket name: s3://eticket-receipts")
        return S3Storage(bucket, endpoint_url, prefix.strip("/") + "/" if prefix.strip("/") else "")
    return DirStorage(Path(spec))
