"""Plain helpers shared by the light commands (kiosk, POS client) and the server: no heavy imports here."""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from pathlib import Path


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/eticket`` (``~/.local/share/eticket``): where a desk keeps the appliance's state."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "eticket"


def write_private(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename) with mode 0600: keys, tokens
    and credentials are never readable by others, nor ever half-written."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def split_host_port(value: str, default_port: int = 8080) -> tuple[str, int]:
    """Split ``HOST:PORT``, ``[V6]:PORT``, ``HOST`` or a bare IPv6 address into ``(host, port)``.

    Raises:
        ValueError: malformed (``"127.0.0.1:0:1"``, a non-numeric or out-of-range port, an empty host).
    """
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    else:
        host, port_text = value, ""
        if ":" in host:  # a bare IPv6 address, or garbage such as "127.0.0.1:0:1"
            ipaddress.IPv6Address(host)
    if port_text and not port_text.isdigit():
        raise ValueError(f"port {port_text!r} is not a number")
    port = int(port_text) if port_text else default_port
    if not host or not 0 < port < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host, port


def configure_logging(level: str) -> None:
    """One format for every part: ``time level logger: message`` on stderr (journald adds its own time)."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True
    )
    # httpx logs every request URL at INFO; a URL may be a capability URL, so keep it quiet.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
