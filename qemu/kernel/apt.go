package kernel

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Apt is the Source that runs apt-cache and apt-get download. The zero Apt
// uses the host's APT configuration and architecture.
//
// With Arch set, it fetches that architecture's packages (arm64 on an
// amd64 host) without dpkg --add-architecture: apt-get and apt-cache run
// with their own sources list (Sources), package lists and cache under
// Dir, as the architecture's native tools would, and the lists are fetched
// (apt-get update) on first use, and again when a download fails. The
// host's /etc/apt and /var/lib/apt are not written.
type Apt struct {
	Arch    string // Debian architecture, "" for the host's
	Dir     string // with Arch: APT's state (sources.list, lists/, cache/)
	Sources string // with Arch: the sources.list; "" means DebianSources
}

var _ Source = Apt{}

// DebianSources is the sources list of an Apt with Arch and no Sources:
// Debian 12 and its security archive, where the pinned kernels are.
const DebianSources = `deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
`

// options returns the apt-get and apt-cache options that give an Apt with
// Arch its own state.
func (a Apt) options() []string {
	if a.Arch == "" {
		return nil
	}
	return []string{
		"-o", "APT::Architecture=" + a.Arch,
		"-o", "APT::Architectures=" + a.Arch,
		"-o", "Dir::Etc::SourceList=" + filepath.Join(a.Dir, "sources.list"),
		"-o", "Dir::Etc::SourceParts=/dev/null",
		"-o", "Dir::State::Lists=" + filepath.Join(a.Dir, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(a.Dir, "cache"),
	}
}

// prepare makes a's private state, and fetches the package lists when it
// has none or when update is set. It does nothing for the host's Apt.
func (a Apt) prepare(ctx context.Context, update bool) error {
	if a.Arch == "" {
		return nil
	}
	if a.Dir == "" {
		return fmt.Errorf("apt for %s: no state directory", a.Arch)
	}
	for _, d := range []string{"lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(a.Dir, d), 0o755); err != nil {
			return fmt.Errorf("apt for %s: %w", a.Arch, err)
		}
	}
	src := a.Sources
	if src == "" {
		src = DebianSources
	}
	list := filepath.Join(a.Dir, "sources.list")
	if old, err := os.ReadFile(list); err != nil || string(old) != src {
		if err := os.WriteFile(list, []byte(src), 0o644); err != nil {
			return fmt.Errorf("apt for %s: %w", a.Arch, err)
		}
		update = true
	}
	if have, _ := filepath.Glob(filepath.Join(a.Dir, "lists", "*_Packages*")); len(have) == 0 {
		update = true
	}
	if !update {
		return nil
	}
	// The sandbox user _apt may not be able to write to Dir.
	_, err := run(ctx, "", "apt-get", append(a.options(), "-q", "-o", "APT::Sandbox::User=root", "update")...)
	return err
}

// Depends runs `apt-cache depends meta`.
func (a Apt) Depends(ctx context.Context, meta string) (string, error) {
	if err := a.prepare(ctx, false); err != nil {
		return "", err
	}
	out, err := run(ctx, "", "apt-cache", append(a.options(), "depends", meta)...)
	if err != nil {
		return "", err
	}
	return parseDepends(out, meta)
}

// parseDepends takes the first "Depends:" of `apt-cache depends` output.
func parseDepends(out []byte, meta string) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if dep, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Depends:"); ok {
			if dep = strings.TrimSpace(dep); dep != "" && !strings.ContainsAny(dep, " <>/") {
				return dep, nil
			}
		}
	}
	return "", fmt.Errorf("apt-cache depends %s: no Depends: line", meta)
}

// Download runs `apt-get download pkg[=version]` in dir.
func (a Apt) Download(ctx context.Context, pkg, version, dir string) (string, error) {
	arg := pkg
	if version != "" {
		arg += "=" + version
	}
	if err := a.prepare(ctx, false); err != nil {
		return "", err
	}
	// The sandbox user _apt may not be able to write to dir.
	args := append(a.options(), "-q", "-o", "APT::Sandbox::User=root", "download", arg)
	_, err := run(ctx, dir, "apt-get", args...)
	if err != nil && a.Arch != "" && ctx.Err() == nil {
		// Lists fetched earlier may name a build the mirror has dropped.
		if err = a.prepare(ctx, true); err == nil {
			_, err = run(ctx, dir, "apt-get", args...)
		}
	}
	if err != nil {
		return "", err
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s: want one .deb, got %d", arg, len(debs))
	}
	return debs[0], nil
}

func dpkgUnpack(deb, dir string) error {
	_, err := run(context.Background(), "", "dpkg-deb", "-x", deb, dir)
	return err
}

func run(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return nil, fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return out, nil
}
