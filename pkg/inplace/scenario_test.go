package inplace

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

var testParams = chunk.Params{Min: 64, Avg: 256, Max: 1024}

// scenario is an old and a new release built from a shared pool of chunks.
type scenario struct {
	old, new       *chunk.Index
	oldImg, newImg []byte
	content        map[chunk.ID][]byte
}

func (sc *scenario) index(ids []chunk.ID) (*chunk.Index, []byte) {
	x := chunk.NewIndex(testParams, chunk.SHA256)
	var img []byte
	for _, id := range ids {
		c := sc.content[id]
		x.Chunks = append(x.Chunks, chunk.Entry{Start: uint64(len(img)), Size: uint64(len(c)), ID: id})
		img = append(img, c...)
	}
	return x, img
}

func (sc *scenario) add(c []byte) chunk.ID {
	id := chunk.SHA256.Sum(c)
	sc.content[id] = c
	return id
}

// genScenario makes an old release of n chunks (fixed-size ones when fixed,
// so that swaps keep offsets and make true cycles) and a new one that
// permutes blocks of it, swaps chunks, replaces about a tenth with new
// chunks, adds zeros and drops a few.
func genScenario(rng *rand.Rand, n int, fixed bool) *scenario {
	sc := &scenario{content: make(map[chunk.ID][]byte)}
	randChunk := func() chunk.ID {
		size := 512
		if !fixed {
			size = 64 + rng.IntN(1024-64+1)
		}
		c := make([]byte, size)
		for i := range c {
			c[i] = byte(rng.Uint32())
		}
		return sc.add(c)
	}
	zero := sc.add(make([]byte, testParams.Max))
	pool := make([]chunk.ID, n)
	for i := range pool {
		pool[i] = randChunk()
	}
	oldIDs := make([]chunk.ID, n)
	for i := range oldIDs {
		oldIDs[i] = pool[i]
		if i > 0 && rng.IntN(10) == 0 {
			oldIDs[i] = pool[rng.IntN(i)] // a repeat
		}
	}
	// Permute blocks, keeping the first one in place.
	var blocks [][]chunk.ID
	for i := 0; i < n; {
		k := 1 + rng.IntN(max(1, n/6))
		blocks = append(blocks, oldIDs[i:min(n, i+k)])
		i += k
	}
	rest := blocks[1:]
	rng.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	var newIDs []chunk.ID
	for _, b := range blocks {
		newIDs = append(newIDs, b...)
	}
	for range n / 5 {
		i, j := rng.IntN(len(newIDs)), rng.IntN(len(newIDs))
		newIDs[i], newIDs[j] = newIDs[j], newIDs[i]
	}
	for i := range newIDs {
		switch rng.IntN(20) {
		case 0, 1:
			newIDs[i] = randChunk()
		case 2:
			if !fixed {
				newIDs[i] = zero
			}
		}
	}
	if !fixed {
		for range n / 20 {
			i := rng.IntN(len(newIDs))
			newIDs = slices.Delete(newIDs, i, i+1)
		}
	}
	sc.old, sc.oldImg = sc.index(oldIDs)
	sc.new, sc.newImg = sc.index(newIDs)
	return sc
}

// devSize is the size of the device holding both releases.
func (sc *scenario) devSize() int {
	return max(len(sc.oldImg), len(sc.newImg))
}

// needed returns the distinct chunks of the new release the old lacks,
// zeros apart, and their bytes.
func (sc *scenario) needed() (map[chunk.ID]bool, int64) {
	have := make(map[chunk.ID]bool)
	for _, e := range sc.old.Chunks {
		have[e.ID] = true
	}
	zero := chunk.SHA256.Sum(make([]byte, testParams.Max))
	need := make(map[chunk.ID]bool)
	var bytes int64
	for _, e := range sc.new.Chunks {
		if !have[e.ID] && e.ID != zero && !need[e.ID] {
			need[e.ID] = true
			bytes += int64(e.Size)
		}
	}
	return need, bytes
}

// store returns a store holding every chunk of the new release.
func (sc *scenario) store() *countingStore {
	m := store.NewMem()
	for _, e := range sc.new.Chunks {
		if err := m.Put(context.Background(), e.ID, chunk.Compress(nil, sc.content[e.ID])); err != nil {
			panic(err)
		}
	}
	return newCountingStore(m)
}

