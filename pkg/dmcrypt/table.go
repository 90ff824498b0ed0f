package dmcrypt

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/lifeboat-update/lifeboat/pkg/dm"
)

// configFlag returns the dm-crypt optional parameter of a LUKS2 persistent
// activation flag, "" for flags without one.
func configFlag(f string) string {
	switch f {
	case "allow-discards", "same-cpu-crypt", "submit-from-crypt-cpus", "no-read-workqueue", "no-write-workqueue":
		return strings.ReplaceAll(f, "-", "_")
	}
	return ""
}

// Table returns the dm-crypt target mapping seg of device, a device of
// devSize bytes (a path or major:minor, as the kernel takes it), with key:
//
//	<cipher> <key hex> <iv_offset> <device> <offset> [<#opt> <opt>...]
//
// with sector_size:N among the optional parameters when seg's sector size
// is not 512. The target covers seg from Start 0; a Dynamic segment runs to
// the end of the device, in whole sectors. Options: WithAllowDiscards.
//
// The returned Params hold the key in hex: do not log them.
func Table(seg Segment, key VolumeKey, device string, devSize int64, opts ...Option) (dm.Target, error) {
	o := newOptions(opts)
	return table(seg, key, device, devSize, 0, o.dmFlags)
}

// table is Table with the end of the metadata the segment must not
// overlap.
func table(seg Segment, key VolumeKey, device string, devSize int64, metaEnd uint64, flags []string) (dm.Target, error) {
	if seg.Type != "" && seg.Type != "crypt" {
		return dm.Target{}, fmt.Errorf("%w: segment type %q", ErrUnsupported, seg.Type)
	}
	if seg.Integrity {
		return dm.Target{}, fmt.Errorf("%w: authenticated encryption (dm-integrity)", ErrUnsupported)
	}
	if seg.Encryption == "" || strings.ContainsAny(seg.Encryption, " \t\n\x00") {
		return dm.Target{}, fmt.Errorf("dm-crypt table: bad cipher %q", seg.Encryption)
	}
	if strings.ContainsAny(device, " \t\n\x00") || device == "" {
		return dm.Target{}, fmt.Errorf("dm-crypt table: bad device %q", device)
	}
	if len(key) == 0 {
		return dm.Target{}, fmt.Errorf("dm-crypt table: empty key")
	}
	ss := seg.SectorSize
	if ss == 0 {
		ss = 512
	}
	switch ss {
	case 512, 1024, 2048, 4096:
	default:
		return dm.Target{}, fmt.Errorf("dm-crypt table: sector size %d, want 512, 1024, 2048 or 4096", ss)
	}
	if seg.Offset%512 != 0 || seg.Size%uint64(ss) != 0 {
		return dm.Target{}, fmt.Errorf("dm-crypt table: offset %d, size %d not in sectors", seg.Offset, seg.Size)
	}
	if err := seg.checkBounds(metaEnd, devSize); err != nil {
		return dm.Target{}, fmt.Errorf("dm-crypt table: %w", err)
	}
	size := seg.Size
	if seg.Dynamic {
		size = (uint64(devSize) - seg.Offset) / uint64(ss) * uint64(ss)
	}
	if size == 0 {
		return dm.Target{}, fmt.Errorf("dm-crypt table: segment at %d of a %d-byte device holds no data", seg.Offset, devSize)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %x %d %s %d", seg.Encryption, []byte(key), seg.IVTweak, device, seg.Offset/512)
	opt := append([]string(nil), flags...)
	if ss != 512 {
		opt = append(opt, fmt.Sprintf("sector_size:%d", ss))
	}
	if len(opt) > 0 {
		fmt.Fprintf(&b, " %d %s", len(opt), strings.Join(opt, " "))
	}
	return dm.Target{Start: 0, Length: size / 512, Type: "crypt", Params: b.String()}, nil
}

// Open unlocks the LUKS2 volume on device with a passphrase (or a key
// file's contents) and maps it as name through ctl, as `cryptsetup open`
// does, returning the mapped device's path. The mapping's DM UUID is
// cryptsetup's, CRYPT-LUKS2-<uuid>-<name>. A wrong passphrase gives an
// error wrapping ErrWrongPassphrase, and no mapping. Options: WithLimits,
// WithKeyslot, WithReadOnly, WithAllowDiscards; the volume's persistent
// flags (e.g. allow-discards) apply too.
func Open(ctx context.Context, ctl dm.Control, name, device string, passphrase []byte, opts ...Option) (string, error) {
	o := newOptions(opts)
	f, size, err := openDevice(device)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h, err := ReadHeader(f, size)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", device, err)
	}
	_, seg, err := h.CryptSegment()
	if err != nil {
		return "", fmt.Errorf("open %s: %w", device, err)
	}
	key, err := h.Unlock(ctx, f, passphrase, opts...)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", device, err)
	}
	defer key.Zero()
	for _, fl := range h.Metadata.Config.Flags {
		if p := configFlag(fl); p != "" {
			withDMFlag(p)(&o)
		}
	}
	t, err := table(seg, key, device, size, 2*h.Size+h.Metadata.Config.KeyslotsSize, o.dmFlags)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", device, err)
	}
	uuid := "CRYPT-LUKS2-" + strings.ReplaceAll(h.UUID, "-", "") + "-" + name
	return create(ctx, ctl, name, uuid, t, o)
}

// OpenRaw maps seg of device as name through ctl with key, dm-crypt
// without LUKS (`cryptsetup open --type plain`), and returns the mapped
// device's path. seg needs Encryption; Offset, Size (or Dynamic), IVTweak
// and SectorSize (0 means 512) place the data. Options: WithReadOnly,
// WithAllowDiscards.
func OpenRaw(ctx context.Context, ctl dm.Control, name, device string, seg Segment, key []byte, opts ...Option) (string, error) {
	o := newOptions(opts)
	f, size, err := openDevice(device)
	if err != nil {
		return "", err
	}
	f.Close()
	t, err := table(seg, key, device, size, 0, o.dmFlags)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", device, err)
	}
	return create(ctx, ctl, name, "CRYPT-PLAIN-"+name, t, o)
}

func create(ctx context.Context, ctl dm.Control, name, uuid string, t dm.Target, o options) (string, error) {
	var fl dm.Flag
	if o.readOnly {
		fl |= dm.ReadOnly
	}
	d, err := ctl.Create(ctx, name, uuid, []dm.Target{t}, fl)
	if err != nil {
		return "", fmt.Errorf("create dm-crypt device %s: %w", name, err)
	}
	return d.Path, nil
}

// Close removes the mapping Open or OpenRaw made.
func Close(ctx context.Context, ctl dm.Control, name string) error {
	if err := ctl.Remove(ctx, name); err != nil {
		return fmt.Errorf("close dm-crypt device %s: %w", name, err)
	}
	return nil
}

// openDevice opens a device or image file read-only and returns its size.
func openDevice(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("open %s: %w", path, err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("size of %s: %w", path, err)
	}
	return f, size, nil
}
