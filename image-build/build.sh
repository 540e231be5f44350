#!/bin/bash
# Build the eTicket SD-card image from Debian packages only.
#
#   image-build/build.sh ARCH OUT       (ARCH: arm64 = Raspberry Pi 3/4/Zero 2 W; amd64 = UEFI PC, for the boot test)
#
# Steps, in order: wheels -> root (mmdebstrap) -> initramfs -> boot files -> partitions -> image -> manifest.
# Nothing is mounted: the FAT partition is filled with mtools, the ext4 ones with mke2fs -d.
# Environment: SOURCE_DATE_EPOCH (default: the last commit's time), COMPRESS=xz|none (default xz),
# MIRROR (default: mmdebstrap's Debian mirror), VERSION (the release stamped in /etc/eticket-image-id; default
# <pyproject version>+<short commit>), FLEET_KEYS (arm64: a directory whose keyring.pem is the CA the device
# trusts for update bundles; default fleet-keys/, made with `eticket fleet keys init` when missing).
#
# arm64 is an A/B system (RAUC, U-Boot's boot counter): boot FAT (U-Boot, boot.scr, uboot.env, Pi firmware),
# root slot A, root slot B (same size, empty here), data. Each slot carries its kernel and initramfs in /boot.
# amd64 keeps one root (systemd-boot loads the kernel from the FAT): see README.md.
set -euo pipefail

ARCH=${1:?usage: build.sh arm64|amd64 OUTDIR}
OUT=${2:?usage: build.sh arm64|amd64 OUTDIR}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
PYTHON=${PYTHON:-python3}
COMPRESS=${COMPRESS:-xz}
SUITE=bookworm
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct)}
export E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH  # mke2fs, debugfs: file system times
export TZ=UTC LC_ALL=C.UTF-8

# Fixed identifiers, so two builds give the same bytes (the device makes its own machine-id and SSH keys).
DISK_ID=0x6574696b
BOOT_VOLUME_ID=0x65746b62
ROOT_UUID=6574696b-6574-4b72-8f6f-6f7400000001
DATA_UUID=6574696b-6574-4b64-8174-610000000002
HASH_SEED=6574696b-6574-4b68-8173-680000000003
BOOT_MIB=256
DATA_MIB=256
ENV_BYTES=0x4000  # uboot.env: the size /etc/fw_env.config and boot.cmd use
VERSION=${VERSION:-$("$PYTHON" -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' "$REPO/pyproject.toml")+$(git -C "$REPO" rev-parse --short HEAD)}

case "$ARCH" in
  arm64) PLATFORM=aarch64; BOOT_TYPE=c; BOOT_MIB=64 ;;
  amd64) PLATFORM=x86_64; BOOT_TYPE=ef ;;
  *) echo "build.sh: ARCH must be arm64 or amd64, not $ARCH" >&2; exit 2 ;;
esac

log() { printf '%s build.sh[%s]: %s\n' "$(date -u +%T)" "$ARCH" "$*" >&2; }
step_start=$(date +%s)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$OUT/work
rm -rf "$WORK"
mkdir -p "$WORK"
ROOT=$WORK/root
WHEELS=$WORK/wheels

### 1. Wheels: the project (pure Python, built from this tree) and its pinned dependencies for the target.
log "wheels for $PLATFORM"
# pip builds the project in the tree (setuptools' build/lib): one build of it at a time, so that two image
# builds at once (amd64 and arm64) never pack each other's half-written files.
mkdir -p "$REPO/build"
flock "$REPO/build/.wheel.lock" "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WHEELS" "$REPO"
"$PYTHON" -m pip download --quiet --dest "$WHEELS" --require-hashes -r "$HERE/requirements.lock" \
  --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
  --platform "manylinux2014_$PLATFORM" --platform "manylinux_2_28_$PLATFORM" --platform "manylinux_2_36_$PLATFORM"

