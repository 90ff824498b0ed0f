package fleet

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/identity"
	"github.com/lifeboat-update/lifeboat/pkg/progress"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
)

// Defaults of a Reporter's throttle.
const (
	DefaultStep  = 0.10
	DefaultEvery = 5 * time.Second
)

// UnknownVersion is the installed version a report carries when the
// device's trusted state records none (the API requires one).
const UnknownVersion = "unknown"

// Reporter sends a device's status to its fleet server as an update goes.
// A report that fails is logged, never returned: the update does not
// depend on the server.
//
// It is a progress.Reporter too: while an image is written it reports
// the phase downloading with the share written, each time another Step
// of it is done or Every has passed, never per chunk. Those reports go
// out in the background, one at a time (one due while another is on its
// way is skipped), so that a slow server never holds the download up;
// Report waits for the one on its way first, so that reports arrive in
// order. Done, the end of writing, reports verifying: the install reads
// every slot back next.
type Reporter struct {
	c     *Client
	ctx   context.Context
	logf  func(format string, args ...any)
	step  float64
	every time.Duration
	now   func() time.Time

	send sync.Mutex // held while a report is on its way
	bg   sync.WaitGroup

	mu       sync.Mutex
	last     api.Status // the template of progress reports
	total    int64
	done     int64
	lastFrac float64
	lastAt   time.Time
	busy     bool
}

var _ progress.Reporter = (*Reporter)(nil)

// NewReporter returns a Reporter sending to c within ctx, logging failed
// reports with logf; installed is the version the device runs, which
// every report carries until Report sends another.
func NewReporter(ctx context.Context, c *Client, installed string, logf func(format string, args ...any)) *Reporter {
	if installed == "" {
		installed = UnknownVersion
	}
	return &Reporter{
		c: c, ctx: ctx, logf: logf, step: DefaultStep, every: DefaultEvery, now: time.Now,
		last: api.Status{Phase: api.PhaseIdle, InstalledVersion: installed},
	}
}

// Throttle sets how often downloading is reported: each step of
// progress (0 to 1) or every interval, whichever comes first; now is the
// clock.
func (r *Reporter) Throttle(step float64, every time.Duration, now func() time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.step, r.every, r.now = step, every, now
}

// Status returns the last status reported (or set to be reported).
func (r *Reporter) Status() api.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// Report sends st, after any progress report on its way. An empty
// InstalledVersion, Slots or Transfer takes the last report's.
func (r *Reporter) Report(st api.Status) {
	r.bg.Wait()
	r.mu.Lock()
	if st.InstalledVersion == "" {
		st.InstalledVersion = r.last.InstalledVersion
	}
	if st.Slots == nil {
		st.Slots = r.last.Slots
	}
	if st.Transfer == (api.Transfer{}) {
		st.Transfer = r.last.Transfer
	}
	r.last = st
	r.mu.Unlock()
	r.post(st)
}

// Phase reports phase with progress, the rest as last reported.
func (r *Reporter) Phase(phase api.Phase, progress float64) {
	r.Report(api.Status{Phase: phase, Progress: progress})
}

// Failed reports the update failed: check is the check that failed, err
// what was wrong.
func (r *Reporter) Failed(check string, err error) {
	msg := err.Error()
	if check != "" {
		msg = check + ": " + msg
	}
	if len(msg) > api.MaxErrorLen {
		msg = msg[:api.MaxErrorLen]
	}
	r.Report(api.Status{Phase: api.PhaseFailed, Error: msg})
}

func (r *Reporter) post(st api.Status) {
	r.send.Lock()
	defer r.send.Unlock()
	if err := r.c.ReportStatus(r.ctx, st); err != nil {
		r.logf("reporting %s to the fleet server: %v (the update goes on)", st.Phase, err)
	}
}

// Start begins an image of total units.
func (r *Reporter) Start(what string, total int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total, r.done, r.lastFrac, r.lastAt = total, 0, 0, r.now()
}

// Add records n more units written, and reports downloading when due.
func (r *Reporter) Add(n int64) {
	r.mu.Lock()
	r.done += n
	frac := 0.0
	if r.total > 0 {
		frac = min(float64(r.done)/float64(r.total), 1)
	}
	now := r.now()
	due := frac >= r.lastFrac+r.step || now.Sub(r.lastAt) >= r.every
	if !due || r.busy {
		r.mu.Unlock()
		return
	}
	r.lastFrac, r.lastAt, r.busy = frac, now, true
	st := r.last
	st.Phase, st.Progress, st.Error = api.PhaseDownloading, frac, ""
	r.bg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.bg.Done()
		r.post(st)
		r.mu.Lock()
		r.busy = false
		r.mu.Unlock()
	}()
}

// Done reports verifying: the image is written.
func (r *Reporter) Done() { r.Phase(api.PhaseVerifying, 0) }

// SlotStates turns the bootloader's view into a report's: the slots an
// update writes, without the read-only entries (recovery, factory).
func SlotStates(st slot.Status) []api.SlotState {
	out := []api.SlotState{}
	for _, s := range st.Slots {
		if s.Name.ReadOnly() {
			continue
		}
		out = append(out, api.SlotState{Name: string(s.Name), State: string(s.State), TriesLeft: s.TriesLeft})
	}
	return out
}

// Installed is the report of a system that booted release version and
// marked its slot good: the rollout counts the device as succeeded.
func Installed(version string, st slot.Status) api.Status {
	return api.Status{Phase: api.PhaseInstalled, Progress: 1, InstalledVersion: version, Slots: SlotStates(st)}
}

// ReportInstalled tells the fleet server the identity names that the
// system booted release version and marked its slot good (st is the
// bootloader's view after that), over hc (nil: the default): what the
// booted system does, the demo OS's init and `lifeboat mark-good` alike.
// An identity that names no server is nothing to do.
func ReportInstalled(ctx context.Context, id *identity.Identity, hc *http.Client, version string, st slot.Status) error {
	if id.Server == "" {
		return nil
	}
	c, err := New(id.Server, id.Token, hc)
	if err != nil {
		return err
	}
	return c.ReportStatus(ctx, Installed(version, st))
}
