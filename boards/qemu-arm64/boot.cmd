# The qemu-arm64 board's boot script (boards/qemu-arm64/boot.cmd), built
# into boot.scr on the boot partition (partition 1, whence the flash's
# bootcmd loads and runs it: qemu/device.UBootBoard).
# docs/bootloader-uboot.md's rules, verbatim, over Lifeboat's variables
# kept in lifeboat.env on that partition: U-Boot's environment format (a
# CRC32, then name=value strings), 16 KiB, one copy, which Linux writes
# with pkg/bootenv/uboot through the mounted FAT (board.json's fw_env).
# Debian's arm64 kernels have no driver for the virt board's CFI flash, so
# Linux cannot write U-Boot's own environment; this script never saves
# that one.
#
# The variables Lifeboat writes, and nothing else, from lifeboat.env.
# Cleared first, so that a missing or damaged file boots recovery.
setenv BOOT_ORDER
setenv BOOT_A_LEFT
setenv BOOT_B_LEFT
setenv LIFEBOAT_TRY
setenv LIFEBOAT_A_VERITY
setenv LIFEBOAT_B_VERITY
setenv lifeboat_recovery_args
setenv lifeboat_layout
setenv lifeboat_mode
if load virtio 0:1 ${kernel_addr_r} lifeboat.env; then
  if env import -c ${kernel_addr_r} 0x4000 BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT LIFEBOAT_TRY LIFEBOAT_A_VERITY LIFEBOAT_B_VERITY lifeboat_recovery_args lifeboat_layout lifeboat_mode; then
    true
  else
    echo "LIFEBOAT lifeboat.env is damaged"
  fi
else
  echo "LIFEBOAT no lifeboat.env"
fi
# The layout on the disk (written when the device is flashed; ab when
# unset) and the recovery entry's mode: update, or factory-reset while a
# factory reset is under way, so that a power cut resumes it.
# Kept in lb_layout and lb_mode, so that the saves below write back only
# what lifeboat.env held.
setenv lb_layout ab
if test -n "${lifeboat_layout}"; then
  setenv lb_layout ${lifeboat_layout}
fi
setenv lb_mode update
if test "${lifeboat_mode}" = "factory-reset"; then
  setenv lb_mode factory-reset
fi
# The reset trigger (board.json's reset_trigger, console-key:ctrl-c):
# Ctrl-C held on the serial console at power-on. U-Boot's sleep fails when
# Ctrl-C arrives during it; the autoboot does not look for a key
# (bootdelay=-2), and the bootcmd that runs this script has no loop, which
# a Ctrl-C would abandon, so the key reaches this script (no loop may come
# before this check either). Then the factory-reset
# entry boots: the recovery ramdisk in mode factory-reset, before any
# slot's try is counted; if it does not load, the selection below goes on.
if sleep 1; then
  true
else
  echo "LIFEBOAT reset trigger: factory reset"
  if load virtio 0:1 ${kernel_addr_r} /lifeboat/Image; then
    if load virtio 0:1 ${ramdisk_addr_r} /lifeboat/ramdisk.img; then
      setenv bootargs "console=ttyAMA0 panic=-1 lifeboat.mode=factory-reset lifeboat.layout=${lb_layout} ${lifeboat_recovery_args}"
      booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdtcontroladdr}
    fi
  fi
  echo "LIFEBOAT the factory-reset entry does not boot"
fi
# Lifeboat A/B selection (RAUC's variables; see docs/bootloader-uboot.md).
setenv lb_slot
setenv lb_part
for s in ${BOOT_ORDER}; do
  if test -z "${lb_slot}"; then
    if test "${s}" = "A"; then
      if test -n "${BOOT_A_LEFT}"; then
        if test ${BOOT_A_LEFT} -gt 0; then
          setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
          setenv lb_slot A
          setenv lb_part 2
        fi
      fi
    elif test "${s}" = "B"; then
      if test -n "${BOOT_B_LEFT}"; then
        if test ${BOOT_B_LEFT} -gt 0; then
          setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
          setenv lb_slot B
          setenv lb_part 3
        fi
      fi
    elif test "${s}" = "recovery"; then
      setenv lb_slot recovery
    fi
  fi
done
# Rule 3: the recovery entry boots even when BOOT_ORDER does not list it.
if test -z "${lb_slot}"; then
  setenv lb_slot recovery
fi
# Rule 2: the try is counted in lifeboat.env before the slot boots. A
# slot whose try cannot be counted does not boot.
if test "${lb_slot}" != "recovery"; then
  setenv lb_saved
  if env export -c -s 0x4000 ${kernel_addr_r} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT LIFEBOAT_TRY LIFEBOAT_A_VERITY LIFEBOAT_B_VERITY lifeboat_recovery_args lifeboat_layout lifeboat_mode; then
    if save virtio 0:1 ${kernel_addr_r} lifeboat.env 0x4000; then
      setenv lb_saved 1
    fi
  fi
  if test -z "${lb_saved}"; then
    echo "LIFEBOAT saving lifeboat.env failed, booting recovery"
    setenv lb_slot recovery
  fi
fi
echo "LIFEBOAT slot=${lb_slot} A_LEFT=${BOOT_A_LEFT} B_LEFT=${BOOT_B_LEFT}"

# The entries. A slot is partition 2 (rootfs-a) or 3 (rootfs-b), its
# kernel and initramfs in its ext4; one that does not load falls back to
# recovery. Recovery is the Lifeboat ramdisk on partition 1.
if test "${lb_slot}" = "A"; then
  if load virtio 0:2 ${kernel_addr_r} /boot/vmlinuz; then
    if load virtio 0:2 ${ramdisk_addr_r} /boot/initrd.img; then
      setenv bootargs "console=ttyAMA0 panic=-1 lifeboat.slot=A lifeboat.layout=${lb_layout} lifeboat.verity=${LIFEBOAT_A_VERITY}"
      booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdtcontroladdr}
    fi
  fi
  echo "LIFEBOAT slot A does not boot, falling back to recovery"
elif test "${lb_slot}" = "B"; then
  if load virtio 0:3 ${kernel_addr_r} /boot/vmlinuz; then
    if load virtio 0:3 ${ramdisk_addr_r} /boot/initrd.img; then
      setenv bootargs "console=ttyAMA0 panic=-1 lifeboat.slot=B lifeboat.layout=${lb_layout} lifeboat.verity=${LIFEBOAT_B_VERITY}"
      booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdtcontroladdr}
    fi
  fi
  echo "LIFEBOAT slot B does not boot, falling back to recovery"
fi
load virtio 0:1 ${kernel_addr_r} /lifeboat/Image
load virtio 0:1 ${ramdisk_addr_r} /lifeboat/ramdisk.img
setenv bootargs "console=ttyAMA0 panic=-1 lifeboat.mode=${lb_mode} lifeboat.layout=${lb_layout} ${lifeboat_recovery_args}"
booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdtcontroladdr}
