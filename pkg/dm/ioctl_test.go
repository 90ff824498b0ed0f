package dm

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The golden layouts below are written by hand from dm-ioctl.h for a
// little-endian machine.
func skipBigEndian(t testing.TB) {
	t.Helper()
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("golden layouts are little-endian; this machine is big-endian")
	}
}

// readHex reads a testdata/*.hex file: hex bytes with '#' comments.
func readHex(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var digits strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		line, _, _ = strings.Cut(line, "#")
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	out, err := hex.DecodeString(digits.String())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out
}

func TestIoctlNumbers(t *testing.T) {
	// _IOWR(0xfd, nr, struct dm_ioctl) with sizeof(struct dm_ioctl) 312,
	// as dmsetup issues them (strace shows DM_VERSION as 0xc138fd00).
	for _, tt := range []struct {
		name string
		got  uint32
		want uint32
	}{
		{"DM_VERSION", ioctlVersionReq, 0xc138fd00},
		{"DM_REMOVE_ALL", ioctlRemoveAll, 0xc138fd01},
		{"DM_LIST_DEVICES", ioctlList, 0xc138fd02},
		{"DM_DEV_CREATE", ioctlCreate, 0xc138fd03},
		{"DM_DEV_REMOVE", ioctlRemove, 0xc138fd04},
		{"DM_DEV_RENAME", ioctlRename, 0xc138fd05},
		{"DM_DEV_SUSPEND", ioctlSuspend, 0xc138fd06},
		{"DM_DEV_STATUS", ioctlDevStatus, 0xc138fd07},
		{"DM_DEV_WAIT", ioctlWait, 0xc138fd08},
		{"DM_TABLE_LOAD", ioctlTableLoad, 0xc138fd09},
		{"DM_TABLE_CLEAR", ioctlTableClear, 0xc138fd0a},
		{"DM_TABLE_DEPS", ioctlDeps, 0xc138fd0b},
		{"DM_TABLE_STATUS", ioctlStatus, 0xc138fd0c},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %#x, want %#x", tt.name, tt.got, tt.want)
		}
		if ioctlNames[tt.got] != tt.name {
			t.Errorf("ioctlNames[%#x] = %q, want %q", tt.got, ioctlNames[tt.got], tt.name)
		}
	}
}

