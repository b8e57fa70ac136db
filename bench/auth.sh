#!/usr/bin/env bash
# What the API's trust boundary costs: the same GET with and without the
# token and role checks, at a fixed 1,000 requests/s (release build).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p gantry-server --example bench_auth
target/release/examples/bench_auth "${1:-1000}" "${2:-20}"
