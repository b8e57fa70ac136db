#!/usr/bin/env bash
# Promotion of a ~1 GB image (4 layers x 256 MiB of random bytes) between two
# local docker-registry instances, compared with skopeo copy and with docker
# pull + tag + push. Prints one line per figure; see
# crates/images/examples/bench_promote.rs for what each measures.
#
# Usage: bench/promote.sh [MiB per layer] [layers]
# Needs: docker-registry and skopeo (Debian packages); dockerd is optional.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p gantry-images --example bench_promote
exec target/release/examples/bench_promote "$@"
