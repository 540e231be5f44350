# eTicket A/B boot script (U-Boot; compiled to boot.scr by build.sh with mkimage). Found by U-Boot's distro
# boot on the boot FAT, on the Raspberry Pi (mmc, u-boot-rpi) and on qemu's virt machine (virtio, u-boot-qemu).
# RAUC's uboot backend: BOOT_ORDER lists the slots by preference, BOOT_x_LEFT their remaining tries. They live
# in uboot.env on this FAT (env import/export -c + fatwrite, whatever the board's own env location), so
# fw_setenv on the running system (/etc/fw_env.config) and this script see the same variables.
# The first slot in BOOT_ORDER with tries left is booted and its counter decremented before the kernel starts;
# the running system resets it (rauc status mark-good) once healthy, so a slot that does not come up (hang,
# watchdog reset, power cut) runs out of tries and the next one is booted.
# The file is 16 KiB (/etc/fw_env.config): export with -s, or U-Boot checksums its own ENV_SIZE (0x40000 on
# qemu_arm64) and fw_printenv finds a bad CRC.
setenv ab_env_size 0x4000
setenv BOOT_ORDER
setenv BOOT_A_LEFT
setenv BOOT_B_LEFT
if load ${devtype} ${devnum}:${distro_bootpart} ${kernel_addr_r} uboot.env; then
  env import -c ${kernel_addr_r} ${ab_env_size} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
fi
if test -z "${BOOT_ORDER}"; then
  # No (or a damaged) uboot.env: the image's first state, slot A first, both with their full tries.
  echo "eticket: no boot state in uboot.env, starting with BOOT_ORDER=A B"
  setenv BOOT_ORDER "A B"
  setenv BOOT_A_LEFT 3
  setenv BOOT_B_LEFT 3
fi
setenv ab_slot
for slot in ${BOOT_ORDER}; do
  if test -z "${ab_slot}"; then
    if test "${slot}" = "A" && test ${BOOT_A_LEFT} -gt 0; then
      setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
      setenv ab_slot A
      setenv ab_part 2
      setenv ab_label eticket-root-a
    fi
    if test "${slot}" = "B" && test ${BOOT_B_LEFT} -gt 0; then
      setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
      setenv ab_slot B
      setenv ab_part 3
      setenv ab_label eticket-root-b
    fi
  fi
done
if test -z "${ab_slot}"; then
  # Every slot used up its tries (a slot marked bad has 0). Never leave a counter dark: give both slots
  # their tries again and start over from BOOT_ORDER (the committed slot is first in it).
  echo "eticket: no slot has tries left; resetting the counters and restarting"
  setenv BOOT_A_LEFT 3
  setenv BOOT_B_LEFT 3
  env export -c -s ${ab_env_size} ${kernel_addr_r} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
  fatwrite ${devtype} ${devnum}:${distro_bootpart} ${kernel_addr_r} uboot.env ${ab_env_size}
  reset
fi
echo "eticket: booting slot ${ab_slot} (BOOT_ORDER=${BOOT_ORDER} A_LEFT=${BOOT_A_LEFT} B_LEFT=${BOOT_B_LEFT})"
env export -c -s ${ab_env_size} ${kernel_addr_r} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
fatwrite ${devtype} ${devnum}:${distro_bootpart} ${kernel_addr_r} uboot.env ${ab_env_size}

# The slot's own kernel and initramfs (a bundle updates them with the root file system).
# Debian's arm64 vmlinuz is an uncompressed Image (booti would need kernel_comp_addr_r for a gzip one;
# tests/image/test_arm64_image.py checks the Image magic).
if test "${board}" = "rpi"; then
  # The Pi firmware loaded the device tree for this board (config.txt upstream_kernel=1) at ${fdt_addr}.
  setenv ab_fdt ${fdt_addr}
  setenv bootargs "console=ttyS1,115200 quiet"
else
  # qemu's virt machine: the device tree qemu made (U-Boot runs on it too); no panel, the serial log shows
  # systemd unit by unit.
  setenv ab_fdt ${fdtcontroladdr}
  setenv bootargs "console=ttyAMA0 systemd.show_status=1"
fi
# panic=10: a kernel that cannot start the slot resets after 10 s instead of hanging, and the counter moves on
# (the hardware watchdog runs only once systemd arms it).
setenv bootargs "root=LABEL=${ab_label} rauc.slot=${ab_slot} ro rootwait panic=10 net.ifnames=0 vt.global_cursor_default=0 consoleblank=0 ${bootargs}"
if load ${devtype} ${devnum}:${ab_part} ${kernel_addr_r} /boot/vmlinuz; then
  if load ${devtype} ${devnum}:${ab_part} ${ramdisk_addr_r} /boot/initrd.img; then
    booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${ab_fdt}
  fi
fi
# The slot's files are missing or do not boot: this try is already counted; restart and let the counter
# move on to the next slot.
echo "eticket: slot ${ab_slot} did not boot; restarting"
reset
