#!/usr/bin/env bash
# Parameter store figures: API `get` latency at 1,000 requests/s against a
# running `gantry server`, and the time to resolve 100 parameters.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p gantry --examples --bins
cargo build --release -q -p gantry-params --examples
data=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$data"' EXIT
target/release/gantry --data-dir "$data" server --listen 127.0.0.1:0 --registry-listen 127.0.0.1:0 >/dev/null 2>&1 &
server=$!
for _ in $(seq 1 100); do [ -f "$data/server.json" ] && break; sleep 0.05; done
api=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' "$data/server.json")
target/release/gantry --data-dir "$data" param put /bench/SERVICE_DNS http://127.0.0.1:18080 >/dev/null
GANTRY_TOKEN=$(cat "$data/admin.token") target/release/examples/bench_params_api "$api" 1000 10
target/release/examples/bench_params
