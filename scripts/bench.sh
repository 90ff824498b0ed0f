#!/usr/bin/env bash
# Side-by-side benchmark of Lifeboat against the real casync, in one run on
# the same images: `make` (chunk an image into an empty store) and
# `extract` with a seed (install a new release from the store, seeded by the
# old one, into a new file). Prints wall time, throughput, the ratio to
# casync and peak RSS (from /usr/bin/time). Each figure is the best of
# $BENCH_RUNS runs (default 3), with the page cache warm for both tools.
#
# BENCH_SIZE_MIB sets the image size (default 1024). The work happens in
# BENCH_DIR, by default on tmpfs (/dev/shm) when it has room, so that the
# figures measure the tools rather than the disk: on the VMs this project
# runs on, the disk absorbs writes at under 300 MB/s.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin
default_dir=$PWD/out/bench
if [ "$(df -k --output=avail /dev/shm 2>/dev/null | tail -1)" -gt $((6 << 20)) ] 2>/dev/null; then
	default_dir=/dev/shm/lifeboat-bench
fi
work=${BENCH_DIR:-$default_dir}
size_mib=${BENCH_SIZE_MIB:-1024}
runs=${BENCH_RUNS:-3}
rm -rf "$work"
mkdir -p "$work"
cd "$work"

# v1: real binaries and libraries, as a root filesystem holds them.
tar cf - /usr/lib/x86_64-linux-gnu /usr/bin /usr/share 2>/dev/null | head -c $((size_mib << 20)) > v1.img || true
truncate -s $((size_mib << 20)) v1.img
# v2: v1 with 40 regions of 1 MiB rewritten (about 4% of a 1 GiB image).
cp v1.img v2.img
for i in $(seq 40); do
	dd if=/dev/urandom of=v2.img bs=1M count=1 seek=$(( (i * 7919) % size_mib )) conv=notrunc status=none
done
cat v1.img v2.img > /dev/null

# measure LABEL CMD...: the best wall time over $runs runs, with that run's
# CPU time (user+system) and peak RSS.
measure() {
	local label=$1 best="" rss="" cpu="" t m u s
	shift
	for _ in $(seq "$runs"); do
		rm -rf out.img
		/usr/bin/time -f '%e %M %U %S' -o time.txt "$@" > /dev/null 2> cmd.err || { cat cmd.err; exit 1; }
		read -r t m u s < time.txt
		if [ -z "$best" ] || awk "BEGIN{exit !($t < $best)}"; then
			best=$t rss=$m cpu=$(awk "BEGIN{print $u + $s}")
		fi
	done
	echo "$label $best $rss $cpu"
}

results=()
# make: chunk v2 into an empty store.
results+=("$(measure make-lifeboat sh -c "rm -rf s && '$BIN/lifeboat-release' make --progress=none --store=s v2.caibx v2.img")")
results+=("$(measure make-casync sh -c "rm -rf c && casync make --store=c v2c.caibx v2.img")")
# The stores both tools extract from (made once, untimed).
"$BIN/lifeboat-release" make --progress=none --store=s v2.caibx v2.img > /dev/null
casync make --store=c v2c.caibx v2.img > /dev/null
cmp v2.caibx v2c.caibx
# extract with v1 as the seed, into a new file.
results+=("$(measure extract-lifeboat "$BIN/lifeboat" extract --progress=none --store=s --seed=v1.img v2.caibx out.img)")
cmp out.img v2.img
# The device's usual case: the running slot's index is known, so the seed
# is read by its index instead of being chunked again.
"$BIN/lifeboat-release" make --progress=none --store=s v1.img.caibx v1.img > /dev/null
results+=("$(measure extract-lifeboat-seedindex "$BIN/lifeboat" extract --progress=none --store=s --seed-index=v1.img.caibx v2.caibx out.img)")
cmp out.img v2.img
results+=("$(measure extract-casync casync extract --store=c --seed=v1.img v2c.caibx out.img)")
cmp out.img v2.img

printf '\nimage: %d MiB in %s; v2 differs from v1 in 40 MiB; best of %s runs; %s, %d cores\n' \
	"$size_mib" "$work" "$runs" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$(nproc)"
printf '%-18s %8s %8s %10s %8s %13s\n' operation seconds MB/s vs-casync "CPU s" "peak RSS MiB"
declare -A secs
for r in "${results[@]}"; do
	read -r label t _ <<< "$r"
	secs[$label]=$t
done
# Each row is compared with casync's row for the same operation.
for r in "${results[@]}"; do
	read -r label t m cpu <<< "$r"
	op=${label%%-*}
	ratio=$(awk "BEGIN{printf \"%.2fx\", ${secs[$op-casync]} / $t}")
	awk -v l="$label" -v t="$t" -v m="$m" -v r="$ratio" -v s="$size_mib" -v c="$cpu" \
		'BEGIN{printf "%-18s %8.2f %8.0f %10s %8.2f %13.1f\n", l, t, s*1.048576/t, r, c, m/1024}'
done
rm -rf "$work"
