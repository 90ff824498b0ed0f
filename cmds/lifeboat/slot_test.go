package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/internal/cli"
	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/fleet/fleettest"
	"github.com/lifeboat-update/lifeboat/pkg/identity"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
)

// memOpener opens a Vars bootloader over env, whatever --bootloader says.
func memOpener(env *slot.MemEnv) opener {
	return func(ctx context.Context, f *bootFlags) (*device, error) {
		v, err := f.vars(env)
		if err != nil {
			return nil, err
		}
		return &device{boot: v, env: oneEnv(env), close: func() error { return nil }}, nil
	}
}

func slotCommands(open opener) []cli.Command {
	return []cli.Command{statusCommand(open), markGoodCommand(open), rollbackCommand(open), envCommand(open)}
}

func runSlot(t *testing.T, open opener, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cli.Run(context.Background(), "lifeboat", slotCommands(open), cli.IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}, args)
	return code, out.String(), errb.String()
}

// cmdline writes a kernel command line naming slot s and returns the flag
// pointing at it.
func cmdline(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cmdline")
	if err := os.WriteFile(p, []byte("console=ttyS0 lifeboat.slot="+s+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return "--cmdline=" + p
}

func trialEnv() bootenv.Vars {
	return bootenv.Vars{"BOOT_ORDER": "B A recovery", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "2", "LIFEBOAT_TRY": "B", "bootdelay": "0"}
}

func TestStatusCommand(t *testing.T) {
	env := slot.NewMemEnv(trialEnv())
	code, stdout, stderr := runSlot(t, memOpener(env), "status", "--json", cmdline(t, "B"))
	if code != 0 {
		t.Fatalf("status --json = exit %d: %s", code, stderr)
	}
	var st slot.Status
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		t.Fatalf("status --json printed %q: %v", stdout, err)
	}
	want := slot.Status{Booted: "B", Next: "B", Slots: []slot.SlotStatus{
		{Name: "B", State: slot.Trying, TriesLeft: 2},
		{Name: "A", State: slot.Good, TriesLeft: 3},
		{Name: "recovery", State: slot.Good},
	}}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("status --json (-want +got):\n%s", diff)
	}
	code, stdout, _ = runSlot(t, memOpener(env), "status", cmdline(t, "B"))
	for _, line := range []string{"booted: B", "next:   B", "B         trying  2", "recovery  good    -"} {
		if code != 0 || !strings.Contains(stdout, line) {
			t.Errorf("status = exit %d, %q; want a line %q", code, stdout, line)
		}
	}
	if env.Saves() != 0 {
		t.Errorf("status wrote the environment")
	}
}

func TestMarkGoodCommand(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		code  int
		msg   string
		saves int
		left  string // BOOT_B_LEFT after
	}{
		{"booted", []string{"mark-good"}, 0, "", 1, "3"},
		{"booted, named", []string{"mark-good", "B"}, 0, "", 1, "3"},
		{"another slot", []string{"mark-good", "A"}, 1, "lifeboat mark-good: mark A good: slot is not the booted slot (booted: B): only the running system can vouch for itself", 0, "2"},
		{"another slot, forced", []string{"mark-good", "--force", "A"}, 0, "", 1, "2"},
		{"recovery", []string{"mark-good", "--force", "recovery"}, 1, "read-only", 0, "2"},
		{"unknown", []string{"mark-good", "C"}, 1, "unknown slot", 0, "2"},
		{"two slots", []string{"mark-good", "A", "B"}, 2, "at most one", 0, "2"},
		{"bad --good-tries", []string{"mark-good", "--good-tries=12"}, 2, "good count 12", 0, "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := slot.NewMemEnv(trialEnv())
			code, stdout, stderr := runSlot(t, memOpener(env), append([]string{tc.args[0], cmdline(t, "B")}, tc.args[1:]...)...)
			if code != tc.code || !strings.Contains(stderr, tc.msg) {
				t.Errorf("lifeboat %v = exit %d, %q; want %d and %q", tc.args, code, stderr, tc.code, tc.msg)
			}
			if env.Saves() != tc.saves || env.Vars()["BOOT_B_LEFT"] != tc.left {
				t.Errorf("lifeboat %v: %d saves, BOOT_B_LEFT=%s; want %d and %s", tc.args, env.Saves(), env.Vars()["BOOT_B_LEFT"], tc.saves, tc.left)
			}
			if code == 0 && !strings.HasPrefix(stdout, "marked ") {
				t.Errorf("lifeboat %v printed %q", tc.args, stdout)
			}
		})
	}
	env := slot.NewMemEnv(trialEnv())
	code, stdout, _ := runSlot(t, memOpener(env), "mark-good", "--json", cmdline(t, "B"))
	var res MarkGoodResult
	if err := json.Unmarshal([]byte(stdout), &res); code != 0 || err != nil || res.Marked != "B" || res.Status.Slots[0].State != slot.Good {
		t.Errorf("mark-good --json = exit %d, %+v, %v; want B marked and good", code, res, err)
	}
	if v := env.Vars(); v["LIFEBOAT_TRY"] != "" || v["bootdelay"] != "0" {
		t.Errorf("env after mark-good = %v, want the trial over and other variables kept", v)
	}
}

