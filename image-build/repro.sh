#!/bin/bash
# Reproducibility check: build the image twice from this tree with the same SOURCE_DATE_EPOCH and compare.
#   image-build/repro.sh [ARCH]   (default amd64) -> build/repro-ARCH.json and a summary on stdout
#   REPRO_COMPARE_ONLY=1 compares build/repro-ARCH-{a,b} again without rebuilding.
# When the images differ, each part (FAT, root ext4, data ext4, initramfs) is compared, and for an ext4 that
# differs the files whose contents differ are listed.
set -euo pipefail
ARCH=${1:-amd64}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct)}
export COMPRESS=none
for run in a b; do
  [ "${REPRO_COMPARE_ONLY:-}" = 1 ] && break  # compare two builds already made
  bash "$HERE/build.sh" "$ARCH" "$REPO/build/repro-$ARCH-$run" > "$REPO/build/repro-$ARCH-$run.log" 2>&1
done
A=$REPO/build/repro-$ARCH-a
B=$REPO/build/repro-$ARCH-b
sum() { sha256sum "$1" | cut -d' ' -f1; }
parts=()
for part in work/boot.fat work/root.ext4 work/data.ext4 work/initrd.img; do
  [ "$(sum "$A/$part")" = "$(sum "$B/$part")" ] || parts+=("$(basename "$part")")
done
files=()
for tree in root var; do
  while IFS= read -r line; do files+=("$tree:$line"); done < <(
    diff -rq --no-dereference "$A/work/$tree" "$B/work/$tree" 2>&1 | grep -v "special file while" | sed "s|$A/work/$tree||g; s|$B/work/$tree||g" | head -n 20)
done
fields=()
for part in "${parts[@]}"; do  # which inode fields differ, on one file of each differing ext4
  case $part in root.ext4) sample=/etc/fstab ;; data.ext4) sample=/lib/dpkg/status ;; *) continue ;; esac
  while IFS= read -r field; do fields+=("$part:$field"); done < <(
      diff <(debugfs -R "stat $sample" "$A/work/$part" 2>/dev/null) <(debugfs -R "stat $sample" "$B/work/$part" 2>/dev/null) |
        sed -n 's/^< *\([A-Za-z ]*\):.*/\1/p' | sort -u)
done
same=false
[ "$(sum "$A/eticket-$ARCH.img")" = "$(sum "$B/eticket-$ARCH.img")" ] && same=true
if $same; then
  summary="identical images (sha256 $(sum "$A/eticket-$ARCH.img"))."
else
  summary="images differ; parts that differ: ${parts[*]:-none}; files whose contents or types differ: ${#files[@]}${files:+ (${files[*]:0:5})}; inode fields that differ: ${fields[*]:-none}."
fi
python3 - "$REPO/build/repro-$ARCH.json" "$same" "$summary" "${parts[@]}" -- "${files[@]}" <<'PY'
import json, sys
out, same, summary, *rest = sys.argv[1:]
split = rest.index("--")
json.dump({"identical": same == "true", "summary": summary, "differing_parts": rest[:split],
           "differing_files": rest[split + 1:]}, open(out, "w"), indent=2)
PY
echo "$summary"
