#!/usr/bin/env bash
# What DKIM signing and VERP envelope senders cost the dispatcher end to end: the quick
# throughput run of examples/bench_dispatch.rs (10,000 recipients, one instance, into
# Postfix's smtp-sink) with each configuration in turn, twice, in one sitting (the machine is
# shared and noisy: compare the figures of one run with each other). BASE_SERVER_BIN, when
# set, is an older build run first in each round (e.g. one from before the deliverability
# work, to see that the figures without DKIM did not regress).
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/smtp_sink.sh
keys=$(mktemp -d)
trap 'kill $sink 2>/dev/null; rm -rf "$keys"' EXIT
sleep 0.5
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$keys/rsa.pem" 2>/dev/null
openssl genpkey -algorithm ED25519 -out "$keys/ed25519.pem"

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
cargo build --release --bin server --example bench_dispatch
export BENCH_SMTP_URL="smtp://127.0.0.1:$port" BENCH_QUICK=1 BENCH_ONLY_THROUGHPUT=1
export BENCH_SMTP_SOURCE="$PWD/$postfix/usr/sbin/smtp-source"

run() {
  local label=$1
  shift
  printf '%-28s ' "$label"
  env "$@" target/release/examples/bench_dispatch | sed -n 's/^throughput: 1 instance(s), 10000 recipients: //p'
}
dkim=(DKIM_DOMAIN=bench.example DKIM_SELECTOR=bench)
for round in 1 2; do
  echo "round $round"
  if [ -n "${BASE_SERVER_BIN:-}" ]; then
    run "base build" SERVER_BIN="$BASE_SERVER_BIN"
  fi
  run "this build" SERVER_BIN=target/release/server
  run "+ VERP (BOUNCE_ADDRESS)" SERVER_BIN=target/release/server BOUNCE_ADDRESS=bounces@bench.example
  run "+ DKIM Ed25519" SERVER_BIN=target/release/server "${dkim[@]}" DKIM_PRIVATE_KEY="$keys/ed25519.pem"
  run "+ DKIM RSA 2048" SERVER_BIN=target/release/server "${dkim[@]}" DKIM_PRIVATE_KEY="$keys/rsa.pem"
done