### 2. Root file system: mmdebstrap, update-initramfs diverted (step 3 builds the initramfs on the host).
log "root file system (mmdebstrap $SUITE $ARCH)"
mapfile -t packages < <(sed 's/#.*//; /^\s*$/d' "$HERE/packages-common.list" "$HERE/packages-$ARCH.list")
mm_args=(--arch="$ARCH" --variant=minbase --mode=root --components=main,non-free-firmware
  --include="$(IFS=,; echo "${packages[*]}")"
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --essential-hook='chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs && ln -s /bin/true "$1/usr/sbin/update-initramfs"'
  --customize-hook="\"$HERE/customize.sh\" \"\$1\" \"$WHEELS\" \"$PLATFORM\"")
mmdebstrap "${mm_args[@]}" "$SUITE" "$ROOT" ${MIRROR:+"$MIRROR"}

KVER=$(basename "$(find "$ROOT/lib/modules" -mindepth 1 -maxdepth 1 -type d | sort | tail -n 1)")
log "kernel $KVER, version $VERSION"
echo "version=$VERSION" >> "$ROOT/etc/eticket-image-id"
if [ "$ARCH" = arm64 ]; then
  # A/B: RAUC's configuration, the boot counter's environment file, the watchdog, the verity modules.
  cp -a --no-preserve=ownership "$HERE/rootfs-arm64/." "$ROOT/"
  sed -i '/^LABEL=eticket-root /d' "$ROOT/etc/fstab"  # each slot is / for itself: root= names it
  install -m 644 "$REPO/systemd/eticket-update-commit.service" "$ROOT/usr/lib/systemd/system/"
  systemctl --root="$ROOT" --quiet enable eticket-update-commit.service
  # The CA the device trusts for bundles: the image's default, copied onto the data partition at boot.
  FLEET_KEYS=${FLEET_KEYS:-$REPO/fleet-keys}
  if [ ! -f "$FLEET_KEYS/keyring.pem" ]; then
    log "no $FLEET_KEYS/keyring.pem: making a new fleet CA there (eticket fleet keys init); keep ca.key safe"
    PYTHONPATH=$REPO "$PYTHON" -c 'import sys; from appliance.cli import main; sys.exit(main())' \
      fleet keys init "$FLEET_KEYS"
  fi
  install -D -m 644 "$FLEET_KEYS/keyring.pem" "$ROOT/usr/share/eticket/rauc-keyring.pem"
  install -D -m 644 "$FLEET_KEYS/keyring.pem" "$ROOT/var/lib/eticket-system/rauc/keyring.pem"
  ln -sfn /var/lib/eticket-system/rauc/keyring.pem "$ROOT/etc/rauc/keyring.pem"
  # Debian's raspi-firmware hooks would rewrite config.txt/cmdline.txt with one root=: not on an A/B image.
  rm -f "$ROOT/etc/kernel/postinst.d/z50-raspi-firmware" "$ROOT/etc/kernel/postrm.d/z50-raspi-firmware" \
    "$ROOT/etc/initramfs/post-update.d/z50-raspi-firmware"
fi

### 3. Initramfs, built here from the image's own busybox and modules (no emulation).
"$PYTHON" "$HERE/initramfs.py" --root "$ROOT" --kernel-version "$KVER" --modules "$HERE/modules-$ARCH.list" \
  --out "$WORK/initrd.img"

