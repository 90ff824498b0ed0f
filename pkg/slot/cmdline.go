package slot

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// DefaultCmdline is where the running kernel's command line is read.
const DefaultCmdline = "/proc/cmdline"

// cmdlineParams name the booted slot on a kernel command line: ours, then
// RAUC's, which boot scripts written for RAUC already pass.
var cmdlineParams = []string{"lifeboat.slot", "rauc.slot"}

// maxCmdline bounds what is read of a command line; the kernel's own limit
// is a few KiB.
const maxCmdline = 64 << 10

// ParseCmdline returns the slot a kernel command line names with
// lifeboat.slot=NAME or, failing that, rauc.slot=NAME, or "" when it names
// none. Arguments are split as the kernel splits them: on white space
// outside double quotes, the quotes removed. When a parameter is given
// twice the last wins, as it does for the kernel's own parameters.
func ParseCmdline(r io.Reader) (Name, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxCmdline+1))
	if err != nil {
		return "", fmt.Errorf("read kernel command line: %w", err)
	}
	if len(b) > maxCmdline {
		return "", fmt.Errorf("kernel command line longer than %d bytes", maxCmdline)
	}
	found := map[string]string{}
	for _, arg := range SplitCmdline(string(b)) {
		k, v, ok := strings.Cut(arg, "=")
		if ok {
			found[k] = v
		}
	}
	for _, p := range cmdlineParams {
		if v, ok := found[p]; ok {
			return Name(v), nil
		}
	}
	return "", nil
}

// BootedFromCmdline returns the slot the kernel command line in the file
// at path names (DefaultCmdline on a device), as ParseCmdline does.
func BootedFromCmdline(path string) (Name, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("booted slot: %w", err)
	}
	defer f.Close()
	return ParseCmdline(f)
}

// SplitCmdline splits a kernel command line into arguments as the
// kernel's next_arg does: on white space outside double quotes, the quotes
// removed.
func SplitCmdline(s string) []string {
	var args []string
	var cur strings.Builder
	quoted, in := false, false
	for _, c := range s {
		switch {
		case c == '"':
			quoted, in = !quoted, true
		case !quoted && (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0):
			if in {
				args = append(args, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(c)
			in = true
		}
	}
	if in {
		args = append(args, cur.String())
	}
	return args
}
