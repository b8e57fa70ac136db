#!/bin/sh
# Runs the whole shop on this machine, without gantry: catalog, orders and
# the BFF, behind dev_router (a stand-in for the load balancer), like the
# staging environment the pipeline builds.
#
#   ./run-local.sh                 # then open http://127.0.0.1:18080/
#   ./run-local.sh e2e [--http]    # start, run shop-e2e against it, stop
#
# Ports: 18080 router ("load balancer"), 18081 catalog, 18082 orders, 18083 bff.
# GANTRY_ENVIRONMENT (default "local") is passed to all three services.
set -eu
cd "$(dirname "$0")"
env_name="${GANTRY_ENVIRONMENT:-local}"
cargo build --release -p catalog -p orders -p bff
cargo build --release -p shop-http --example dev_router
bin=target/release
pids=""
stop() {
    # Only the processes started here, by pid.
    for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in $pids; do wait "$pid" 2>/dev/null || true; done
}
trap stop EXIT
trap 'exit 130' INT TERM
PORT=18081 GANTRY_ENVIRONMENT="$env_name" "$bin/catalog" & pids="$pids $!"
PORT=18082 GANTRY_ENVIRONMENT="$env_name" "$bin/orders" & pids="$pids $!"
PORT=18083 GANTRY_ENVIRONMENT="$env_name" SERVICE_DNS=http://127.0.0.1:18080 "$bin/bff" & pids="$pids $!"
"$bin/examples/dev_router" 127.0.0.1:18080 http://127.0.0.1:18081 http://127.0.0.1:18082 http://127.0.0.1:18083 &
pids="$pids $!"
sleep 1
if [ "${1:-}" = e2e ]; then
    shift
    cargo build -p e2e --bin shop-e2e
    target/debug/shop-e2e --url http://127.0.0.1:18080 --junit reports/e2e.xml "$@"
else
    echo "shop: http://127.0.0.1:18080/ (Ctrl-C stops everything)"
    wait
fi
