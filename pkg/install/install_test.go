package install

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/release"
)

func TestVerifySlot(t *testing.T) {
	img := bytes.Repeat([]byte("lifeboat"), 300000) // 2.4 MB: more than one read buffer
	sum := sha256.Sum256(img)
	im := release.Image{Class: "rootfs", Size: int64(len(img)), SHA256: hex.EncodeToString(sum[:])}
	if err := VerifySlot(context.Background(), bytes.NewReader(img), im); err != nil {
		t.Fatalf("VerifySlot(intact) = %v", err)
	}
	// The slot may be larger than the image (a partition): only the image's
	// bytes count.
	if err := VerifySlot(context.Background(), bytes.NewReader(append(bytes.Clone(img), 1, 2, 3)), im); err != nil {
		t.Errorf("VerifySlot(larger slot) = %v", err)
	}
	for _, off := range []int{0, 1 << 20, len(img) - 1} {
		bad := bytes.Clone(img)
		bad[off] ^= 0xff
		if err := VerifySlot(context.Background(), bytes.NewReader(bad), im); !errors.Is(err, ErrSlotMismatch) {
			t.Errorf("VerifySlot(byte %d flipped) = %v, want ErrSlotMismatch", off, err)
		}
	}
	if err := VerifySlot(context.Background(), bytes.NewReader(img[:len(img)-1]), im); !errors.Is(err, ErrSlotMismatch) {
		t.Errorf("VerifySlot(short slot) = %v, want ErrSlotMismatch", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := VerifySlot(ctx, bytes.NewReader(img), im); !errors.Is(err, context.Canceled) {
		t.Errorf("VerifySlot(cancelled) = %v, want context.Canceled", err)
	}
}
