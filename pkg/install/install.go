// Package install is the installer pipeline every install path calls, the
// recovery ramdisk and the in-system agent alike: plan (a verified release
// from pkg/release), write each image into its slot (pkg/assemble, every
// chunk verified before it is written), then verify the whole slot against
// the signed SHA-256 before the release counts as installed.
//
// An install that fails part way leaves the slots it was writing partly
// written: never with a byte that was not verified, but not whole either.
// Those are the inactive slots of an A/B system, which the bootloader is not
// switched to until every slot is whole and verified.
//
// Today a slot is a file or block device named by class; the slot model,
// the bootloader switch and reboot come with the bootloader issue.
package install

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"

	"github.com/lifeboat-update/lifeboat/pkg/assemble"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/progress"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

// ErrSlotMismatch reports a slot whose content, read back after writing,
// does not hash to what the release signed.
var ErrSlotMismatch = errors.New("slot does not match the release")

// Options are an install's sources and reporting.
type Options struct {
	// Stores hold the release's chunks, tried in order.
	Stores []store.Store
	// Seeds may share chunks with the images (the running slots).
	Seeds []*assemble.Seed
	// Version is the release to install, as a fleet server assigned it
	// (release.Client.PlanVersion); "" installs the newest.
	Version string
	// Workers bounds concurrent fetches; default 8.
	Workers  int
	Progress progress.Reporter
	Log      *slog.Logger
}

// ImageResult is what writing one image cost.
type ImageResult struct {
	Class string          `json:"class"`
	Slot  string          `json:"slot"`
	Stats *assemble.Stats `json:"stats"`
	// Verity is the image's signed dm-verity description, if it has one:
	// what the boot entry needs to open the slot.
	Verity *release.Verity `json:"verity,omitempty"`
	// Image is the image as its signed release describes it: its size
	// and SHA-256 cover the slot's bytes from the first.
	Image release.Image `json:"-"`
	// Index is the image's verified index: kept beside the slot
	// (SlotIndexName), it lets the next install use the slot as a seed
	// without chunking it again.
	Index *chunk.Index `json:"-"`
}

// SlotIndexName is where, relative to the data partition's root, a device
// keeps the index of the image in a slot of a class, so that the next
// install can seed from the slot without chunking it. An index that does
// not match the slot costs only speed: every seed chunk is verified
// before it is used.
func SlotIndexName(slot, class string) string {
	return "lifeboat/slots/" + slot + "." + class + ".caibx"
}

// Result describes a finished install.
type Result struct {
	Board   string        `json:"board"`
	Version string        `json:"version"`
	Images  []ImageResult `json:"images"`
	// UpToDate says the release planned was installed already: nothing
	// was written.
	UpToDate bool `json:"up_to_date,omitempty"`
}

// Install plans the newest release for c's board, or opt.Version, and
// writes each of its images into the slot slots names for its class.
// Nothing is written before the whole plan is verified; each slot is
// verified after it is written; only then is the release recorded as
// installed.
func Install(ctx context.Context, c *release.Client, slots map[string]string, opt Options) (*Result, error) {
	classes := make([]string, 0, len(slots))
	for class := range slots {
		classes = append(classes, class)
	}
	slices.Sort(classes)
	plan, err := c.PlanVersion(ctx, classes, opt.Version)
	if err != nil {
		return nil, err
	}
	res := &Result{Board: plan.Board, Version: plan.Version}
	for _, im := range plan.Images {
		st, err := WriteImage(ctx, im, slots[im.Class], opt)
		if err != nil {
			return res, fmt.Errorf("install %s %s into %s: %w", plan.Version, im.Class, slots[im.Class], err)
		}
		res.Images = append(res.Images, ImageResult{Class: im.Class, Slot: slots[im.Class], Stats: st, Verity: im.Verity, Image: im.Image, Index: im.Index})
	}
	if err := c.Installed(plan.Version); err != nil {
		return res, err
	}
	return res, nil
}

// WriteImage writes one image of a verified plan into the slot at path,
// every chunk verified before it is written, then verifies the whole slot
// against the signed SHA-256. Install calls it for each image; a caller
// that writes the same image into a second place (a manufacturing flash's
// factory partition, seeded by the slot just written) calls it alone.
func WriteImage(ctx context.Context, im release.PlannedImage, path string, opt Options) (*assemble.Stats, error) {
	target, err := assemble.OpenTarget(path, im.Size)
	if err != nil {
		return nil, err
	}
	stats, err := assemble.Assemble(ctx, im.Index, target, assemble.Options{
		Stores:   opt.Stores,
		Seeds:    opt.Seeds,
		InPlace:  target.InPlace(),
		Fresh:    target.Fresh(),
		Workers:  opt.Workers,
		Progress: opt.Progress,
		Log:      opt.Log,
	})
	if err == nil {
		err = VerifySlot(ctx, target, im.Image)
	}
	if errors.Is(err, chunk.ErrCorrupt) || errors.Is(err, ErrSlotMismatch) {
		err = &release.AttackError{Class: release.ErrArbitrarySoftware, Detail: "content does not match the signed release", Cause: err}
	}
	if err != nil {
		target.Abort()
		return stats, err
	}
	return stats, target.Commit()
}

// VerifySlot reads back the image's bytes from a slot and checks them
// against the SHA-256 the release signed.
func VerifySlot(ctx context.Context, slot io.ReaderAt, im release.Image) error {
	h := sha256.New()
	r := io.NewSectionReader(slot, 0, im.Size)
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := r.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read slot back: %w", err)
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != im.SHA256 {
		return fmt.Errorf("%w: %s hashes to %s, the release signed %s", ErrSlotMismatch, im.Class, got, im.SHA256)
	}
	return nil
}