### 4. Boot partition contents.
BOOT=$WORK/boot
mkdir -p "$BOOT"
cp "$HERE/eticket.toml.example" "$BOOT/eticket.toml.example"
# The screen faces customers: kernel and systemd messages go to the serial console only (no console=tty0), no
# blinking cursor, no console blanking; getty@tty1 is masked (customize.sh). The screen stays plain (black)
# from the boot loader until the kiosk draws.
CMDLINE="root=LABEL=eticket-root ro rootwait net.ifnames=0 quiet vt.global_cursor_default=0 consoleblank=0"
if [ "$ARCH" = arm64 ]; then
  # Raspberry Pi firmware (raspi-firmware) loads U-Boot (u-boot-rpi) as its kernel, with the upstream device
  # tree of the board; U-Boot runs boot.scr, which picks a slot and boots the kernel and initramfs in the
  # slot's /boot (root=LABEL=eticket-root-X rauc.slot=X). The kernel command line is in boot.cmd.
  cp "$ROOT"/usr/lib/raspi-firmware/{bootcode.bin,start*.elf,fixup*.dat} "$BOOT/"
  cp "$ROOT/usr/lib/linux-image-$KVER"/broadcom/bcm283*-rpi-*.dtb "$ROOT/usr/lib/linux-image-$KVER"/broadcom/bcm2711-rpi-*.dtb "$BOOT/"
  cp "$ROOT/usr/lib/u-boot/rpi_arm64/u-boot.bin" "$BOOT/u-boot.bin"
  cp "$HERE/config.txt" "$BOOT/config.txt"
  mkimage -A arm64 -O linux -T script -C none -n "eticket A/B" -d "$HERE/boot.cmd" "$BOOT/boot.scr" >/dev/null
  # The boot counter's first state: slot A first with three tries; slot B is empty on a fresh card, so it starts
  # with none (RAUC's uboot backend reads BOOT_B_LEFT=0 as bad: `eticket update rollback` refuses an empty slot).
  printf 'BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=0\n' > "$WORK/uboot-env.txt"
  mkenvimage -s "$ENV_BYTES" -o "$BOOT/uboot.env" "$WORK/uboot-env.txt"
  # The slot's own kernel and initramfs, at fixed names boot.scr loads (Debian's versioned name kept as a link).
  mv "$ROOT/boot/vmlinuz-$KVER" "$ROOT/boot/vmlinuz"
  ln -s vmlinuz "$ROOT/boot/vmlinuz-$KVER"
  cp "$WORK/initrd.img" "$ROOT/boot/initrd.img"
  rm -f "$ROOT/vmlinuz" "$ROOT/vmlinuz.old" "$ROOT/initrd.img" "$ROOT/initrd.img.old"
else
  cp "$ROOT/boot/vmlinuz-$KVER" "$BOOT/vmlinuz"
  cp "$WORK/initrd.img" "$BOOT/initrd.img"
  # UEFI: systemd-boot at the removable-media path; it loads the kernel and initramfs from this FAT (ESP).
  mkdir -p "$BOOT/EFI/BOOT" "$BOOT/loader/entries"
  cp "$ROOT/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$BOOT/EFI/BOOT/BOOTX64.EFI"
  printf 'default eticket.conf\ntimeout 0\n' > "$BOOT/loader/loader.conf"
  printf 'title eTicket\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s\n' \
    "console=ttyS0,115200 $CMDLINE" > "$BOOT/loader/entries/eticket.conf"
fi

