// Package kmod finds Linux kernel modules and the order to load them in: it
// reads a module's .modinfo, writes and parses modules.dep as depmod(8) does,
// and resolves a list of module names to the files to load, dependencies
// first.
//
// Module names are compared as the kernel compares them: "dm-verity" and
// "dm_verity" are the same module.
package kmod

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// ErrCompressed is returned for a compressed module this package cannot
// decompress (only .ko.gz and .ko.zst are read).
var ErrCompressed = errors.New("unsupported module compression")

// NotFoundError says that a module is neither in modules.dep nor built in.
type NotFoundError struct {
	Name string
}

func (e *NotFoundError) Error() string { return fmt.Sprintf("module %s not found", e.Name) }

// Name normalises a module name or file name to the kernel's module name:
// the base name without ".ko" and a compression suffix, with '-' as '_'.
func Name(s string) string {
	s = filepath.Base(s)
	for _, ext := range []string{".gz", ".xz", ".zst"} {
		s = strings.TrimSuffix(s, ext)
	}
	s = strings.TrimSuffix(s, ".ko")
	return strings.ReplaceAll(s, "-", "_")
}

// Compressed reports whether a module file name has a compression suffix; such
// files are loaded with finit_module's MODULE_INIT_COMPRESSED_FILE flag.
func Compressed(path string) bool {
	return strings.HasSuffix(path, ".ko.gz") || strings.HasSuffix(path, ".ko.xz") || strings.HasSuffix(path, ".ko.zst")
}

// Modinfo is what a module's .modinfo section says about it.
type Modinfo struct {
	Name     string   // "name=", or "" in old modules
	Depends  []string // "depends=", normalised with Name
	Vermagic string
	Aliases  []string
}

// ReadModinfo reads the .modinfo section of an uncompressed module (an ELF
// relocatable object).
func ReadModinfo(r io.ReaderAt) (Modinfo, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return Modinfo{}, fmt.Errorf("read module ELF: %w", err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return Modinfo{}, errors.New("read module ELF: no .modinfo section")
	}
	if s.Type == elf.SHT_NOBITS || s.Size > 1<<20 {
		return Modinfo{}, fmt.Errorf("read module ELF: bad .modinfo section (type %v, %d bytes)", s.Type, s.Size)
	}
	data, err := s.Data()
	if err != nil {
		return Modinfo{}, fmt.Errorf("read module .modinfo: %w", err)
	}
	return parseModinfo(data), nil
}

func parseModinfo(data []byte) Modinfo {
	var mi Modinfo
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			mi.Name = v
		case "vermagic":
			mi.Vermagic = v
		case "alias":
			mi.Aliases = append(mi.Aliases, v)
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d != "" {
					mi.Depends = append(mi.Depends, Name(d))
				}
			}
		}
	}
	return mi
}

// ReadModinfoFile reads the .modinfo of the module file at path, decompressing
// .ko.gz and .ko.zst in memory.
func ReadModinfoFile(path string) (Modinfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return Modinfo{}, err
	}
	defer f.Close()
	var r io.ReaderAt = f
	switch {
	case strings.HasSuffix(path, ".ko"):
	case strings.HasSuffix(path, ".ko.gz"):
		zr, err := gzip.NewReader(f)
		if err != nil {
			return Modinfo{}, fmt.Errorf("%s: %w", path, err)
		}
		r, err = readAll(zr)
		if err != nil {
			return Modinfo{}, fmt.Errorf("%s: %w", path, err)
		}
	case strings.HasSuffix(path, ".ko.zst"):
		zr, err := zstd.NewReader(f)
		if err != nil {
			return Modinfo{}, fmt.Errorf("%s: %w", path, err)
		}
		defer zr.Close()
		r, err = readAll(zr)
		if err != nil {
			return Modinfo{}, fmt.Errorf("%s: %w", path, err)
		}
	default:
		return Modinfo{}, fmt.Errorf("%s: %w", path, ErrCompressed)
	}
	mi, err := ReadModinfo(r)
	if err != nil {
		return Modinfo{}, fmt.Errorf("%s: %w", path, err)
	}
	return mi, nil
}

func readAll(r io.Reader) (io.ReaderAt, error) {
	b, err := io.ReadAll(io.LimitReader(r, 256<<20))
	if err != nil {
		return nil, err
	}
	return bytes.NewReader(b), nil
}

// Dep is the content of a modules.dep file: each module's path relative to
// the modules directory, and the paths of all the modules it needs.
type Dep struct {
	Paths []string            // in file order
	Deps  map[string][]string // path -> dependency paths, as listed
}

