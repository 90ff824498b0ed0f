package inplace

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
)

// ErrBadPlanInput is wrapped by Plan's errors about its indexes or options.
var ErrBadPlanInput = errors.New("cannot plan an in-place update")

// DefaultCommitBytes is the default of PlanOptions.CommitBytes.
const DefaultCommitBytes = 64 << 20

// OpKind says what an Op does.
type OpKind uint8

// The kinds of Op, in the order a plan uses them.
const (
	// OpVerify checks the chunk that both releases have at the same offset
	// (Targets[0] == Src): nothing is written unless it does not verify.
	OpVerify OpKind = iota + 1
	// OpStash reads the old chunk at Src into RAM, before a write destroys
	// it; the OpMove of the same ID consumes it.
	OpStash
	// OpSpill reads the old chunk at Src and writes it to the spill area at
	// SpillOff, for the same reason, when the RAM budget is full.
	OpSpill
	// OpMove writes the chunk to every Target, taking it from the stash
	// (From) or else reading it at Src on the device.
	OpMove
	// OpZero writes zeros to every Target.
	OpZero
	// OpFetch writes to every Target a chunk the old release lacks, taken
	// from another seed or a store.
	OpFetch
)

func (k OpKind) String() string {
	switch k {
	case OpVerify:
		return "verify"
	case OpStash:
		return "stash"
	case OpSpill:
		return "spill"
	case OpMove:
		return "move"
	case OpZero:
		return "zero"
	case OpFetch:
		return "fetch"
	}
	return fmt.Sprintf("OpKind(%d)", uint8(k))
}

// Stash says where an OpMove finds its chunk.
type Stash uint8

// Where an OpMove's chunk was kept.
const (
	// FromDevice reads the chunk at Src on the device.
	FromDevice Stash = iota
	// FromRAM takes the chunk an earlier OpStash read.
	FromRAM
	// FromSpill reads the chunk an earlier OpSpill wrote at SpillOff.
	FromSpill
)

// Op is one step of a Plan.
type Op struct {
	Kind OpKind
	ID   chunk.ID
	Size uint64
	// Src is the offset of the chunk in the old release (OpVerify, OpStash,
	// OpSpill, OpMove).
	Src uint64
	// From says where an OpMove's chunk is kept.
	From Stash
	// SpillOff is the chunk's offset in the spill area (OpSpill, and an
	// OpMove From FromSpill).
	SpillOff uint64
	// Targets are the offsets the chunk is written to in the new release.
	Targets []uint64
	// Commit says that everything before this op must be durable, and
	// recorded in the journal, before it runs: it overwrites a chunk that
	// an op since the last commit read, or CommitBytes were written since.
	Commit bool
}

// PlanOptions shape a plan.
type PlanOptions struct {
	// RAMBudget bounds the bytes of old chunks kept in RAM at once; past it
	// they are spilled. Zero spills every chunk that must be kept.
	RAMBudget int64
	// CommitBytes is the most bytes written between two commits, for a
	// bounded redo after a power cut; default DefaultCommitBytes.
	CommitBytes int64
}

// Validate refuses options Plan cannot honour.
func (o PlanOptions) Validate() error {
	if o.RAMBudget < 0 {
		return fmt.Errorf("%w: negative RAM budget %d", ErrBadPlanInput, o.RAMBudget)
	}
	if o.CommitBytes < 0 {
		return fmt.Errorf("%w: negative commit interval %d", ErrBadPlanInput, o.CommitBytes)
	}
	return nil
}

// Plan is the ordered list of operations that rewrites a device holding the
// old release into the new one. It is a pure function of the two indexes
// and the options: a run resumed after a power cut plans again and finds
// the same plan, which its fingerprint (ID) checks.
type Plan struct {
	Ops    []Op
	Digest chunk.Digest
	// Size is the size of the new release: the device must be at least
	// this long, and at least OldSize.
	Size    uint64
	OldSize uint64
	// ID fingerprints the plan (SHA-256 of its ops); the journal names it.
	ID [32]byte
	// PeakRAM is the most bytes stashed in RAM at once; SpillSize is the
	// size the spill area needs.
	PeakRAM   int64
	SpillSize int64
	// Counts of chunk positions (InPlace, Moved, Zero, Fetched) and of
	// distinct chunks (Stashed, Spilled), and the bytes fetched.
	InPlace, Moved, Zero, Fetched int
	Stashed, Spilled              int
	FetchBytes                    int64
}

// node is one distinct chunk the new release needs written somewhere.
type node struct {
	id      chunk.ID
	size    uint64
	kind    OpKind // OpMove, OpZero or OpFetch
	targets []uint64
	src     uint64
	safe    bool // src is never written (the chunk is in place there)
	out     []int
	in      []int
	indeg   int
	done    bool
	stashed bool
	from    Stash
	spillAt uint64
}

