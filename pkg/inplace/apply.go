package inplace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/assemble"
	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/progress"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

// Target is a device Apply rewrites, or the spill area it keeps chunks in:
// a blockdev.Device, or a file through [SyncFile].
type Target interface {
	io.ReaderAt
	io.WriterAt
	// Flush makes what was written durable.
	Flush() error
}

var (
	_ Target = (blockdev.Device)(nil)
	_ Target = SyncFile{}
)

// SyncFile is a Target over a file, such as the spill file on the data
// partition: Flush is fsync.
type SyncFile struct{ *os.File }

// Flush syncs the file.
func (f SyncFile) Flush() error { return f.Sync() }

// Sources are where chunks the old release lacks come from.
type Sources struct {
	// Seeds are other images holding chunks; only seeds with an Index are
	// used, each chunk verified as it is read.
	Seeds []*assemble.Seed
	// Stores are asked in order, last.
	Stores []store.Store
}

// Options report on a run.
type Options struct {
	Progress progress.Reporter
	Log      *slog.Logger
}

// ErrUnavailable is wrapped by the error of a chunk found in no source.
var ErrUnavailable = errors.New("chunk in no source")

// Count is a number of chunks and their bytes.
type Count struct {
	Chunks int   `json:"chunks"`
	Bytes  int64 `json:"bytes"`
}

func (c *Count) add(n int, size uint64) {
	c.Chunks += n
	c.Bytes += int64(n) * int64(size)
}

// Stats describe a finished (or failed) Apply. Chunks count positions of
// the new release, except Stashed and Spilled, which count distinct chunks.
type Stats struct {
	Ops int `json:"ops"`
	// Skipped is the ops the journal recorded as done before this run.
	Skipped int `json:"skipped_ops"`
	// InPlace were verified where they already were.
	InPlace Count `json:"in_place"`
	// Moved were written from the old release on the device, FromRAM and
	// FromSpill of them (distinct chunks) from a stash.
	Moved     Count `json:"moved"`
	FromRAM   int   `json:"from_ram"`
	FromSpill int   `json:"from_spill"`
	Stashed   Count `json:"stashed"`
	Spilled   Count `json:"spilled"`
	Zero      Count `json:"zero"`
	// Resumed were found already written by a run a power cut stopped.
	Resumed Count `json:"resumed"`
	// Seeds and Fetched were taken from other seeds and from stores;
	// FetchedWire is the bytes read from stores (compressed).
	Seeds       Count `json:"seeds"`
	Fetched     Count `json:"fetched"`
	FetchedWire int64 `json:"fetched_wire_bytes"`
	// Fallbacks are chunks not where the plan put them (an old chunk that
	// did not verify, a stash lost with the power): they came from the next
	// source that had them.
	Fallbacks int `json:"fallbacks"`
	// Repaired are chunks the final check found wrong and wrote again.
	Repaired int `json:"repaired"`
	// PeakRAM is the most bytes stashed in RAM at once.
	PeakRAM       int64         `json:"peak_ram"`
	Commits       int           `json:"commits"`
	JournalWrites int           `json:"journal_writes"`
	Duration      time.Duration `json:"duration_ns"`
}

type applier struct {
	p     *Plan
	dev   Target
	spill Target
	src   Sources
	j     Journal
	log   *slog.Logger
	prog  progress.Reporter
	st    Stats

	buf, tmp, fbuf, zero []byte
	ram                  map[chunk.ID][]byte
	ramUsed              int64
	seedAt               []map[chunk.ID]uint64
}

