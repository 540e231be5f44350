"""The fleet's inventory: a TOML file naming each device, how to reach it over SSH and its host key.

    [defaults]                              # optional, every key optional
    user = "root"
    port = 22
    identity = "~/.ssh/id_ed25519"          # the operator's private key (keys only: no password, ever)
    [[device]]
    name = "paris-01"                       # unique
    host = "10.0.0.12"
    port = 22                               # optional, else [defaults].port, else 22
    user = "root"                           # optional, else [defaults].user, else root
    identity = "..."                        # optional, else [defaults].identity, else ssh's defaults
    host_key = "ssh-ed25519 AAAA..."        # required: the device's host public key (no trust on first use)
    command = "eticket"                     # optional: the on-device command (default eticket)

The shape is the shared contract of issue 12 (docs/fleet.md). Relative identity paths are relative to the
inventory file; ``~`` is expanded.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PORT = 22
DEFAULT_USER = "root"
DEFAULT_COMMAND = "eticket"
_DEVICE_KEYS = {"name", "host", "port", "user", "identity", "host_key", "command"}
_DEFAULT_KEYS = {"port", "user", "identity", "command"}


class InventoryError(ValueError):
    """The inventory file cannot be used; the message names the file, the device and the key at fault."""


@dataclass(frozen=True, slots=True)
class Device:
    """One device of the fleet as the inventory describes it."""

    name: str
    host: str
    host_key: str
    port: int = DEFAULT_PORT
    user: str = DEFAULT_USER
    identity: Path | None = None
    command: str = DEFAULT_COMMAND


MAX_NAME_CHARS = 64
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _check_text(value: str, key: str, where: str, limit: int) -> None:
    """A name shown in tables and progress lines: printable (no control characters to reach a terminal),
    no leading or trailing blank, at most ``limit`` characters."""
    if not value or not value.isprintable() or value != value.strip() or len(value) > limit:
        raise InventoryError(f"{where}: {key} {value[:80]!r} must be 1..{limit} printable characters without "
                             "leading or trailing blanks")


def _is_host(host: str) -> bool:
    """An IPv4/IPv6 address or a DNS name (RFC 1123 labels of 1..63 letters, digits and inner hyphens)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


def _check_host_key(text: str, where: str) -> str:
    """``text`` if it parses as one OpenSSH public key line (``TYPE BASE64 [comment]``), else InventoryError."""
    import asyncssh

    try:
        asyncssh.import_public_key(text.strip())
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise InventoryError(f"{where}: host_key is not an OpenSSH public key line "
                             f"('ssh-ed25519 AAAA...', as in /etc/ssh/ssh_host_ed25519_key.pub): {exc}") from exc
    return text.strip()


def _value(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = table[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise InventoryError(f"{where}: {key} must be an integer, not {value!r}")
    if kind is str and (not isinstance(value, str) or not value.strip()):
        raise InventoryError(f"{where}: {key} must be a non-empty string, not {value!r}")
    if key == "port" and not 1 <= value <= 65535:
        raise InventoryError(f"{where}: port must be 1..65535, not {value}")
    return value


def parse_inventory(text: str, source: str = "<inventory>", base: Path | None = None) -> list[Device]:
    """The devices of an inventory given as TOML text, in file order.

    ``source`` names the file in error messages; ``base`` is the directory relative identity paths start from.
    Raises InventoryError (TOML syntax, unknown or missing key, wrong type, bad host key, duplicate name or
    duplicate host:port, no device at all).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(f"{source}: not valid TOML: {exc}") from exc
    unknown = set(data) - {"defaults", "device"}
    if unknown:
        raise InventoryError(f"{source}: unknown table {sorted(unknown)[0]!r} (expected [defaults] and [[device]])")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise InventoryError(f"{source}: defaults must be a table ([defaults])")
    for key in defaults:
        if key not in _DEFAULT_KEYS:
            known = ", ".join(sorted(_DEFAULT_KEYS))
            raise InventoryError(f"{source}: [defaults]: unknown key {key!r} (known: {known})")
    entries = data.get("device", [])
    if not isinstance(entries, list) or not entries:
        raise InventoryError(f"{source}: no device: add [[device]] tables (name, host, host_key)")
    devices: list[Device] = []
    names: dict[str, int] = {}
    addresses: dict[tuple[str, int], str] = {}
    base = base or Path.cwd()
    for index, entry in enumerate(entries, 1):
        label = f"{source}: device #{index}"
        if not isinstance(entry, dict):
            raise InventoryError(f"{label}: must be a table ([[device]])")
        if isinstance(entry.get("name"), str) and entry["name"].strip():
            label = f"{source}: device {entry['name']!r}"
        for key in entry:
            if key not in _DEVICE_KEYS:
                raise InventoryError(f"{label}: unknown key {key!r} (known: {', '.join(sorted(_DEVICE_KEYS))})")
        for key in ("name", "host", "host_key"):
            if key not in entry:
                hint = (" (the device's /etc/ssh/ssh_host_ed25519_key.pub, read out of band: see "
                        "docs/fleet.md)" if key == "host_key" else "")
                raise InventoryError(f"{label}: missing key {key!r}{hint}")
        merged = {**defaults, **entry}
        where = {k: (label if k in entry else f"{source}: [defaults]") for k in merged}
        name = _value(merged, "name", str, where["name"])
        if name in names:
            raise InventoryError(f"{label}: duplicate name (also device #{names[name]})")
        names[name] = index
        _check_text(name, "name", where["name"], MAX_NAME_CHARS)
        host = _value(merged, "host", str, where["host"])
        if not _is_host(host):
            raise InventoryError(f"{where['host']}: host {host[:80]!r} is not an IP address or a DNS name (a port "
                                 "goes in 'port')")
        port = _value(merged, "port", int, where["port"]) if "port" in merged else DEFAULT_PORT
        if (host, port) in addresses:
            raise InventoryError(f"{label}: host {host} port {port} is also device {addresses[host, port]!r}")
        addresses[host, port] = name
        user = _value(merged, "user", str, where["user"]) if "user" in merged else DEFAULT_USER
        if not _USER.fullmatch(user):
            raise InventoryError(f"{where.get('user', label)}: user {user[:40]!r} is not a login name "
                                 "(letters, digits, '_', '.', '-'; up to 32)")
        command = _value(merged, "command", str, where["command"]) if "command" in merged else DEFAULT_COMMAND
        identity = None
        if "identity" in merged:
            identity = Path(_value(merged, "identity", str, where["identity"])).expanduser()
            if not identity.is_absolute():
                identity = base / identity
        host_key = _check_host_key(_value(merged, "host_key", str, label), label)
        devices.append(Device(name=name, host=host, port=port, user=user, identity=identity, host_key=host_key,
                              command=command))
    return devices


def load_inventory(path: Path) -> list[Device]:
    """The devices of the inventory file ``path`` (see :func:`parse_inventory`); InventoryError if unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"{path}: cannot read the inventory: {exc}") from exc
    return parse_inventory(text, str(path), path.resolve().parent)


def select(devices: list[Device], names: list[str] | None) -> list[Device]:
    """The devices named in ``names`` (all when None or empty), in inventory order; InventoryError for a name
    the inventory does not hold."""
    if not names:
        return list(devices)
    known = {d.name for d in devices}
    missing = [n for n in names if n not in known]
    if missing:
        raise InventoryError(f"no device named {', '.join(map(repr, missing))} in the inventory")
    wanted = set(names)
    return [d for d in devices if d.name in wanted]
