package qemu

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFirmwareBootArgs(t *testing.T) {
	o := OVMF{Code: "/fw/CODE.fd", Vars: "/fw/VARS.fd"}
	tests := []struct {
		f    FirmwareBoot
		want string
	}{
		{
			FirmwareBoot{OVMF: o, Vars: "/m/vars.fd", Disk: "/m/disk.img"},
			"-drive if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd" +
				" -drive if=pflash,format=raw,unit=1,file=/m/vars.fd" +
				" -drive file=/m/disk.img,format=raw,if=none,id=bootdisk -device virtio-blk-pci,drive=bootdisk,bootindex=0",
		},
		{
			FirmwareBoot{OVMF: o, Vars: "/m,1/vars.fd", Disk: "/m,1/disk.img", Resets: true},
			"-drive if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd" +
				" -drive if=pflash,format=raw,unit=1,file=/m,,1/vars.fd" +
				" -drive file=/m,,1/disk.img,format=raw,if=none,id=bootdisk -device virtio-blk-pci,drive=bootdisk,bootindex=0" +
				" -action reboot=reset",
		},
	}
	for _, tt := range tests {
		got := strings.Join(tt.f.Args(), " ")
		if d := cmp.Diff(tt.want, got); d != "" {
			t.Errorf("%+v.Args() (-want +got):\n%s", tt.f, d)
		}
	}
}

// TestFirmwareResetsAfterNoReboot checks that the reset action comes after
// Config's -no-reboot, which QEMU would otherwise apply.
func TestFirmwareResetsAfterNoReboot(t *testing.T) {
	c := Config{Args: FirmwareBoot{Resets: true}.Args()}
	a := c.CommandLine("")
	noReboot, reset := -1, -1
	for i, s := range a {
		switch s {
		case "-no-reboot":
			noReboot = i
		case "reboot=reset":
			reset = i
		}
	}
	if noReboot < 0 || reset < noReboot {
		t.Errorf("args = %q, want reboot=reset after -no-reboot", a)
	}
}

func TestFindOVMF(t *testing.T) {
	dir := t.TempDir()
	if _, err := FindOVMF(dir); !errors.Is(err, ErrNoOVMF) {
		t.Errorf("FindOVMF(empty dir) = %v, want ErrNoOVMF", err)
	}
	for _, f := range []string{"OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o, err := FindOVMF(dir)
	if err != nil {
		t.Fatalf("FindOVMF(%s) = %v", dir, err)
	}
	want := OVMF{Code: filepath.Join(dir, "OVMF_CODE_4M.fd"), Vars: filepath.Join(dir, "OVMF_VARS_4M.fd")}
	if o != want {
		t.Errorf("FindOVMF(%s) = %+v, want %+v", dir, o, want)
	}
	vars := filepath.Join(t.TempDir(), "vars.fd")
	if err := o.NewVars(vars); err != nil {
		t.Fatalf("NewVars(%s) = %v", vars, err)
	}
	if b, _ := os.ReadFile(vars); string(b) != "OVMF_VARS_4M.fd" {
		t.Errorf("NewVars(%s) wrote %q, want the template's bytes", vars, b)
	}
}
