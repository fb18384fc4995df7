#!/usr/bin/env bash
# A million clients uploaded through the web front end with its progress bar: a release
# `server` on a fresh database, a user, and bench/web_import.mjs driving Chromium.
# Needs what `bash .ci/test` installs (chromium, tests/js/node_modules). LINES=... for
# another size.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin server
admin=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db=mailwarm_bench_web_import
psql "$admin" -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
url="${admin%/*}/$db"
port=${PORT:-18089}
data=$(mktemp -d)
password='a long bench password'
echo "$password" | RUST_LOG=warn DATABASE_URL=$url DATA_DIR=$data target/release/server create-user \
  --email bench@example.com --full-name Bench --role user >/dev/null
DATABASE_URL=$url DATA_DIR=$data BIND_ADDR=127.0.0.1:$port RUST_LOG=warn target/release/server &
server=$!
trap 'kill $server; rm -rf "$data"' EXIT
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.2; done
BASE_URL="http://127.0.0.1:$port" EMAIL=bench@example.com PASSWORD=$password node bench/web_import.mjs
echo "server peak memory: $(grep VmHWM /proc/$server/status)"
