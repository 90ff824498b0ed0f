package chunk

import (
	"bytes"
	"context"
	"testing"
)

func BenchmarkCut(b *testing.B) {
	data := testData(1, 64<<20)
	c, _ := NewChunker(DefaultParams)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		cutAll(c, data)
	}
}

func BenchmarkScan(b *testing.B) {
	data := testData(1, 256<<20)
	c, _ := NewChunker(DefaultParams)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Scan(context.Background(), bytes.NewReader(data), int64(len(data)), c, SHA512256, ScanOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDigest(b *testing.B) {
	data := testData(1, 64<<10)
	for _, d := range []Digest{SHA512256, SHA256} {
		b.Run(d.String(), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				d.Sum(data)
			}
		})
	}
}

func BenchmarkCompress(b *testing.B) {
	data := testData(1, 64<<10)
	var dst []byte
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		dst = Compress(dst[:0], data)
	}
}
