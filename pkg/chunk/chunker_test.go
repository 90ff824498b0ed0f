package chunk

import (
	"bytes"
	"context"
	"math/bits"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// refChunker is a byte-at-a-time model of casync's streaming chunker state
// machine (ca_chunker_scan), fed in arbitrary pieces. Cut must agree with it.
type refChunker struct {
	p                    Params
	d                    uint64
	h                    uint32
	window               [WindowSize]byte
	windowSize, chunkLen uint64
}

func (c *refChunker) breakAt(v uint32) bool {
	return c.chunkLen >= c.p.Max || uint64(v)%c.d == c.d-1
}

// feed returns the offset within p just past a cut, or -1.
func (c *refChunker) feed(p []byte) int {
	if c.p.fixed() {
		m := min(c.p.Avg-c.chunkLen, uint64(len(p)))
		c.chunkLen += m
		if c.chunkLen < c.p.Avg {
			return -1
		}
		c.chunkLen = 0
		return int(m)
	}
	var skip uint64
	k := 0
	if c.p.Min > WindowSize {
		skip = c.p.Min - WindowSize
		if c.chunkLen < skip {
			m := int(skip - c.chunkLen)
			if m >= len(p) {
				c.chunkLen += uint64(len(p))
				return -1
			}
			k, c.chunkLen = m, skip
		}
	}
	for ; k < len(p); k++ {
		b := p[k]
		c.chunkLen++
		if c.windowSize < WindowSize {
			c.window[c.windowSize] = b
			c.windowSize++
			if c.windowSize < WindowSize {
				continue
			}
			c.h = 0
			for i := 0; i < WindowSize-1; i++ {
				c.h ^= bits.RotateLeft32(buzhashTable[c.window[i]], WindowSize-1-i)
			}
			c.h ^= buzhashTable[c.window[WindowSize-1]]
			if c.breakAt(c.h) {
				c.reset()
				return k + 1
			}
			continue
		}
		idx := (c.chunkLen - 1 - skip) % WindowSize
		v := bits.RotateLeft32(c.h, 1) ^ bits.RotateLeft32(buzhashTable[c.window[idx]], WindowSize) ^ buzhashTable[b]
		if c.breakAt(v) {
			c.reset()
			return k + 1
		}
		c.window[idx] = b
		c.h = v
	}
	return -1
}

func (c *refChunker) reset() { c.h, c.windowSize, c.chunkLen = 0, 0, 0 }

// refCuts chunks data through the model, fed in random pieces.
func refCuts(p Params, data []byte, rng *rand.Rand) []uint64 {
	c := &refChunker{p: p, d: uint64(p.discriminator())}
	var ends []uint64
	var last uint64
	pos := 0
	for pos < len(data) {
		n := min(1+rng.IntN(200000), len(data)-pos)
		piece := data[pos : pos+n]
		for len(piece) > 0 {
			k := c.feed(piece)
			if k < 0 {
				break
			}
			last = uint64(pos) + uint64(k)
			ends = append(ends, last)
			pos += k
			piece = piece[k:]
		}
		pos += len(piece)
	}
	if last < uint64(len(data)) {
		ends = append(ends, uint64(len(data)))
	}
	return ends
}

func cutAll(c *Chunker, data []byte) []uint64 {
	var ends []uint64
	pos := 0
	for pos < len(data) {
		pos += c.Cut(data[pos:min(len(data), pos+c.MaxChunk())])
		ends = append(ends, uint64(pos))
	}
	return ends
}

// testData mixes random bytes with runs of zeros and of a repeated pattern,
// so that cuts are forced at the maximum as well as found by the hash.
func testData(seed uint64, size int) []byte {
	if size == 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	for range 8 {
		off, n := rng.IntN(size), rng.IntN(size/8+1)
		fill := byte(0)
		if rng.IntN(2) == 0 {
			fill = byte(rng.Uint32())
		}
		for i := off; i < min(size, off+n); i++ {
			b[i] = fill
		}
	}
	return b
}

var testParams = []Params{
	DefaultParams,
	{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10},
	{Min: 64 << 10, Avg: 256 << 10, Max: 1 << 20},
	{Min: 1, Avg: 1, Max: 1},
	{Min: 4096, Avg: 4096, Max: 4096},
	{Min: 1, Avg: 16, Max: 48},
	{Min: 1, Avg: 64, Max: 100},
	{Min: 48, Avg: 100, Max: 300},
	{Min: 49, Avg: 100, Max: 300},
	{Min: 100, Avg: 100, Max: 100000},
	{Min: 30000, Avg: 30000, Max: 30001},
}

func TestCutMatchesCasyncStateMachine(t *testing.T) {
	for i, p := range testParams {
		t.Run(p.String(), func(t *testing.T) {
			size := 3 << 20
			if p.Avg < 1024 {
				size = 200 << 10
			}
			data := testData(uint64(i), size)
			c, err := NewChunker(p)
			if err != nil {
				t.Fatal(err)
			}
			want := refCuts(p, data, rand.New(rand.NewPCG(1, uint64(i))))
			got := cutAll(c, data)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Cut ends differ from casync's state machine (-want +got):\n%s", diff)
			}
		})
	}
}

