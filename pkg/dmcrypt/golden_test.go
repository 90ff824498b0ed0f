package dmcrypt

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/internal/testtool"
)

var update = flag.Bool("update", false, "regenerate testdata/ with the real cryptsetup")

// goldenUUID is the --uuid of every volume the tests make.
const goldenUUID = "3f6d2a1c-8b4e-4c7a-9e15-2d0b6f8a4c31"

// goldenCase is one volume made by `cryptsetup luksFormat` (and maybe
// luksAddKey), kept in testdata/NAME.img.gz with testdata/NAME.json.
type goldenCase struct {
	name    string
	format  []string // luksFormat options besides --type, --batch-mode, --uuid
	pass    string   // the first keyslot's passphrase
	keyFile bool     // given with --key-file; otherwise a line on stdin
	add     []string // luksAddKey options for a second keyslot; nil for none
	pass2   string   // its passphrase
	size    int64    // bytes of the image
}

// smallLayout keeps golden images small (cryptsetup fills the keyslots
// area with random bytes): 2 × 16 KiB of headers, then keyslotsKiB of
// keyslots, data right after.
func smallLayout(keyslotsKiB int) []string {
	return []string{"--luks2-metadata-size", "16k", "--luks2-keyslots-size", fmt.Sprintf("%dk", keyslotsKiB),
		"--offset", fmt.Sprint((32 + keyslotsKiB) * 2)}
}

// smallSize is the size of an image with smallLayout: 64 KiB of data.
func smallSize(keyslotsKiB int) int64 { return int64(32+keyslotsKiB)<<10 + 64<<10 }

var goldenCases = []goldenCase{
	{
		name: "pbkdf2-xts256-512",
		format: append([]string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--hash", "sha256",
			"--cipher", "aes-xts-plain64", "--key-size", "256", "--sector-size", "512", "--label", "golden"}, smallLayout(256)...),
		pass: "key file contents\x00\xff", keyFile: true,
		add:   []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1200"},
		pass2: "second passphrase",
		size:  smallSize(256),
	},
	{
		name: "argon2id-xts512-4k",
		format: append([]string{"--pbkdf", "argon2id", "--pbkdf-memory", "32768", "--pbkdf-parallel", "1",
			"--pbkdf-force-iterations", "4", "--cipher", "aes-xts-plain64", "--key-size", "512", "--sector-size", "4096"}, smallLayout(256)...),
		pass: "correct horse battery staple",
		size: smallSize(256),
	},
	{
		name: "argon2i-cbc-essiv-sha512",
		format: append([]string{"--pbkdf", "argon2i", "--pbkdf-memory", "8192", "--pbkdf-parallel", "2",
			"--pbkdf-force-iterations", "4", "--hash", "sha512", "--cipher", "aes-cbc-essiv:sha256", "--key-size", "256",
			"--sector-size", "512", "--label", "essiv"}, smallLayout(128)...),
		pass: "p", keyFile: true,
		size: smallSize(128),
	},
}

// golden is what testdata/NAME.json records of a cryptsetup run.
type golden struct {
	Cryptsetup string   `json:"cryptsetup"`
	Format     []string `json:"format"`
	Add        []string `json:"add,omitempty"`
	VolumeKey  string   `json:"volume_key"` // hex, from luksDump --dump-volume-key
}

// requireCryptsetup skips the test when cryptsetup is not installed, or
// fails it under CI, which must install it.
func requireCryptsetup(t *testing.T) { testtool.Require(t, "cryptsetup") }

