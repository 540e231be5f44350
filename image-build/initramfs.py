#!/usr/bin/env python3
"""Build the image's initramfs on the build host, from the target root's own busybox-static and kernel modules.

Why: Debian's ``update-initramfs`` takes over 8 minutes under qemu-user emulation (arm64 on an x86 host).
This builder never runs target code: it reads ``modules.dep`` to load the listed storage modules with their
dependencies in order, adds busybox and ``initramfs-init.sh`` as ``/init``, and writes a gzip-compressed
``newc`` cpio archive whose bytes depend only on its inputs (sorted entries, owner 0, every mtime set to
``SOURCE_DATE_EPOCH``). Seconds instead of minutes, and reproducible.

    initramfs.py --root ROOT --kernel-version 6.1.0-50-arm64 --modules modules-arm64.list --out initrd.img

Errors: a module that is neither in ``modules.dep`` nor built in is an error naming it (exit status 1).
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import stat
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CPIO_MAGIC = "070701"  # newc
CONSOLE_MAJOR, CONSOLE_MINOR = 5, 1
GZIP_LEVEL = 9


class InitramfsError(Exception):
    """The initramfs cannot be built; the message names the module or file."""


def _norm(name: str) -> str:
    """Module names compare with ``-`` and ``_`` alike (``sdhci-iproc.ko`` is ``sdhci_iproc``)."""
    base = name.rsplit("/", 1)[-1]
    for suffix in (".ko", ".ko.xz", ".ko.zst", ".ko.gz"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base.replace("-", "_")


def resolve_modules(modules_dir: Path, wanted: list[str]) -> list[str]:
    """The ``modules.dep`` paths (relative to ``modules_dir``) to insmod, dependencies first, each once.

    ``wanted``: module names (``ext4``, ``sdhci-iproc``). Built-in modules are skipped.

    Raises:
        InitramfsError: a name is neither a module nor built in.
    """
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[_norm(path)] = (path, rest.split())
    builtin_file = modules_dir / "modules.builtin"
    builtin = {_norm(p) for p in builtin_file.read_text().split()} if builtin_file.exists() else set()
    order: list[str] = []

    def visit(name: str) -> None:
        key = _norm(name)
        if key in builtin:
            return
        if key not in deps:
            raise InitramfsError(f"module {name!r} is neither in {modules_dir}/modules.dep nor built in")
        path, needs = deps[key]
        if path in order:
            return
        for dep in reversed(needs):  # modprobe loads the rightmost dependency first
            visit(dep)
        order.append(path)

    for name in wanted:
        visit(name)
    return order


def read_list(path: Path) -> list[str]:
    """Module names from a list file: one per line, ``#`` comments and blank lines ignored."""
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    return names


class Cpio:
    """A newc cpio archive built in memory; entries are written in the order added."""

    def __init__(self, mtime: int) -> None:
        self._out = io.BytesIO()
        self._ino = 0
        self._mtime = mtime

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        self._ino += 1
        encoded = name.encode() + b"\0"
        fields = [self._ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, self._mtime, len(data), 0, 0,
                  rdev[0], rdev[1], len(encoded), 0]
        header = CPIO_MAGIC + "".join(f"{value:08x}" for value in fields)
        self._out.write(header.encode() + encoded)
        self._out.write(b"\0" * (-(110 + len(encoded)) % 4))
        self._out.write(data)
        self._out.write(b"\0" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self._out.getvalue()


def build(root: Path, kernel_version: str, module_names: list[str], init_script: Path, mtime: int) -> bytes:
    """The compressed initramfs (gzip of a newc cpio) for the kernel ``kernel_version`` installed in ``root``.

    Raises:
        InitramfsError: a module is missing, or ``root`` has no ``/bin/busybox`` (package busybox-static).
    """
    modules_dir = root / "lib" / "modules" / kernel_version
    modules = resolve_modules(modules_dir, module_names)
    busybox = root / "bin" / "busybox"
    if not busybox.is_file():
        raise InitramfsError(f"{busybox} is missing: install busybox-static in the image")
    archive = Cpio(mtime)
    dirs = {"bin", "dev", "etc", "lib", "lib/modules", "proc", "root", "sys", "tmp"}
    for module in modules:
        parts = module.split("/")
        for depth in range(1, len(parts)):
            dirs.add("lib/modules/" + "/".join(parts[:depth]))
    for name in sorted(dirs):
        archive.directory(name)
    archive.char_device("dev/console", CONSOLE_MAJOR, CONSOLE_MINOR)
    archive.file("bin/busybox", busybox.read_bytes(), 0o755)
    archive.symlink("bin/sh", "busybox")
    archive.file("etc/modules.order", "".join(m + "\n" for m in modules).encode())
    archive.file("init", init_script.read_bytes(), 0o755)
    for module in sorted(modules):
        archive.file(f"lib/modules/{module}", (modules_dir / module).read_bytes())
    return gzip.compress(archive.finish(), compresslevel=GZIP_LEVEL, mtime=0)


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring. Exit status 0, or 1 with the reason on stderr."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="the image's root directory")
    parser.add_argument("--kernel-version", required=True, help="e.g. 6.1.0-50-arm64")
    parser.add_argument("--modules", type=Path, required=True, help="module list file")
    parser.add_argument("--init", type=Path, default=HERE / "initramfs-init.sh")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    try:
        data = build(args.root, args.kernel_version, read_list(args.modules), args.init, mtime)
    except (InitramfsError, OSError) as exc:
        print(f"initramfs: error: {exc}", file=sys.stderr)
        return 1
    args.out.write_bytes(data)
    print(f"initramfs: {args.out} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
