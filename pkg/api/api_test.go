package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeTestdata(t *testing.T) {
	var reg Registration
	if err := Decode(bytes.NewReader(readTestdata(t, "registration.json")), MaxBodySize, &reg); err != nil {
		t.Errorf("registration.json: %v", err)
	}
	if reg.DeviceID != "SN-0042" || reg.Version != "1.0" || reg.TokenExpires != nil {
		t.Errorf("registration.json = %+v", reg)
	}
	var st Status
	if err := Decode(bytes.NewReader(readTestdata(t, "status.json")), MaxBodySize, &st); err != nil {
		t.Errorf("status.json: %v", err)
	}
	if st.Phase != PhaseDownloading || len(st.Slots) != 2 || st.Transfer.ImageBytes != 256<<20 {
		t.Errorf("status.json = %+v", st)
	}
	var inv Inventory
	if err := Decode(bytes.NewReader(readTestdata(t, "inventory.json")), MaxBodySize, &inv); err != nil {
		t.Errorf("inventory.json: %v", err)
	}
	if inv.Attributes["hw_revision"] != "B2" || len(inv.Attributes) != 3 {
		t.Errorf("inventory.json = %+v", inv)
	}
	var p Poll
	if err := Decode(bytes.NewReader(readTestdata(t, "poll.json")), MaxBodySize, &p); err != nil {
		t.Errorf("poll.json: %v", err)
	}
	if p.Release == nil || p.Release.Version != "1.1" || p.IntervalSeconds != 317 {
		t.Errorf("poll.json = %+v", p)
	}
	var bulk BulkRegistration
	if err := Decode(bytes.NewReader(readTestdata(t, "bulk_registration.json")), MaxBulkBodySize, &bulk); err != nil {
		t.Errorf("bulk_registration.json: %v", err)
	}
	if len(bulk.Devices) != 2 || bulk.Devices[1].DeviceID != "SN-0043" || bulk.Devices[1].TokenExpires == nil {
		t.Errorf("bulk_registration.json = %+v", bulk)
	}
}

func TestDecodeRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		limit      int64
		want       error
		msg        string
	}{
		{"empty", "", MaxBodySize, ErrInvalid, "empty body"},
		{"not JSON", "device_id=x", MaxBodySize, ErrInvalid, "malformed JSON"},
		{"array", "[]", MaxBodySize, ErrInvalid, "malformed JSON"},
		{"unknown field", `{"attributes": {}, "extra": 1}`, MaxBodySize, ErrInvalid, `unknown field "extra"`},
		{"two values", `{"attributes": {}} {"attributes": {}}`, MaxBodySize, ErrInvalid, "data after"},
		{"trailing garbage", `{"attributes": {}} x`, MaxBodySize, ErrInvalid, "data after"},
		{"truncated", `{"attributes": {`, MaxBodySize, ErrInvalid, "malformed JSON"},
		{"wrong type", `{"attributes": {"a": 1}}`, MaxBodySize, ErrInvalid, "malformed JSON"},
		{"over the limit", `{"attributes": {"a": "` + strings.Repeat("x", 100) + `"}}`, 64, ErrTooLarge, "the most is 64 bytes"},
		{"invalid", `{}`, MaxBodySize, ErrInvalid, "attributes: missing"},
	} {
		var inv Inventory
		err := Decode(strings.NewReader(tc.body), tc.limit, &inv)
		if !errors.Is(err, tc.want) || !strings.Contains(fmt.Sprint(err), tc.msg) {
			t.Errorf("%s: Decode = %v, want %v naming %q", tc.name, err, tc.want, tc.msg)
		}
	}
	// Exactly at the limit is fine.
	body := `{"attributes": {"a": "` + strings.Repeat("x", 40) + `"}}`
	var inv Inventory
	if err := Decode(strings.NewReader(body), int64(len(body)), &inv); err != nil {
		t.Errorf("Decode of a body exactly at its limit = %v", err)
	}
}

func validReg() Registration {
	return Registration{DeviceID: "SN-1", Board: "qemu-x86_64", Version: "1.0", TokenSHA256: strings.Repeat("ab", 32)}
}

