#!/bin/bash
# Debian packages for building the image and booting it (make image, make test-slow), installed as root when
# missing; binfmt_misc mounted and qemu-aarch64 enabled so the arm64 root's maintainer scripts run.
# Without root, say what is missing; the tests that need it skip on a desk and fail in CI.
set -euo pipefail
need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
[ -e /usr/libexec/qemu-binfmt/aarch64-binfmt-P ] || command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm)
[ -e /usr/share/OVMF/OVMF_CODE_4M.fd ] || need+=(ovmf)
command -v mcopy >/dev/null || need+=(mtools)
command -v mkfs.vfat >/dev/null || need+=(dosfstools)
command -v mke2fs >/dev/null || need+=(e2fsprogs)
command -v sfdisk >/dev/null || need+=(fdisk)
command -v xz >/dev/null || need+=(xz-utils)
command -v ssh >/dev/null || need+=(openssh-client)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v arch-test >/dev/null || need+=(arch-test)
command -v cpio >/dev/null || need+=(cpio)  # the arm64 test lists the initramfs
command -v depmod >/dev/null || [ -x /usr/sbin/depmod ] || need+=(kmod)  # build.sh re-indexes the trimmed modules
command -v fw_printenv >/dev/null || need+=(libubootenv-tool)  # the arm64 test reads uboot.env
command -v mkimage >/dev/null || need+=(u-boot-tools)  # mkimage (boot.scr), mkenvimage (uboot.env)
[ -e /usr/lib/u-boot/qemu_arm64/u-boot.bin ] || need+=(u-boot-qemu)  # the arm64 boot tests boot U-Boot
command -v rauc >/dev/null || need+=(rauc)  # make bundle
command -v mksquashfs >/dev/null || need+=(squashfs-tools)  # rauc bundle packs a squashfs
command -v openssl >/dev/null || need+=(openssl)  # the tests sign bundles with a test CA
. "$(dirname "$0")/_apt.sh"
install_missing "${need[@]}" || exit 0
if [ "$(id -u)" = 0 ]; then
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 || true
fi