func TestScanMatchesSerial(t *testing.T) {
	for i, p := range testParams[:3] {
		data := testData(uint64(100+i), 9<<20+12345)
		c, _ := NewChunker(p)
		ends := cutAll(c, data)
		for _, sec := range []int64{1, 1 << 20, 3<<20 + 7} {
			got, err := Scan(context.Background(), bytes.NewReader(data), int64(len(data)), c, SHA256,
				ScanOptions{Workers: 3, SectionSize: sec})
			if err != nil {
				t.Fatal(err)
			}
			var gotEnds []uint64
			for j, e := range got {
				gotEnds = append(gotEnds, e.End())
				if id := SHA256.Sum(data[e.Start:e.End()]); id != e.ID {
					t.Fatalf("Scan(%s, section %d) chunk %d ID = %s, want %s", p, sec, j, e.ID, id)
				}
			}
			if diff := cmp.Diff(ends, gotEnds); diff != "" {
				t.Errorf("Scan(%s, section %d) ends differ from serial (-want +got):\n%s", p, sec, diff)
			}
		}
	}
}

func TestScanFuncSeesTheSerialChain(t *testing.T) {
	// Zero runs across section starts keep the chains apart longest.
	data := testData(200, 5<<20)
	for _, off := range []int{1 << 20, 2<<20 - 5000, 3<<20 + 100} {
		clear(data[off-300<<10 : off+200<<10])
	}
	c, _ := NewChunker(DefaultParams)
	want, err := Scan(context.Background(), bytes.NewReader(data), int64(len(data)), c, SHA512256, ScanOptions{SectionSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[Entry]bool{}
	err = ScanFunc(context.Background(), bytes.NewReader(data), int64(len(data)), c, ScanOptions{SectionSize: 1 << 20, Workers: 3},
		func(e Entry, b []byte) error {
			if len(b) != int(e.Size) || !bytes.Equal(b, data[e.Start:e.End()]) {
				t.Errorf("ScanFunc passed %d bytes that are not those at %d+%d", len(b), e.Start, e.Size)
			}
			e.ID = SHA512256.Sum(b)
			mu.Lock()
			seen[e] = true
			mu.Unlock()
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range want {
		if !seen[e] {
			t.Errorf("ScanFunc never passed chunk %d of the serial chain (%d+%d)", i, e.Start, e.Size)
		}
	}
}

func TestScanEmpty(t *testing.T) {
	c, _ := NewChunker(DefaultParams)
	got, err := Scan(context.Background(), bytes.NewReader(nil), 0, c, SHA512256, ScanOptions{})
	if err != nil || len(got) != 0 {
		t.Errorf("Scan(empty) = %v, %v, want no chunks", got, err)
	}
}

func TestScanShortRead(t *testing.T) {
	c, _ := NewChunker(DefaultParams)
	data := testData(7, 1<<20)
	_, err := Scan(context.Background(), bytes.NewReader(data), 2<<20, c, SHA512256, ScanOptions{})
	if err == nil {
		t.Fatalf("Scan of an input shorter than its size succeeded")
	}
}

func TestParseParams(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Params
		bad  bool
	}{
		{in: "16384:65536:262144", want: DefaultParams},
		{in: "16K:64K:256K", want: DefaultParams},
		{in: "64K", want: DefaultParams},
		{in: "1M", want: Params{256 << 10, 1 << 20, 4 << 20}},
		{in: "1:1:1", want: Params{1, 1, 1}},
		{in: "64K:16K:256K", bad: true},
		{in: "16K:64K:32K", bad: true},
		{in: "0:64K:256K", bad: true},
		{in: "16K:64K:256M", bad: true},
		{in: "16K:64K", bad: true},
		{in: "1:16:32", bad: true},
		{in: "x", bad: true},
		{in: "", bad: true},
	} {
		got, err := ParseParams(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseParams(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseParams(%q) = %v, %v, want %v", tc.in, got, err, tc.want)
		}
	}
}