func TestRegistrationValidate(t *testing.T) {
	zero := time.Time{}
	for _, tc := range []struct {
		name string
		mod  func(*Registration)
		msg  string // "" for valid
	}{
		{"valid", func(*Registration) {}, ""},
		{"with expiry", func(r *Registration) { e := time.Now(); r.TokenExpires = &e }, ""},
		{"uuid id", func(r *Registration) { r.DeviceID = "0b6a9f3e-6f1e-4d1a-9d43-2b8e7b1c9a10" }, ""},
		{"no id", func(r *Registration) { r.DeviceID = "" }, "device_id"},
		{"id with slash", func(r *Registration) { r.DeviceID = "a/b" }, "device_id"},
		{"id too long", func(r *Registration) { r.DeviceID = strings.Repeat("a", 65) }, "device_id"},
		{"no board", func(r *Registration) { r.Board = "" }, "board"},
		{"board with space", func(r *Registration) { r.Board = "x 1" }, "board"},
		{"no version", func(r *Registration) { r.Version = "" }, "version"},
		{"version too long", func(r *Registration) { r.Version = strings.Repeat("1", 65) }, "version"},
		{"short hash", func(r *Registration) { r.TokenSHA256 = "abcd" }, "token_sha256"},
		{"upper-case hash", func(r *Registration) { r.TokenSHA256 = strings.Repeat("AB", 32) }, "token_sha256"},
		{"zero expiry", func(r *Registration) { r.TokenExpires = &zero }, "token_expires"},
	} {
		r := validReg()
		tc.mod(&r)
		checkValidate(t, tc.name, r.Validate(), tc.msg)
	}
}

// checkValidate checks what Validate said of case name: nil for msg "",
// else ErrInvalid naming msg.
func checkValidate(t *testing.T, name string, err error, msg string) {
	t.Helper()
	switch {
	case msg == "" && err != nil:
		t.Errorf("%s: Validate = %v, want nil", name, err)
	case msg != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), msg)):
		t.Errorf("%s: Validate = %v, want ErrInvalid naming %q", name, err, msg)
	}
}

func TestBulkRegistrationValidate(t *testing.T) {
	regs := func(n int) []Registration {
		rs := make([]Registration, n)
		for i := range rs {
			rs[i] = validReg()
			rs[i].DeviceID = fmt.Sprintf("SN-%d", i)
			rs[i].TokenSHA256 = fmt.Sprintf("%064x", i)
		}
		return rs
	}
	for _, tc := range []struct {
		name string
		regs []Registration
		mod  func([]Registration)
		msg  string // "" for valid
	}{
		{"one", regs(1), func([]Registration) {}, ""},
		{"the most", regs(MaxBulkRegistrations), func([]Registration) {}, ""},
		{"none", nil, func([]Registration) {}, "0 devices: want 1 to 1000"},
		{"too many", regs(MaxBulkRegistrations + 1), func([]Registration) {}, "1001 devices: want 1 to 1000"},
		{"bad board", regs(3), func(rs []Registration) { rs[2].Board = "a b" }, `devices[2] (SN-2): board "a b"`},
		{"bad ID", regs(3), func(rs []Registration) { rs[1].DeviceID = "a/b" }, `devices[1] (a/b): device_id "a/b"`},
		{"ID twice", regs(3), func(rs []Registration) { rs[2].DeviceID = "SN-0" }, "devices[2] (SN-0): device_id given at devices[0] too"},
		{"token twice", regs(3), func(rs []Registration) { rs[2].TokenSHA256 = rs[1].TokenSHA256 }, "devices[2] (SN-2): token_sha256 given at devices[1] too"},
	} {
		b := BulkRegistration{Devices: tc.regs}
		tc.mod(b.Devices)
		checkValidate(t, tc.name, b.Validate(), tc.msg)
	}
}

// TestBulkRegistrationFits checks that MaxBulkBodySize holds
// MaxBulkRegistrations registrations of the longest fields.
func TestBulkRegistrationFits(t *testing.T) {
	b := BulkRegistration{}
	exp := time.Date(2031, 12, 31, 23, 59, 59, 999999999, time.FixedZone("", -(11*3600+59*60)))
	for i := range MaxBulkRegistrations {
		id := fmt.Sprintf("%064d", i)
		b.Devices = append(b.Devices, Registration{DeviceID: id, Board: strings.Repeat("b", MaxBoardLen),
			Version: strings.Repeat("v", MaxVersionLen), TokenSHA256: fmt.Sprintf("%064x", i), TokenExpires: &exp})
	}
	enc, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	var again BulkRegistration
	if err := Decode(bytes.NewReader(enc), MaxBulkBodySize, &again); err != nil {
		t.Fatalf("Decode of %d bytes, %d registrations = %v, want nil", len(enc), len(b.Devices), err)
	}
}

