// Package api holds the wire types the fleet server and its devices share:
// what a manufacturing line registers, what a device polls for, what it
// reports (status, inventory), and the error body every failed request
// gets. It imports the standard library only, so the recovery ramdisk and
// the agent can use it without pulling in the server.
//
// Every request body, and the poll answer a device decodes, has a Validate
// method that bounds sizes and lengths and names what is wrong; Decode
// reads a body strictly (one JSON value, no unknown fields, at most
// MaxBodySize bytes) and validates it.
package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lifeboat-update/lifeboat/internal/strictjson"
)

// MaxBodySize bounds every request body the server reads.
const MaxBodySize = 64 << 10

// ErrInvalid is wrapped by every error about a request body that does not
// make sense.
var ErrInvalid = errors.New("invalid request")

// ErrTooLarge is wrapped by Decode's error for a body over its limit.
var ErrTooLarge = errors.New("request body too large")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Validator is a request body that can check itself.
type Validator interface {
	Validate() error
}

// Decode reads one JSON value from r into v, at most limit bytes of it,
// refusing unknown fields and anything after the value, then validates it.
// Errors wrap ErrTooLarge, ErrInvalid, or r's own error.
func Decode(r io.Reader, limit int64, v Validator) error {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		// The reader's own error (http.MaxBytesError, a broken connection)
		// stays visible to errors.As.
		return fmt.Errorf("reading the body: %w", err)
	}
	if int64(len(b)) > limit {
		return fmt.Errorf("%w: the most is %d bytes", ErrTooLarge, limit)
	}
	switch err := strictjson.Unmarshal(b, v); {
	case errors.Is(err, strictjson.ErrEmpty):
		return invalid("empty body, want a JSON object")
	case errors.Is(err, strictjson.ErrTrailing):
		return invalid("%v", err)
	case err != nil:
		return invalid("malformed JSON: %v", err)
	}
	return v.Validate()
}

// Limits on what a device or operator may send.
const (
	MaxIDLen         = 64   // device IDs
	MaxBoardLen      = 64   // board names
	MaxVersionLen    = 64   // release versions
	MaxErrorLen      = 4096 // a status report's error
	MaxSlots         = 16   // slots in a status report
	MaxSlotNameLen   = 32
	MaxAttributes    = 128 // inventory attributes
	MaxAttrNameLen   = 64
	MaxAttrValueLen  = 1024
	MaxRepositoryLen = 2048 // a release's repository URL
)

var (
	// idRE is what a device ID may hold (a line station's serial number,
	// a DMI UUID): the same rule as the flash mode's.
	idRE      = regexp.MustCompile(fmt.Sprintf(`^[A-Za-z0-9._:-]{1,%d}$`, MaxIDLen))
	boardRE   = regexp.MustCompile(fmt.Sprintf(`^[A-Za-z0-9._-]{1,%d}$`, MaxBoardLen))
	versionRE = regexp.MustCompile(fmt.Sprintf(`^[A-Za-z0-9._+~-]{1,%d}$`, MaxVersionLen))
	hex64RE   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	attrRE    = regexp.MustCompile(fmt.Sprintf(`^[A-Za-z0-9._-]{1,%d}$`, MaxAttrNameLen))
	slotRE    = regexp.MustCompile(fmt.Sprintf(`^[A-Za-z0-9._-]{1,%d}$`, MaxSlotNameLen))
)

// CheckDeviceID says what is wrong with id as a device ID, if anything.
func CheckDeviceID(id string) error {
	if !idRE.MatchString(id) {
		return invalid("device_id %q: want 1 to %d letters, digits, '.', '_', ':' or '-'", clip(id), MaxIDLen)
	}
	return nil
}

// checkBoardVersion checks a device's board and the release it runs.
func checkBoardVersion(board, version string) error {
	if !boardRE.MatchString(board) {
		return invalid("board %q: want 1 to %d letters, digits, '.', '_' or '-'", clip(board), MaxBoardLen)
	}
	return checkVersion("version", version)
}

func checkVersion(field, v string) error {
	if !versionRE.MatchString(v) {
		return invalid("%s %q: want 1 to %d letters, digits, '.', '_', '+', '~' or '-'", field, clip(v), MaxVersionLen)
	}
	return nil
}

// clip shortens what an error message quotes back.
func clip(s string) string {
	if len(s) <= 80 {
		return s
	}
	return s[:80] + "…"
}