// Apply runs plan p on dev, which holds the old release, or what an
// earlier Apply of the same plan interrupted by a power cut left of it.
// It resumes after the last op the journal records, commits (flushes dev
// and spill, then records progress in the journal) wherever the plan says,
// and ends by verifying every chunk of the new release on dev. On success
// the device holds the new release, verified; the journal stays, recording
// the plan as done, until the caller removes it.
//
// spill may be nil when p.SpillSize is 0.
func Apply(ctx context.Context, p *Plan, dev Target, src Sources, j Journal, spill Target, opt Options) (*Stats, error) {
	start := time.Now()
	a := &applier{p: p, dev: dev, spill: spill, src: src, j: j, log: opt.Log, prog: opt.Progress, ram: make(map[chunk.ID][]byte)}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.prog == nil {
		a.prog = progress.Discard
	}
	a.st.Ops = len(p.Ops)
	a.prog.Start("in-place update", int64(len(p.Ops)))
	err := a.run(ctx)
	a.prog.Done()
	a.st.Duration = time.Since(start)
	return &a.st, err
}

func (a *applier) run(ctx context.Context) error {
	p := a.p
	if p.SpillSize > 0 && a.spill == nil {
		return fmt.Errorf("the plan spills %d bytes and no spill area was given", p.SpillSize)
	}
	if d, ok := a.dev.(interface{ Size() int64 }); ok {
		if need := max(p.Size, p.OldSize); uint64(d.Size()) < need {
			return fmt.Errorf("device is %d bytes, the update needs %d", d.Size(), need)
		}
	}
	var maxSize uint64
	for _, op := range p.Ops {
		maxSize = max(maxSize, op.Size)
	}
	a.buf, a.tmp, a.fbuf, a.zero = make([]byte, maxSize), make([]byte, maxSize), make([]byte, maxSize), make([]byte, maxSize)

	first := 0
	matched := false // the journal is this plan's
	s, ok, err := a.j.Load()
	switch {
	case errors.Is(err, ErrBadJournal):
		// Nothing on the device is trusted without verification, so
		// starting over is safe; it only costs fetches.
		a.log.Warn("in-place: unreadable journal, starting over", "err", err)
	case err != nil:
		return err
	case ok && s.Plan == p.ID && s.Ops == uint64(len(p.Ops)):
		first, matched = int(s.Done), true
	case ok:
		a.log.Warn("in-place: the journal is of another plan, starting over")
	}
	a.st.Skipped = first
	a.prog.Add(int64(first))
	if first > 0 {
		a.log.Info("in-place: resuming", "op", first, "of", len(p.Ops))
	}
	// A journal of this plan, even one that records nothing done yet, says
	// that a run was cut: until the first commit of this run, ops may find
	// their work done (or half done) by it, and chunks it fetched are not
	// fetched again. A run without one records the plan before its first
	// write, so that a cut before its first commit is recognised too.
	if !matched {
		if err := a.commit(0); err != nil {
			return err
		}
	}
	resumed := matched
	for i := first; i < len(p.Ops); i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		op := &p.Ops[i]
		if op.Commit && i > first {
			if err := a.commit(i); err != nil {
				return err
			}
			resumed = false
		}
		if err := a.do(ctx, op, resumed); err != nil {
			return fmt.Errorf("op %d (%s chunk %s): %w", i, op.Kind, op.ID, err)
		}
		a.prog.Add(1)
	}
	if err := a.commit(len(p.Ops)); err != nil {
		return err
	}
	return a.check(ctx)
}

// commit makes everything written durable, then records that the first
// done ops are.
func (a *applier) commit(done int) error {
	if err := a.dev.Flush(); err != nil {
		return fmt.Errorf("flush device: %w", err)
	}
	if a.spill != nil && a.p.SpillSize > 0 {
		if err := a.spill.Flush(); err != nil {
			return fmt.Errorf("flush spill: %w", err)
		}
	}
	if err := a.j.Save(JournalState{Plan: a.p.ID, Done: uint64(done), Ops: uint64(len(a.p.Ops))}); err != nil {
		return err
	}
	a.st.Commits++
	a.st.JournalWrites++
	return nil
}

