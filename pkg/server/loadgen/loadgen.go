// Package loadgen drives the fleet server's device API the way a large
// fleet does: it registers devices through the operators' API, then sends
// check-ins (GET /api/v1/device/poll, with If-None-Match once a device has
// an ETag) and status reports (POST /api/v1/device/status) at a fixed
// rate, spread over the devices.
//
// The load is open-loop: request i is due at start + i/rate whether or not
// earlier ones have been answered, and its latency is measured from when
// it was due, not from when it was sent, so a server that falls behind
// shows its queueing in the latencies instead of slowing the load down
// (coordinated omission).
package loadgen

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"time"
)

// Device is the identity of simulated device i: its ID and its token,
// derived from a seed so that registration and load, run apart, agree.
type Device struct {
	ID    string
	Token string
}

// DeviceN returns device i of the fleet seed names.
func DeviceN(seed string, i int) Device {
	h := sha256.New()
	h.Write([]byte("lifeboat-loadgen\x00" + seed + "\x00"))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	h.Write(b[:])
	return Device{ID: fmt.Sprintf("load-%s-%07d", seed, i), Token: hex.EncodeToString(h.Sum(nil))}
}

// Due returns when request i of a load at rate per second that starts at
// start is due.
func Due(start time.Time, rate float64, i int) time.Time {
	return start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
}

// Count returns how many requests a load at rate per second sends in d.
func Count(rate float64, d time.Duration) int {
	return int(math.Ceil(rate * d.Seconds()))
}

// Kind is what a request does.
type Kind string

const (
	Poll   Kind = "poll"
	Status Kind = "status"
)

// KindN returns the kind of request i when a share of statusShare (0 to
// 1) of the requests are status reports, spread evenly: request i is a
// report when the count of reports due by i+1 grows.
func KindN(i int, statusShare float64) Kind {
	if math.Floor(float64(i+1)*statusShare) > math.Floor(float64(i)*statusShare) {
		return Status
	}
	return Poll
}

// DeviceFor returns which of n devices request i addresses: consecutive
// requests go to devices far apart (a stride coprime with n), and every
// device is addressed once before any is addressed again.
func DeviceFor(i, n int) int {
	return int(uint64(i) * uint64(stride(n)) % uint64(n))
}

// stride is the odd number near n·φ⁻¹ that shares no factor with n.
func stride(n int) int {
	if n <= 2 {
		return 1
	}
	s := int(float64(n)*0.6180339887) | 1
	for gcd(s, n) != 1 {
		s += 2
	}
	return s
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Percentile returns the p-th percentile (0 to 100) of sorted by the
// nearest-rank method: the smallest value that at least p% of the values
// are at or below. It returns 0 for no values.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// Latencies summarises one kind of request.
type Latencies struct {
	Count int `json:"count"`
	// OK counts the answers the kind expects (200 or 304 to a poll, 204
	// to a report); Errors the others by status, "transport" for none.
	OK     int            `json:"ok"`
	Errors map[string]int `json:"errors,omitempty"`
	P50    Millis         `json:"p50_ms"`
	P99    Millis         `json:"p99_ms"`
	Max    Millis         `json:"max_ms"`
}

// Millis is a duration that encodes as milliseconds.
type Millis time.Duration

func (m Millis) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf("%.3f", float64(m)/float64(time.Millisecond))), nil
}

func (m Millis) String() string { return fmt.Sprintf("%.1f ms", float64(m)/float64(time.Millisecond)) }

// summarise sorts lat and returns its summary.
func summarise(lat []time.Duration, ok int, errs map[string]int) Latencies {
	slices.Sort(lat)
	l := Latencies{Count: len(lat), OK: ok, Errors: errs}
	if len(lat) > 0 {
		l.P50, l.P99, l.Max = Millis(Percentile(lat, 50)), Millis(Percentile(lat, 99)), Millis(lat[len(lat)-1])
	}
	return l
}
