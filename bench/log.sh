#!/usr/bin/env bash
# The log at scale: the API's reads of one mailing's log (10,000 deliveries and attempts)
# with only them in the tables and again after LOG_ROWS (default 10,000,000) finished
# deliveries and as many attempts of another mailing are added; the claim's plan and time
# beside them; LOG_RETENTION's chunked delete there. No mail server needed. Loading ten
# million rows takes a quarter of an hour or so.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bin server --example bench_dispatch
BENCH_ONLY_LOG=1 BENCH_LOG_ROWS="${LOG_ROWS:-10000000}" SERVER_BIN=target/release/server \
  target/release/examples/bench_dispatch
