#!/bin/bash
# Build a signed RAUC update bundle (verity format) from an image build: the root slot's ext4 as the image
# build made it (kernel + initramfs in its /boot), re-stamped with VERSION.
#
#   image-build/bundle.sh ARCH OUTDIR     -> OUTDIR/eticket-ARCH-VERSION.raucb and .raucb.sha256
#
# Environment: VERSION (the release; default: the build's own version=), SIGNING_CERT and SIGNING_KEY (PEM: the
# fleet's signing leaf, extendedKeyUsage codeSigning, from `eticket fleet keys init`), BUILD (an image build's
# output directory, default build/image-ARCH; its work/root.ext4 is reused, never changed), OVERLAY (optional:
# a directory whose files are written into the bundle's root at the same paths, e.g. a systemd drop-in).
# Needs rauc, mksquashfs (squashfs-tools) and debugfs/e2label (e2fsprogs) on the build host.
#
# On the device, the bundle's post-install hook labels the written slot eticket-root-a or -b (its bootname):
# the image in the bundle carries the neutral label eticket-root-new, so that a half-written slot is never
# found under the running slot's label.
set -euo pipefail
ARCH=${1:?usage: bundle.sh arm64|amd64 OUTDIR}
OUT=${2:?usage: bundle.sh arm64|amd64 OUTDIR}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
BUILD=${BUILD:-$REPO/build/image-$ARCH}
SIGNING_CERT=${SIGNING_CERT:?bundle.sh: SIGNING_CERT (the signing certificate, PEM) is not set}
SIGNING_KEY=${SIGNING_KEY:?bundle.sh: SIGNING_KEY (the signing key, PEM) is not set}
export TZ=UTC LC_ALL=C.UTF-8
NEW_LABEL=eticket-root-new

log() { printf '%s bundle.sh[%s]: %s\n' "$(date -u +%T)" "$ARCH" "$*" >&2; }
die() { echo "bundle.sh: $*" >&2; exit 1; }
case "$ARCH" in arm64|amd64) ;; *) die "ARCH must be arm64 or amd64, not $ARCH" ;; esac
SOURCE=$BUILD/work/root.ext4
[ -f "$SOURCE" ] || die "$SOURCE is missing: build the image first (make image ARCH=$ARCH)"
for f in "$SIGNING_CERT" "$SIGNING_KEY"; do [ -r "$f" ] || die "cannot read $f"; done
for tool in rauc mksquashfs debugfs e2label; do
  command -v "$tool" >/dev/null || die "$tool is missing (make sysdeps-image installs it)"