### 5. Partitions: the data partition holds /var; the root keeps an empty /var to mount it on.
if [ "$ARCH" = arm64 ]; then
  # Trim what the Pi 3/4/Zero 2 W (and qemu's virt machine) never use: each root slot and each bundle carries it.
  log "trim"
  MODS=$ROOT/usr/lib/modules/$KVER/kernel
  rm -rf "$ROOT/usr/lib/raspi-firmware" "$ROOT/usr/lib/linux-image-$KVER" \
    "$ROOT/usr/lib/u-boot"  # the firmware, device trees and U-Boot already copied onto the FAT (step 4)
  rm -rf "$MODS/sound" "$MODS/net/bluetooth" "$MODS/drivers/bluetooth"  # no audio, no Bluetooth
  rm -rf "$MODS/drivers/media" "$MODS/drivers/infiniband" "$MODS/drivers/iio" "$MODS/drivers/target" \
    "$MODS/drivers/staging" "$MODS/drivers/isdn" "$MODS/drivers/net/can" "$MODS/drivers/net/wwan" \
    "$MODS/drivers/net/ieee802154" "$MODS/drivers/net/hamradio"
  # Displays: vc4 (the Pi), virtio-gpu and tiny/bochs (qemu); not the PC and phone GPUs.
  rm -rf "$MODS/drivers/gpu/drm/amd" "$MODS/drivers/gpu/drm/radeon" "$MODS/drivers/gpu/drm/nouveau" \
    "$MODS/drivers/gpu/drm/msm" "$MODS/drivers/gpu/drm/tegra" "$MODS/drivers/gpu/drm/etnaviv" \
    "$MODS/drivers/gpu/drm/panfrost" "$MODS/drivers/gpu/drm/lima" "$MODS/drivers/gpu/drm/rockchip" \
    "$MODS/drivers/gpu/drm/imx" "$MODS/drivers/gpu/drm/sun4i" "$MODS/drivers/gpu/drm/meson" \
    "$MODS/drivers/gpu/drm/nouveau" "$MODS/drivers/gpu/drm/hisilicon" "$MODS/drivers/gpu/drm/mediatek"
  # Network: Broadcom only (Pi 4's genet, the Pi's brcmfmac Wi-Fi); USB (Pi 3: smsc95xx, lan78xx) and virtio
  # adapters are elsewhere in drivers/net and stay.
  find "$MODS/drivers/net/ethernet" "$MODS/drivers/net/wireless" -mindepth 1 -maxdepth 1 ! -name broadcom \
    -exec rm -rf {} +
  depmod -b "$ROOT" "$KVER"
fi
log "partitions"
DATA=$WORK/var
mv "$ROOT/var" "$DATA"
mkdir "$ROOT/var"
for tree in "$ROOT" "$DATA" "$BOOT"; do
  find "$tree" -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch --no-dereference --date="@$SOURCE_DATE_EPOCH"
done
root_mib=$(( $(du -s --block-size=1M "$ROOT" | cut -f1) * 5 / 4 + 64 ))
ROOT_LABEL=eticket-root
slot_mib=$root_mib
if [ "$ARCH" = arm64 ]; then
  # A slot holds this root and later, larger releases: half again its size, in 64 MiB steps (SLOT_MIB overrides).
  ROOT_LABEL=eticket-root-a
  slot_mib=${SLOT_MIB:-$(( (root_mib * 3 / 2 + 63) / 64 * 64 ))}
  [ "$slot_mib" -ge "$root_mib" ] || { echo "build.sh: SLOT_MIB=$slot_mib is smaller than the root ($root_mib MiB)" >&2; exit 1; }
fi
mke2fs -q -F -t ext4 -L "$ROOT_LABEL" -U "$ROOT_UUID" -E "hash_seed=$HASH_SEED,root_owner=0:0" -b 4096 \
  -d "$ROOT" "$WORK/root.ext4" "${root_mib}M"
mke2fs -q -F -t ext4 -L eticket-data -U "$DATA_UUID" -E "hash_seed=$HASH_SEED,root_owner=0:0" -b 4096 \
  -d "$DATA" "$WORK/data.ext4" "${DATA_MIB}M"
# mke2fs -d copies each file's atime and ctime from this host (bookworm's e2fsprogs 1.47.0): set them to
# SOURCE_DATE_EPOCH in the file systems (debugfs recomputes the inode checksums), then check them.
clamp_times() {  # clamp_times FS TREE
  (cd "$2" && find . | sed 's|^\.||; s|^$|/|') | grep -v '"' |
    awk -v t="@$SOURCE_DATE_EPOCH" '{ printf "sif \"%s\" ctime %s\nsif \"%s\" atime %s\n", $0, t, $0, t }' \
    > "$WORK/clamp.cmds"
  debugfs -w -f "$WORK/clamp.cmds" "$1" > "$WORK/clamp.log" 2>&1
  e2fsck -fn "$1" > "$WORK/fsck.log" 2>&1 || { cat "$WORK/fsck.log" >&2; exit 1; }
}
clamp_times "$WORK/root.ext4" "$ROOT"
clamp_times "$WORK/data.ext4" "$DATA"
rm -f "$WORK/boot.fat"
mkfs.vfat -F 32 -n ETICKETBOOT -i "${BOOT_VOLUME_ID#0x}" --invariant -C "$WORK/boot.fat" $(( BOOT_MIB * 1024 )) >/dev/null
(cd "$BOOT" && find . -mindepth 1 -type d | sort | sed 's|^\./||' | while read -r d; do mmd -i "$WORK/boot.fat" "::/$d"; done
 find . -type f | sort | sed 's|^\./||' | while read -r f; do mcopy -m -i "$WORK/boot.fat" "$f" "::/$f"; done)