// ParseDep parses modules.dep ("kernel/a.ko: kernel/b.ko kernel/c.ko").
func ParseDep(r io.Reader) (*Dep, error) {
	d := &Dep{Deps: map[string][]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		mod, deps, ok := strings.Cut(line, ":")
		mod = strings.TrimSpace(mod)
		if !ok || mod == "" || strings.ContainsAny(mod, " \t") {
			return nil, fmt.Errorf("modules.dep line %d: %q is not \"module: deps\"", n, line)
		}
		if _, dup := d.Deps[mod]; dup {
			return nil, fmt.Errorf("modules.dep line %d: %s listed twice", n, mod)
		}
		d.Paths = append(d.Paths, mod)
		d.Deps[mod] = strings.Fields(deps)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	return d, nil
}

// WriteTo writes d in modules.dep format.
func (d *Dep) WriteTo(w io.Writer) (int64, error) {
	var b bytes.Buffer
	for _, p := range d.Paths {
		b.WriteString(p)
		b.WriteString(":")
		for _, dep := range d.Deps[p] {
			b.WriteString(" ")
			b.WriteString(dep)
		}
		b.WriteString("\n")
	}
	return b.WriteTo(w)
}

// GenerateDep builds modules.dep for the modules under dir (a
// /lib/modules/RELEASE directory) from their .modinfo "depends=" fields,
// as depmod does from symbols: modules in path order, each followed by all
// it needs, transitively, in the order modprobe loads them from the last.
func GenerateDep(dir string) (*Dep, error) {
	byName := map[string]string{} // name -> relative path
	direct := map[string][]string{}
	var paths []string
	err := filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.IsDir() || !strings.HasSuffix(p, ".ko") && !Compressed(p) {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		mi, err := ReadModinfoFile(p)
		if err != nil {
			return err
		}
		name := Name(rel)
		if other, dup := byName[name]; dup {
			return fmt.Errorf("module %s at %s and %s", name, other, rel)
		}
		byName[name] = rel
		direct[rel] = mi.Depends
		paths = append(paths, rel)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("generate modules.dep: %w", err)
	}
	slices.Sort(paths)
	d := &Dep{Paths: paths, Deps: map[string][]string{}}
	for _, p := range paths {
		order, err := loadOrder([]string{p}, func(q string) ([]string, error) {
			var out []string
			for _, n := range direct[q] {
				dp, ok := byName[n]
				if !ok {
					return nil, fmt.Errorf("%s needs %w", q, &NotFoundError{Name: n})
				}
				out = append(out, dp)
			}
			return out, nil
		})
		if err != nil {
			return nil, fmt.Errorf("generate modules.dep: %w", err)
		}
		order = order[:len(order)-1] // p itself
		slices.Reverse(order)
		d.Deps[p] = order
	}
	return d, nil
}

// loadOrder returns roots and everything they need, each module after all it
// needs, without repeats. deps returns the direct dependencies of a module.
func loadOrder(roots []string, deps func(string) ([]string, error)) ([]string, error) {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var out []string
	var visit func(string, []string) error
	visit = func(m string, chain []string) error {
		switch state[m] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("dependency cycle: %s", strings.Join(append(chain, m), " -> "))
		}
		state[m] = visiting
		ds, err := deps(m)
		if err != nil {
			return err
		}
		for _, d := range ds {
			if err := visit(d, append(chain, m)); err != nil {
				return err
			}
		}
		state[m] = done
		out = append(out, m)
		return nil
	}
	for _, r := range roots {
		if err := visit(r, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Index answers which files to load for a module name.
type Index struct {
	dep     *Dep
	byName  map[string]string // name -> path
	builtin map[string]bool
}

// NewIndex makes an Index from a parsed modules.dep and the names listed in
// modules.builtin (paths or names; nil if there is none).
func NewIndex(d *Dep, builtin []string) *Index {
	ix := &Index{dep: d, byName: map[string]string{}, builtin: map[string]bool{}}
	for _, p := range d.Paths {
		ix.byName[Name(p)] = p
	}
	for _, b := range builtin {
		ix.builtin[Name(b)] = true
	}
	return ix
}

// Open reads dir/modules.dep and dir/modules.builtin (if present).
func Open(dir string) (*Index, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d, err := ParseDep(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	var builtin []string
	b, err := os.ReadFile(filepath.Join(dir, "modules.builtin"))
	switch {
	case err == nil:
		builtin = strings.Fields(string(b))
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	return NewIndex(d, builtin), nil
}

// Builtin reports whether the module is built into the kernel.
func (ix *Index) Builtin(name string) bool { return ix.builtin[Name(name)] }

// Resolve returns the module files (paths relative to the modules directory)
// to load, in order, so that each of names is loaded with everything it
// needs. Built-in modules need no file and are left out; a name that is
// neither a module nor built in is a *NotFoundError.
func (ix *Index) Resolve(names ...string) ([]string, error) {
	var roots []string
	for _, n := range names {
		p, ok := ix.byName[Name(n)]
		switch {
		case ok:
			roots = append(roots, p)
		case ix.builtin[Name(n)]:
		default:
			return nil, &NotFoundError{Name: n}
		}
	}
	return loadOrder(roots, func(p string) ([]string, error) {
		ds := slices.Clone(ix.dep.Deps[p])
		for _, d := range ds {
			if _, ok := ix.dep.Deps[d]; !ok {
				return nil, fmt.Errorf("modules.dep: %s needs %s, which has no entry", p, d)
			}
		}
		// modules.dep lists the deps to load last first.
		slices.Reverse(ds)
		return ds, nil
	})
}