// readVerified reads size bytes at off into buf and reports whether they
// are chunk id. Only an I/O error other than a short read is an error.
func (a *applier) readVerified(r io.ReaderAt, buf []byte, off, size uint64, id chunk.ID) ([]byte, bool, error) {
	data := buf[:size]
	n, err := r.ReadAt(data, int64(off))
	switch {
	case err == nil || errors.Is(err, io.EOF) && n == len(data):
	case errors.Is(err, io.EOF), errors.Is(err, blockdev.ErrOutOfRange):
		return nil, false, nil
	default:
		return nil, false, fmt.Errorf("read at %d: %w", off, err)
	}
	return data, a.p.Digest.Sum(data) == id, nil
}

func (a *applier) do(ctx context.Context, op *Op, resumed bool) error {
	switch op.Kind {
	case OpVerify:
		_, ok, err := a.readVerified(a.dev, a.buf, op.Src, op.Size, op.ID)
		if err != nil || ok {
			a.st.InPlace.add(1, op.Size)
			return err
		}
		a.st.Fallbacks++
		data, err := a.external(ctx, op.ID, op.Size)
		if err != nil {
			return err
		}
		return a.write(data, op.Targets, op.Size, false)
	case OpStash:
		data, ok, err := a.readVerified(a.dev, a.buf, op.Src, op.Size, op.ID)
		if err != nil || !ok {
			return err // the move falls back
		}
		a.ram[op.ID] = append([]byte(nil), data...)
		a.ramUsed += int64(op.Size)
		a.st.PeakRAM = max(a.st.PeakRAM, a.ramUsed)
		a.st.Stashed.add(1, op.Size)
		return nil
	case OpSpill:
		data, ok, err := a.readVerified(a.dev, a.buf, op.Src, op.Size, op.ID)
		if err != nil || !ok {
			return err // the move falls back
		}
		if _, err := a.spill.WriteAt(data, int64(op.SpillOff)); err != nil {
			return fmt.Errorf("write spill at %d: %w", op.SpillOff, err)
		}
		a.st.Spilled.add(1, op.Size)
		return nil
	case OpMove:
		data, err := a.moved(ctx, op, resumed)
		if err != nil {
			return err
		}
		return a.write(data, op.Targets, op.Size, resumed)
	case OpZero:
		a.st.Zero.add(len(op.Targets), op.Size)
		return a.write(a.zero[:op.Size], op.Targets, op.Size, false)
	case OpFetch:
		var data []byte
		if resumed {
			var err error
			if data, err = a.written(op); err != nil {
				return err
			}
		}
		if data == nil {
			var err error
			if data, err = a.external(ctx, op.ID, op.Size); err != nil {
				return err
			}
		}
		return a.write(data, op.Targets, op.Size, resumed)
	}
	return fmt.Errorf("unknown op kind %d", op.Kind)
}

// moved returns the content of a moved chunk from where the plan keeps it,
// or else from the next source that has it.
func (a *applier) moved(ctx context.Context, op *Op, resumed bool) ([]byte, error) {
	switch op.From {
	case FromRAM:
		if data, ok := a.ram[op.ID]; ok {
			delete(a.ram, op.ID)
			a.ramUsed -= int64(op.Size)
			a.st.FromRAM++
			a.st.Moved.add(len(op.Targets), op.Size)
			return data, nil
		}
	case FromSpill:
		data, ok, err := a.readVerified(a.spill, a.buf, op.SpillOff, op.Size, op.ID)
		if err != nil {
			return nil, fmt.Errorf("spill: %w", err)
		}
		if ok {
			a.st.FromSpill++
			a.st.Moved.add(len(op.Targets), op.Size)
			return data, nil
		}
	}
	if resumed {
		if data, err := a.written(op); data != nil || err != nil {
			return data, err
		}
	}
	data, ok, err := a.readVerified(a.dev, a.buf, op.Src, op.Size, op.ID)
	if err != nil {
		return nil, err
	}
	if ok {
		if op.From != FromDevice {
			a.st.Fallbacks++
		}
		a.st.Moved.add(len(op.Targets), op.Size)
		return data, nil
	}
	a.st.Fallbacks++
	return a.external(ctx, op.ID, op.Size)
}