// simulate runs p strictly on the old image: every read must find its chunk
// where the plan says, no op may overwrite a range an op since the last
// commit read, RAM stays within budget, and the result must be the new
// image, fetching each chunk the old release lacks exactly once.
func simulate(p *Plan, old, new *chunk.Index, oldImg, newImg []byte, content func(chunk.ID) []byte, budget int64) error {
	dev := make([]byte, max(len(oldImg), len(newImg)))
	copy(dev, oldImg)
	spill := make([]byte, p.SpillSize)
	ram := make(map[chunk.ID][]byte)
	var ramUsed int64
	var read []span
	fetched := make(map[chunk.ID]int)
	get := func(b []byte, off, size uint64, id chunk.ID, what string) ([]byte, error) {
		if off+size > uint64(len(b)) {
			return nil, fmt.Errorf("%s [%d, +%d) beyond %d bytes", what, off, size, len(b))
		}
		d := b[off : off+size]
		if p.Digest.Sum(d) != id {
			return nil, fmt.Errorf("%s at %d is not chunk %s", what, off, id)
		}
		return slices.Clone(d), nil
	}
	for i, op := range p.Ops {
		if op.Commit {
			read = read[:0]
		}
		var data []byte
		var err error
		switch op.Kind {
		case OpVerify:
			if len(op.Targets) != 1 || op.Targets[0] != op.Src {
				return fmt.Errorf("op %d: verify of %v from %d", i, op.Targets, op.Src)
			}
			_, err = get(dev, op.Src, op.Size, op.ID, "in place")
		case OpStash:
			if data, err = get(dev, op.Src, op.Size, op.ID, "stash"); err == nil {
				ram[op.ID] = data
				ramUsed += int64(op.Size)
				if ramUsed > budget {
					return fmt.Errorf("op %d: %d bytes in RAM, budget %d", i, ramUsed, budget)
				}
			}
		case OpSpill:
			if data, err = get(dev, op.Src, op.Size, op.ID, "spill source"); err == nil {
				copy(spill[op.SpillOff:], data)
				read = append(read, span{op.Src, op.Src + op.Size})
			}
		case OpMove:
			switch op.From {
			case FromRAM:
				var ok bool
				if data, ok = ram[op.ID]; !ok {
					return fmt.Errorf("op %d: chunk %s not in RAM", i, op.ID)
				}
				delete(ram, op.ID)
				ramUsed -= int64(op.Size)
			case FromSpill:
				data, err = get(spill, op.SpillOff, op.Size, op.ID, "spill")
			default:
				data, err = get(dev, op.Src, op.Size, op.ID, "move source")
			}
		case OpZero:
			data = make([]byte, op.Size)
			if p.Digest.Sum(data) != op.ID {
				return fmt.Errorf("op %d: zero op for chunk %s", i, op.ID)
			}
		case OpFetch:
			data = content(op.ID)
			fetched[op.ID]++
		default:
			return fmt.Errorf("op %d: kind %d", i, op.Kind)
		}
		if err != nil {
			return fmt.Errorf("op %d (%s): %w", i, op.Kind, err)
		}
		if op.Kind == OpVerify {
			continue
		}
		for _, t := range op.Targets {
			for _, s := range read {
				if t < s.b && s.a < t+op.Size {
					return fmt.Errorf("op %d (%s) writes [%d, +%d) over [%d, %d) read since the last commit", i, op.Kind, t, op.Size, s.a, s.b)
				}
			}
			copy(dev[t:], data)
		}
		if op.Kind == OpMove && op.From == FromDevice {
			read = append(read, span{op.Src, op.Src + op.Size})
		}
	}
	if len(ram) != 0 {
		return fmt.Errorf("%d chunks left in RAM", len(ram))
	}
	if !bytes.Equal(dev[:len(newImg)], newImg) {
		return fmt.Errorf("the result is not the new image")
	}
	have := make(map[chunk.ID]bool)
	for _, e := range old.Chunks {
		have[e.ID] = true
	}
	for _, e := range new.Chunks {
		if !have[e.ID] && fetched[e.ID] == 0 && p.Digest.Sum(make([]byte, e.Size)) != e.ID {
			return fmt.Errorf("chunk %s of the new release not fetched", e.ID)
		}
	}
	for id, n := range fetched {
		if have[id] || n != 1 {
			return fmt.Errorf("chunk %s fetched %d times (in the old release: %v)", id, n, have[id])
		}
	}
	return nil
}
