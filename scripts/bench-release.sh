#!/usr/bin/env bash
# Benchmarks of the signed-release path, run by `make bench`:
#
#  1. verifying a release of a 2 GiB image (`lifeboat-release verify`: every
#     signature, every chunk, the image's SHA-256 and its dm-verity tree):
#     wall time, CPU time and peak RSS;
#  2. building a dm-verity hash tree over 1 GiB: `lifeboat-release verity`
#     against `veritysetup format`, same data and salt, roots compared;
#  3. the size the verification code adds to the device binary: a program
#     that extracts (assemble, store) against the same program that first
#     verifies a release plan (pkg/release), stripped, raw and xz-compressed.
#
# BENCH_VERIFY_MIB sets the image size (default 2048).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin
root=$PWD
size_mib=${BENCH_VERIFY_MIB:-2048}
default_dir=$PWD/out/bench-release
if [ "$(df -k --output=avail /dev/shm 2>/dev/null | tail -1)" -gt $((8 << 20)) ] 2>/dev/null; then
	default_dir=/dev/shm/lifeboat-bench-release
fi
work=${BENCH_DIR:-$default_dir}
rm -rf "$work"
mkdir -p "$work"

echo "== verify a release of a ${size_mib} MiB image"
tar cf - /usr/lib /usr/bin /usr/share 2>/dev/null | head -c $((size_mib << 20)) > "$work/rootfs.img" || true
truncate -s $((size_mib << 20)) "$work/rootfs.img"
"$BIN/lifeboat-release" keys init --keys="$work/keys" --repo="$work/repo" > /dev/null
"$BIN/lifeboat-release" create --progress=none --repo="$work/repo" --keys="$work/keys" \
	--board=bench --version=1 --image rootfs="$work/rootfs.img" --verity=rootfs > /dev/null
rm "$work/rootfs.img"
# verify keeps a verity image in a temporary file while it checks the tree.
export TMPDIR=$work
best=""
for _ in 1 2; do
	/usr/bin/time -f '%e %M %U %S' -o "$work/time.txt" \
		"$BIN/lifeboat-release" verify --progress=none --repo="$work/repo" > /dev/null
	read -r t m u s < "$work/time.txt"
	if [ -z "$best" ] || awk "BEGIN{exit !($t < ${best%% *})}"; then best="$t $m $u $s"; fi
done
read -r t m u s <<< "$best"
awk -v t="$t" -v m="$m" -v u="$u" -v s="$s" -v n="$size_mib" 'BEGIN{
	printf "verify: %.2f s (%.0f MB/s), CPU %.2f s, peak RSS %.1f MiB\n", t, n*1.048576/t, u+s, m/1024}'
rm -rf "$work/repo" "$work/keys"

echo "== dm-verity hash tree over 1 GiB: ours against veritysetup format"
tar cf - /usr/lib /usr/bin 2>/dev/null | head -c $((1024 << 20)) > "$work/data.img" || true
truncate -s $((1024 << 20)) "$work/data.img"
salt=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
uuid=6a0d3a5c-0b5e-4c6b-9c56-5d6f0e0b8a11
verity_run() { # label cmd...: best of 3 wall times, its CPU and RSS
	local label=$1 best="" t m u s
	shift
	for _ in 1 2 3; do
		rm -f "$work/hash.img"
		/usr/bin/time -f '%e %M %U %S' -o "$work/time.txt" "$@" > "$work/$label.out"
		read -r t m u s < "$work/time.txt"
		if [ -z "$best" ] || awk "BEGIN{exit !($t < ${best%% *})}"; then best="$t $m $u $s"; fi
	done
	read -r t m u s <<< "$best"
	awk -v l="$label" -v t="$t" -v m="$m" -v u="$u" -v s="$s" 'BEGIN{
		printf "%-12s %6.2f s  %6.0f MB/s  CPU %5.2f s  peak RSS %5.1f MiB\n", l, t, 1073.741824/t, u+s, m/1024}'
}
verity_run lifeboat "$BIN/lifeboat-release" verity --progress=none --salt="$salt" --uuid=$uuid "$work/data.img" "$work/hash.img"
verity_run veritysetup veritysetup format --salt="$salt" --uuid=$uuid "$work/data.img" "$work/hash.img"
ours=$(sed -n 's/^Root hash:[[:space:]]*//p' "$work/lifeboat.out")
theirs=$(sed -n 's/^Root hash:[[:space:]]*//p' "$work/veritysetup.out")
[ -n "$ours" ] && [ "$ours" = "$theirs" ] && echo "root hashes agree: $ours" || { echo "root hashes differ: $ours / $theirs"; exit 1; }
rm -f "$work/data.img" "$work/hash.img"

echo "== size of the verification code in the device binary"
mkdir -p "$root/out/binsize/without" "$root/out/binsize/with"
cat > "$root/out/binsize/without/main.go" <<'GO'
// Extract only: what a device binary needs without release verification.
package main

import (
	"context"
	"os"

	"github.com/lifeboat-update/lifeboat/pkg/assemble"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

func main() {
	idx, _ := chunk.ReadIndexFile(os.Args[1])
	st, _ := store.Open(os.Args[2])
	t, _ := assemble.OpenTarget(os.Args[3], int64(idx.Size()))
	assemble.Assemble(context.Background(), idx, t, assemble.Options{Stores: []store.Store{st}})
}
GO
cat > "$root/out/binsize/with/main.go" <<'GO'
// The same, behind a verified plan from pkg/release.
package main

import (
	"context"
	"os"

	"github.com/lifeboat-update/lifeboat/pkg/assemble"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

func main() {
	ctx := context.Background()
	c := &release.Client{State: durable.OS(os.Args[1]), Fetch: release.DirFetcher{Dir: os.Args[2]}, Board: "b"}
	plan, err := c.Plan(ctx, []string{"rootfs"})
	if err != nil {
		os.Exit(1)
	}
	st, _ := store.Open(os.Args[3])
	im := plan.Images[0]
	t, _ := assemble.OpenTarget(os.Args[4], im.Size)
	assemble.Assemble(ctx, im.Index, t, assemble.Options{Stores: []store.Store{st}})
}
GO
for v in without with; do
	go build -trimpath -ldflags='-s -w' -o "$root/out/binsize/$v.bin" "./out/binsize/$v"
done
w=$(stat -c %s "$root/out/binsize/with.bin"); wo=$(stat -c %s "$root/out/binsize/without.bin")
wx=$(xz -9 -c "$root/out/binsize/with.bin" | wc -c); wox=$(xz -9 -c "$root/out/binsize/without.bin" | wc -c)
printf 'verification code: +%d bytes stripped (%d -> %d), +%d bytes xz -9 (%d -> %d)\n' \
	$((w - wo)) "$wo" "$w" $((wx - wox)) "$wox" "$wx"
rm -rf "$work"
