package ebg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Disk is what [OpenFAT] needs of the FAT volume: a partition (for example
// a blockdev.Section of a disk image) whose offset 0 is the boot sector.
// blockdev.Device satisfies it.
type Disk interface {
	io.ReaderAt
	io.WriterAt
	Flush() error
}

// ErrFAT is wrapped by the errors of [OpenFAT] about a volume it cannot
// read: not FAT, or the file is missing from the root directory.
var ErrFAT = errors.New("cannot find the file on the FAT volume")

// FATFile is a file in the root directory of a FAT12/16/32 volume, read and
// rewritten in place through its clusters: no mount, no allocation, the
// directory entry and the FATs never written. That is the only change EBG
// needs (its file has a fixed size), and it is the smallest one a power
// cut can interrupt. EBG's tools and Linux write the same sectors when
// they rewrite the file in place.
type FATFile struct {
	disk    Disk
	name    string
	size    int64
	extents []extent // file offset order
}

type extent struct{ disk, n int64 }

// OpenFAT finds name (an 8.3 name such as "BGENV.DAT", any case) in the
// root directory of the FAT volume on disk.
func OpenFAT(disk Disk, name string) (*FATFile, error) {
	var bs [512]byte
	if _, err := disk.ReadAt(bs[:], 0); err != nil {
		return nil, fmt.Errorf("read FAT boot sector: %w", err)
	}
	le := binary.LittleEndian
	bps := int64(le.Uint16(bs[11:]))
	spc := int64(bs[13])
	reserved := int64(le.Uint16(bs[14:]))
	nfats := int64(bs[16])
	rootEnts := int64(le.Uint16(bs[17:]))
	total := int64(le.Uint16(bs[19:]))
	if total == 0 {
		total = int64(le.Uint32(bs[32:]))
	}
	fatSz := int64(le.Uint16(bs[22:]))
	if fatSz == 0 {
		fatSz = int64(le.Uint32(bs[36:]))
	}
	if bs[510] != 0x55 || bs[511] != 0xAA || bps < 512 || bps > 4096 || bps&(bps-1) != 0 ||
		spc == 0 || spc&(spc-1) != 0 || reserved == 0 || nfats == 0 || fatSz == 0 {
		return nil, fmt.Errorf("not a FAT boot sector: %w", ErrFAT)
	}
	rootSecs := (rootEnts*32 + bps - 1) / bps
	dataStart := (reserved + nfats*fatSz + rootSecs) * bps
	if total*bps <= dataStart {
		return nil, fmt.Errorf("FAT geometry: %d sectors, data at byte %d: %w", total, dataStart, ErrFAT)
	}
	clusters := (total*bps - dataStart) / (spc * bps)
	v := &fatVol{disk: disk, fatOff: reserved * bps, dataStart: dataStart, clusterSize: spc * bps, clusters: clusters}
	switch {
	case clusters < 4085:
		v.bits = 12
	case clusters < 65525:
		v.bits = 16
	default:
		v.bits = 32
	}

	// The root directory: a fixed region on FAT12/16, a chain on FAT32.
	var root []extent
	if v.bits == 32 {
		var err error
		if root, err = v.chain(int64(le.Uint32(bs[44:])), -1); err != nil {
			return nil, fmt.Errorf("FAT32 root directory: %w", err)
		}
	} else {
		root = []extent{{disk: (reserved + nfats*fatSz) * bps, n: rootSecs * bps}}
	}
	want, err := shortName(name)
	if err != nil {
		return nil, err
	}
	for _, e := range root {
		dir := make([]byte, e.n)
		if _, err := disk.ReadAt(dir, e.disk); err != nil {
			return nil, fmt.Errorf("read FAT root directory: %w", err)
		}
		for i := 0; i+32 <= len(dir); i += 32 {
			ent := dir[i : i+32]
			switch {
			case ent[0] == 0:
				return nil, fmt.Errorf("%s: not in the root directory: %w", name, ErrFAT)
			case ent[0] == 0xE5, ent[11]&0x0F == 0x0F, ent[11]&0x18 != 0: // deleted, long name, volume label or directory
				continue
			case !bytes.Equal(ent[:11], want[:]):
				continue
			}
			first := int64(le.Uint16(ent[26:]))
			if v.bits == 32 {
				first |= int64(le.Uint16(ent[20:])) << 16
			}
			size := int64(le.Uint32(ent[28:]))
			f := &FATFile{disk: disk, name: name, size: size}
			if size > 0 {
				if f.extents, err = v.chain(first, size); err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
			}
			return f, nil
		}
	}
	return nil, fmt.Errorf("%s: not in the root directory: %w", name, ErrFAT)
}

// shortName returns name as the 11 bytes of an 8.3 directory entry.
func shortName(name string) ([11]byte, error) {
	var b [11]byte
	for i := range b {
		b[i] = ' '
	}
	base, ext, _ := bytes.Cut(bytes.ToUpper([]byte(name)), []byte("."))
	if len(base) == 0 || len(base) > 8 || len(ext) > 3 {
		return b, fmt.Errorf("%q is not an 8.3 name: %w", name, ErrFAT)
	}
	copy(b[:8], base)
	copy(b[8:], ext)
	return b, nil
}

type fatVol struct {
	disk        Disk
	bits        int
	fatOff      int64
	dataStart   int64
	clusterSize int64
	clusters    int64 // data clusters: valid numbers are 2..clusters+1
}

// next returns the FAT entry of cluster c.
func (v *fatVol) next(c int64) (int64, error) {
	var b [4]byte
	switch v.bits {
	case 12:
		if _, err := v.disk.ReadAt(b[:2], v.fatOff+c*3/2); err != nil {
			return 0, err
		}
		e := int64(binary.LittleEndian.Uint16(b[:]))
		if c&1 == 1 {
			e >>= 4
		}
		return e & 0xFFF, nil
	case 16:
		if _, err := v.disk.ReadAt(b[:2], v.fatOff+c*2); err != nil {
			return 0, err
		}
		return int64(binary.LittleEndian.Uint16(b[:])), nil
	}
	if _, err := v.disk.ReadAt(b[:], v.fatOff+c*4); err != nil {
		return 0, err
	}
	return int64(binary.LittleEndian.Uint32(b[:]) & 0x0FFFFFFF), nil
}

// chain follows the cluster chain from first and returns its extents,
// merged where clusters are adjacent, cut at size bytes (or the whole
// chain for size -1).
func (v *fatVol) chain(first, size int64) ([]extent, error) {
	eoc := int64(1)<<v.bits - 8 // 0xFF8, 0xFFF8, 0x0FFFFFF8 and above end a chain
	if v.bits == 32 {
		eoc = 0x0FFFFFF8
	}
	var ext []extent
	var got int64
	for c, steps := first, int64(0); ; steps++ {
		if c < 2 || c > v.clusters+1 || steps > v.clusters {
			return nil, fmt.Errorf("bad cluster chain at %d: %w", c, ErrFAT)
		}
		off := v.dataStart + (c-2)*v.clusterSize
		n := v.clusterSize
		if size >= 0 && got+n > size {
			n = size - got
		}
		if k := len(ext); k > 0 && ext[k-1].disk+ext[k-1].n == off {
			ext[k-1].n += n
		} else {
			ext = append(ext, extent{disk: off, n: n})
		}
		got += n
		if size >= 0 && got == size {
			return ext, nil
		}
		nc, err := v.next(c)
		if err != nil {
			return nil, fmt.Errorf("read FAT: %w", err)
		}
		if nc >= eoc {
			if size >= 0 {
				return nil, fmt.Errorf("cluster chain of %d bytes, file of %d: %w", got, size, ErrFAT)
			}
			return ext, nil
		}
		c = nc
	}
}

func (f *FATFile) String() string { return "fat:" + f.name }

// Size returns the size in the directory entry.
func (f *FATFile) Size() int64 { return f.size }

// ReadAt reads from the file.
func (f *FATFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.rw(p, off, f.disk.ReadAt)
	if err == nil && n < len(p) {
		err = io.EOF
	}
	return n, err
}

// WriteAt writes into the file's clusters; it never grows the file.
func (f *FATFile) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > f.size {
		return 0, fmt.Errorf("write [%d, +%d) of %s, %d bytes: %w", off, len(p), f.name, f.size, ErrFileSize)
	}
	return f.rw(p, off, f.disk.WriteAt)
}

// Sync flushes the disk.
func (f *FATFile) Sync() error { return f.disk.Flush() }

func (f *FATFile) rw(p []byte, off int64, op func([]byte, int64) (int, error)) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("offset %d: %w", off, ErrFileSize)
	}
	done := 0
	for _, e := range f.extents {
		if len(p) == done {
			break
		}
		if off >= e.n {
			off -= e.n
			continue
		}
		n := min(int64(len(p)-done), e.n-off)
		k, err := op(p[done:done+int(n)], e.disk+off)
		done += k
		if err != nil {
			return done, err
		}
		off = 0
	}
	return done, nil
}
