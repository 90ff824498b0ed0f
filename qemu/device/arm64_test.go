package device

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/qemu"
)

// TestConfigArm64 checks the QEMU machine a RunSpec asks for on
// qemu-arm64: QEMU 10, U-Boot with the disk's flash, or a kernel.
func TestConfigArm64(t *testing.T) {
	b, err := board.Load(filepath.Join("..", "..", "boards", "qemu-arm64"))
	if err != nil {
		t.Fatal(err)
	}
	q := qemu.Aarch64{Path: "/q/qemu-system-aarch64", Version: "10.0.2"}
	for _, tt := range []struct {
		name string
		spec RunSpec
		want qemu.Config
	}{
		{
			name: "U-Boot, resets, network",
			spec: RunSpec{Board: b, QEMU: q, Disk: "/d/disk.img", Resets: true, Net: &qemu.NetUser{}},
			want: qemu.Config{
				QEMU: q.Path, Machine: "virt", CPU: "cortex-a57", Memory: "1G",
				Disks: []qemu.Disk{{Path: "/d/disk.img"}},
				Net:   &qemu.NetUser{},
				Args: []string{
					"-bios", qemu.UBootArm64,
					"-drive", "if=pflash,format=raw,unit=1,file=/d/disk.img" + FlashSuffix,
					"-audio", "none",
					"-action", "reboot=reset",
				},
			},
		},
		{
			name: "direct",
			spec: RunSpec{Board: b, QEMU: q, Kernel: "/k/Image", Initrd: "/k/ramdisk", Append: "console=ttyAMA0", Disk: "/d/disk.img"},
			want: qemu.Config{
				QEMU: q.Path, Machine: "virt", CPU: "cortex-a57", Memory: "1G",
				Kernel: "/k/Image", Initrd: "/k/ramdisk", Append: "console=ttyAMA0",
				Disks: []qemu.Disk{{Path: "/d/disk.img"}},
				Args:  []string{"-audio", "none"},
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.spec.config(qemu.OVMF{}, "")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("config() (-want +got):\n%s", diff)
			}
		})
	}
	if err := (&RunSpec{Board: b, Kernel: "/nope", TPMState: "/t"}).Validate(); err == nil {
		t.Error("Validate() of an arm64 machine with a TPM = nil, want an error")
	}
}
