package install

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/publish"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/store"
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

// TestInstallVersion installs the version Options names, not the newest,
// and refuses one the signed targets do not hold or one older than
// installed, writing nothing.
func TestInstallVersion(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	ks, err := publish.GenerateKeySet(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	repo, err := publish.Init(dir, ks, nil)
	if err != nil {
		t.Fatal(err)
	}
	imgs := map[string][]byte{}
	for i, v := range []string{"1", "2", "3"} {
		img := make([]byte, 200<<10)
		mrand.NewChaCha8([32]byte{byte(i)}).Read(img)
		p := filepath.Join(t.TempDir(), "rootfs.img")
		if err := os.WriteFile(p, img, 0o600); err != nil {
			t.Fatal(err)
		}
		im, err := repo.AddImage(ctx, "rootfs", p, publish.ImageOptions{Params: chunk.DefaultParams, Digest: chunk.SHA512256})
		if err != nil {
			t.Fatal(err)
		}
		if err := repo.AddRelease(release.Release{Board: "b", Version: v, Created: time.Now().UTC(), Images: []release.Image{im}}, ks); err != nil {
			t.Fatal(err)
		}
		imgs[v] = img
	}
	root, err := os.ReadFile(filepath.Join(dir, release.MetadataDir, "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	state := durable.OS(t.TempDir())
	if err := release.Provision(state, root); err != nil {
		t.Fatal(err)
	}
	st, err := store.NewLocal(filepath.Join(dir, release.StoreDir))
	if err != nil {
		t.Fatal(err)
	}
	c := &release.Client{State: state, Fetch: release.DirFetcher{Dir: dir}, Board: "b"}
	slot := filepath.Join(t.TempDir(), "slot")
	install := func(v string) (*Result, error) {
		return Install(ctx, c, map[string]string{"rootfs": slot}, Options{Stores: []store.Store{st}, Version: v})
	}
	res, err := install("2")
	if err != nil || res.Version != "2" {
		t.Fatalf("Install(Version 2) = %+v, %v; want 2 installed", res, err)
	}
	if got, _ := os.ReadFile(slot); !bytes.Equal(got, imgs["2"]) {
		t.Fatalf("the slot does not hold release 2's image")
	}
	for _, tc := range []struct {
		version string
		want    error
	}{{"2", release.ErrUpToDate}, {"1", release.ErrRollback}, {"7", release.ErrNoRelease}} {
		if _, err := install(tc.version); !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.version) {
			t.Errorf("Install(Version %s) = %v, want an error wrapping %q naming the version", tc.version, err, tc.want)
		}
		if got, _ := os.ReadFile(slot); !bytes.Equal(got, imgs["2"]) {
			t.Errorf("Install(Version %s) changed the slot", tc.version)
		}
	}
	if res, err := install(""); err != nil || res.Version != "3" {
		t.Errorf("Install(no version) = %+v, %v; want the newest, 3", res, err)
	}
}
