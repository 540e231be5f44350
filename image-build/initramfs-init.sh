#!/bin/busybox sh
# eTicket initramfs /init: load the storage modules listed at build time, find the root file system
# (root=LABEL=…, UUID=… or a device path), mount it read-only and hand over to systemd. Built on the build
# host by initramfs.py from the image's own busybox-static and kernel modules, so update-initramfs never
# runs under emulation. On failure it says why on the console and drops to a shell.
/bin/busybox mkdir -p /proc /sys /dev /root /tmp
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

root=""
init=/sbin/init
rootwait_seconds=30
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    root=*) root="${arg#root=}" ;;
    init=*) init="${arg#init=}" ;;
    eticket.rootwait=*) rootwait_seconds="${arg#eticket.rootwait=}" ;;
  esac
done

while read -r module; do
  insmod "/lib/modules/$module" || echo "initramfs: could not load $module"
done < /etc/modules.order

fail() {
  echo "initramfs: $*"
  echo "initramfs: dropping to a shell"
  exec sh
}

[ -n "$root" ] || fail "no root= on the kernel command line"
tries=$((rootwait_seconds * 10))
while :; do
  case "$root" in
    LABEL=*|UUID=*) dev=$(findfs "$root" 2>/dev/null) ;;
    *) dev="$root" ;;
  esac
  [ -n "$dev" ] && [ -b "$dev" ] && break
  tries=$((tries - 1))
  [ "$tries" -gt 0 ] || fail "root file system $root not found after ${rootwait_seconds} s"
  usleep 100000
done

mount -t ext4 -o ro "$dev" /root || fail "cannot mount $dev ($root) read-only"
umount /sys /proc
mount --move /dev /root/dev
exec switch_root /root "$init"
