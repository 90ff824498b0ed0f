package device_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/qemu/device"
)

// docGRUBConfig is the grub.cfg docs/bootloader-grub.md documents
// (pkg/bootenv/grub's TestDocGrubCfg keeps the two the same).
var docGRUBConfig = filepath.Join("..", "..", "pkg", "bootenv", "grub", "testdata", "grub.cfg")

// ruleVars are the variables the documented rules own: the board's block
// must not set them, nor load them from grubenv.
var ruleVars = []string{"BOOT_ORDER", "BOOT_A_LEFT", "BOOT_B_LEFT", "lifeboat_slot", "lifeboat_left", "lifeboat_env", "lifeboat_esp", "default", "timeout"}

// splitConfig returns the part of a grub.cfg before its first menuentry
// and the rest.
func splitConfig(t *testing.T, name string, cfg []byte) (rules, entries string) {
	t.Helper()
	i := bytes.Index(cfg, []byte("\nmenuentry "))
	if i < 0 {
		t.Fatalf("%s: no menuentry", name)
	}
	return string(cfg[:i+1]), string(cfg[i+1:])
}

type menuEntry struct {
	title, id, options, body string
}

// defaultRE is a line of the board's block that gives a loaded variable a
// default.
var defaultRE = regexp.MustCompile(`^if \[ [^;]* \]; then set (\w+)=[\w-]*; fi$`)

var menuEntryRE = regexp.MustCompile(`(?ms)^menuentry "([^"]*)" --id (\S+)((?: --\S+)*) \{\n(.*?)^\}\n`)

