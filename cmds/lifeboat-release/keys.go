package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/lifeboat-update/lifeboat/internal/cli"
	"github.com/lifeboat-update/lifeboat/pkg/publish"
	"github.com/lifeboat-update/lifeboat/pkg/release"
)

var keysCommand = cli.Command{
	Name:     "keys",
	Usage:    "init|rotate [FLAGS]",
	Synopsis: "create the key set and repository, or rotate a role's keys",
	Run: func(ctx context.Context, std cli.IO, _ *flag.FlagSet, args []string) error {
		if code := cli.Run(ctx, "lifeboat-release keys", []cli.Command{keysInitCommand, keysRotateCommand}, std, args); code != 0 {
			return cli.Exit(code)
		}
		return nil
	},
}

var keysInitCommand = cli.Command{
	Name:     "init",
	Usage:    "--keys=DIR --repo=DIR [--ROLE-keys=N] [--ROLE-threshold=M]",
	Synopsis: "create keys for every role and a repository signed by them",
	Run:      runKeysInit,
}

// roleFlags are the --ROLE-keys and --ROLE-threshold flags.
type roleFlags map[string]*[2]int

func defineRoleFlags(fs *flag.FlagSet, what string) roleFlags {
	rf := roleFlags{}
	for _, role := range release.Roles {
		v := &[2]int{}
		fs.IntVar(&v[0], role+"-keys", 1, fmt.Sprintf("%s keys for the %s role", what, role))
		fs.IntVar(&v[1], role+"-threshold", 1, fmt.Sprintf("signatures the %s role needs", role))
		rf[role] = v
	}
	return rf
}

func runKeysInit(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
	keysDir := fs.String("keys", "", "directory for the private keys (keep root and targets offline)")
	repoDir := fs.String("repo", "", "repository directory to create")
	rf := defineRoleFlags(fs, "number of")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *keysDir == "" || *repoDir == "" || fs.NArg() != 0 {
		return cli.Usagef("want --keys=DIR and --repo=DIR")
	}
	ks := publish.KeySet{}
	thresholds := map[string]int{}
	for _, role := range release.Roles {
		n, t := rf[role][0], rf[role][1]
		if n < 1 || t < 1 || t > n {
			return cli.Usagef("--%s-keys=%d --%s-threshold=%d: want 1 <= threshold <= keys", role, n, role, t)
		}
		signers, err := generateKeys(*keysDir, role, n)
		if err != nil {
			return err
		}
		ks[role], thresholds[role] = signers, t
	}
	if _, err := publish.Init(*repoDir, ks, thresholds); err != nil {
		return err
	}
	fmt.Fprintf(std.Stdout, "repository %s created; provision devices with %s\n", *repoDir,
		filepath.Join(*repoDir, release.MetadataDir, "1.root.json"))
	printKeys(std.Stdout, ks)
	return nil
}

// generateKeys writes n new keys for role under dir/role.
func generateKeys(dir, role string, n int) ([]release.Signer, error) {
	if err := os.MkdirAll(filepath.Join(dir, role), 0o700); err != nil {
		return nil, err
	}
	var out []release.Signer
	for range n {
		tmp := filepath.Join(dir, role, ".new.key")
		s, err := release.GenerateKey(tmp)
		if err != nil {
			return nil, err
		}
		if err := os.Rename(tmp, filepath.Join(dir, role, s.Public().ID()[:16]+".key")); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func printKeys(w io.Writer, ks publish.KeySet) {
	for _, role := range release.Roles {
		for _, s := range ks[role] {
			fmt.Fprintf(w, "  %-9s %s\n", role, s.Public().ID())
		}
	}
}

var keysRotateCommand = cli.Command{
	Name:     "rotate",
	Usage:    "--keys=DIR --repo=DIR --role=ROLE [--count=N] [--threshold=M]",
	Synopsis: "replace a role's keys with new ones and revoke the old",
	Run:      runKeysRotate,
}

func runKeysRotate(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
	keysDir := fs.String("keys", "", "directory of the private keys")
	repoDir := fs.String("repo", "", "repository directory")
	role := fs.String("role", "", "role to rotate: root, targets, snapshot or timestamp")
	count := fs.Int("count", 1, "number of new keys")
	threshold := fs.Int("threshold", 1, "signatures the role needs after rotation")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *keysDir == "" || *repoDir == "" || *role == "" || fs.NArg() != 0 {
		return cli.Usagef("want --keys, --repo and --role")
	}
	if *count < 1 || *threshold < 1 || *threshold > *count {
		return cli.Usagef("--count=%d --threshold=%d: want 1 <= threshold <= count", *count, *threshold)
	}
	ks, err := publish.LoadKeySet(*keysDir)
	if err != nil {
		return err
	}
	repo := &publish.Repo{Dir: *repoDir}
	// New keys go to a staging folder until the repository is signed.
	staging := filepath.Join(*keysDir, ".rotating")
	os.RemoveAll(staging)
	newKeys, err := generateKeys(staging, *role, *count)
	if err != nil {
		return err
	}
	if err := repo.Rotate(*role, newKeys, *threshold, ks); err != nil {
		return err
	}
	// Retire the old keys, then move the new ones in.
	revoked := filepath.Join(*keysDir, "revoked", *role)
	if err := os.MkdirAll(revoked, 0o700); err != nil {
		return err
	}
	old, _ := filepath.Glob(filepath.Join(*keysDir, *role, "*.key"))
	for _, f := range old {
		if err := os.Rename(f, filepath.Join(revoked, filepath.Base(f))); err != nil {
			return err
		}
	}
	fresh, _ := filepath.Glob(filepath.Join(staging, *role, "*.key"))
	for _, f := range fresh {
		if err := os.Rename(f, filepath.Join(*keysDir, *role, filepath.Base(f))); err != nil {
			return err
		}
	}
	os.RemoveAll(staging)
	fmt.Fprintf(std.Stdout, "%s rotated: %d old keys revoked (kept in %s)\n", *role, len(old), revoked)
	printKeys(std.Stdout, publish.KeySet{*role: newKeys})
	return nil
}
