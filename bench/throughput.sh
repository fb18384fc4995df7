#!/usr/bin/env bash
# Issue 24's table in one sitting: the quick throughput run of examples/bench_dispatch.rs
# (RECIPIENTS, default 10,000, into Postfix's smtp-sink) with 1 and 3 instances, the one-line
# text message and the HTML newsletter in a layout with variables (BENCH_MESSAGE=html), DKIM
# off and Ed25519; each line prints the ratio to smtp-source's rate measured just before it.
# ROUNDS (default 2) times through: the machine is shared and noisy.
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/smtp_sink.sh
keys=$(mktemp -d)
trap 'kill $sink 2>/dev/null; rm -rf "$keys"' EXIT
sleep 0.5
openssl genpkey -algorithm ED25519 -out "$keys/ed25519.pem"

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
cargo build --release --bin server --example bench_dispatch
export BENCH_SMTP_URL="smtp://127.0.0.1:$port" BENCH_QUICK=1 BENCH_ONLY_THROUGHPUT=1 SERVER_BIN=target/release/server
export BENCH_SMTP_SOURCE="$PWD/$postfix/usr/sbin/smtp-source" BENCH_RECIPIENTS="${RECIPIENTS:-10000}"
dkim=(DKIM_DOMAIN=bench.example DKIM_SELECTOR=bench DKIM_PRIVATE_KEY="$keys/ed25519.pem")
run() {
  local label=$1
  shift
  printf '%-34s ' "$label"
  env "$@" target/release/examples/bench_dispatch | sed -n 's/^throughput: //p'
}
for round in $(seq 1 "${ROUNDS:-2}"); do
  echo "round $round"
  for instances in 1 3; do
    run "text" BENCH_INSTANCES=$instances
    run "html + layout + variables" BENCH_INSTANCES=$instances BENCH_MESSAGE=html
    run "text, DKIM Ed25519" BENCH_INSTANCES=$instances "${dkim[@]}"
    run "html + layout, DKIM Ed25519" BENCH_INSTANCES=$instances BENCH_MESSAGE=html "${dkim[@]}"
  done
done