// written returns the chunk of op from a target already holding it, after
// a power cut, or nil.
func (a *applier) written(op *Op) ([]byte, error) {
	for _, t := range op.Targets {
		data, ok, err := a.readVerified(a.dev, a.buf, t, op.Size, op.ID)
		if err != nil || ok {
			return data, err
		}
	}
	return nil, nil
}

// write puts data at every target; resumed skips the targets that already
// hold it.
func (a *applier) write(data []byte, targets []uint64, size uint64, resumed bool) error {
	for _, t := range targets {
		if resumed {
			_, ok, err := a.readVerified(a.dev, a.tmp, t, size, a.p.Digest.Sum(data))
			if err != nil {
				return err
			}
			if ok {
				a.st.Resumed.add(1, size)
				continue
			}
		}
		if _, err := a.dev.WriteAt(data, int64(t)); err != nil {
			return fmt.Errorf("write at %d: %w", t, err)
		}
	}
	return nil
}

// external returns chunk id, verified, from a seed or else a store.
func (a *applier) external(ctx context.Context, id chunk.ID, size uint64) ([]byte, error) {
	if a.seedAt == nil {
		a.seedAt = make([]map[chunk.ID]uint64, len(a.src.Seeds))
		for i, s := range a.src.Seeds {
			m := make(map[chunk.ID]uint64)
			if s.Index != nil && s.Index.Digest == a.p.Digest {
				for _, e := range s.Index.Chunks {
					if _, ok := m[e.ID]; !ok {
						m[e.ID] = e.Start
					}
				}
			}
			a.seedAt[i] = m
		}
	}
	for i, s := range a.src.Seeds {
		off, ok := a.seedAt[i][id]
		if !ok {
			continue
		}
		data, ok, err := a.readVerified(s.R, a.fbuf, off, size, id)
		if err != nil {
			a.log.Warn("in-place: seed read failed", "seed", s.Name, "err", err)
			continue
		}
		if ok {
			a.st.Seeds.add(1, size)
			return data, nil
		}
	}
	var errs []error
	for _, st := range a.src.Stores {
		compressed, err := st.Get(ctx, id)
		if err == nil {
			var data []byte
			data, err = chunk.Decode(a.fbuf[:0], a.p.Digest, id, compressed, int(size))
			if err == nil && uint64(len(data)) != size {
				err = &chunk.CorruptError{ID: id, Reason: fmt.Sprintf("%d bytes, index says %d", len(data), size)}
			}
			if err == nil {
				a.st.Fetched.add(1, size)
				a.st.FetchedWire += int64(len(compressed))
				return data, nil
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		errs = append(errs, fmt.Errorf("%s: %w", st, err))
	}
	return nil, fmt.Errorf("chunk %s: %w", id, errors.Join(append(errs, ErrUnavailable)...))
}

// check verifies every chunk of the new release on the device and writes
// again, from a seed or a store, any that does not verify.
func (a *applier) check(ctx context.Context) error {
	repaired := false
	for i := range a.p.Ops {
		op := &a.p.Ops[i]
		if op.Kind == OpStash || op.Kind == OpSpill {
			continue
		}
		for _, t := range op.Targets {
			if err := ctx.Err(); err != nil {
				return err
			}
			_, ok, err := a.readVerified(a.dev, a.buf, t, op.Size, op.ID)
			if err != nil {
				return fmt.Errorf("check: %w", err)
			}
			if ok {
				continue
			}
			a.log.Warn("in-place: check found a wrong chunk, writing it again", "offset", t, "chunk", op.ID)
			data, err := a.external(ctx, op.ID, op.Size)
			if err != nil {
				return fmt.Errorf("check: repair at %d: %w", t, err)
			}
			if _, err := a.dev.WriteAt(data, int64(t)); err != nil {
				return fmt.Errorf("check: repair at %d: %w", t, err)
			}
			a.st.Repaired++
			repaired = true
		}
	}
	if repaired {
		if err := a.dev.Flush(); err != nil {
			return fmt.Errorf("flush device: %w", err)
		}
	}
	return nil
}