// Registration registers one device: the data the manufacturing line's
// flash mode prints (device ID, board, the release flashed, the SHA-256 of
// the device's token), sent by an operator. The server keeps only the
// token's hash.
type Registration struct {
	DeviceID string `json:"device_id"`
	Board    string `json:"board"`
	// Version is the release the device was flashed with.
	Version string `json:"version"`
	// TokenSHA256 is the SHA-256 of the token's bytes (not of their hex),
	// in lower-case hex.
	TokenSHA256 string `json:"token_sha256"`
	// TokenExpires, if set, is when the token stops being accepted.
	TokenExpires *time.Time `json:"token_expires,omitempty"`
}

// Validate checks every field.
func (r *Registration) Validate() error {
	if err := CheckDeviceID(r.DeviceID); err != nil {
		return err
	}
	if err := checkBoardVersion(r.Board, r.Version); err != nil {
		return err
	}
	if !hex64RE.MatchString(r.TokenSHA256) {
		return invalid("token_sha256: want 64 lower-case hex digits")
	}
	if r.TokenExpires != nil && r.TokenExpires.IsZero() {
		return invalid("token_expires: zero time; leave it out for a token that does not expire")
	}
	return nil
}

// Enrollment is what a device sends to enroll itself with its client
// certificate (POST /api/v1/device/enroll): its ID is the certificate's,
// so the body holds only what the certificate does not say.
type Enrollment struct {
	Board string `json:"board"`
	// Version is the release the device runs.
	Version string `json:"version"`
}

// Validate checks every field.
func (e *Enrollment) Validate() error { return checkBoardVersion(e.Board, e.Version) }

// Limits on a bulk registration.
const (
	// MaxBulkRegistrations bounds the devices one BulkRegistration
	// registers.
	MaxBulkRegistrations = 1000
	// MaxBulkBodySize bounds its body: room for MaxBulkRegistrations
	// registrations of the longest IDs, boards, versions and expiries.
	MaxBulkBodySize = 1 << 20
)

// BulkRegistration registers many devices at once, all or none: a line
// station's batch.
type BulkRegistration struct {
	Devices []Registration `json:"devices"`
}

