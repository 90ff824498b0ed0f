package uboot

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestDocBootCmd keeps the boot.cmd in docs/bootloader-uboot.md and
// testdata/boot.cmd, the copy the boot test (tests/boot, TestUBoot) runs
// in U-Boot, the same.
func TestDocBootCmd(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "bootloader-uboot.md"))
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := os.ReadFile(filepath.Join("testdata", "boot.cmd"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc, append(append([]byte("```sh\n"), cmd...), "```\n"...)) {
		t.Errorf("docs/bootloader-uboot.md does not show testdata/boot.cmd as its boot.cmd; copy one to the other")
	}
}
