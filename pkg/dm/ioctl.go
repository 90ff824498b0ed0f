package dm

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// The kernel's ABI, from include/uapi/linux/dm-ioctl.h. Structures are in
// the machine's byte order and every variable record starts 8-byte aligned.
const (
	nameLen = 128 // DM_NAME_LEN, the terminating NUL included
	uuidLen = 129 // DM_UUID_LEN
	typeLen = 16  // DM_MAX_TYPE_NAME

	// headerSize is sizeof(struct dm_ioctl): 48 bytes of fields, name,
	// uuid and 7 bytes of padding (char data[7]). Data starts right after.
	headerSize = 312
	// specSize is sizeof(struct dm_target_spec).
	specSize = 40
	// align is the alignment of every record in the data area.
	align = 8

	// Offsets of the fields of struct dm_ioctl.
	offVersion     = 0
	offDataSize    = 12
	offDataStart   = 16
	offTargetCount = 20
	offOpenCount   = 24
	offFlags       = 28
	offEventNr     = 32
	offDev         = 40
	offName        = 48
	offUUID        = offName + nameLen // 176
	offData        = offUUID + uuidLen // 305, offsetof(struct dm_ioctl, data)
)

// The ioctl interface version this package speaks. The kernel refuses a
// different major or a newer minor; 4.0.0 lets any version-4 kernel answer.
var ioctlVersion = [3]uint32{4, 0, 0}

// Command numbers (the DM_*_CMD enum).
const (
	cmdVersion = iota
	cmdRemoveAll
	cmdListDevices
	cmdDevCreate
	cmdDevRemove
	cmdDevRename
	cmdDevSuspend
	cmdDevStatus
	cmdDevWait
	cmdTableLoad
	cmdTableClear
	cmdTableDeps
	cmdTableStatus
)

// iowr is the kernel's _IOWR(0xfd, nr, struct dm_ioctl).
func iowr(nr uint32) uint32 {
	const dir = 3 // _IOC_READ|_IOC_WRITE
	return dir<<30 | headerSize<<16 | 0xfd<<8 | nr
}

// The ioctl request numbers.
var (
	ioctlVersionReq = iowr(cmdVersion)     // DM_VERSION
	ioctlRemoveAll  = iowr(cmdRemoveAll)   // DM_REMOVE_ALL
	ioctlList       = iowr(cmdListDevices) // DM_LIST_DEVICES
	ioctlCreate     = iowr(cmdDevCreate)   // DM_DEV_CREATE
	ioctlRemove     = iowr(cmdDevRemove)   // DM_DEV_REMOVE
	ioctlRename     = iowr(cmdDevRename)   // DM_DEV_RENAME
	ioctlSuspend    = iowr(cmdDevSuspend)  // DM_DEV_SUSPEND
	ioctlDevStatus  = iowr(cmdDevStatus)   // DM_DEV_STATUS
	ioctlWait       = iowr(cmdDevWait)     // DM_DEV_WAIT
	ioctlTableLoad  = iowr(cmdTableLoad)   // DM_TABLE_LOAD
	ioctlTableClear = iowr(cmdTableClear)  // DM_TABLE_CLEAR
	ioctlDeps       = iowr(cmdTableDeps)   // DM_TABLE_DEPS
	ioctlStatus     = iowr(cmdTableStatus) // DM_TABLE_STATUS
)

// ioctlNames names the requests in errors.
var ioctlNames = map[uint32]string{
	ioctlVersionReq: "DM_VERSION",
	ioctlRemoveAll:  "DM_REMOVE_ALL",
	ioctlList:       "DM_LIST_DEVICES",
	ioctlCreate:     "DM_DEV_CREATE",
	ioctlRemove:     "DM_DEV_REMOVE",
	ioctlRename:     "DM_DEV_RENAME",
	ioctlSuspend:    "DM_DEV_SUSPEND",
	ioctlDevStatus:  "DM_DEV_STATUS",
	ioctlWait:       "DM_DEV_WAIT",
	ioctlTableLoad:  "DM_TABLE_LOAD",
	ioctlTableClear: "DM_TABLE_CLEAR",
	ioctlDeps:       "DM_TABLE_DEPS",
	ioctlStatus:     "DM_TABLE_STATUS",
}