### 6. Image: MBR (the Pi 3's boot ROM reads no GPT), 1 MiB aligned: boot (FAT), root (ext4, read-only), data;
# arm64: boot, root slot A, root slot B (left empty: sparse zeros in the file, nothing in the .xz), data.
log "image"
IMG=$OUT/eticket-$ARCH.img
boot_start=2048
root_start=$(( boot_start + BOOT_MIB * 2048 ))
data_start=$(( root_start + slot_mib * 2048 ))
slot_b_line=
if [ "$ARCH" = arm64 ]; then
  slot_b_line="start=$data_start, size=$(( slot_mib * 2048 )), type=83"
  data_start=$(( data_start + slot_mib * 2048 ))
fi
total_sectors=$(( data_start + DATA_MIB * 2048 ))
rm -f "$IMG"
truncate -s $(( total_sectors * 512 )) "$IMG"
{
  printf 'label: dos\nlabel-id: %s\nunit: sectors\n' "$DISK_ID"
  echo "start=$boot_start, size=$(( BOOT_MIB * 2048 )), type=$BOOT_TYPE, bootable"
  echo "start=$root_start, size=$(( slot_mib * 2048 )), type=83"
  [ -z "$slot_b_line" ] || echo "$slot_b_line"
  echo "start=$data_start, size=$(( DATA_MIB * 2048 )), type=83"
} | sfdisk --quiet "$IMG"
dd if="$WORK/boot.fat" of="$IMG" bs=1M seek=$(( boot_start / 2048 )) conv=notrunc,sparse status=none
dd if="$WORK/root.ext4" of="$IMG" bs=1M seek=$(( root_start / 2048 )) conv=notrunc,sparse status=none
dd if="$WORK/data.ext4" of="$IMG" bs=1M seek=$(( data_start / 2048 )) conv=notrunc,sparse status=none

### 7. Manifest beside the image: inputs, packages with versions, wheels, checksums.
log "manifest"
MANIFEST=$OUT/eticket-$ARCH.manifest
{
  echo "# eTicket image manifest"
  echo "arch: $ARCH"
  echo "suite: $SUITE"
  echo "commit: $(git -C "$REPO" rev-parse HEAD)$(git -C "$REPO" diff --quiet HEAD -- . ':!build' 2>/dev/null || echo '-dirty')"
  echo "source_date_epoch: $SOURCE_DATE_EPOCH"
  echo "kernel: $KVER"
  echo "version: $VERSION"
  echo "image_bytes: $(stat -c %s "$IMG")"
  echo "image_sha256: $(sha256sum "$IMG" | cut -d' ' -f1)"
  echo "initrd_sha256: $(sha256sum "$WORK/initrd.img" | cut -d' ' -f1)"
  echo "## Debian packages"
  dpkg-query --admindir="$DATA/lib/dpkg" -W -f='${Package} ${Version} ${Architecture}\n' | sort
  echo "## wheels"
  (cd "$WHEELS" && sha256sum -- *.whl | sort -k2)
} > "$MANIFEST"
(cd "$OUT" && sha256sum "eticket-$ARCH.img" > "eticket-$ARCH.img.sha256")
if [ "$COMPRESS" = xz ]; then
  log "compress (xz)"
  xz -T0 -6 -f -k "$IMG"
  (cd "$OUT" && sha256sum "eticket-$ARCH.img.xz" > "eticket-$ARCH.img.xz.sha256")
fi
log "done in $(( $(date +%s) - step_start )) s: $IMG"
