#!/usr/bin/env bash
# The fleet server under load, run by `make bench`: lifeboat-server on
# loopback against (1) a SQLite file on tmpfs and (2) a fresh database on
# the PostgreSQL that scripts/postgres.sh starts. On each, lifeboat-loadgen
# registers SERVER_DEVICES devices through the API (default 1,000,000,
# 1,000 to a request, POST /api/v1/devices/bulk), then sends check-ins
# (90 %) and status reports (10 %) at SERVER_RATE requests per second
# (default 3000) for SERVER_DURATION (default 60s),
# open-loop; if that rate is not met (p99 over 250 ms or errors), it halves
# the rate until it is, and reports the rate that was. Then it publishes a
# release for the fleet's board, creates and starts a rollout of it over the
# whole fleet (one wave, 100 %), timed, and runs the load again: every
# check-in reads the device's assignment, and every status report says the
# release is installed, moving its device on in the rollout. Prints a
# table, with the machine's load average (1 min) after each run: other jobs
# on the same cores make the figures lower bounds. SERVER_STORES (default
# "sqlite postgresql") chooses the stores, SERVER_WORK (default
# /dev/shm/lifeboat-bench-server) the directory the files go to.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin
devices=${SERVER_DEVICES:-1000000}
rate=${SERVER_RATE:-3000}
duration=${SERVER_DURATION:-60s}
port=${SERVER_PORT:-18080}
work=${SERVER_WORK:-/dev/shm/lifeboat-bench-server}
[ -d /dev/shm ] || work=$PWD/out/bench-server
rm -rf "$work"
mkdir -p "$work"
stores=${SERVER_STORES:-sqlite postgresql}
go build -o "$BIN/" ./cmds/lifeboat-server ./cmds/lifeboat-loadgen ./cmds/lifeboat-release

# The release rolled out: a 1 MiB image for the load generator's board.
"$BIN/lifeboat-release" keys init --keys="$work/keys" --repo="$work/repo" > /dev/null
head -c 1048576 /dev/urandom > "$work/rootfs.img"
"$BIN/lifeboat-release" create --repo="$work/repo" --keys="$work/keys" --board=loadgen --version=2.0.0 \
	--image rootfs="$work/rootfs.img" --progress=none > /dev/null

# load is the machine's load average over the last minute.
load() { cut -d' ' -f1 /proc/loadavg; }

server_pid=""
stop_server() {
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
		server_pid=""
	fi
}
trap stop_server EXIT

# measure NAME LABEL [RUN FLAG...]: the load at SERVER_RATE, halved until
# it holds; one row of the table.
measure() {
	local name=$1 label=$2 url=http://127.0.0.1:$port r=$rate
	shift 2
	while :; do
		echo "== $name, $label: check-ins at $r/s for $duration"
		"$BIN/lifeboat-loadgen" run --server "$url" --devices "$devices" --rate "$r" --duration "$duration" --json "$@" > "$work/$name-$label-$r.json" || true
		echo "load average $(load)"
		jq -r '"sent \(.sent), \(.per_second | floor)/s; poll p50 \(.kinds.poll.p50_ms) ms p99 \(.kinds.poll.p99_ms) ms; status p50 \(.kinds.status.p50_ms) ms p99 \(.kinds.status.p99_ms) ms; errors \([.kinds[].errors // {} | to_entries[] | "\(.key)×\(.value)"] | join(" "))"' "$work/$name-$label-$r.json"
		if jq -e '.kinds.poll.p99_ms < 250 and .kinds.status.p99_ms < 250 and ([.kinds[].count - .kinds[].ok] | add) == 0' "$work/$name-$label-$r.json" > /dev/null || [ "$r" -le 100 ]; then
			break
		fi
		r=$((r / 2))
	done
	jq -r --arg name "$name" --arg run "$label" --arg load "$(load)" --arg setup "$setup" \
		'[$name, $run, .devices, $setup, .target_per_second, (.per_second | floor), .kinds.poll.p50_ms, .kinds.poll.p99_ms, .kinds.status.p50_ms, .kinds.status.p99_ms, ([.kinds[].count - .kinds[].ok] | add), $load] | @tsv' \
		"$work/$name-$label-$r.json" >> "$work/table.tsv"
}

# bench NAME DB: the fleet registered and loaded, then the same under a
# rollout.
bench() {
	local name=$1 db=$2 url=http://127.0.0.1:$port
	rm -f "$work/admin"
	"$BIN/lifeboat-server" serve --listen "127.0.0.1:$port" --db "$db" --admin-token-file "$work/admin" \
		--root "$work/repo/metadata/root.json" --data "$work/$name-data" \
		--poll-interval 1h --poll-jitter 10m 2> "$work/$name-server.log" &
	server_pid=$!
	for _ in $(seq 100); do
		[ -s "$work/admin" ] && curl -s -o /dev/null "$url/" && break
		sleep 0.1
	done
	echo "== $name: register $devices devices"
	"$BIN/lifeboat-loadgen" register --server "$url" --token-file "$work/admin" --devices "$devices" --json > "$work/$name-register.json"
	jq -r '"registered \(.devices) in \(.seconds | floor) s: \(.per_second | floor)/s"' "$work/$name-register.json"
	echo "load average $(load)"
	setup="registered in $(jq -r '.seconds | floor' "$work/$name-register.json") s"
	measure "$name" "no rollout"
	curl -sf -o /dev/null -H "Authorization: Bearer $(cat "$work/admin")" -H 'Content-Type: application/json' \
		-d "{\"repository\": \"bench\", \"path\": \"$work/repo\"}" "$url/api/v1/releases"
	echo "== $name: rollout of 2.0.0 over the $devices devices"
	"$BIN/lifeboat-loadgen" rollout --server "$url" --token-file "$work/admin" --release 2.0.0 --waves 100% --json > "$work/$name-rollout.json"
	jq -r '"rollout \(.id) created in \(.create_seconds) s, started in \(.start_seconds) s"' "$work/$name-rollout.json"
	echo "load average $(load)"
	setup="rollout created in $(jq -r '.create_seconds * 10 | floor / 10' "$work/$name-rollout.json") s"
	measure "$name" "rollout" --installed 2.0.0
	stop_server
}

for store in $stores; do
	case $store in
	sqlite) bench sqlite "$work/fleet.db" ;;
	postgresql)
		pg=$(scripts/postgres.sh)
		base=${pg%%\?*}
		fresh=lifeboat_bench_$$
		psql -X -q "$pg" -c "DROP DATABASE IF EXISTS $fresh" -c "CREATE DATABASE $fresh"
		bench postgresql "${base%/*}/$fresh?${pg#*\?}"
		psql -X -q "$pg" -c "DROP DATABASE $fresh"
		;;
	*) echo "SERVER_STORES: unknown store $store (want sqlite, postgresql)" >&2; exit 2 ;;
	esac
done

echo
echo "== fleet server, $(nproc) cores, target 3000 check-ins/s at p99 < 250 ms"
{
	printf 'store\trun\tdevices\tsetup\ttarget/s\tachieved/s\tpoll p50 ms\tpoll p99 ms\tstatus p50 ms\tstatus p99 ms\tfailed\tload avg\n'
	cat "$work/table.tsv"
} | column -t -s $'\t'