func TestRequestLayout(t *testing.T) {
	skipBigEndian(t)
	got := request(header{Name: "vol", UUID: "CRYPT-1", Flags: flagReadOnly | flagSecureData, TargetCount: 1, Dev: 0xfd02}, []byte{0xaa, 0xbb}, 0)
	want := make([]byte, 320)
	copy(want, []byte{
		4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // version 4.0.0
		0x40, 0x01, 0, 0, // data_size 320: header and 2 bytes, rounded by nothing
		0x38, 0x01, 0, 0, // data_start 312
		1, 0, 0, 0, // target_count
		0, 0, 0, 0, // open_count
		0x01, 0x80, 0, 0, // flags READONLY|SECURE_DATA
		0, 0, 0, 0, // event_nr
		0, 0, 0, 0, // padding
		0x02, 0xfd, 0, 0, 0, 0, 0, 0, // dev 253:2
	})
	copy(want[48:], "vol")
	copy(want[176:], "CRYPT-1")
	want[312], want[313] = 0xaa, 0xbb
	want = want[:314]
	want[12] = 0x3a // data_size 314
	if !bytes.Equal(got, want) {
		t.Errorf("request() =\n%s\nwant\n%s", hex.Dump(got), hex.Dump(want))
	}

	// A bigger buffer for the reply.
	if got := request(header{}, nil, 16<<10); len(got) != 16<<10 || binary.LittleEndian.Uint32(got[12:]) != 16<<10 {
		t.Errorf("request(size 16K) = %d bytes, data_size %d, want 16384 both", len(got), binary.LittleEndian.Uint32(got[12:]))
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	h := header{Name: strings.Repeat("n", nameLen-1), UUID: strings.Repeat("u", uuidLen-1), Flags: flagActivePresent | flagSuspend, TargetCount: 3, OpenCount: 2, EventNr: 7, Dev: uint64(Mkdev(253, 9))}
	b := request(h, []byte("data"), 0)
	got, data, err := parseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	h.Version, h.DataStart, h.DataSize = ioctlVersion, headerSize, headerSize+4
	if diff := cmp.Diff(h, got); diff != "" {
		t.Errorf("parseHeader(request(h)) differs (-want +got):\n%s", diff)
	}
	if string(data) != "data" {
		t.Errorf("parseHeader(request(h)) data = %q, want %q", data, "data")
	}
	info := infoFrom(got)
	want := Info{Name: h.Name, UUID: h.UUID, Dev: Mkdev(253, 9), OpenCount: 2, EventNr: 7, TargetCount: 3, Suspended: true, LiveTable: true}
	if diff := cmp.Diff(want, info); diff != "" {
		t.Errorf("infoFrom() differs (-want +got):\n%s", diff)
	}
}

func TestParseHeaderErrors(t *testing.T) {
	ok := request(header{Name: "x"}, nil, 400)
	for _, tt := range []struct {
		name string
		edit func([]byte) []byte
	}{
		{"short", func(b []byte) []byte { return b[:100] }},
		{"data_size past buffer", func(b []byte) []byte { ne.PutUint32(b[offDataSize:], 401); return b }},
		{"data_start inside header", func(b []byte) []byte { ne.PutUint32(b[offDataStart:], 8); return b }},
	} {
		b := tt.edit(bytes.Clone(ok))
		if _, _, err := parseHeader(b); !errors.Is(err, ErrBadReply) {
			t.Errorf("parseHeader(%s) = %v, want ErrBadReply", tt.name, err)
		}
	}
	// A reply without data ends at offsetof(struct dm_ioctl, data).
	b := bytes.Clone(ok)
	ne.PutUint32(b[offDataSize:], 305)
	if _, data, err := parseHeader(b); err != nil || data != nil {
		t.Errorf("parseHeader(no data) = %q, %v, want nil, nil", data, err)
	}
	// A full buffer has no data to check.
	b = bytes.Clone(ok)
	ne.PutUint32(b[offFlags:], flagBufferFull)
	ne.PutUint32(b[offDataSize:], 1<<30)
	if _, data, err := parseHeader(b); err != nil || data != nil {
		t.Errorf("parseHeader(buffer full) = %q, %v, want nil, nil", data, err)
	}
}

func TestEncodeTable(t *testing.T) {
	skipBigEndian(t)
	got, err := encodeTable([]Target{
		{Start: 0, Length: 2048, Type: "linear", Params: "8:16 0"},
		{Start: 2048, Length: 8, Type: "zero"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		// target 0: next is relative to this spec on DM_TABLE_LOAD.
		0, 0, 0, 0, 0, 0, 0, 0, // sector_start
		0, 8, 0, 0, 0, 0, 0, 0, // length 2048
		0, 0, 0, 0, // status
		48, 0, 0, 0, // next: 40 + 7 rounded to 48
		'l', 'i', 'n', 'e', 'a', 'r', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		'8', ':', '1', '6', ' ', '0', 0, 0,
		// target 1
		0, 8, 0, 0, 0, 0, 0, 0,
		8, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 0,
		48, 0, 0, 0, // next: 40 + 1 rounded to 48
		'z', 'e', 'r', 'o', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0,
	}
	if !bytes.Equal(got, want) {
		t.Errorf("encodeTable() =\n%s\nwant\n%s", hex.Dump(got), hex.Dump(want))
	}
}

func TestCheckTable(t *testing.T) {
	lin := func(start, length uint64) Target {
		return Target{Start: start, Length: length, Type: "linear", Params: "8:16 0"}
	}
	for _, tt := range []struct {
		name  string
		table []Target
		ok    bool
	}{
		{"one", []Target{lin(0, 8)}, true},
		{"two", []Target{lin(0, 8), lin(8, 8)}, true},
		{"empty", nil, false},
		{"not from 0", []Target{lin(8, 8)}, false},
		{"gap", []Target{lin(0, 8), lin(16, 8)}, false},
		{"overlap", []Target{lin(0, 8), lin(4, 8)}, false},
		{"zero length", []Target{lin(0, 0)}, false},
		{"no type", []Target{{Length: 8}}, false},
		{"long type", []Target{{Length: 8, Type: strings.Repeat("t", 16)}}, false},
		{"NUL in params", []Target{{Length: 8, Type: "linear", Params: "8:16\x000"}}, false},
		{"overflow", []Target{lin(0, 1<<63), lin(1<<63, 1<<63)}, false},
	} {
		err := checkTable(tt.table)
		if tt.ok && err != nil || !tt.ok && !errors.Is(err, ErrBadTarget) {
			t.Errorf("checkTable(%s) = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, tt := range []struct {
		name, uuid string
		ok         bool
	}{
		{"root", "", true},
		{"root", "CRYPT-LUKS2-abc", true},
		{strings.Repeat("n", 127), strings.Repeat("u", 128), true},
		{"", "", false},
		{".", "", false},
		{"..", "", false},
		{"a/b", "", false},
		{"a\x00b", "", false},
		{strings.Repeat("n", 128), "", false},
		{"root", strings.Repeat("u", 129), false},
	} {
		err := checkName(tt.name, tt.uuid)
		if tt.ok && err != nil || !tt.ok && !errors.Is(err, ErrBadName) {
			t.Errorf("checkName(%q, %q) = %v, want ok %v", tt.name, tt.uuid, err, tt.ok)
		}
	}
}

func TestDecodeTargets(t *testing.T) {
	skipBigEndian(t)
	got, err := decodeTargets(readHex(t, "status-two.hex"), 2)
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{
		{Start: 0, Length: 2048, Type: "linear", Params: "8:16 0"},
		{Start: 2048, Length: 8, Type: "verity", Params: "V"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decodeTargets(status-two) differs (-want +got):\n%s", diff)
	}
	if got, err := decodeTargets(nil, 0); err != nil || len(got) != 0 {
		t.Errorf("decodeTargets(nil, 0) = %v, %v, want none", got, err)
	}
}

func TestDecodeTargetsErrors(t *testing.T) {
	skipBigEndian(t)
	good := readHex(t, "status-two.hex")
	for _, tt := range []struct {
		name  string
		data  []byte
		count uint32
	}{
		{"more targets than fit", good, 3},
		{"truncated", good[:60], 2},
		{"unterminated", good[:46], 1},
		{"next backwards", func() []byte { b := bytes.Clone(good); b[20] = 8; return b }(), 2},
		{"next past end", func() []byte { b := bytes.Clone(good); b[20] = 90; return b }(), 2},
		{"huge count", good, 1 << 31},
	} {
		if _, err := decodeTargets(tt.data, tt.count); !errors.Is(err, ErrBadReply) {
			t.Errorf("decodeTargets(%s) = %v, want ErrBadReply", tt.name, err)
		}
	}
}

func TestDecodeList(t *testing.T) {
	skipBigEndian(t)
	for _, tt := range []struct {
		file string
		want []ListEntry
	}{
		{"list-uuid.hex", []ListEntry{
			{Name: "root", Dev: Mkdev(253, 0), EventNr: 3, UUID: "CRYPT-x"},
			{Name: "data", Dev: Mkdev(253, 1)},
		}},
		{"list-empty.hex", nil},
	} {
		got, err := decodeList(readHex(t, tt.file))
		if err != nil {
			t.Errorf("decodeList(%s): %v", tt.file, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("decodeList(%s) differs (-want +got):\n%s", tt.file, diff)
		}
	}
	// A kernel before 4.37 wrote no event number: a record that ends
	// after its name.
	rec := make([]byte, 16)
	ne.PutUint64(rec, uint64(Mkdev(253, 4)))
	copy(rec[12:], "old")
	got, err := decodeList(rec)
	if want := []ListEntry{{Name: "old", Dev: Mkdev(253, 4)}}; err != nil || !cmp.Equal(got, want) {
		t.Errorf("decodeList(old record) = %v, %v, want %v", got, err, want)
	}
}

func TestDecodeListErrors(t *testing.T) {
	skipBigEndian(t)
	good := readHex(t, "list-uuid.hex")
	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"next past end", func() []byte { b := bytes.Clone(good); b[8] = 200; return b }()},
		{"next too small", func() []byte { b := bytes.Clone(good); b[8] = 4; return b }()},
		{"truncated second record", good[:48]},
		{"unterminated name", func() []byte { b := bytes.Clone(good[:56]); copy(b[52:], "xxxx"); return b }()},
		{"unterminated uuid", func() []byte { b := bytes.Clone(good); b[39] = 'y'; return b }()},
	} {
		if _, err := decodeList(tt.data); !errors.Is(err, ErrBadReply) {
			t.Errorf("decodeList(%s) = %v, want ErrBadReply", tt.name, err)
		}
	}
}

func TestDecodeDeps(t *testing.T) {
	skipBigEndian(t)
	good := readHex(t, "deps-two.hex")
	got, err := decodeDeps(good)
	if want := []DevT{Mkdev(8, 16), Mkdev(253, 0)}; err != nil || !cmp.Equal(got, want) {
		t.Errorf("decodeDeps(deps-two) = %v, %v, want %v", got, err, want)
	}
	for _, data := range [][]byte{nil, good[:4], good[:20]} {
		if _, err := decodeDeps(data); !errors.Is(err, ErrBadReply) {
			t.Errorf("decodeDeps(%d bytes) = %v, want ErrBadReply", len(data), err)
		}
	}
}

func TestDevT(t *testing.T) {
	for _, tt := range []struct {
		major, minor uint32
		want         DevT
		str          string
	}{
		{8, 16, 0x810, "8:16"},
		{253, 0, 0xfd00, "253:0"},
		{259, 300, 0x100000 | 0x10300 | 44, "259:300"}, // minor's high bits above major's
		{4095, 1 << 20, 0xfff00 | 1<<32, "4095:1048576"},
	} {
		d := Mkdev(tt.major, tt.minor)
		if d != tt.want || d.Major() != tt.major || d.Minor() != tt.minor || d.String() != tt.str {
			t.Errorf("Mkdev(%d, %d) = %#x (%d:%d %q), want %#x %q", tt.major, tt.minor, uint64(d), d.Major(), d.Minor(), d.String(), uint64(tt.want), tt.str)
		}
	}
}

func FuzzDecodeList(f *testing.F) {
	for _, name := range []string{"list-uuid.hex", "list-empty.hex"} {
		f.Add(readHex(f, name))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := decodeList(data)
		if err != nil {
			if !errors.Is(err, ErrBadReply) {
				t.Fatalf("decodeList() = %v, want an ErrBadReply", err)
			}
			return
		}
		for _, e := range list {
			if strings.IndexByte(e.Name, 0) >= 0 || strings.IndexByte(e.UUID, 0) >= 0 || len(e.Name)+len(e.UUID) > len(data) {
				t.Fatalf("decodeList() entry %+v out of the %d-byte data", e, len(data))
			}
		}
	})
}

func FuzzDecodeStatus(f *testing.F) {
	f.Add(readHex(f, "status-two.hex"), uint32(2))
	f.Add(readHex(f, "deps-two.hex"), uint32(1))
	f.Fuzz(func(t *testing.T, data []byte, count uint32) {
		table, err := decodeTargets(data, count)
		if err != nil {
			if !errors.Is(err, ErrBadReply) {
				t.Fatalf("decodeTargets() = %v, want an ErrBadReply", err)
			}
			return
		}
		if len(table) != int(count) {
			t.Fatalf("decodeTargets(count %d) = %d targets", count, len(table))
		}
		if _, err := decodeDeps(data); err != nil && !errors.Is(err, ErrBadReply) {
			t.Fatalf("decodeDeps() = %v, want an ErrBadReply", err)
		}
		// A reply header around the data parses or is refused.
		if _, _, err := parseHeader(append(request(header{}, nil, 0), data...)); err != nil && !errors.Is(err, ErrBadReply) {
			t.Fatalf("parseHeader() = %v, want an ErrBadReply", err)
		}
	})
}