func runCryptsetup(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("cryptsetup", args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cryptsetup %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// makeVolume formats a volume for tc in dir with the real cryptsetup and
// returns its path and the volume key cryptsetup dumps. It needs no
// device-mapper: cryptsetup formats and dumps image files in user space.
func makeVolume(t testing.TB, dir string, tc goldenCase) (img string, g golden) {
	t.Helper()
	img = filepath.Join(dir, tc.name+".img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, tc.size); err != nil {
		t.Fatal(err)
	}
	kf := filepath.Join(dir, tc.name+".pass")
	if err := os.WriteFile(kf, []byte(tc.pass), 0o600); err != nil {
		t.Fatal(err)
	}
	g.Format = tc.format
	args := append([]string{"luksFormat", "--type", "luks2", "--batch-mode", "--uuid", goldenUUID}, tc.format...)
	if tc.keyFile {
		runCryptsetup(t, "", append(args, "--key-file", kf, img)...)
	} else {
		runCryptsetup(t, tc.pass+"\n", append(args, img)...)
	}
	if tc.add != nil {
		kf2 := filepath.Join(dir, tc.name+".pass2")
		if err := os.WriteFile(kf2, []byte(tc.pass2), 0o600); err != nil {
			t.Fatal(err)
		}
		g.Add = tc.add
		runCryptsetup(t, "", append(append([]string{"luksAddKey", "--batch-mode", "--key-file", kf}, tc.add...), img, kf2)...)
	}
	out := runCryptsetup(t, "", "luksDump", "--dump-volume-key", "--batch-mode", "--key-file", kf, img)
	key, err := parseKeyDump(out)
	if err != nil {
		t.Fatalf("cryptsetup luksDump --dump-volume-key: %v\n%s", err, out)
	}
	g.VolumeKey = hex.EncodeToString(key)
	g.Cryptsetup = strings.TrimSpace(runCryptsetup(t, "", "--version"))
	return img, g
}

// parseKeyDump returns the key `cryptsetup luksDump --dump-volume-key`
// prints: the hex bytes after "MK dump:", over several lines.
func parseKeyDump(out string) ([]byte, error) {
	_, rest, ok := strings.Cut(out, "MK dump:")
	if !ok {
		return nil, errors.New(`no "MK dump:"`)
	}
	var key []byte
	for _, f := range strings.Fields(rest) {
		b, err := hex.DecodeString(f)
		if err != nil || len(b) != 1 {
			break
		}
		key = append(key, b...)
	}
	if len(key) == 0 {
		return nil, errors.New("no key bytes")
	}
	return key, nil
}

func goldenPaths(name string) (img, js string) {
	return filepath.Join("testdata", name+".img.gz"), filepath.Join("testdata", name+".json")
}

func writeGolden(t *testing.T, name, img string, g golden) {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	imgPath, jsPath := goldenPaths(name)
	testtool.WriteGzip(t, imgPath, b)
	if err := os.WriteFile(jsPath, append(j, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// readGolden returns the image of the golden case name and its record.
func readGolden(t testing.TB, name string) (img []byte, g golden) {
	t.Helper()
	imgPath, jsPath := goldenPaths(name)
	j, err := os.ReadFile(jsPath)
	if err != nil {
		t.Fatalf("%v (regenerate with go test -update)", err)
	}
	if err := json.Unmarshal(j, &g); err != nil {
		t.Fatalf("%s: %v", jsPath, err)
	}
	return testtool.ReadGzip(t, imgPath), g
}

// writeGoldenImage writes the golden image of name into dir and returns
// its path.
func writeGoldenImage(t *testing.T, dir, name string) (string, golden) {
	t.Helper()
	img, g := readGolden(t, name)
	p := filepath.Join(dir, name+".img")
	if err := os.WriteFile(p, img, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, g
}

func TestUpdateGolden(t *testing.T) {
	if !*update {
		t.Skip("regenerates testdata/ only with -update")
	}
	requireCryptsetup(t)
	for _, tc := range goldenCases {
		img, g := makeVolume(t, t.TempDir(), tc)
		writeGolden(t, tc.name, img, g)
	}
}

// checkUnlock unlocks the volume in img with every passphrase of tc and
// checks the key against want, and that wrong passphrases are refused.
func checkUnlock(t *testing.T, tc goldenCase, img []byte, want []byte) {
	t.Helper()
	ctx := context.Background()
	r := bytes.NewReader(img)
	h, err := ReadHeader(r, int64(len(img)))
	if err != nil {
		t.Fatalf("ReadHeader(%s) = %v", tc.name, err)
	}
	passes := []string{tc.pass}
	if tc.add != nil {
		passes = append(passes, tc.pass2)
	}
	for slot, pass := range passes {
		key, err := h.Unlock(ctx, r, []byte(pass))
		if err != nil {
			t.Fatalf("Unlock(%s, keyslot %d's passphrase) = %v", tc.name, slot, err)
		}
		if !bytes.Equal(key, want) {
			t.Errorf("Unlock(%s, keyslot %d's passphrase) = %x, want %x (cryptsetup's)", tc.name, slot, []byte(key), want)
		}
		if _, err := h.Unlock(ctx, r, []byte(pass), WithKeyslot(slot)); err != nil {
			t.Errorf("Unlock(%s, WithKeyslot(%d)) = %v", tc.name, slot, err)
		}
		if _, err := h.Unlock(ctx, r, []byte(pass), WithKeyslot(1-slot)); !errors.Is(err, ErrWrongPassphrase) {
			t.Errorf("Unlock(%s, WithKeyslot(%d)) with keyslot %d's passphrase = %v, want ErrWrongPassphrase", tc.name, 1-slot, slot, err)
		}
	}
	for _, wrong := range []string{"", tc.pass + "x", strings.ToUpper(tc.pass)} {
		if wrong == tc.pass {
			continue
		}
		if key, err := h.Unlock(ctx, r, []byte(wrong)); !errors.Is(err, ErrWrongPassphrase) {
			t.Errorf("Unlock(%s, %q) = %v, %v, want ErrWrongPassphrase", tc.name, wrong, key, err)
		}
	}
}

func TestGoldenUnlock(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			img, g := readGolden(t, tc.name)
			want, err := hex.DecodeString(g.VolumeKey)
			if err != nil {
				t.Fatal(err)
			}
			checkUnlock(t, tc, img, want)
		})
	}
}

// TestCryptsetupLive formats fresh volumes with the installed cryptsetup
// (new salts and keys each run) and checks that Unlock recovers the key
// cryptsetup dumps.
func TestCryptsetupLive(t *testing.T) {
	requireCryptsetup(t)
	cases := append([]goldenCase{
		{
			// cryptsetup's own defaults but a short benchmark: Argon2id
			// with its parameters measured, 16 MiB of metadata and keyslots.
			name:   "defaults-argon2id",
			format: []string{"--pbkdf", "argon2id", "--pbkdf-memory", "32768", "--pbkdf-parallel", "1", "--iter-time", "100"},
			pass:   "default passphrase",
			size:   17 << 20,
		},
		{
			name:   "defaults-pbkdf2-sha1-xts-plain",
			format: []string{"--pbkdf", "pbkdf2", "--hash", "sha1", "--iter-time", "50", "--cipher", "aes-xts-plain"},
			pass:   "x", keyFile: true,
			size: 17 << 20,
		},
	}, goldenCases...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path, g := makeVolume(t, t.TempDir(), tc)
			img, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := hex.DecodeString(g.VolumeKey)
			checkUnlock(t, tc, img, want)
		})
	}
}
