#!/usr/bin/env bash
# A run of 10,000 and a run of a million (RECIPIENTS to change it), one instance each, into
# Postfix's smtp-sink: peak memory per process, the rate, and when the run sent its first
# message and wrote its last delivery (a run is written in chunks of 2,000 and sends from
# its first). About five minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/smtp_sink.sh
trap 'kill $sink 2>/dev/null' EXIT
sleep 0.5
cargo build --release --bin server --example bench_dispatch
export BENCH_SMTP_URL="smtp://127.0.0.1:$port" BENCH_QUICK=1 BENCH_ONLY_THROUGHPUT=1 SERVER_BIN=target/release/server
for n in 10000 "${RECIPIENTS:-1000000}"; do
  BENCH_RECIPIENTS=$n target/release/examples/bench_dispatch | sed -n 's/^throughput: //p'
done
