// Package ebg is the EFI Boot Guard backend: the BGENV.DAT file EFI Boot
// Guard (EBG) keeps on each of its config partitions, and the A/B slot
// model over them.
//
// EBG keeps one environment per config partition, each a fixed-size
// struct with its own CRC32 (layout: [Config], [Size]). One config
// partition is one slot. At every boot EBG picks, among the configs whose
// CRC is valid, the one with the highest revision, and acts on its update
// state: INSTALLED becomes TESTING and boots, TESTING means the last try
// did not confirm and becomes FAILED with revision 0, and EBG boots the
// config with the next highest revision instead. [Select] is that rule,
// written after EBG 0.13's load_config (env/fatvars.c).
//
// [Env] is one config as a bootenv.Env; [Slots] is the slot.Bootloader
// over all of them. Each config file is reached through a [Part]: a file
// of fixed size rewritten in place ([OpenFile] on a mounted vfat
// partition, [OpenFAT] inside a FAT image or partition without mounting,
// [Mem] for tests).
//
// Power cuts: each change writes one config, whole, then syncs it. A torn
// write leaves that config with a bad CRC, which EBG ignores. [Slots]
// refuses any write after which a config with a bad CRC would boot
// something that is neither the old choice nor the new one ([ErrUnsafe]),
// so a cut at any point leaves EBG booting the old state or the new.
package ebg