// Flags of struct dm_ioctl.
const (
	flagReadOnly        = 1 << 0  // DM_READONLY_FLAG, in/out
	flagSuspend         = 1 << 1  // DM_SUSPEND_FLAG, in/out
	flagPersistentDev   = 1 << 3  // DM_PERSISTENT_DEV_FLAG, in
	flagStatusTable     = 1 << 4  // DM_STATUS_TABLE_FLAG, in
	flagActivePresent   = 1 << 5  // DM_ACTIVE_PRESENT_FLAG, out
	flagInactivePresent = 1 << 6  // DM_INACTIVE_PRESENT_FLAG, out
	flagBufferFull      = 1 << 8  // DM_BUFFER_FULL_FLAG, out
	flagSkipLockfs      = 1 << 10 // DM_SKIP_LOCKFS_FLAG, in
	flagNoFlush         = 1 << 11 // DM_NOFLUSH_FLAG, in
	flagQueryInactive   = 1 << 12 // DM_QUERY_INACTIVE_TABLE_FLAG, in
	flagUeventGenerated = 1 << 13 // DM_UEVENT_GENERATED_FLAG, out
	flagUUID            = 1 << 14 // DM_UUID_FLAG, in
	flagSecureData      = 1 << 15 // DM_SECURE_DATA_FLAG, in
)

// Flags of a dm_name_list record's trailer (dm-ioctl 4.46).
const (
	nameListHasUUID   = 1 // DM_NAME_LIST_FLAG_HAS_UUID
	nameListHasNoUUID = 2 // DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID
)

var ne = binary.NativeEndian

// header is struct dm_ioctl without the data that follows it.
type header struct {
	Version     [3]uint32
	DataSize    uint32
	DataStart   uint32
	TargetCount uint32
	OpenCount   int32
	Flags       uint32
	EventNr     uint32
	Dev         uint64
	Name, UUID  string
}

// request returns a buffer of at least size bytes (and room for data)
// holding h and data, with DataStart and DataSize set to match.
func request(h header, data []byte, size int) []byte {
	n := headerSize + len(data)
	if size < n {
		size = n
	}
	b := make([]byte, size)
	h.Version = ioctlVersion
	h.DataStart = headerSize
	h.DataSize = uint32(size)
	h.put(b)
	copy(b[headerSize:], data)
	return b
}

// put encodes h into b[:headerSize]. Name and UUID must fit; checkName
// checks them.
func (h *header) put(b []byte) {
	for i, v := range h.Version {
		ne.PutUint32(b[offVersion+4*i:], v)
	}
	ne.PutUint32(b[offDataSize:], h.DataSize)
	ne.PutUint32(b[offDataStart:], h.DataStart)
	ne.PutUint32(b[offTargetCount:], h.TargetCount)
	ne.PutUint32(b[offOpenCount:], uint32(h.OpenCount))
	ne.PutUint32(b[offFlags:], h.Flags)
	ne.PutUint32(b[offEventNr:], h.EventNr)
	ne.PutUint64(b[offDev:], h.Dev)
	clear(b[offName:headerSize])
	copy(b[offName:offName+nameLen-1], h.Name)
	copy(b[offUUID:offUUID+uuidLen-1], h.UUID)
}

