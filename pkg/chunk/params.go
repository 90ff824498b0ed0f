package chunk

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Limits casync places on chunk sizes.
const (
	SizeLimitMin = 1
	SizeLimitMax = 128 << 20
	// WindowSize is the buzhash window, in bytes.
	WindowSize = 48
)

// Params are the chunk size bounds of a chunker and of the index it makes.
type Params struct {
	Min, Avg, Max uint64
}

// DefaultParams are casync's defaults: 16/64/256 KiB.
var DefaultParams = Params{Min: 16 << 10, Avg: 64 << 10, Max: 256 << 10}

// Validate reports whether casync would accept p.
func (p Params) Validate() error {
	switch {
	case p.Min < SizeLimitMin || p.Avg < SizeLimitMin || p.Max < SizeLimitMin:
		return fmt.Errorf("chunk size %s: sizes must be at least %d", p, SizeLimitMin)
	case p.Min > SizeLimitMax || p.Avg > SizeLimitMax || p.Max > SizeLimitMax:
		return fmt.Errorf("chunk size %s: sizes must be at most %d", p, SizeLimitMax)
	case p.Min > p.Avg:
		return fmt.Errorf("chunk size %s: minimum is above average", p)
	case p.Avg > p.Max:
		return fmt.Errorf("chunk size %s: average is above maximum", p)
	case !p.fixed() && p.Max < WindowSize:
		// The first cut test comes when the 48-byte window is full, so a
		// smaller maximum makes chunks casync refuses to index.
		return fmt.Errorf("chunk size %s: maximum is below the %d-byte hash window", p, WindowSize)
	}
	return nil
}

// String formats p as casync's --chunk-size takes it.
func (p Params) String() string { return fmt.Sprintf("%d:%d:%d", p.Min, p.Avg, p.Max) }

// fixed reports whether p selects casync's fixed-size chunker.
func (p Params) fixed() bool { return p.Min == p.Avg && p.Avg == p.Max }

// firstCut is the chunk length at which the chunker first tests for a cut:
// the window must be full, and casync skips the bytes below the minimum.
func (p Params) firstCut() uint64 { return max(p.Min, WindowSize) }

// discriminator is casync's cut divisor for p, clamped to [Min, Max].
func (p Params) discriminator() uint32 {
	avg := float64(p.Avg)
	d := uint64(avg / (-1.42888852e-7*avg + 1.33237515))
	d = min(max(d, p.Min), p.Max)
	return uint32(d)
}

// ParseParams parses casync's --chunk-size syntax: AVG alone (minimum and
// maximum become AVG/4 and AVG*4) or MIN:AVG:MAX. Sizes take an optional
// K, M or G suffix (powers of 1024).
func ParseParams(s string) (Params, error) {
	parts := strings.Split(s, ":")
	var v []uint64
	for _, f := range parts {
		n, err := parseSize(f)
		if err != nil {
			return Params{}, fmt.Errorf("chunk size %q: %w", s, err)
		}
		v = append(v, n)
	}
	var p Params
	switch len(v) {
	case 1:
		p = Params{Min: max(v[0]/4, SizeLimitMin), Avg: v[0], Max: min(v[0]*4, SizeLimitMax)}
	case 3:
		p = Params{Min: v[0], Avg: v[1], Max: v[2]}
	default:
		return Params{}, fmt.Errorf("chunk size %q: want AVG or MIN:AVG:MAX", s)
	}
	return p, p.Validate()
}

func parseSize(s string) (uint64, error) {
	mult := uint64(1)
	t := strings.TrimSuffix(strings.TrimSuffix(s, "iB"), "B")
	if t != "" {
		switch t[len(t)-1] {
		case 'K', 'k':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		}
		if mult != 1 {
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad size %q", s)
	}
	if n > math.MaxUint64/mult {
		return 0, fmt.Errorf("size %q overflows", s)
	}
	return n * mult, nil
}
