#!/usr/bin/env bash
# What PostgreSQL alone can do with the dispatcher's bookkeeping (bench/postgres_floor.sql):
# claims (a run's slice of 500 per batch), SENDING marks, outcomes and attempts in groups of
# 8, driven by pgbench with no mail server and no dispatcher, on the real schema; then the
# same with each index or foreign key the API needs taken away, one at a time and all
# together, to show what each costs (twice through, for the noise); and the issue's reference
# loop (claim 100 / complete 100 on a bare table). Prints deliveries (or rows) per second, the
# cores PostgreSQL used and its CPU microseconds per delivery, read from /proc (PostgreSQL
# must run on this machine). Needs psql and pgbench, a release build of `server` (for its
# migrations), BENCH_DATABASE_URL (a server where databases may be created; default
# postgres://postgres@127.0.0.1:5432/postgres), and about eight minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export PGOPTIONS="-c client_min_messages=warning"

admin="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
url_of() { echo "${admin%/*}/$1"; }
seconds="${BENCH_SECONDS:-10}"
# Enough that no variant runs out of pending deliveries within $seconds.
recipients=400000

cargo build --release --bin server
template=bench_floor_template
psql -q "$admin" -c "DROP DATABASE IF EXISTS $template" -c "CREATE DATABASE $template"
DATABASE_URL="$(url_of $template)" RUST_LOG=warn target/release/server migrate
psql -q "$(url_of $template)" -f bench/postgres_floor.sql

# CPU seconds of every postgres process, plus the exited backends (the postmaster's children).
postgres_cpu() {
  local total=0 fields
  for pid in $(pgrep -x postgres); do
    fields=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) || continue
    # shellcheck disable=SC2086
    set -- $fields
    total=$((total + ${12} + ${13}))
    if [ "$2" = 1 ]; then total=$((total + ${14} + ${15})); fi
  done
  echo "$total"
}

# run NAME CLIENTS PER_CALL CALL: pgbench CALL for $seconds, PER_CALL deliveries per call.
run() {
  local name=$1 clients=$2 per_call=$3 call=$4 before after tps
  echo "$call" >"$work/script.pgb"
  psql -q "$url" -c CHECKPOINT
  before=$(postgres_cpu)
  tps=$(pgbench -n -c "$clients" -j "$clients" -T "$seconds" -f "$work/script.pgb" "$url" 2>/dev/null |
    awk '/^tps/ {print $3}')
  # pgbench's backends exit as it ends: once the postmaster has reaped them their CPU is in
  # its children's time, before that it would be in no one's.
  sleep 1
  after=$(postgres_cpu)
  awk -v n="$name" -v c="$clients" -v tps="$tps" -v per="$per_call" -v cpu=$((after - before)) -v s="$seconds" \
    'BEGIN { r = tps * per; printf "%-44s %2d session(s) %8.0f /s  %4.2f cores  %5.0f us per delivery\n",
             n, c, r, cpu / 100 / s, cpu * 10000 / (r * s) }'
}

work=$(mktemp -d)
database=bench_floor
url="$(url_of $database)"
trap 'rm -rf "$work"; psql -q "$admin" -c "DROP DATABASE IF EXISTS $database" -c "DROP DATABASE IF EXISTS $template"' EXIT

# variant NAME SQL: a fresh copy of the schema, SQL applied, $recipients deliveries expanded, then
# batches of 496 in groups of 8 (as SMTP_CONCURRENCY=8, DISPATCH_BATCH=500) from 1 or 3 sessions.
variant() {
  local name=$1 sql=$2 sessions
  for sessions in ${3:-3}; do
    psql -q "$admin" -c "DROP DATABASE IF EXISTS $database" -c "CREATE DATABASE $database TEMPLATE $template"
    [ -z "$sql" ] || psql -q "$url" -c "$sql"
    expansion=$(psql -qAt "$url" -c "SELECT extract(epoch FROM floor_seed($recipients)) * 1e6 / $recipients" 2>/dev/null)
    psql -q "$url" -c ANALYZE
    run "$name" "$sessions" 496 "CALL floor_batch(md5(:client_id::text)::uuid, 496, 8);"
    left=$(psql -qAt "$url" -c "SELECT count(*) FROM deliveries WHERE status = 'pending' AND lease_owner IS NULL")
    [ "$left" -gt 0 ] || echo "  (ran out of deliveries: the figure above is too low)"
  done
}

# BENCH_EXPERIMENT_SQL: A/B only, the schema as it is against the schema with that SQL applied,
# alternated three times at BENCH_SESSIONS sessions, default 3 (to try an index, a key or a
# function before a migration).
if [ -n "${BENCH_EXPERIMENT_SQL:-}" ]; then
  for round in 1 2 3; do
    variant "the schema as it is" "" "${BENCH_SESSIONS:-3}"
    variant "with BENCH_EXPERIMENT_SQL" "$BENCH_EXPERIMENT_SQL" "${BENCH_SESSIONS:-3}"
  done
  exit 0
fi

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(psql -qAt "$admin" -c 'SHOW server_version')"
echo "claim + mark + outcome + attempt, groups of 8 (expansion not included; timed apart):"
variant "the schema as it is" "" "1 3"
echo "expansion (INSERT ... SELECT of $recipients deliveries): $(printf %.0f "$expansion") us of wall time per delivery, one backend"
# Twice through (the machine is noisy): compare within a round.
for round in 1 2; do
  echo "round $round:"
  variant "the schema as it is" ""
  variant "without deliveries_mailing_status_idx" "DROP INDEX deliveries_mailing_status_idx"
  variant "without deliveries_run_status_idx" "DROP INDEX deliveries_run_status_idx"
  variant "without deliveries_owner_sent_idx" "DROP INDEX deliveries_owner_sent_idx"
  variant "without attempts_owner_idx" "DROP INDEX attempts_owner_idx"
  variant "without attempts_mailing_idx" "DROP INDEX attempts_mailing_idx"
  variant "without attempts -> deliveries foreign key" "ALTER TABLE attempts DROP CONSTRAINT attempts_delivery_id_fkey"
  variant "without all six above" "DROP INDEX deliveries_mailing_status_idx; DROP INDEX deliveries_run_status_idx;
    DROP INDEX deliveries_owner_sent_idx; DROP INDEX attempts_owner_idx; DROP INDEX attempts_mailing_idx;
    ALTER TABLE attempts DROP CONSTRAINT attempts_delivery_id_fkey"
done

echo "the issue's reference: claim 100 / complete 100 on a bare table of 2,000,000 jobs:"
psql -q "$admin" -c "DROP DATABASE IF EXISTS $database" -c "CREATE DATABASE $database TEMPLATE $template"
psql -q "$url" -c "SELECT floor_minimal_seed()" >/dev/null
for sessions in 1 3; do
  run "claim 100 / complete 100" "$sessions" 100 "CALL floor_minimal(md5(:client_id::text)::uuid);"
done