// parseHeader decodes the struct dm_ioctl of a reply in b, the whole
// buffer given to the kernel, and returns it with the reply's data area.
func parseHeader(b []byte) (header, []byte, error) {
	var h header
	if len(b) < headerSize {
		return h, nil, fmt.Errorf("%w: %d bytes, shorter than struct dm_ioctl", ErrBadReply, len(b))
	}
	for i := range h.Version {
		h.Version[i] = ne.Uint32(b[offVersion+4*i:])
	}
	h.DataSize = ne.Uint32(b[offDataSize:])
	h.DataStart = ne.Uint32(b[offDataStart:])
	h.TargetCount = ne.Uint32(b[offTargetCount:])
	h.OpenCount = int32(ne.Uint32(b[offOpenCount:]))
	h.Flags = ne.Uint32(b[offFlags:])
	h.EventNr = ne.Uint32(b[offEventNr:])
	h.Dev = ne.Uint64(b[offDev:])
	h.Name = cstring(b[offName : offName+nameLen])
	h.UUID = cstring(b[offUUID : offUUID+uuidLen])
	// The kernel leaves DataSize alone when the buffer was too small.
	if h.Flags&flagBufferFull != 0 {
		return h, nil, nil
	}
	// Replies without data end at offsetof(struct dm_ioctl, data), 305,
	// before DataStart.
	if h.DataSize <= h.DataStart {
		return h, nil, nil
	}
	if h.DataStart < offData || uint64(h.DataSize) > uint64(len(b)) {
		return h, nil, fmt.Errorf("%w: data from %d to %d in a %d-byte buffer", ErrBadReply, h.DataStart, h.DataSize, len(b))
	}
	return h, b[h.DataStart:h.DataSize], nil
}

// cstring returns b up to its first NUL.
func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func alignUp(n int) int { return (n + align - 1) &^ (align - 1) }

// encodeTable encodes table as DM_TABLE_LOAD takes it: one dm_target_spec
// per target, each followed by its NUL-terminated params padded to 8
// bytes, its next the distance to the following spec.
func encodeTable(table []Target) ([]byte, error) {
	var b []byte
	for i, t := range table {
		if err := checkTarget(t); err != nil {
			return nil, fmt.Errorf("target %d: %w", i, err)
		}
		n := alignUp(specSize + len(t.Params) + 1)
		rec := make([]byte, n)
		ne.PutUint64(rec[0:], t.Start)
		ne.PutUint64(rec[8:], t.Length)
		// status (rec[16:20]) is only written by the kernel.
		ne.PutUint32(rec[20:], uint32(n))
		copy(rec[24:24+typeLen], t.Type)
		copy(rec[specSize:], t.Params)
		b = append(b, rec...)
	}
	return b, nil
}

func checkTarget(t Target) error {
	switch {
	case t.Type == "" || len(t.Type) >= typeLen || bytes.IndexByte([]byte(t.Type), 0) >= 0:
		return fmt.Errorf("%w: type %q: want 1 to %d bytes", ErrBadTarget, t.Type, typeLen-1)
	case bytes.IndexByte([]byte(t.Params), 0) >= 0:
		return fmt.Errorf("%w: %s params contain NUL", ErrBadTarget, t.Type)
	case t.Length == 0:
		return fmt.Errorf("%w: %s target has length 0", ErrBadTarget, t.Type)
	}
	return nil
}

// checkTable reports whether table is a whole device: targets of nonzero
// length, each starting where the last ended, from sector 0.
func checkTable(table []Target) error {
	if len(table) == 0 {
		return fmt.Errorf("%w: empty table", ErrBadTarget)
	}
	var next uint64
	for i, t := range table {
		if err := checkTarget(t); err != nil {
			return fmt.Errorf("target %d: %w", i, err)
		}
		if t.Start != next {
			return fmt.Errorf("%w: target %d starts at sector %d, want %d", ErrBadTarget, i, t.Start, next)
		}
		if t.Start+t.Length < t.Start {
			return fmt.Errorf("%w: target %d overflows", ErrBadTarget, i)
		}
		next = t.Start + t.Length
	}
	return nil
}

