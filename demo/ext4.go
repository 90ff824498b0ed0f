package demo

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// The file system's identity, fixed so that the same inputs give the
// same bytes: its label, its UUID and the seed of its directory hashes.
const (
	FSLabel    = "demo-os"
	FSUUID     = "4c1fbd0e-1b0a-4d3e-9a5e-6c696665626f"
	FSHashSeed = "8d7c6b5a-4f3e-4d2c-8b1a-6c696665626f"
)

// BlockSize is the file system's block size, dm-verity's data block size.
const BlockSize = 4096

// mke2fsConf is the whole mke2fs configuration: the host's
// /etc/mke2fs.conf does not reach the image. No journal (the file system
// is read-only under dm-verity), no resize inode (it never grows), no
// orphan_file (Linux 6.1 could only mount that read-only anyway).
const mke2fsConf = `[defaults]
	base_features = sparse_super,large_file,filetype,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384
	reserved_ratio = 0

[fs_types]
	ext4 = {
		features = extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
`

// mkfsExt4 makes an ext4 file system of size bytes at out holding the
// tree at dir, owned by root, every timestamp epoch.
//
// mke2fs 1.47.0 (Debian 12) takes its own times from E2FSPROGS_FAKE_TIME
// (SOURCE_DATE_EPOCH only from 1.47.1), but copies each file's times from
// the source tree, ctime included, which no one can set. So the file
// system is made first, then debugfs sets every inode's owner and times,
// which rewrites the inodes and their checksums and nothing else: for the
// same tree the image is the same, byte for byte, whoever makes it and
// whenever.
func mkfsExt4(ctx context.Context, dir, out string, size, epoch int64) error {
	tmp, err := os.MkdirTemp("", "demo-mkfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	conf := filepath.Join(tmp, "mke2fs.conf")
	if err := os.WriteFile(conf, []byte(mke2fsConf), 0o644); err != nil {
		return err
	}
	env := append(os.Environ(), "MKE2FS_CONFIG="+conf, "LC_ALL=C",
		"E2FSPROGS_FAKE_TIME="+strconv.FormatInt(epoch, 10), "SOURCE_DATE_EPOCH="+strconv.FormatInt(epoch, 10))
	if err := os.Remove(out); err != nil && !os.IsNotExist(err) {
		return err
	}
	_, err = runTool(ctx, env, "mkfs.ext4", "-q", "-F", "-t", "ext4",
		"-L", FSLabel, "-U", FSUUID,
		"-E", "root_owner=0:0,hash_seed="+FSHashSeed+",lazy_itable_init=0,lazy_journal_init=0,nodiscard",
		"-d", dir, out, strconv.FormatInt(size/1024, 10)+"k")
	if err != nil {
		return err
	}

	var cmds strings.Builder
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := "/" + filepath.ToSlash(rel)
		if rel == "." {
			name = "/"
		}
		if strings.ContainsAny(name, "\" \t\n\\") {
			return fmt.Errorf("%s: a name debugfs cannot be given", name)
		}
		for _, f := range []string{"uid", "gid"} {
			fmt.Fprintf(&cmds, "set_inode_field \"%s\" %s 0\n", name, f)
		}
		for _, f := range []string{"atime", "mtime", "ctime", "crtime"} {
			fmt.Fprintf(&cmds, "set_inode_field \"%s\" %s @%d\n", name, f, epoch)
		}
		return nil
	})
	if err != nil {
		return err
	}
	script := filepath.Join(tmp, "debugfs.cmds")
	if err := os.WriteFile(script, []byte(cmds.String()), 0o644); err != nil {
		return err
	}
	// debugfs exits 0 whatever its commands did; they say so on stderr.
	stderr, err := runTool(ctx, env, "debugfs", "-w", "-f", script, out)
	if err != nil {
		return err
	}
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if l != "" && !strings.HasPrefix(l, "debugfs ") {
			return fmt.Errorf("debugfs -w -f %s %s: %s", script, out, strings.TrimSpace(stderr))
		}
	}
	return nil
}

// runTool runs a tool and returns its stderr; a failure's error holds it.
func runTool(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stderr.String(), fmt.Errorf("%s %s: %w\n%s%s", name, strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stderr.String(), nil
}
