package initramfs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// urootArgs are the arguments of the u-root builder.
func (o *Options) urootArgs(tmp, out string, files []staged) []string {
	args := []string{
		"-o", out,
		"-tmp-dir", tmp,
		"-skip-ldd",              // nothing we add is dynamically linked; no host libraries
		"-uinitcmd=" + UinitPath, // init runs our flow
		"-defaultsh=gosh",        // the rescue shell
		"-initcmd=init",          // /init -> bbin/init
	}
	for _, f := range files {
		args = append(args, "-files", f.src+":"+strings.TrimPrefix(f.dest, "/"))
	}
	args = append(args, "./uinit", "./cmds/lifeboat") // ours, in the module root
	for _, c := range o.commands() {
		args = append(args, commandPackage(c))
	}
	return args
}

// uroot builds the u-root builder for the host and runs it for the board's
// architecture in the module root. u-root strips the binaries, builds with
// -trimpath and no build ID, and zeroes times and owners in the archive:
// the same sources give the same bytes.
func (o *Options) uroot(ctx context.Context, root, tmp, out string, files []staged) error {
	gobin, err := lookPath(o.Go, "go")
	if err != nil {
		return fmt.Errorf("u-root: %w", err)
	}
	var log bytes.Buffer
	output := io.Writer(&log)
	if o.BuildOutput != nil {
		output = o.BuildOutput
	}
	run := func(env []string, name string, args ...string) error {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdout, cmd.Stderr = output, output
		if err := cmd.Run(); err != nil {
			msg := ""
			if o.BuildOutput == nil {
				msg = "\n" + tail(log.String(), 60)
			}
			shown := args
			if len(shown) > 8 {
				shown = append(shown[:8:8], "...")
			}
			return fmt.Errorf("u-root: %s %s: %w%s", filepath.Base(name), strings.Join(shown, " "), err, msg)
		}
		return nil
	}
	// The builder itself is a host program: go tool would build it for
	// GOARCH, the target.
	builder := filepath.Join(tmp, "u-root")
	if err := run([]string{"GOOS=", "GOARCH=", "GOFLAGS="}, gobin, "build", "-o", builder, urootPackage); err != nil {
		return err
	}
	work := filepath.Join(tmp, "uroot-work")
	if err := os.Mkdir(work, 0o700); err != nil {
		return fmt.Errorf("u-root: %w", err)
	}
	// u-root runs the go command it finds on the PATH.
	env := []string{"GOOS=linux", "GOARCH=" + o.Board.Arch, "CGO_ENABLED=0", "GOFLAGS=",
		"PATH=" + filepath.Dir(gobin) + string(os.PathListSeparator) + os.Getenv("PATH")}
	return run(env, builder, o.urootArgs(work, out, files)...)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines before]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