func TestRollbackCommand(t *testing.T) {
	env := slot.NewMemEnv(trialEnv())
	code, stdout, stderr := runSlot(t, memOpener(env), "rollback", "--json", cmdline(t, "B"))
	var res RollbackResult
	if err := json.Unmarshal([]byte(stdout), &res); code != 0 || err != nil {
		t.Fatalf("rollback --json = exit %d, %q, %v: %s", code, stdout, err, stderr)
	}
	if res.From != "B" || res.Next != "A" || res.Status.Next != "A" {
		t.Errorf("rollback --json = %+v, want from B, next A", res)
	}
	if s, err := slot.SimulateBoot(context.Background(), env, nil, slot.DefaultTries); err != nil || s != "A" {
		t.Errorf("boot after rollback = %s, %v; want A", s, err)
	}
	// Nothing good left: refused, nothing written.
	env = slot.NewMemEnv(bootenv.Vars{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "0"})
	code, _, stderr = runSlot(t, memOpener(env), "rollback", cmdline(t, "A"))
	if code != 1 || !strings.Contains(stderr, "no good slot to fall back to") || env.Saves() != 0 {
		t.Errorf("rollback with nothing to fall back to = exit %d, %q, %d saves; want 1, a message, none", code, stderr, env.Saves())
	}
}

func TestEnvCommand(t *testing.T) {
	env := slot.NewMemEnv(trialEnv())
	open := memOpener(env)
	code, stdout, _ := runSlot(t, open, "env", "print", cmdline(t, "B"))
	if want := "BOOT_A_LEFT=3\nBOOT_B_LEFT=2\nBOOT_ORDER=B A recovery\nLIFEBOAT_TRY=B\nbootdelay=0\n"; code != 0 || stdout != want {
		t.Errorf("env print = exit %d, %q; want %q", code, stdout, want)
	}
	code, stdout, _ = runSlot(t, open, "env", "--json")
	var got bootenv.Vars
	if err := json.Unmarshal([]byte(stdout), &got); code != 0 || err != nil || !cmp.Equal(got, trialEnv()) {
		t.Errorf("env --json = exit %d, %v, %v; want %v", code, got, err, trialEnv())
	}
	code, stdout, stderr := runSlot(t, open, "env", "print", "bootdelay", "nosuch")
	if code != 1 || stdout != "bootdelay=0\n" || !strings.Contains(stderr, "nosuch: not defined") {
		t.Errorf("env print bootdelay nosuch = exit %d, %q, %q; want 1, bootdelay, not defined", code, stdout, stderr)
	}
	code, _, stderr = runSlot(t, open, "env", "set", "BOOT_ORDER=A B recovery", "bootdelay=", "x=y=z")
	want := bootenv.Vars{"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "2", "LIFEBOAT_TRY": "B", "x": "y=z"}
	if code != 0 || env.Saves() != 1 || !cmp.Equal(env.Vars(), want) {
		t.Errorf("env set = exit %d (%s), %d saves, %v; want one save of %v", code, stderr, env.Saves(), env.Vars(), want)
	}
	for _, args := range [][]string{{"env", "set"}, {"env", "set", "novalue"}, {"env", "set", "=v"}, {"env", "frob"}, {"env", "set", "--slot=B", "a=b"}} {
		code, _, stderr := runSlot(t, open, args...)
		if code != 2 {
			t.Errorf("lifeboat %q = exit %d, %q; want 2", args, code, stderr)
		}
	}
	if env.Saves() != 1 {
		t.Errorf("refused env sets wrote the environment")
	}
}

func TestNoEnvironment(t *testing.T) {
	for _, tc := range []struct{ cmd, args []string }{
		{[]string{"status"}, nil},
		{[]string{"mark-good"}, nil},
		{[]string{"rollback"}, nil},
		{[]string{"env", "print"}, nil},
		{[]string{"env", "set"}, []string{"a=b"}},
	} {
		env := slot.NewMemEnv(nil)
		args := append(append(tc.cmd, cmdline(t, "A")), tc.args...)
		code, _, stderr := runSlot(t, memOpener(env), args...)
		if code != 1 || !strings.Contains(stderr, bootenv.ErrNoEnv.Error()) || env.Saves() != 0 {
			t.Errorf("lifeboat %v without an environment = exit %d, %q; want 1 and %q", args, code, stderr, bootenv.ErrNoEnv)
		}
	}
}

func TestBootloaderFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"status"}, "want --bootloader"},
		{[]string{"status", "--bootloader=lilo"}, "--bootloader=lilo"},
		{[]string{"status", "--bootloader=grub"}, "--grubenv"},
		{[]string{"status", "--bootloader=ebg"}, "--ebg-config"},
		{[]string{"status", "--bootloader=ebg", "--ebg-config=A"}, "SLOT=PATH"},
		{[]string{"status", "--bootloader=grub", "--grubenv=/x", "--slots=A,B C"}, "slot name"},
	} {
		code, _, stderr := runSlot(t, openBootloader, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.msg) {
			t.Errorf("lifeboat %v = exit %d, %q; want 2 and %q", tc.args, code, stderr, tc.msg)
		}
	}
}

