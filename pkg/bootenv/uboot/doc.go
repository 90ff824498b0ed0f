// Package uboot reads and writes U-Boot's environment, single or
// redundant, as U-Boot itself and libubootenv's fw_printenv and fw_setenv
// do.
//
// # Format
//
// A copy is a little-endian CRC32 (IEEE) of its data area, then, in the
// redundant format only, a flags byte, then the data area:
// "name=value" strings each ending in NUL, an empty string, and padding
// (U-Boot pads with 0x00, mkenvimage with 0xff unless -p). The CRC covers
// the whole data area, padding included, but not the flags byte. [Image]
// decodes a copy the way U-Boot's himport_r does (leading blanks skipped,
// '#' comments, "name=" deleting name, backslash escapes) and encodes it
// the way hexport_r does (sorted, backslashes escaped, zero padding).
// fw_setenv does not escape backslashes: U-Boot, and this package, read
// "a\b" written by fw_setenv as "ab".
//
// # Which copy U-Boot takes
//
// Of two copies U-Boot never takes one whose CRC is bad; with both bad it
// boots with its built-in defaults (Load then fails with
// bootenv.ErrNoEnv). Of two good copies the flags bytes decide, in one of
// two schemes ([Select]): [Incremental] (env_import_redund: the higher
// counter wins, 0 beats 255; U-Boot's MMC, SPI flash, NAND and UBI
// drivers, and libubootenv on files, block devices and NAND) or [Boolean]
// (env/flash.c: 1 is active, 0 obsolete; U-Boot on parallel NOR flash,
// and libubootenv on NOR MTDs). The default follows libubootenv: Boolean
// on NOR flash, Incremental elsewhere; [WithFlagScheme] overrides it.
//
// # Saving
//
// [Env.Save] writes the copy U-Boot does not use now, with the next
// flags value, flushes it and reads it back. Until the last byte of the
// new copy is down its CRC is bad and U-Boot keeps the old copy; once it
// is whole its flags make it the newer. With Boolean flags Save then
// programs the old copy's flags byte to 0 (obsolete). A power cut at any
// point leaves the old variables or the new, never none and never a mix:
// the cut test checks every sector boundary of a sequence of saves.
//
// A single-copy environment cannot be rewritten power-cut safely: a cut
// mid-write leaves a bad CRC and U-Boot falls back to its defaults. Save
// refuses it with [ErrSingleCopy] unless [AllowSingleCopy] is given.
//
// # Location
//
// [ParseConfig] reads libubootenv's fw_env.config: per copy a line
// "device offset envsize [sectorsize [sectors [nolock]]]", where device is
// a file, a block device or partition, or an MTD character device. An MTD
// ([Flash], [MTD]) is erased (MEMERASE) before it is written, whole erase
// blocks at a time, keeping what else they hold; [MemFlash] is its fake.
// NAND bad blocks are not skipped.
package uboot