func TestEnrollmentValidate(t *testing.T) {
	for _, tc := range []struct {
		e   Enrollment
		msg string // "" for valid
	}{
		{Enrollment{Board: "qemu-x86_64", Version: "1.0"}, ""},
		{Enrollment{Board: "", Version: "1.0"}, `board ""`},
		{Enrollment{Board: "a/b", Version: "1.0"}, `board "a/b"`},
		{Enrollment{Board: strings.Repeat("b", 65), Version: "1.0"}, "board"},
		{Enrollment{Board: "b", Version: ""}, `version ""`},
		{Enrollment{Board: "b", Version: "1 0"}, `version "1 0"`},
	} {
		err := tc.e.Validate()
		if tc.msg == "" {
			if err != nil {
				t.Errorf("%+v: Validate = %v, want nil", tc.e, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%+v: Validate = %v, want ErrInvalid naming %q", tc.e, err, tc.msg)
		}
	}
	var e Enrollment
	if err := Decode(bytes.NewReader(readTestdata(t, "enrollment.json")), MaxBodySize, &e); err != nil || e != (Enrollment{Board: "qemu-x86_64", Version: "1.0"}) {
		t.Errorf("enrollment.json = %+v, %v", e, err)
	}
	if err := Decode(strings.NewReader(`{"board": "b", "version": "1", "device_id": "other"}`), MaxBodySize, &e); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `unknown field "device_id"`) {
		t.Errorf("an enrollment naming a device ID = %v, want ErrInvalid naming the field", err)
	}
}

func validStatus() Status {
	return Status{Phase: PhaseIdle, InstalledVersion: "1.0",
		Slots: []SlotState{{Name: "A", State: "good"}, {Name: "B", State: "trying", TriesLeft: 3}}}
}

func TestStatusValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Status)
		msg  string
	}{
		{"valid", func(*Status) {}, ""},
		{"failed with error", func(s *Status) { s.Phase, s.Error = PhaseFailed, "disk full" }, ""},
		{"progress 1", func(s *Status) { s.Progress = 1 }, ""},
		{"no phase", func(s *Status) { s.Phase = "" }, "phase"},
		{"unknown phase", func(s *Status) { s.Phase = "dancing" }, "phase"},
		{"progress over 1", func(s *Status) { s.Progress = 1.5 }, "progress"},
		{"negative progress", func(s *Status) { s.Progress = -0.1 }, "progress"},
		{"failed without error", func(s *Status) { s.Phase = PhaseFailed }, "needs an error"},
		{"error when not failed", func(s *Status) { s.Error = "x" }, "only phase failed"},
		{"error too long", func(s *Status) { s.Phase, s.Error = PhaseFailed, strings.Repeat("e", MaxErrorLen+1) }, "error:"},
		{"error not UTF-8", func(s *Status) { s.Phase, s.Error = PhaseFailed, "\xff" }, "UTF-8"},
		{"no installed version", func(s *Status) { s.InstalledVersion = "" }, "installed_version"},
		{"too many slots", func(s *Status) { s.Slots = make([]SlotState, MaxSlots+1) }, "slots"},
		{"slot without name", func(s *Status) { s.Slots[0].Name = "" }, "slots[0].name"},
		{"slot twice", func(s *Status) { s.Slots[1].Name = "A" }, "given twice"},
		{"slot state", func(s *Status) { s.Slots[1].State = "broken" }, "slots[1].state"},
		{"negative tries", func(s *Status) { s.Slots[1].TriesLeft = -1 }, "tries_left"},
		{"negative bytes", func(s *Status) { s.Transfer.FetchedBytes = -1 }, "transfer"},
	} {
		s := validStatus()
		tc.mod(&s)
		err := s.Validate()
		if tc.msg == "" {
			if err != nil {
				t.Errorf("%s: Validate = %v, want nil", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: Validate = %v, want ErrInvalid naming %q", tc.name, err, tc.msg)
		}
	}
}

func TestPollValidate(t *testing.T) {
	rel := func(v, u string) *Release { return &Release{Version: v, RepositoryURL: u} }
	for _, tc := range []struct {
		name string
		p    Poll
		msg  string
	}{
		{"none", Poll{IntervalSeconds: 300}, ""},
		{"a release", Poll{Release: rel("1.1", "https://updates.example.com/repo"), IntervalSeconds: 60}, ""},
		{"no interval", Poll{}, "interval_seconds 0"},
		{"interval over a day", Poll{IntervalSeconds: MaxPollInterval + 1}, "interval_seconds"},
		{"no version", Poll{Release: rel("", "https://x/repo"), IntervalSeconds: 1}, "release.version"},
		{"relative URL", Poll{Release: rel("1.1", "/repo"), IntervalSeconds: 1}, "want an http or https URL"},
		{"file URL", Poll{Release: rel("1.1", "file:///etc"), IntervalSeconds: 1}, "want an http or https URL"},
		{"bad URL", Poll{Release: rel("1.1", "http://x/%zz"), IntervalSeconds: 1}, "repository_url"},
		{"long URL", Poll{Release: rel("1.1", "https://x/"+strings.Repeat("a", MaxRepositoryLen)), IntervalSeconds: 1}, "the most is"},
	} {
		err := tc.p.Validate()
		if tc.msg == "" {
			if err != nil {
				t.Errorf("%s: Validate = %v, want nil", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: Validate = %v, want ErrInvalid naming %q", tc.name, err, tc.msg)
		}
	}
}

func TestInventoryValidate(t *testing.T) {
	many := map[string]string{}
	for i := range MaxAttributes + 1 {
		many[fmt.Sprint("a", i)] = "v"
	}
	for _, tc := range []struct {
		name  string
		attrs map[string]string
		msg   string
	}{
		{"empty", map[string]string{}, ""},
		{"some", map[string]string{"kernel": "6.1", "hw.rev": "B-2"}, ""},
		{"missing", nil, "missing"},
		{"too many", many, "attributes, the most"},
		{"empty name", map[string]string{"": "x"}, "attribute name"},
		{"name with space", map[string]string{"a b": "x"}, "attribute name"},
		{"value too long", map[string]string{"a": strings.Repeat("v", MaxAttrValueLen+1)}, "value of"},
		{"value not UTF-8", map[string]string{"a": "\xfe"}, "UTF-8"},
		{"value with NUL", map[string]string{"a": "x\x00y"}, "attribute a: value holds a NUL byte"},
	} {
		inv := Inventory{Attributes: tc.attrs}
		err := inv.Validate()
		if tc.msg == "" {
			if err != nil {
				t.Errorf("%s: Validate = %v, want nil", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: Validate = %v, want ErrInvalid naming %q", tc.name, err, tc.msg)
		}
	}
}

// fuzzDecode checks that Decode never panics, and that what it accepts
// survives encoding and decoding again unchanged.
func fuzzDecode[T any, P interface {
	*T
	Validator
}](f *testing.F, seed string) {
	f.Add(readTestdata(f, seed))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"x": 1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var v T
		if err := Decode(bytes.NewReader(b), MaxBodySize, P(&v)); err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Decode(%q) = %v, want ErrInvalid or ErrTooLarge", b, err)
			}
			return
		}
		enc, err := json.Marshal(&v)
		if err != nil {
			t.Fatalf("encode accepted %+v: %v", v, err)
		}
		var again T
		if err := Decode(bytes.NewReader(enc), MaxBodySize, P(&again)); err != nil {
			t.Fatalf("Decode of re-encoded %s = %v", enc, err)
		}
		if diff := cmp.Diff(v, again); diff != "" {
			t.Fatalf("round trip of %q changed it: -first +again\n%s", b, diff)
		}
	})
}

func FuzzDecodeRegistration(f *testing.F)  { fuzzDecode[Registration](f, "registration.json") }
func FuzzDecodeStatus(f *testing.F)        { fuzzDecode[Status](f, "status.json") }
func FuzzDecodeEnrollment(f *testing.F)    { fuzzDecode[Enrollment](f, "enrollment.json") }
func FuzzDecodeInventory(f *testing.F)     { fuzzDecode[Inventory](f, "inventory.json") }
func FuzzDecodePoll(f *testing.F)          { fuzzDecode[Poll](f, "poll.json") }
func FuzzDecodeTags(f *testing.F)          { fuzzDecode[Tags](f, "tags.json") }
func FuzzDecodeGroup(f *testing.F)         { fuzzDecode[Group](f, "group.json") }
func FuzzDecodePublish(f *testing.F)       { fuzzDecode[Publish](f, "publish.json") }
func FuzzDecodeCreateRollout(f *testing.F) { fuzzDecode[CreateRollout](f, "rollout.json") }
func FuzzDecodeBulkRegistration(f *testing.F) {
	fuzzDecode[BulkRegistration](f, "bulk_registration.json")
}
