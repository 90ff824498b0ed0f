#!/usr/bin/env bash
# The demo of what Lifeboat does today: two releases of a root filesystem
# are signed into a repository, the repository is published over HTTP on
# loopback, and a device that runs release 1.0 installs 1.1 into its other
# slot, seeded by the slot it runs, fetching only the chunks it lacks and
# verifying everything; then it refuses a stale mirror's rollback.
#
# Both images are real ext4 filesystems made with mkfs.ext4 -d.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin
work=${DEMO_DIR:-$PWD/out/demo}
rm -rf "$work"
mkdir -p "$work"
cd "$work"

step() { printf '\n== %s\n' "$*"; }

step "Build two releases of a root filesystem (ext4, made with mkfs.ext4 -d)"
# The tree is real files from this machine: a Python library and time zones
# where installed, documentation otherwise, and /etc.
mkdir -p tree/usr/share tree/usr/lib tree/etc
for d in /usr/lib/python3.11 /usr/share/zoneinfo; do
	[ -d "$d" ] && cp -a "$d" "tree$(dirname "$d")/"
done
[ -d tree/usr/lib/python3.11 ] || cp -a /usr/share/doc tree/usr/share/
cp -a /etc/. tree/etc/ 2>/dev/null || true
mkdir -p tree/usr/lib/python3.11/json
size_mib=$(( $(du -sm tree | cut -f1) * 3 / 2 + 64 ))
echo "release 1.0" > tree/etc/lifeboat-release
# Fixed UUID and hash seed, so the two images differ only where the trees do.
mkfs() { mkfs.ext4 -q -F -U 6a0d3a5c-0b5e-4c6b-9c56-5d6f0e0b8a11 -E hash_seed=9c5c1e3a-0d4b-4a3e-8b0e-2f1c0d9e8a77 -d tree "$1" "${size_mib}M"; }
SOURCE_DATE_EPOCH=1700000000 mkfs rootfs-1.img
# Release 1.1: a new 2 MB file, a few changed modules, a new release tag.
head -c 2000000 /dev/urandom > tree/usr/share/new-payload.bin
for f in tree/usr/lib/python3.11/json/*.py; do echo "# patched in release 2" >> "$f"; done
echo "release 1.1" > tree/etc/lifeboat-release
SOURCE_DATE_EPOCH=1700000000 mkfs rootfs-2.img
ls -l rootfs-1.img rootfs-2.img

step "Release side: keys, then two signed releases (rootfs with a dm-verity tree)"
"$BIN/lifeboat-release" keys init --keys=keys --repo=repo
"$BIN/lifeboat-release" create --progress=none --repo=repo --keys=keys --board=demo --version=1.0 \
	--image rootfs=rootfs-1.img --verity=rootfs
cp -a repo repo-at-1.0 # what a stale mirror or an old USB stick would serve later
"$BIN/lifeboat-release" create --progress=none --repo=repo --keys=keys --board=demo --version=1.1 \
	--image rootfs=rootfs-2.img --verity=rootfs
"$BIN/lifeboat-release" verify --progress=none --repo=repo

step "Publish the repository over HTTP on loopback"
"$BIN/lifeboat-release" chunk-server --repo=repo --listen=127.0.0.1:0 > server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q '^serving' server.log && break; sleep 0.1; done
url=$(sed -n 's|^serving .* on \(http://[^ ]*\)|\1|p' server.log)
echo "repository at $url"

step "Device: at the factory, provisioned and flashed with release 1.0 into slot A"
"$BIN/lifeboat" provision --state=state repo/metadata/1.root.json
"$BIN/lifeboat" install --progress=none --repo=repo-at-1.0 --state=state --board=demo --slot rootfs=slot-a.img

step "Device: release 1.1 into slot B, seeded by slot A, streaming only what changed"
"$BIN/lifeboat" install --progress=none --repo="$url" --state=state --board=demo \
	--slot rootfs=slot-b.img --seed=slot-a.img | tee install.txt

step "Check slot B"
size=$(stat -c %s rootfs-2.img)
cmp -n "$size" slot-b.img rootfs-2.img && echo "slot B holds release 1.1 byte for byte, then its verity tree"
e2fsck -fn slot-b.img >/dev/null 2>&1 && echo "e2fsck: slot B is a clean filesystem"
debugfs -R 'cat /etc/lifeboat-release' slot-b.img 2>/dev/null

step "An attack: a stale mirror serves the repository as it was at 1.0"
if "$BIN/lifeboat" install --progress=none --repo=repo-at-1.0 --state=state --board=demo --slot rootfs=slot-c.img; then
	echo "the device accepted stale metadata" >&2
	exit 1
fi
[ ! -e slot-c.img ] && echo "refused, and not a byte was written"

step "What the update cost"
full=$("$BIN/lifeboat-release" make --json --progress=none --store=store-2-alone rootfs-2-alone.caibx rootfs-2.img |
	sed -n 's/.*"stored_bytes": \([0-9]*\).*/\1/p')
mib() { awk -v n="$1" 'BEGIN{printf "%.1f MiB", n / 1048576}'; }
echo "release 1.1 rootfs:           $(mib "$size") (plus its verity tree)"
echo "a full download, compressed:  $(mib "$full")"
echo "what slot B fetched:          $(sed -n 's/^fetched: *\(.*\) from stores.*/\1/p' install.txt)"
