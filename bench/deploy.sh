#!/usr/bin/env bash
# Zero downtime, measured: wrk drives steady load through gantry's load
# balancer while (1) a rolling deploy of a 2-replica service runs and (2) a
# deploy whose health checks fail trips the circuit breaker and rolls back.
# Prints wrk's request counts, errors (non-2xx and socket) and latency, and
# the deploy actions' durations. Needs wrk (apt-get install wrk), busybox-static.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p gantry
gantry="$PWD/target/release/gantry"
work=$(mktemp -d)
port=${PORT:-18190}
trap '"$gantry" --data-dir "$work/data" shutdown --stop-services >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
mkdir -p "$work/repo/site/www"
cd "$work/repo"
cp /bin/busybox site/
echo ok > site/www/health
echo v1 > site/www/index.html
cat > gantry.yaml <<YAML
version: 1
name: web
environments:
  bench:
    runtime: process
    load_balancer: {listen: "127.0.0.1:$port", rules: [{priority: 10, path: "/*", service: web}]}
services:
  web:
    replicas: 2
    health_check: {path: /health, interval: 2s, timeout: 1s, healthy_threshold: 2, unhealthy_threshold: 2, grace_period: 0s}
    deployment: {min_healthy_percent: 100, max_percent: 200, drain: 2s, circuit_breaker: {threshold: 2, rollback: true}}
stages:
  - name: Source
    actions: [{name: checkout, type: source, outputs: [Src]}]
  - name: Build
    actions:
      - {name: web, type: image, inputs: [Src], context: site, repository: bench/web, workdir: /app,
         entrypoint: ["/app/busybox", "sh", "-c", "exec \$GANTRY_ROOTFS/app/busybox httpd -f -p \$PORT -h www"], outputs: [Img]}
  - name: Deploy
    actions: [{name: web, type: deploy, environment: bench, service: web, inputs: [Img]}]
YAML
git init -q -b main && git add -A && git -c user.name=b -c user.email=b@b commit -qm v1
"$gantry" --data-dir "$work/data" run --json > /dev/null
deploy_time() { python3 -c '
import json, sys
from datetime import datetime
e = json.loads(sys.stdin.read().strip().splitlines()[-1])
a = e["stages"][2]["actions"][0]
t = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
print("deploy action %s in %.2fs" % (a["status"], t(a["finished_at"]) - t(a["started_at"])))'; }
under_load() {
  local label=$1
  wrk -t2 -c16 -d14s --latency "http://127.0.0.1:$port/" > "$work/wrk.txt" &
  local wrk_pid=$!
  sleep 2
  "$gantry" --data-dir "$work/data" run --json > "$work/run.json" || true
  wait $wrk_pid
  echo "== $label"
  deploy_time < "$work/run.json"
  grep -E "requests in|Non-2xx|Socket errors|Requests/sec|99%" "$work/wrk.txt" | sed 's/^/  /'
  grep -q -E "Non-2xx|Socket errors" "$work/wrk.txt" || echo "  0 failed requests (no non-2xx, no socket errors)"
}
echo v2 > site/www/index.html && git commit -qam v2
under_load "rolling deploy of 2 replicas (v1 -> v2)"
rm site/www/health && echo v3 > site/www/index.html && git commit -qam "v3, health check fails"
under_load "failed deploy: circuit breaker and rollback (v2 keeps serving)"
curl -s "http://127.0.0.1:$port/" | sed 's/^/  serving after rollback: /'