// NewPlan plans the in-place rewrite of a device holding old into new (see
// the package documentation for the algorithm).
func NewPlan(old, new *chunk.Index, opt PlanOptions) (*Plan, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	if old.Digest != new.Digest {
		return nil, fmt.Errorf("%w: old index uses %s, new index %s", ErrBadPlanInput, old.Digest, new.Digest)
	}
	if err := checkIndex(old); err != nil {
		return nil, fmt.Errorf("old index: %w", err)
	}
	if err := checkIndex(new); err != nil {
		return nil, fmt.Errorf("new index: %w", err)
	}
	sizes := make(map[chunk.ID]uint64)
	for _, x := range []*chunk.Index{old, new} {
		for _, e := range x.Chunks {
			if s, ok := sizes[e.ID]; ok && s != e.Size {
				return nil, fmt.Errorf("%w: chunk %s is %d bytes and %d bytes", ErrBadPlanInput, e.ID, s, e.Size)
			}
			sizes[e.ID] = e.Size
		}
	}
	if opt.CommitBytes == 0 {
		opt.CommitBytes = DefaultCommitBytes
	}
	p := &Plan{Digest: new.Digest, Size: new.Size(), OldSize: old.Size()}

	// Where the old release has each chunk, and what is in place.
	oldLocs := make(map[chunk.ID][]int)
	oldAt := make(map[uint64]int, len(old.Chunks))
	for i, e := range old.Chunks {
		oldLocs[e.ID] = append(oldLocs[e.ID], i)
		oldAt[e.Start] = i
	}
	inPlace := make([]bool, len(new.Chunks))
	placedAt := make(map[chunk.ID]uint64)
	for i, e := range new.Chunks {
		if j, ok := oldAt[e.Start]; ok && old.Chunks[j] == e {
			inPlace[i] = true
			if _, ok := placedAt[e.ID]; !ok {
				placedAt[e.ID] = e.Start
			}
			p.InPlace++
			p.Ops = append(p.Ops, Op{Kind: OpVerify, ID: e.ID, Size: e.Size, Src: e.Start, Targets: []uint64{e.Start}})
		}
	}
	zero := new.ZeroIDs()

	// One node per distinct chunk still to write, in first-appearance
	// order; nodeOf maps a position of new to its node.
	var nodes []*node
	byID := make(map[chunk.ID]int)
	nodeOf := make([]int, len(new.Chunks))
	for i, e := range new.Chunks {
		nodeOf[i] = -1
		if inPlace[i] {
			continue
		}
		k, ok := byID[e.ID]
		if !ok {
			k = len(nodes)
			byID[e.ID] = k
			n := &node{id: e.ID, size: e.Size, kind: OpFetch}
			switch {
			case zero[e.ID]:
				n.kind = OpZero
			case len(oldLocs[e.ID]) > 0:
				n.kind = OpMove
			}
			nodes = append(nodes, n)
		}
		nodeOf[i] = k
		nodes[k].targets = append(nodes[k].targets, e.Start)
	}

	// overlapping calls f for each position of new, not in place, whose
	// chunk is moved and overlaps [a, b).
	overlapping := func(a, b uint64, f func(k int)) {
		j := sort.Search(len(new.Chunks), func(j int) bool { return new.Chunks[j].End() > a })
		for ; j < len(new.Chunks) && new.Chunks[j].Start < b; j++ {
			if k := nodeOf[j]; k >= 0 && nodes[k].kind == OpMove {
				f(k)
			}
		}
	}

	// Each moved chunk is read from one place: where it is in place if it
	// is anywhere, else the old copy the fewest moves overwrite. A move
	// into that copy must wait for the read: an edge.
	for x, n := range nodes {
		if n.kind != OpMove {
			continue
		}
		if at, ok := placedAt[n.id]; ok {
			n.src, n.safe = at, true
			continue
		}
		best := -1
		for _, j := range oldLocs[n.id] {
			e := old.Chunks[j]
			c := 0
			overlapping(e.Start, e.End(), func(int) { c++ })
			if best < 0 || c < best {
				best, n.src = c, e.Start
			}
		}
		overlapping(n.src, n.src+n.size, func(y int) {
			if y != x {
				n.out = append(n.out, y)
				nodes[y].in = append(nodes[y].in, x)
				nodes[y].indeg++
			}
		})
	}

	// Topological order of the moves; when every move left waits for a
	// read, stash what the first of them waits for (in RAM within the
	// budget, else in the spill area) and go on.
	var queue []int
	for k, n := range nodes {
		if n.kind == OpMove && n.indeg == 0 {
			queue = append(queue, k)
		}
	}
	var ram int64
	release := func(n *node) {
		for _, y := range n.out {
			if nodes[y].indeg--; nodes[y].indeg == 0 {
				queue = append(queue, y)
			}
		}
	}
	stash := func(n *node) {
		n.stashed = true
		op := Op{ID: n.id, Size: n.size, Src: n.src}
		if ram+int64(n.size) <= opt.RAMBudget {
			ram += int64(n.size)
			p.PeakRAM = max(p.PeakRAM, ram)
			n.from, op.Kind = FromRAM, OpStash
			p.Stashed++
		} else {
			n.from, op.Kind = FromSpill, OpSpill
			n.spillAt, op.SpillOff = uint64(p.SpillSize), uint64(p.SpillSize)
			p.SpillSize += int64(n.size)
			p.Spilled++
		}
		p.Ops = append(p.Ops, op)
		release(n)
	}
	scan := 0
	for {
		if len(queue) == 0 {
			for scan < len(nodes) && (nodes[scan].kind != OpMove || nodes[scan].done || nodes[scan].indeg == 0) {
				scan++
			}
			if scan == len(nodes) {
				break
			}
			for _, x := range nodes[scan].in {
				if n := nodes[x]; !n.done && !n.stashed {
					stash(n)
				}
			}
			continue
		}
		k := queue[0]
		queue = queue[1:]
		n := nodes[k]
		n.done = true
		p.Ops = append(p.Ops, Op{Kind: OpMove, ID: n.id, Size: n.size, Src: n.src, From: n.from, SpillOff: n.spillAt, Targets: n.targets})
		p.Moved += len(n.targets)
		if n.stashed {
			if n.from == FromRAM {
				ram -= int64(n.size)
			}
		} else {
			release(n)
		}
	}
	// Zeros and fetches overwrite only what no one needs any more.
	for _, n := range nodes {
		switch n.kind {
		case OpZero:
			p.Zero += len(n.targets)
		case OpFetch:
			p.Fetched += len(n.targets)
			p.FetchBytes += int64(n.size)
		default:
			continue
		}
		p.Ops = append(p.Ops, Op{Kind: n.kind, ID: n.id, Size: n.size, Targets: n.targets})
	}
	markCommits(p.Ops, opt.CommitBytes)
	p.ID = fingerprint(p)
	return p, nil
}