// needTool returns the path of a real tool, skipping without it (failing
// under CI=true, where scripts/deps.sh installed it).
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (scripts/deps.sh installs it): %v", name, err)
		}
		t.Skipf("%s not installed (scripts/deps.sh installs it): %v", name, err)
	}
	return p
}

func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// TestGRUBBackend runs the commands over a grubenv that grub-editenv made
// and reads the result back with grub-editenv.
func TestGRUBBackend(t *testing.T) {
	editenv := needTool(t, "grub-editenv")
	p := filepath.Join(t.TempDir(), "grubenv")
	tool(t, editenv, p, "create")
	tool(t, editenv, p, "set", "BOOT_ORDER=B A", "BOOT_A_LEFT=3", "BOOT_B_LEFT=2", "LIFEBOAT_TRY=B")
	flags := []string{"--bootloader=grub", "--grubenv=" + p, cmdline(t, "B")}
	code, stdout, stderr := runSlot(t, openBootloader, append([]string{"status"}, flags...)...)
	if code != 0 || !strings.Contains(stdout, "B     trying  2") {
		t.Fatalf("status = exit %d, %q, %q; want B trying", code, stdout, stderr)
	}
	if code, _, stderr := runSlot(t, openBootloader, append([]string{"mark-good"}, flags...)...); code != 0 {
		t.Fatalf("mark-good = exit %d: %s", code, stderr)
	}
	if code, _, stderr := runSlot(t, openBootloader, append([]string{"env", "set"}, append(flags, "note=made by lifeboat")...)...); code != 0 {
		t.Fatalf("env set = exit %d: %s", code, stderr)
	}
	got := tool(t, editenv, p, "list")
	want := "BOOT_A_LEFT=3\nBOOT_B_LEFT=3\nBOOT_ORDER=B A\nnote=made by lifeboat\n"
	if got != want {
		t.Errorf("grub-editenv list = %q, want %q", got, want)
	}
}

// TestUBootBackend runs the commands over a redundant environment made by
// mkenvimage and reads the result back with fw_printenv.
func TestUBootBackend(t *testing.T) {
	mkenvimage := needTool(t, "mkenvimage")
	printenv := needTool(t, "fw_printenv")
	dir := t.TempDir()
	txt := filepath.Join(dir, "env.txt")
	os.WriteFile(txt, []byte("bootcmd=run distro_bootcmd\nBOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n"), 0o644)
	for _, n := range []string{"env0.bin", "env1.bin"} {
		tool(t, mkenvimage, "-r", "-s", "0x4000", "-o", filepath.Join(dir, n), txt)
	}
	cfg := filepath.Join(dir, "fw_env.config")
	os.WriteFile(cfg, []byte(filepath.Join(dir, "env0.bin")+" 0x0 0x4000\n"+filepath.Join(dir, "env1.bin")+" 0x0 0x4000\n"), 0o644)
	flags := []string{"--bootloader=uboot", "--env-config=" + cfg, cmdline(t, "A")}
	if code, _, stderr := runSlot(t, openBootloader, append([]string{"rollback"}, flags...)...); code != 0 {
		t.Fatalf("rollback = exit %d: %s", code, stderr)
	}
	got := tool(t, printenv, "-c", cfg, "BOOT_ORDER", "BOOT_A_LEFT", "BOOT_B_LEFT", "bootcmd")
	want := "BOOT_ORDER=B A\nBOOT_A_LEFT=0\nBOOT_B_LEFT=3\nbootcmd=run distro_bootcmd\n"
	if got != want {
		t.Errorf("fw_printenv after rollback = %q, want %q", got, want)
	}
}

