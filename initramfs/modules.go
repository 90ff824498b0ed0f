package initramfs

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/lifeboat-update/lifeboat/pkg/kmod"
)

// ModulesOrderPath is where the ramdisk lists the module files uinit loads.
const ModulesOrderPath = "/etc/lifeboat/modules.order"

// ModulePath is the absolute in-ramdisk path of a module file, given its
// path relative to the kernel's modules directory: rel
// "kernel/fs/ext4/ext4.ko" of release "6.1.0-56-amd64" is
// "/lib/modules/6.1.0-56-amd64/kernel/fs/ext4/ext4.ko".
func ModulePath(release, rel string) string {
	return path.Join("/lib/modules", release, rel)
}

// ResolveModules returns the module files (relative to the modules
// directory) that load names with everything they need, dependencies
// first; names built into the kernel need no file.
func ResolveModules(ix *kmod.Index, names []string) ([]string, error) {
	rels, err := ix.Resolve(names...)
	if err != nil {
		return nil, fmt.Errorf("resolve modules: %w", err)
	}
	for _, rel := range rels {
		if err := checkRel(rel); err != nil {
			return nil, fmt.Errorf("resolve modules: modules.dep: %w", err)
		}
	}
	return rels, nil
}

// checkRel refuses a module path from modules.dep that would land outside
// the ramdisk's modules directory.
func checkRel(rel string) error {
	if rel == "" || path.IsAbs(rel) || path.Clean(rel) != rel || rel == ".." || strings.HasPrefix(rel, "../") ||
		strings.ContainsAny(rel, "\n\x00") {
		return fmt.Errorf("module path %q is not a clean relative path", rel)
	}
	return nil
}

// WriteModulesOrder writes the modules.order file uinit reads: the
// in-ramdisk path of each module file of release, in load order
// (dependencies first), one per line.
func WriteModulesOrder(w io.Writer, release string, rels []string) error {
	if release == "" || strings.ContainsAny(release, "/\n\x00") || release == "." || release == ".." {
		return fmt.Errorf("modules.order: bad kernel release %q", release)
	}
	bw := bufio.NewWriter(w)
	for _, rel := range rels {
		if err := checkRel(rel); err != nil {
			return fmt.Errorf("modules.order: %w", err)
		}
		bw.WriteString(ModulePath(release, rel))
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("modules.order: %w", err)
	}
	return nil
}

// ReadModulesOrder parses a modules.order file: absolute paths, one per
// line; blank lines are skipped.
func ReadModulesOrder(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if !path.IsAbs(line) || path.Clean(line) != line {
			return nil, fmt.Errorf("modules.order line %d: %q is not a clean absolute path", n, line)
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.order: %w", err)
	}
	return out, nil
}