// TestBoardGRUBConfig keeps the board's grub.cfg on the documented rules:
// everything before the first menuentry of docs/bootloader-grub.md's
// grub.cfg, verbatim, and then a block of the board's own that only
// loads, sets, defaults and derives variables the rules do not own (and
// sets the fallback entry, and, for a board whose reset trigger is a
// console key, the short hidden timeout during which the key, the
// factory-reset entry's hotkey, is looked for); and it checks the board's
// entries against its ab layout.
func TestBoardGRUBConfig(t *testing.T) {
	doc, err := os.ReadFile(docGRUBConfig)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(boardDir, device.GRUBConfigFile)
	cfg, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	docRules, _ := splitConfig(t, docGRUBConfig, doc)
	rules, entriesText := splitConfig(t, name, cfg)
	if !strings.HasPrefix(rules, docRules) {
		t.Fatalf("%s does not start with the documented rules (%s up to its first menuentry), verbatim; copy them over", name, docGRUBConfig)
	}
	block := strings.TrimPrefix(rules, docRules)

	// The board's block.
	defined := map[string]bool{}
	for _, v := range ruleVars {
		defined[v] = true
	}
	fallback := -1
	resetKey := testBoard(t).ResetKey()
	timeouts := map[string]string{}
	for n, line := range strings.Split(block, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		bad := func(format string, args ...any) {
			t.Errorf("%s, the board's block, line %d %q: %s", name, n+1, line, fmt.Sprintf(format, args...))
		}
		f := strings.Fields(line)
		switch f[0] {
		case "set":
			v, val, _ := strings.Cut(f[1], "=")
			switch {
			case v == "fallback":
				if fallback, err = strconv.Atoi(val); err != nil {
					bad("want a number: GRUB 2.06 takes no id for fallback")
				}
			case v == "timeout" || v == "timeout_style":
				// The rules' timeout=0, overridden for the reset key.
				timeouts[v] = val
				if resetKey == "" {
					bad("sets %s, which the documented rules own; only a board with a console-key reset trigger waits for its key", v)
				}
			case slices.Contains(ruleVars, v):
				bad("sets %s, which the documented rules own", v)
			case len(f) != 2 || val != "":
				bad("want set NAME= (cleared before load_env)")
			}
			defined[v] = true
		case "load_env":
			if len(f) < 4 || f[1] != "--file" || f[2] != `"${lifeboat_env}"` {
				bad(`want load_env --file "${lifeboat_env}" NAME...`)
				continue
			}
			for _, v := range f[3:] {
				if slices.Contains(ruleVars, v) {
					bad("loads %s, which the documented rules load", v)
				} else if !defined[v] {
					bad("loads %s without clearing it first (set %s=)", v, v)
				}
			}
		case "if":
			// A default: if [ TEST ]; then set NAME=VALUE; fi.
			m := defaultRE.FindStringSubmatch(line)
			switch {
			case m == nil:
				bad("want if [ TEST ]; then set NAME=VALUE; fi")
			case slices.Contains(ruleVars, m[1]):
				bad("sets %s, which the documented rules own", m[1])
			case !defined[m[1]]:
				bad("gives %s a default before it is loaded", m[1])
			}
		case "regexp":
			set, ok := strings.CutPrefix(f[1], "--set=")
			_, v, _ := strings.Cut(set, ":")
			switch {
			case !ok || v == "":
				bad("want regexp --set=N:NAME")
			case slices.Contains(ruleVars, v):
				bad("sets %s, which the documented rules own", v)
			}
			defined[v] = true
		default:
			bad("the board's block only clears, loads and derives variables")
		}
	}
	if resetKey != "" {
		if n, err := strconv.Atoi(timeouts["timeout"]); timeouts["timeout_style"] != "hidden" || err != nil || n < 1 || n > 3 {
			t.Errorf("%s: the board's reset trigger is %s, but its block sets timeout_style=%q, timeout=%q: want hidden and 1 to 3 seconds, for the hotkey",
				name, testBoard(t).ResetTrigger, timeouts["timeout_style"], timeouts["timeout"])
		}
	}
	if strings.Contains(block, "save_env") {
		t.Errorf("%s: the board's block writes grubenv: only the documented rules may", name)
	}

	// The entries: A, B and recovery, for the ab layout, and
	// factory-reset, whose hotkey is the reset key.
	var entries []menuEntry
	for _, m := range menuEntryRE.FindAllStringSubmatch(entriesText, -1) {
		entries = append(entries, menuEntry{title: m[1], id: m[2], options: m[3], body: m[4]})
	}
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.id)
	}
	want := []string{"A", "B", "recovery"}
	if resetKey != "" {
		want = append(want, "factory-reset")
	}
	if !slices.Equal(ids, want) {
		t.Fatalf("%s: menu entries %q, want %q", name, ids, want)
	}
	for _, e := range entries {
		opts := ""
		if e.id == "factory-reset" {
			opts = " --hotkey=" + resetKey
		}
		if e.options != opts {
			t.Errorf("%s: entry %s has options %q, want %q", name, e.id, e.options, opts)
		}
	}
	if fallback < 0 || fallback >= len(entries) || entries[fallback].id != "recovery" {
		t.Errorf("%s: fallback=%d, want the recovery entry's number", name, fallback)
	}
	l := testBoard(t).Layouts["ab"]
	for _, e := range entries[:2] {
		var num int
		for i, p := range l.Partitions {
			if p.Role == board.RoleSlot && p.Slot == e.id {
				num = i + 1
			}
		}
		for _, want := range []string{
			fmt.Sprintf(`set root="${lifeboat_disk},gpt%d"`, num),
			"linux /boot/vmlinuz " + testBoard(t).BaseCmdline() + " lifeboat.slot=" + e.id + " lifeboat.layout=${lifeboat_layout} lifeboat.verity=${LIFEBOAT_" + e.id + "_VERITY}\n",
			"initrd /boot/initrd.img\n",
		} {
			if !strings.Contains(e.body, want) {
				t.Errorf("%s: entry %s lacks %q", name, e.id, want)
			}
		}
	}
	recovery := func(e menuEntry, mode string) {
		for _, want := range []string{
			`set root="${lifeboat_esp}"`,
			"linux /" + device.RecoveryKernel + " " + testBoard(t).BaseCmdline() + " lifeboat.mode=" + mode + " lifeboat.layout=${lifeboat_layout} ${lifeboat_recovery_args}\n",
			"initrd /" + device.RecoveryRamdisk + "\n",
		} {
			if !strings.Contains(e.body, want) {
				t.Errorf("%s: entry %s lacks %q", name, e.id, want)
			}
		}
	}
	recovery(entries[2], "${lifeboat_mode}")
	if resetKey != "" {
		recovery(entries[3], "factory-reset")
	}
	// Every variable the entries use is set before them.
	for _, m := range regexp.MustCompile(`\$\{(\w+)\}`).FindAllStringSubmatch(entriesText, -1) {
		if !defined[m[1]] && !strings.Contains(docRules, "set "+m[1]+"=") {
			t.Errorf("%s: the entries use ${%s}, which nothing sets", name, m[1])
		}
	}
}
