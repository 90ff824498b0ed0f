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
# Rule 2: the try is counted on the flash before the slot boots. A slot
# whose try cannot be counted does not boot.
if test "${lb_slot}" != "recovery"; then
  if saveenv; then
    true
  else
    echo "LIFEBOAT saveenv failed, booting recovery"
    setenv lb_slot recovery
  fi
fi
echo "LIFEBOAT slot=${lb_slot} A_LEFT=${BOOT_A_LEFT} B_LEFT=${BOOT_B_LEFT}"
if test "${lb_slot}" = "recovery"; then
  load virtio 0:1 ${kernel_addr_r} /lifeboat/Image
  load virtio 0:1 ${ramdisk_addr_r} /lifeboat/initrd.img
  setenv bootargs "console=ttyAMA0 lifeboat.slot=recovery"
else
  load virtio 0:${lb_part} ${kernel_addr_r} /boot/Image
  load virtio 0:${lb_part} ${ramdisk_addr_r} /boot/initrd.img
  setenv bootargs "console=ttyAMA0 root=/dev/vda${lb_part} lifeboat.slot=${lb_slot}"
fi
booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdtcontroladdr}
