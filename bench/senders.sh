#!/usr/bin/env bash
# A rate limit shared by every instance: a server limited to 20 messages a second, 1,000
# messages, sent by one instance and then by three (examples/bench_dispatch.rs with
# BENCH_SHARED_LIMIT). Postfix's smtp-sink dumps each message to a file; the file times give
# the most it took in any calendar second and in any sliding second.
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/smtp_sink.sh
dump=$(mktemp -d)
chmod 777 "$dump"
# A second sink, this one writing each message to $dump/<random> (smtp-sink -d).
"$postfix/usr/sbin/smtp-sink" -u nobody -d "$dump/%H%M%S." "127.0.0.1:$((port + 1))" 64 &
dumping=$!
trap 'kill $sink $dumping 2>/dev/null; rm -rf "$dump"' EXIT
sleep 0.5

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
cargo build --release --bin server --example bench_dispatch
BENCH_SMTP_URL="smtp://127.0.0.1:$((port + 1))" BENCH_SHARED_LIMIT="${LIMIT:-20}" BENCH_SINK_DUMP="$dump" \
  BENCH_RECIPIENTS="${RECIPIENTS:-1000}" target/release/examples/bench_dispatch
