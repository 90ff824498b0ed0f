package verity

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/pkg/dm"
)

// buildFiles writes size bytes of test data to a file and its tree to
// another (or, with hashOffset > 0, after the data in the same file).
func buildFiles(t *testing.T, size, hashOffset int64, p Params, opts ...Option) (data, hash string, tree *Tree) {
	t.Helper()
	dir := t.TempDir()
	data = filepath.Join(dir, "data")
	hash = filepath.Join(dir, "hash")
	if err := os.WriteFile(data, testData(42, size), 0o600); err != nil {
		t.Fatal(err)
	}
	if hashOffset > 0 {
		hash = data
	}
	df, err := os.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	defer df.Close()
	hf, err := os.OpenFile(hash, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer hf.Close()
	tree, err = Build(context.Background(), df, size, hf, hashOffset, p, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return data, hash, tree
}

func TestActivate(t *testing.T) {
	ctx := context.Background()
	p := DefaultParams()
	p.Salt = goldenSalt
	for _, tt := range []struct {
		name       string
		hashOffset int64
		build      []Option
		opts       []ActivateOption
		want       func(*Tree, string, string) Table
	}{
		{"separate", 0, nil, nil, func(tr *Tree, d, h string) Table {
			return Table{DataDev: d, HashDev: h, Params: tr.Params, DataBlocks: 256, HashStartBlock: 1, RootHash: tr.RootHash}
		}},
		{"after the data", 1 << 20, nil, []ActivateOption{WithErrorMode(RestartOnCorruption), WithDataSize(1 << 20)}, func(tr *Tree, d, h string) Table {
			return Table{DataDev: d, HashDev: h, Params: tr.Params, DataBlocks: 256, HashStartBlock: 257, RootHash: tr.RootHash, ErrorMode: RestartOnCorruption}
		}},
		{"no superblock", 0, []Option{WithoutSuperblock()}, []ActivateOption{WithoutSuperblock(), WithDataSize(1 << 20), WithIgnoreZeroBlocks(), WithCheckAtMostOnce()}, func(tr *Tree, d, h string) Table {
			return Table{DataDev: d, HashDev: h, Params: tr.Params, DataBlocks: 256, HashStartBlock: 0, RootHash: tr.RootHash, IgnoreZeroBlocks: true, CheckAtMostOnce: true}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data, hash, tree := buildFiles(t, 1<<20, tt.hashOffset, p, tt.build...)
			ctl := dm.NewFake(t.TempDir())
			path, err := Activate(ctx, ctl, "root", data, hash, tt.hashOffset, p, tree.RootHash, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(ctl.Dir, "root"); path != want {
				t.Errorf("Activate() = %q, want %q", path, want)
			}
			want := tt.want(tree, data, hash)
			got, err := ctl.Table(ctx, "root")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]dm.Target{want.Target()}, got); diff != "" {
				t.Errorf("Activate() loaded (-want +got):\n%s", diff)
			}
			info, err := ctl.Info(ctx, "root")
			if err != nil || !info.ReadOnly {
				t.Errorf("Info(root) = %+v, %v, want read-only", info, err)
			}
			if tree.Superblock != nil {
				if want := "CRYPT-VERITY-" + hexUUID(tree.Superblock.UUID) + "-root"; info.UUID != want {
					t.Errorf("Activate() UUID = %q, want veritysetup's %q", info.UUID, want)
				}
			}

			ctl.SetStatus("root", 0, "V")
			if c, err := Corrupted(ctx, ctl, "root"); c || err != nil {
				t.Errorf("Corrupted(V) = %v, %v, want false", c, err)
			}
			ctl.SetStatus("root", 0, "C")
			if c, err := Corrupted(ctx, ctl, "root"); !c || err != nil {
				t.Errorf("Corrupted(C) = %v, %v, want true", c, err)
			}
			if err := Deactivate(ctx, ctl, "root"); err != nil {
				t.Fatal(err)
			}
			if err := Deactivate(ctx, ctl, "root"); !errors.Is(err, dm.ErrNoDevice) {
				t.Errorf("Deactivate(gone) = %v, want ErrNoDevice", err)
			}
		})
	}
}

func hexUUID(u UUID) string {
	s := u.String()
	return s[:8] + s[9:13] + s[14:18] + s[19:23] + s[24:]
}

func TestActivateErrors(t *testing.T) {
	ctx := context.Background()
	p := DefaultParams()
	p.Salt = goldenSalt
	data, hash, tree := buildFiles(t, 1<<20, 0, p)
	other := p
	other.Salt = nil
	for _, tt := range []struct {
		name string
		p    Params
		root []byte
		opts []ActivateOption
		want error
	}{
		{"salt differs from superblock", other, tree.RootHash, nil, ErrMismatch},
		{"size differs from superblock", p, tree.RootHash, []ActivateOption{WithDataSize(1<<20 - 4096)}, ErrMismatch},
		{"no size without superblock", p, tree.RootHash, []ActivateOption{WithoutSuperblock()}, ErrBadParams},
		{"short root", p, tree.RootHash[:20], nil, ErrBadTable},
		{"bad mode", p, tree.RootHash, []ActivateOption{WithErrorMode(-1)}, ErrBadTable},
	} {
		ctl := dm.NewFake(t.TempDir())
		if _, err := Activate(ctx, ctl, "root", data, hash, 0, tt.p, tt.root, tt.opts...); !errors.Is(err, tt.want) {
			t.Errorf("Activate(%s) = %v, want %v", tt.name, err, tt.want)
		}
		if l, _ := ctl.List(ctx); len(l) != 0 {
			t.Errorf("Activate(%s) left %v", tt.name, l)
		}
	}
	// The superblock is where the hash offset says.
	ctl := dm.NewFake(t.TempDir())
	if _, err := Activate(ctx, ctl, "root", data, data, 0, p, tree.RootHash); !errors.Is(err, ErrBadSuperblock) {
		t.Errorf("Activate(no superblock there) = %v, want ErrBadSuperblock", err)
	}
}