// decodeTargets decodes the count dm_target_specs of a DM_TABLE_STATUS
// reply's data area: each next is the offset of the following spec from
// the start of data, and each spec is followed by its NUL-terminated
// status or table line.
func decodeTargets(data []byte, count uint32) ([]Target, error) {
	if uint64(count) > uint64(len(data)/specSize) {
		return nil, fmt.Errorf("%w: %d targets in %d bytes", ErrBadReply, count, len(data))
	}
	table := make([]Target, 0, count)
	off := 0
	for i := uint32(0); i < count; i++ {
		if off < 0 || off > len(data)-specSize {
			return nil, fmt.Errorf("%w: target %d at %d past the %d-byte data", ErrBadReply, i, off, len(data))
		}
		s := data[off:]
		end := bytes.IndexByte(s[specSize:], 0)
		if end < 0 {
			return nil, fmt.Errorf("%w: target %d: unterminated line", ErrBadReply, i)
		}
		table = append(table, Target{
			Start:  ne.Uint64(s[0:]),
			Length: ne.Uint64(s[8:]),
			Type:   cstring(s[24 : 24+typeLen]),
			Params: string(s[specSize : specSize+end]),
		})
		next := ne.Uint32(s[20:])
		if i+1 < count && int64(next) < int64(off)+specSize+int64(end)+1 {
			return nil, fmt.Errorf("%w: target %d: next %d goes backwards from %d", ErrBadReply, i, next, off)
		}
		off = int(next)
	}
	return table, nil
}

// decodeList decodes a DM_LIST_DEVICES reply's data area: dm_name_list
// records, each its next bytes after the start of the one before (0 in
// the last), a name, and since dm-ioctl 4.37 an aligned trailer of event
// number and flags, followed by the UUID when the flags say so.
func decodeList(data []byte) ([]ListEntry, error) {
	// An empty list is a single record whose dev is 0.
	if len(data) < 12 || ne.Uint64(data) == 0 {
		return nil, nil
	}
	var list []ListEntry
	for off := 0; ; {
		if off > len(data)-12 {
			return nil, fmt.Errorf("%w: device record at %d past the %d-byte data", ErrBadReply, off, len(data))
		}
		next := int(ne.Uint32(data[off+8:]))
		end := len(data)
		if next != 0 {
			if next < 12 || next > len(data)-off {
				return nil, fmt.Errorf("%w: device record at %d: next %d", ErrBadReply, off, next)
			}
			end = off + next
		}
		rec := data[off:end]
		n := bytes.IndexByte(rec[12:], 0)
		if n < 0 {
			return nil, fmt.Errorf("%w: device record at %d: unterminated name", ErrBadReply, off)
		}
		e := ListEntry{Dev: DevT(ne.Uint64(rec)), Name: string(rec[12 : 12+n])}
		// The record starts 8-aligned, so aligning within it aligns in memory.
		if t := alignUp(12 + n + 1); t+8 <= len(rec) {
			e.EventNr = ne.Uint32(rec[t:])
			if ne.Uint32(rec[t+4:])&nameListHasUUID != 0 {
				u := rec[t+8:]
				k := bytes.IndexByte(u, 0)
				if k < 0 {
					return nil, fmt.Errorf("%w: device %s: unterminated UUID", ErrBadReply, e.Name)
				}
				e.UUID = string(u[:k])
			}
		}
		list = append(list, e)
		if next == 0 {
			return list, nil
		}
		off = end
	}
}

// decodeDeps decodes a DM_TABLE_DEPS reply's data area: struct
// dm_target_deps, a count, 4 bytes of padding and count device numbers.
func decodeDeps(data []byte) ([]DevT, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("%w: %d bytes of dependencies", ErrBadReply, len(data))
	}
	n := ne.Uint32(data)
	if uint64(n) > uint64(len(data)-8)/8 {
		return nil, fmt.Errorf("%w: %d dependencies in %d bytes", ErrBadReply, n, len(data))
	}
	deps := make([]DevT, n)
	for i := range deps {
		deps[i] = DevT(ne.Uint64(data[8+8*i:]))
	}
	return deps, nil
}

// infoFrom returns the Info a DM_DEV_STATUS-like reply's header reports.
func infoFrom(h header) Info {
	return Info{
		Name:          h.Name,
		UUID:          h.UUID,
		Dev:           DevT(h.Dev),
		OpenCount:     h.OpenCount,
		EventNr:       h.EventNr,
		TargetCount:   h.TargetCount,
		ReadOnly:      h.Flags&flagReadOnly != 0,
		Suspended:     h.Flags&flagSuspend != 0,
		LiveTable:     h.Flags&flagActivePresent != 0,
		InactiveTable: h.Flags&flagInactivePresent != 0,
	}
}