done
image_id=$BUILD/work/root/etc/eticket-image-id
[ -f "$image_id" ] || die "$image_id is missing: not an image build's work tree"
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(sed -n 's/^source_date_epoch=//p' "$image_id")}
export SOURCE_DATE_EPOCH E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH
VERSION=${VERSION:-$(sed -n 's/^version=//p' "$image_id")}
[ -n "$VERSION" ] || die "VERSION is not set and the build has no version="
case "$VERSION" in *[!A-Za-z0-9.+~_-]*) die "VERSION '$VERSION' may hold only letters, digits and . + ~ _ -" ;; esac

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STAGE=$(mktemp -d "$OUT/.bundle.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
mkdir "$STAGE/content"
log "root of $VERSION from $SOURCE"
cp --sparse=always "$SOURCE" "$STAGE/content/root.ext4"

# Re-stamp the version (debugfs: no mount, times and owner as the build sets them), then the overlay's files.
sed "s/^version=.*/version=$VERSION/" "$image_id" > "$STAGE/eticket-image-id"
grep -q "^version=$VERSION\$" "$STAGE/eticket-image-id" || echo "version=$VERSION" >> "$STAGE/eticket-image-id"
put_file() {  # put_file HOST_FILE TARGET_PATH MODE
  printf 'rm "%s"\nwrite "%s" "%s"\nsif "%s" mode 0%o\nsif "%s" uid 0\nsif "%s" gid 0\n' "$2" "$1" "$2" "$2" \
    "$(( 0100000 | $3 ))" "$2" "$2"
  for t in mtime ctime atime; do printf 'sif "%s" %s @%s\n' "$2" "$t" "$SOURCE_DATE_EPOCH"; done
}
{
  put_file "$STAGE/eticket-image-id" /etc/eticket-image-id 0644
  if [ -n "${OVERLAY:-}" ]; then
    # only the directories the root lacks (debugfs's mkdir over an existing name leaves an orphan inode)
    (cd "$OVERLAY" && find . -mindepth 1 -type d | sort | sed 's|^\.||') | while read -r d; do
      debugfs -R "stat \"$d\"" "$STAGE/content/root.ext4" 2>/dev/null | grep -q '^Inode:' && continue
      printf 'mkdir "%s"\nsif "%s" uid 0\nsif "%s" gid 0\nsif "%s" mode 040755\n' "$d" "$d" "$d" "$d"
    done
    (cd "$OVERLAY" && find . -type f | sort | sed 's|^\.||') | while read -r f; do
      put_file "$OVERLAY$f" "$f" "$(stat -c %a "$OVERLAY$f" | sed 's/^/0/')"
    done
  fi
} > "$STAGE/debugfs.cmds"
debugfs -w -f "$STAGE/debugfs.cmds" "$STAGE/content/root.ext4" > "$STAGE/debugfs.log" 2>&1
debugfs -R "cat /etc/eticket-image-id" "$STAGE/content/root.ext4" 2>/dev/null | grep -qx "version=$VERSION" ||
  { cat "$STAGE/debugfs.log" >&2; die "could not stamp version=$VERSION into the root"; }
e2label "$STAGE/content/root.ext4" "$NEW_LABEL"
e2fsck -fn "$STAGE/content/root.ext4" > "$STAGE/fsck.log" 2>&1 || { cat "$STAGE/fsck.log" >&2; die "the root does not check"; }

# The slot hook: label the slot RAUC just wrote after its bootname (boot.scr passes root=LABEL=eticket-root-x).
cat > "$STAGE/content/hook.sh" <<'HOOK'
#!/bin/sh
set -e
case "$1" in
  slot-post-install)
    [ "$RAUC_SLOT_CLASS" = rootfs ] || exit 0
    label=eticket-root-$(echo "$RAUC_SLOT_BOOTNAME" | tr AB ab)
    e2label "$RAUC_SLOT_DEVICE" "$label"
    ;;
esac
HOOK
chmod 755 "$STAGE/content/hook.sh"
cat > "$STAGE/content/manifest.raucm" <<MANIFEST
[update]
compatible=eticket-$ARCH
version=$VERSION

[bundle]
format=verity

[hooks]
filename=hook.sh

[image.rootfs]
filename=root.ext4
hooks=post-install
MANIFEST
find "$STAGE/content" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +

BUNDLE=$OUT/eticket-$ARCH-$VERSION.raucb
rm -f "$BUNDLE"
log "rauc bundle -> $BUNDLE"
# zstd level 9, not mksquashfs's default gzip (zlib level 9): measured on the arm64 root (1 GB ext4, 684 MB
# used) 6 s and 220 MB against 52 s and 229 MB, and zstd inflates faster on the device while RAUC installs.
# Debian's kernels read it (CONFIG_SQUASHFS_ZSTD=y, amd64 and arm64).
rauc bundle --cert="$SIGNING_CERT" --key="$SIGNING_KEY" --mksquashfs-args="-comp zstd -Xcompression-level 9" \
  "$STAGE/content" "$BUNDLE" > "$STAGE/rauc.log" 2>&1 ||
  { cat "$STAGE/rauc.log" >&2; die "rauc bundle failed"; }
(cd "$OUT" && sha256sum "$(basename "$BUNDLE")" > "$(basename "$BUNDLE").sha256")
log "done: $BUNDLE ($(stat -c %s "$BUNDLE") bytes)"