// checkIndex refuses an index whose chunks do not tile the image from 0.
func checkIndex(x *chunk.Index) error {
	var at uint64
	for i, e := range x.Chunks {
		if e.Start != at || e.Size == 0 || e.End() < e.Start {
			return fmt.Errorf("%w: chunk %d at [%d, +%d) after %d", ErrBadPlanInput, i, e.Start, e.Size, at)
		}
		at = e.End()
	}
	return nil
}

// span is a byte range [a, b) of the device.
type span struct{ a, b uint64 }

// markCommits sets Op.Commit where an op writes over an old chunk that an
// op since the last commit read from the device (so that what that op
// wrote is durable before its source goes), or where limit bytes have been
// written since the last commit.
func markCommits(ops []Op, limit int64) {
	var read []span
	var written int64
	for i := range ops {
		op := &ops[i]
		conflict := false
		for _, t := range op.Targets {
			if op.Kind == OpVerify {
				break
			}
			for _, s := range read {
				if t < s.b && s.a < t+op.Size {
					conflict = true
				}
			}
		}
		if conflict || written >= limit {
			op.Commit = true
			read, written = read[:0], 0
		}
		switch {
		case op.Kind == OpSpill, op.Kind == OpMove && op.From == FromDevice:
			read = append(read, span{op.Src, op.Src + op.Size})
		}
		written += int64(op.Size) * int64(max(len(op.Targets), 1))
	}
}

// fingerprint hashes every field of the plan's ops and its sizes.
func fingerprint(p *Plan) [32]byte {
	h := sha256.New()
	le := binary.LittleEndian
	var b [8]byte
	put := func(v uint64) { le.PutUint64(b[:], v); h.Write(b[:]) }
	h.Write([]byte("lifeboat inplace plan 1\x00"))
	put(uint64(p.Digest))
	put(p.Size)
	put(p.OldSize)
	put(uint64(len(p.Ops)))
	for _, op := range p.Ops {
		put(uint64(op.Kind))
		h.Write(op.ID[:])
		put(op.Size)
		put(op.Src)
		put(uint64(op.From))
		put(op.SpillOff)
		c := uint64(0)
		if op.Commit {
			c = 1
		}
		put(c)
		put(uint64(len(op.Targets)))
		for _, t := range op.Targets {
			put(t)
		}
	}
	var id [32]byte
	h.Sum(id[:0])
	return id
}