// TestEBGBackend runs the commands over config files bg_setenv made and
// reads the result back with bg_printenv.
func TestEBGBackend(t *testing.T) {
	setenv := needTool(t, "bg_setenv")
	printenv := needTool(t, "bg_printenv")
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a", "BGENV.DAT"), filepath.Join(dir, "b", "BGENV.DAT")
	os.MkdirAll(filepath.Dir(a), 0o755)
	os.MkdirAll(filepath.Dir(b), 0o755)
	tool(t, setenv, "-f", a, "-r", "2", "-k", "L:BOOT0:vmlinuz", "-a", "lifeboat.slot=A", "-s", "OK")
	tool(t, setenv, "-f", b, "-r", "1", "-k", "L:BOOT1:vmlinuz", "-a", "lifeboat.slot=B", "-s", "OK")
	flags := []string{"--bootloader=ebg", "--ebg-config=A=" + a, "--ebg-config=B=" + b, cmdline(t, "A")}
	code, stdout, stderr := runSlot(t, openBootloader, append([]string{"status", "--json"}, flags...)...)
	var st slot.Status
	if err := json.Unmarshal([]byte(stdout), &st); code != 0 || err != nil || st.Booted != "A" || st.Next != "A" {
		t.Fatalf("status --json = exit %d, %q, %v (%s); want A booted and next", code, stdout, err, stderr)
	}
	code, stdout, stderr = runSlot(t, openBootloader, append(append([]string{"env", "print", "--slot=B"}, flags...), "kernelparams")...)
	if code != 0 || stdout != "kernelparams=lifeboat.slot=B\n" {
		t.Errorf("env print --slot=B kernelparams = exit %d, %q (%s)", code, stdout, stderr)
	}
	code, _, stderr = runSlot(t, openBootloader, append([]string{"rollback"}, flags...)...)
	if code != 0 {
		t.Fatalf("rollback = exit %d: %s", code, stderr)
	}
	if out := tool(t, printenv, "-f", a); !strings.Contains(out, "FAILED") {
		t.Errorf("bg_printenv of A after rollback = %q, want FAILED", out)
	}
}

// TestMarkGoodReports: with --identity naming a fleet server, mark-good
// tells it the release is installed; a server that refuses is said, and
// the slot is good all the same.
func TestMarkGoodReports(t *testing.T) {
	srv := &fleettest.Server{}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	id, err := identity.New("dev-1", "qemu-x86_64", strings.NewReader(strings.Repeat("k", identity.TokenSize)))
	if err != nil {
		t.Fatal(err)
	}
	write := func(server string) string {
		id.Server = server
		dir := t.TempDir()
		if err := identity.Write(durable.OS(dir), id); err != nil {
			t.Fatal(err)
		}
		return filepath.Join(dir, filepath.FromSlash(identity.Name))
	}
	env := slot.NewMemEnv(trialEnv())
	code, stdout, stderr := runSlot(t, memOpener(env), "mark-good", cmdline(t, "B"), "--identity="+write(ts.URL), "--version=2")
	if code != 0 || !strings.Contains(stdout, "reported 2 installed to "+ts.URL) {
		t.Fatalf("mark-good --identity = exit %d, %q, %q", code, stdout, stderr)
	}
	if got := srv.Reports(); len(got) != 1 || got[0].Phase != api.PhaseInstalled || got[0].InstalledVersion != "2" || len(got[0].Slots) != 2 {
		t.Errorf("the server got %+v, want one report of 2 installed with slots A and B", srv.Reports())
	}
	env = slot.NewMemEnv(trialEnv())
	code, stdout, stderr = runSlot(t, memOpener(env), "mark-good", cmdline(t, "B"), "--identity="+write(ts.URL+"/elsewhere"), "--version=2")
	if code != 0 || !strings.Contains(stderr, "404") || strings.Contains(stdout, "reported") {
		t.Errorf("mark-good with a refusing server = exit %d, %q, %q; want exit 0 and the 404 said", code, stdout, stderr)
	}
	if v, _ := env.Load(context.Background()); v["BOOT_B_LEFT"] != "3" {
		t.Errorf("B not marked good: %v", v)
	}
	if code, _, stderr := runSlot(t, memOpener(env), "mark-good", cmdline(t, "B"), "--version=2"); code != 2 || !strings.Contains(stderr, "go together") {
		t.Errorf("mark-good --version alone = exit %d, %q; want a usage error", code, stderr)
	}
}
