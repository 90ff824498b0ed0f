package dm

import (
	"strings"
	"testing"
)

func TestTargetStringHidesCryptKeys(t *testing.T) {
	key := strings.Repeat("ab", 32)
	tg := Target{Start: 0, Length: 2048, Type: "crypt", Params: "aes-xts-plain64 " + key + " 0 /dev/vda 32768"}
	got := tg.String()
	if strings.Contains(got, key) || got != "0 2048 crypt aes-xts-plain64 - 0 /dev/vda 32768" {
		t.Errorf("Target.String() = %q, want the key hidden", got)
	}
	lin := Target{Start: 0, Length: 8, Type: "linear", Params: "/dev/vdb 0"}
	if got, want := lin.String(), "0 8 linear /dev/vdb 0"; got != want {
		t.Errorf("Target.String() = %q, want %q", got, want)
	}
}
