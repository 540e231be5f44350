#!/bin/bash
# Re-pin image-build/requirements.lock: resolve the project's runtime dependencies for CPython 3.11 on aarch64
# and x86_64 (wheels only) and write name==version with the sha256 of every wheel of both architectures.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
PYTHON=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$tmp/project" "$REPO"
for platform in aarch64 x86_64; do
  "$PYTHON" -m pip download --quiet --dest "$tmp/$platform" --only-binary=:all: --python-version 3.11 \
    --implementation cp --abi cp311 --platform "manylinux2014_$platform" --platform "manylinux_2_28_$platform" \
    --platform "manylinux_2_36_$platform" "$tmp"/project/*.whl
  rm -f "$tmp/$platform"/eticket-*.whl
done
"$PYTHON" - "$tmp" "$HERE/requirements.lock" <<'PY'
import hashlib, re, sys
from collections import defaultdict
from pathlib import Path
tmp, out = Path(sys.argv[1]), Path(sys.argv[2])
versions, hashes = {}, defaultdict(set)
for platform in ("aarch64", "x86_64"):
    for wheel in sorted((tmp / platform).glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        key = re.sub(r"[-_.]+", "-", name).lower()
        if versions.setdefault(key, version) != version:
            sys.exit(f"{key}: {versions[key]} on one platform, {version} on the other")
        hashes[key].add(hashlib.sha256(wheel.read_bytes()).hexdigest())
lines = ["# The appliance's runtime wheels for the image, pinned with their sha256 (aarch64 and x86_64 wheels of",
         "# CPython 3.11, Debian bookworm's Python). Regenerate: make image-lock (see image-build/README.md).", ""]
lines += [f"{k}=={versions[k]} " + " ".join(f"--hash=sha256:{h}" for h in sorted(hashes[k])) for k in sorted(versions)]
out.write_text("\n".join(lines) + "\n")
print(f"{out}: {len(versions)} packages")
PY
