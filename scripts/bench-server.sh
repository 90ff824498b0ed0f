#!/usr/bin/env bash
# The fleet server under load, run by `make bench`: lifeboat-server on
# loopback against (1) a SQLite file on tmpfs and (2) a fresh database on
# the PostgreSQL that scripts/postgres.sh starts. On each, lifeboat-loadgen
# registers SERVER_DEVICES devices through the API (default 1,000,000,
# 1,000 to a request, POST /api/v1/devices/bulk), then sends check-ins
# (90 %) and status reports (10 %) at SERVER_RATE requests per second
# (default 3000) for SERVER_DURATION (default 60s),
# open-loop; if that rate is not met (p99 over 250 ms or errors), it halves
# the rate until it is, and reports the rate that was. Prints a table,
# with the machine's load average (1 min) after each run: other jobs on the
# same cores make the figures lower bounds.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin
devices=${SERVER_DEVICES:-1000000}
rate=${SERVER_RATE:-3000}
duration=${SERVER_DURATION:-60s}
port=${SERVER_PORT:-18080}
work=/dev/shm/lifeboat-bench-server
[ -d /dev/shm ] || work=$PWD/out/bench-server
rm -rf "$work"
mkdir -p "$work"
go build -o "$BIN/" ./cmds/lifeboat-server ./cmds/lifeboat-loadgen

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

# bench NAME DB: one row of the table.
bench() {
	local name=$1 db=$2 url=http://127.0.0.1:$port
	rm -f "$work/admin"
	"$BIN/lifeboat-server" serve --listen "127.0.0.1:$port" --db "$db" --admin-token-file "$work/admin" \
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
	local r=$rate
	while :; do
		echo "== $name: check-ins at $r/s for $duration"
		"$BIN/lifeboat-loadgen" run --server "$url" --devices "$devices" --rate "$r" --duration "$duration" --json > "$work/$name-run-$r.json" || true
		echo "load average $(load)"
		jq -r '"sent \(.sent), \(.per_second | floor)/s; poll p50 \(.kinds.poll.p50_ms) ms p99 \(.kinds.poll.p99_ms) ms; status p50 \(.kinds.status.p50_ms) ms p99 \(.kinds.status.p99_ms) ms; errors \([.kinds[].errors // {} | to_entries[] | "\(.key)×\(.value)"] | join(" "))"' "$work/$name-run-$r.json"
		if jq -e '.kinds.poll.p99_ms < 250 and .kinds.status.p99_ms < 250 and ([.kinds[].count - .kinds[].ok] | add) == 0' "$work/$name-run-$r.json" > /dev/null || [ "$r" -le 100 ]; then
			break
		fi
		r=$((r / 2))
	done
	jq -r --arg name "$name" --arg load "$(load)" --slurpfile reg "$work/$name-register.json" \
		'[$name, .devices, ($reg[0].seconds | floor), ($reg[0].per_second | floor), .target_per_second, (.per_second | floor), .kinds.poll.p50_ms, .kinds.poll.p99_ms, .kinds.status.p50_ms, .kinds.status.p99_ms, ([.kinds[].count - .kinds[].ok] | add), $load] | @tsv' \
		"$work/$name-run-$r.json" >> "$work/table.tsv"
	stop_server
}

bench sqlite "$work/fleet.db"
pg=$(scripts/postgres.sh)
base=${pg%%\?*}
fresh=lifeboat_bench_$$
psql -X -q "$pg" -c "DROP DATABASE IF EXISTS $fresh" -c "CREATE DATABASE $fresh"
bench postgresql "${base%/*}/$fresh?${pg#*\?}"
psql -X -q "$pg" -c "DROP DATABASE $fresh"

echo
echo "== fleet server, $(nproc) cores, target 3000 check-ins/s at p99 < 250 ms"
{
	printf 'store\tdevices\tregistered in s\tregistered/s\ttarget/s\tachieved/s\tpoll p50 ms\tpoll p99 ms\tstatus p50 ms\tstatus p99 ms\tfailed\tload\n'
	cat "$work/table.tsv"
} | column -t -s $'\t'
