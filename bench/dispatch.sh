#!/usr/bin/env bash
# The dispatch benchmark: Postfix's smtp-sink as the mail server (unpacked from Debian's
# postfix package, not installed), smtp-source's own rate into it for comparison, then
# examples/bench_dispatch.rs against the release build. Needs PostgreSQL (BENCH_DATABASE_URL,
# default postgres://postgres@127.0.0.1:5432/postgres) and a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/smtp_sink.sh
trap 'kill $sink 2>/dev/null' EXIT
sleep 0.5

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
# The same concurrency as the dispatcher's SMTP_CONCURRENCY (BENCH_CONCURRENCY, default 8).
sessions="${BENCH_CONCURRENCY:-8}"
start=$(date +%s.%N)
"$postfix/usr/sbin/smtp-source" -d -s "$sessions" -m 40000 "127.0.0.1:$port"
end=$(date +%s.%N)
echo "smtp-source -> smtp-sink, $sessions sessions, connection reuse: $(echo "40000 / ($end - $start)" | bc) messages/s"

cargo build --release --bin server --example bench_dispatch --example bench_smtp --example bench_render
export BENCH_SMTP_URL="smtp://127.0.0.1:$port"
# smtp-source runs again just before each throughput run, for a ratio against the same minute.
export BENCH_SMTP_SOURCE="$PWD/$postfix/usr/sbin/smtp-source"
target/release/examples/bench_smtp
# What composing a mail costs: the text message against the HTML newsletter in a layout.
target/release/examples/bench_render
SERVER_BIN=target/release/server target/release/examples/bench_dispatch
