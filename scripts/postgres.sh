#!/usr/bin/env bash
# Prints the URL the store's tests create their PostgreSQL databases
# through (LIFEBOAT_TEST_POSTGRES; pkg/server/store/storetest), starting a
# server first if need be: Debian's cluster of the newest PostgreSQL
# installed (scripts/deps.sh installs it), created if missing and started
# if down, with a role and a database "lifeboat" (password "lifeboat",
# CREATEDB, reachable on 127.0.0.1 only as the cluster's pg_hba.conf has
# it). It stops nothing and changes no configuration; run again, it only
# prints the URL. With LIFEBOAT_TEST_POSTGRES set, it prints that instead.
set -euo pipefail

if [ -n "${LIFEBOAT_TEST_POSTGRES:-}" ]; then
	echo "$LIFEBOAT_TEST_POSTGRES"
	exit 0
fi
ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1)
if [ -z "$ver" ] || ! command -v pg_ctlcluster >/dev/null; then
	echo "postgres: PostgreSQL is not installed (scripts/deps.sh installs it)" >&2
	exit 1
fi
# The postgres user may not enter the directory make runs in.
cd /
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
cluster() { pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main"'; }
if [ -z "$(cluster)" ]; then
	echo "postgres: creating cluster $ver/main" >&2
	$sudo pg_createcluster "$ver" main >&2
fi
read -r _ _ port status _ < <(cluster)
case "$status" in
online*) ;;
*)
	echo "postgres: starting cluster $ver/main" >&2
	$sudo pg_ctlcluster "$ver" main start >&2
	;;
esac
as_postgres=(runuser -u postgres --)
[ "$(id -u)" -eq 0 ] || as_postgres=(sudo -u postgres)
"${as_postgres[@]}" psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres >&2 <<'SQL'
SELECT 'CREATE ROLE lifeboat LOGIN CREATEDB PASSWORD ''lifeboat'''
	WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'lifeboat')\gexec
SELECT 'CREATE DATABASE lifeboat OWNER lifeboat'
	WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'lifeboat')\gexec
SQL
echo "postgres://lifeboat:lifeboat@127.0.0.1:$port/lifeboat?sslmode=disable"
