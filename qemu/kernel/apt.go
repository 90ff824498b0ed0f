package kernel

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// Apt is the Source that runs apt-cache and apt-get download.
type Apt struct{}

var _ Source = Apt{}

// Depends runs `apt-cache depends meta`.
func (Apt) Depends(ctx context.Context, meta string) (string, error) {
	out, err := run(ctx, "", "apt-cache", "depends", meta)
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
func (Apt) Download(ctx context.Context, pkg, version, dir string) (string, error) {
	arg := pkg
	if version != "" {
		arg += "=" + version
	}
	// The sandbox user _apt may not be able to write to dir.
	if _, err := run(ctx, dir, "apt-get", "-q", "-o", "APT::Sandbox::User=root", "download", arg); err != nil {
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
