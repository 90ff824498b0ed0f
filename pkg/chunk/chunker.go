package chunk

import (
	"fmt"
	"math/bits"
)

// Chunker finds chunk boundaries with casync's rule: a rolling buzhash over
// the last WindowSize bytes, a cut where hash mod d == d-1 (d derived from
// the average size), never before the minimum size and always at the
// maximum. Each chunk starts with an empty window, so a boundary depends
// only on the bytes since the previous one.
type Chunker struct {
	p        Params
	fixed    bool
	first    int    // chunk length at the first cut test
	max      int    // chunk length at which a cut is forced
	d        uint32 // discriminator
	dm1      uint32 // d - 1
	magic    uint64 // for hash mod d without a division
	rotTable [256]uint32
}

// NewChunker returns a chunker for p.
func NewChunker(p Params) (*Chunker, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	c := &Chunker{
		p:     p,
		fixed: p.fixed(),
		first: int(p.firstCut()),
		max:   int(p.Max),
		d:     p.discriminator(),
	}
	c.dm1 = c.d - 1
	c.magic = ^uint64(0)/uint64(c.d) + 1
	for i, v := range buzhashTable {
		c.rotTable[i] = bits.RotateLeft32(v, WindowSize)
	}
	return c, nil
}

// Params returns the chunker's size bounds.
func (c *Chunker) Params() Params { return c.p }

// MaxChunk is the longest chunk Cut returns.
func (c *Chunker) MaxChunk() int { return c.max }

// mod returns h mod c.d by Lemire's multiply-shift, exact for 32-bit values.
func (c *Chunker) mod(h uint32) uint32 {
	hi, _ := bits.Mul64(c.magic*uint64(h), uint64(c.d))
	return uint32(hi)
}

// Cut returns the length of the chunk that starts at data[0]. data must hold
// at least MaxChunk bytes, or everything that remains of the input, in which
// case a chunk that finds no cut ends with the input.
func (c *Chunker) Cut(data []byte) int {
	n := len(data)
	if c.fixed || n <= c.first {
		return min(n, c.max)
	}
	s := c.first
	var h uint32
	for i, b := range data[s-WindowSize : s] {
		h ^= bits.RotateLeft32(buzhashTable[b], WindowSize-1-i)
	}
	if s >= c.max || c.mod(h) == c.dm1 {
		return s
	}
	limit := min(n, c.max)
	enter := data[s:limit]
	leave := data[s-WindowSize : limit-WindowSize]
	leave = leave[:len(enter)]
	for i, b := range enter {
		h = bits.RotateLeft32(h, 1) ^ c.rotTable[leave[i]] ^ buzhashTable[b]
		if c.mod(h) == c.dm1 {
			return s + i + 1
		}
	}
	return limit
}

func (c *Chunker) String() string { return fmt.Sprintf("chunker(%s)", c.p) }
