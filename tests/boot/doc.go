// Package boot is the real-bootloader tier: its tests build a disk the way
// a board's is built (GPT, an EFI system partition, one partition per
// slot), boot it in QEMU under TCG with the real firmware and bootloader,
// and check on the serial console which slot each boot started, and on
// the disk what the bootloader wrote back. The host plays Lifeboat's part
// between boots: it installs a release on a slot and writes the
// bootloader's variables. It holds no code outside its tests and the
// slots' init (slotinit); see README.md for what it proves and needs.
package boot
