#!/bin/busybox sh
# eTicket initramfs /init: load the storage modules listed at build time, grow the data partition to the end
# of the card, find the root file system (root=LABEL=…, UUID=… or a device path), mount it read-only and hand
# over to systemd. Built on the build
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

log() {
  echo "eticket-initramfs: $*" > /dev/kmsg  # into the kernel log, so the journal keeps it
}

# Grow the data partition (label eticket-data, an MBR primary partition) to the end of its disk: rewrite its
# 4-byte size in the partition table and re-read the table, now, while nothing on the disk is mounted (later,
# under systemd, the partition's device would flicker while jobs wait on it). systemd-growfs then grows the
# file system (fstab x-systemd.growfs). Idempotent: nothing happens once the partition ends at the disk's end.
grow_data() {
  dev=$(findfs LABEL=eticket-data 2>/dev/null) || return 0
  sys=/sys/class/block/${dev##*/}
  [ -f "$sys/partition" ] || return 0
  num=$(cat "$sys/partition")
  [ "$num" -ge 1 ] && [ "$num" -le 4 ] || return 0
  disk=/dev/$(basename "$(readlink -f "$sys/..")")
  start=$(cat "$sys/start")
  size=$(cat "$sys/size")
  want=$(( $(cat "/sys/class/block/${disk##*/}/size") - start ))
  [ $((want - size)) -ge 2048 ] || return 0
  entry=$((446 + 16 * (num - 1)))
  signature=$(od -An -tx1 -j 510 -N 2 "$disk" | tr -d ' ')
  table_start=$(od -An -tu4 -j $((entry + 8)) -N 4 "$disk" | tr -d ' ')
  if [ "$signature" != 55aa ] || [ "$table_start" != "$start" ]; then
    log "not growing $dev: $disk has no matching MBR entry"
    return 0
  fi
  bytes=$(printf '\\%03o\\%03o\\%03o\\%03o' $((want & 255)) $(((want >> 8) & 255)) \
    $(((want >> 16) & 255)) $(((want >> 24) & 255)))
  printf "$bytes" | dd of="$disk" bs=1 seek=$((entry + 12)) count=4 conv=notrunc 2>/dev/null
  sync
  blockdev --rereadpt "$disk" || log "could not re-read the partition table of $disk"
  log "data partition $dev grown from $size to $want sectors"
}

# A device at a counter has nobody at its console: on failure say why, then restart (on an A/B image the boot
# counter moves on to the other slot). eticket.shell on the command line drops to a shell instead.
fail() {
  echo "initramfs: $*"
  log "$*"
  if grep -qw eticket.shell /proc/cmdline; then
    echo "initramfs: dropping to a shell"
    exec sh
  fi
  echo "initramfs: restarting in 10 s"
  sleep 10
  reboot -f
}

[ -n "$root" ] || fail "no root= on the kernel command line"
tries=$((rootwait_seconds * 10))
until findfs "$root" >/dev/null 2>&1 || [ -b "$root" ] || [ "$tries" -le 0 ]; do
  tries=$((tries - 1))
  usleep 100000
done
grow_data
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