// Validate checks every registration, and that no device ID or token
// hash is given twice; errors name the first bad entry by its index and
// ID.
func (b *BulkRegistration) Validate() error {
	if len(b.Devices) == 0 || len(b.Devices) > MaxBulkRegistrations {
		return invalid("%d devices: want 1 to %d", len(b.Devices), MaxBulkRegistrations)
	}
	ids := make(map[string]int, len(b.Devices))
	tokens := make(map[string]int, len(b.Devices))
	for i := range b.Devices {
		r := &b.Devices[i]
		if err := r.Validate(); err != nil {
			return invalid("devices[%d] (%s): %s", i, clip(r.DeviceID), strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
		}
		if j, ok := ids[r.DeviceID]; ok {
			return invalid("devices[%d] (%s): device_id given at devices[%d] too", i, r.DeviceID, j)
		}
		if j, ok := tokens[r.TokenSHA256]; ok {
			return invalid("devices[%d] (%s): token_sha256 given at devices[%d] too", i, r.DeviceID, j)
		}
		ids[r.DeviceID], tokens[r.TokenSHA256] = i, i
	}
	return nil
}

// BulkRegistered is the answer to a BulkRegistration.
type BulkRegistered struct {
	// Registered counts the devices registered: all of the request's.
	Registered int `json:"registered"`
}

// Release is a release a device is told to install.
type Release struct {
	Version string `json:"version"`
	// RepositoryURL is the repository holding it: metadata, indexes and
	// chunk store.
	RepositoryURL string `json:"repository_url"`
}

// Poll is the server's answer to a device's poll.
type Poll struct {
	// Release is the release assigned to the device, or nil for none.
	Release *Release `json:"release"`
	// IntervalSeconds is when to poll next; the server spreads devices
	// over a jitter window.
	IntervalSeconds int `json:"interval_seconds"`
}

// MaxPollInterval bounds the interval a server may ask for, so that a
// device told nonsense still polls within a day.
const MaxPollInterval = 24 * 60 * 60

// Validate checks a poll answer, for the device that decodes it.
func (p *Poll) Validate() error {
	if p.IntervalSeconds < 1 || p.IntervalSeconds > MaxPollInterval {
		return invalid("interval_seconds %d: want 1 to %d", p.IntervalSeconds, MaxPollInterval)
	}
	if p.Release == nil {
		return nil
	}
	if err := checkVersion("release.version", p.Release.Version); err != nil {
		return err
	}
	if err := CheckURL("release.repository_url", p.Release.RepositoryURL); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// CheckURL says what is wrong with s, the field named field, as the URL
// of a server a device talks to (a repository, the fleet server): an
// http or https URL with a host, at most MaxRepositoryLen bytes. Its
// error wraps nothing: callers wrap it in their own class.
func CheckURL(field, s string) error {
	u, err := url.Parse(s)
	switch {
	case len(s) > MaxRepositoryLen:
		return fmt.Errorf("%s: %d bytes, the most is %d", field, len(s), MaxRepositoryLen)
	case err != nil:
		return fmt.Errorf("%s: %w", field, err)
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("%s %q: want an http or https URL", field, clip(s))
	}
	return nil
}

// Phase is where a device is in an update.
type Phase string

// The phases a device reports.
const (
	PhaseIdle        Phase = "idle"        // nothing to do
	PhaseDownloading Phase = "downloading" // fetching chunks into the target slot
	PhaseVerifying   Phase = "verifying"   // reading the slot back against the signed digest
	PhaseInstalling  Phase = "installing"  // switching the bootloader
	PhaseRebooting   Phase = "rebooting"   // about to boot the new release
	PhaseInstalled   Phase = "installed"   // the new release booted and is marked good
	PhaseFailed      Phase = "failed"      // the update stopped; Error says why
)

var phases = map[Phase]bool{
	PhaseIdle: true, PhaseDownloading: true, PhaseVerifying: true, PhaseInstalling: true,
	PhaseRebooting: true, PhaseInstalled: true, PhaseFailed: true,
}

// SlotState is one slot as the device's bootloader sees it: the JSON of
// pkg/slot's SlotStatus.
type SlotState struct {
	Name      string `json:"name"`
	State     string `json:"state"` // good, trying, failed or inactive
	TriesLeft int    `json:"tries_left"`
}

var slotStates = map[string]bool{"good": true, "trying": true, "failed": true, "inactive": true}

// Transfer is what an update moved.
type Transfer struct {
	// FetchedBytes is what came over the network.
	FetchedBytes int64 `json:"fetched_bytes"`
	// ImageBytes is the size of what was written into the slots.
	ImageBytes int64 `json:"image_bytes"`
}

// Status is a device's status report.
type Status struct {
	Phase Phase `json:"phase"`
	// Progress is the phase's progress, 0 to 1.
	Progress float64 `json:"progress"`
	// Error says why the update failed; only with PhaseFailed, which
	// needs it.
	Error            string      `json:"error,omitempty"`
	InstalledVersion string      `json:"installed_version"`
	Slots            []SlotState `json:"slots,omitempty"`
	Transfer         Transfer    `json:"transfer"`
}

// Validate checks every field.
func (s *Status) Validate() error {
	if !phases[s.Phase] {
		return invalid("phase %q: want idle, downloading, verifying, installing, rebooting, installed or failed", clip(string(s.Phase)))
	}
	if !(s.Progress >= 0 && s.Progress <= 1) {
		return invalid("progress %v: want 0 to 1", s.Progress)
	}
	switch {
	case s.Phase == PhaseFailed && s.Error == "":
		return invalid("phase failed needs an error")
	case s.Phase != PhaseFailed && s.Error != "":
		return invalid("error given with phase %s: only phase failed has one", s.Phase)
	case len(s.Error) > MaxErrorLen:
		return invalid("error: %d bytes, the most is %d", len(s.Error), MaxErrorLen)
	case !utf8.ValidString(s.Error):
		return invalid("error: not UTF-8")
	}
	if err := checkVersion("installed_version", s.InstalledVersion); err != nil {
		return err
	}
	if len(s.Slots) > MaxSlots {
		return invalid("%d slots, the most is %d", len(s.Slots), MaxSlots)
	}
	seen := map[string]bool{}
	for i, sl := range s.Slots {
		if !slotRE.MatchString(sl.Name) {
			return invalid("slots[%d].name %q: want 1 to %d letters, digits, '.', '_' or '-'", i, clip(sl.Name), MaxSlotNameLen)
		}
		if seen[sl.Name] {
			return invalid("slots[%d]: slot %s given twice", i, sl.Name)
		}
		seen[sl.Name] = true
		if !slotStates[sl.State] {
			return invalid("slots[%d].state %q: want good, trying, failed or inactive", i, clip(sl.State))
		}
		if sl.TriesLeft < 0 || sl.TriesLeft > 255 {
			return invalid("slots[%d].tries_left %d: want 0 to 255", i, sl.TriesLeft)
		}
	}
	if s.Transfer.FetchedBytes < 0 || s.Transfer.ImageBytes < 0 {
		return invalid("transfer: negative byte counts (fetched %d, image %d)", s.Transfer.FetchedBytes, s.Transfer.ImageBytes)
	}
	return nil
}

// Inventory is what a device reports about itself: attributes the fleet
// searches by (kernel version, serial numbers, hardware revision). A
// report replaces the previous one whole.
type Inventory struct {
	Attributes map[string]string `json:"attributes"`
}

// Validate checks every attribute.
func (inv *Inventory) Validate() error {
	if inv.Attributes == nil {
		return invalid("attributes: missing; send {} for none")
	}
	if len(inv.Attributes) > MaxAttributes {
		return invalid("%d attributes, the most is %d", len(inv.Attributes), MaxAttributes)
	}
	for k, v := range inv.Attributes {
		if !attrRE.MatchString(k) {
			return invalid("attribute name %q: want 1 to %d letters, digits, '.', '_' or '-'", clip(k), MaxAttrNameLen)
		}
		if len(v) > MaxAttrValueLen {
			return invalid("attribute %s: value of %d bytes, the most is %d", k, len(v), MaxAttrValueLen)
		}
		if !utf8.ValidString(v) {
			return invalid("attribute %s: value not UTF-8", k)
		}
		if bytes.IndexByte([]byte(v), 0) >= 0 {
			return invalid("attribute %s: value holds a NUL byte", k)
		}
	}
	return nil
}

// Error is the body of every response that is not 2xx or 304.
type Error struct {
	// Error says what was wrong, for a person.
	Error string `json:"error"`
	// Code is the class of error, for a program: one of the Code constants.
	Code string `json:"code"`
}

// The codes an Error carries.
const (
	CodeBadRequest       = "bad_request"            // 400: malformed or invalid body or query
	CodeUnauthorized     = "unauthorized"           // 401: no token, or a wrong, revoked or expired one
	CodeForbidden        = "forbidden"              // 403: the operator's role is too low
	CodeNotFound         = "not_found"              // 404: no such device or endpoint
	CodeMethodNotAllowed = "method_not_allowed"     // 405
	CodeConflict         = "conflict"               // 409: already registered, already revoked
	CodeTooLarge         = "too_large"              // 413: body over MaxBodySize
	CodeUnsupportedType  = "unsupported_media_type" // 415: body not application/json
	CodeInternal         = "internal"               // 500
)

// Device is a device as operators see it.
type Device struct {
	ID    string `json:"id"`
	Board string `json:"board"`
	// InstalledVersion is the release the device runs: the one it was
	// flashed with until it reports another.
	InstalledVersion string     `json:"installed_version"`
	Created          time.Time  `json:"created"`
	LastSeen         *time.Time `json:"last_seen,omitempty"`
	TokenExpires     *time.Time `json:"token_expires,omitempty"`
	// CertSHA256 is the SHA-256 of the DER client certificate the device
	// enrolled with, for a device that enrolled itself.
	CertSHA256 string     `json:"cert_sha256,omitempty"`
	Revoked    *time.Time `json:"revoked,omitempty"`
	// Status is the last status report, if any.
	Status *Status `json:"status,omitempty"`
	// Attributes is the last inventory; only in a single device's view.
	Attributes map[string]string `json:"attributes,omitempty"`
	// Tags are the operators' labels; only in a single device's view.
	Tags []string `json:"tags,omitempty"`
}

// DeviceList is a page of devices, in ID order.
type DeviceList struct {
	Devices []Device `json:"devices"`
	// Next, when set, is the after= value that asks for the next page.
	Next string `json:"next,omitempty"`
}

// AuditEntry is one change: who did what to what, and when.
type AuditEntry struct {
	ID     int64     `json:"id"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	Detail string    `json:"detail,omitempty"`
}

// AuditLog is a page of the audit log, newest first.
type AuditLog struct {
	Entries []AuditEntry `json:"entries"`
	// Next, when set, is the before= value that asks for the next page.
	Next int64 `json:"next,omitempty"`
}
