#!/usr/bin/env bash
# Load balancer figures: gantry's proxy (crates/proxy) against nginx, both in
# front of the same backend (crates/proxy/examples/backend.rs, `200 ok`),
# both with the same two path rules, keep-alive to the clients and pooled
# keep-alive connections to the backend, both adding X-Forwarded-* headers.
# Each gets the same wrk run; prints requests/s and p99 latency of both,
# and of gantry again with its access log on (a line per request).
#
# Needs Debian's nginx and wrk: apt-get install -y nginx wrk
# Settings: WRK_THREADS (2), WRK_CONNECTIONS (64), WRK_DURATION (15s),
# WRK_PATH (/web/index, which the first rule rejects and the second takes).
set -euo pipefail
cd "$(dirname "$0")/.."

threads=${WRK_THREADS:-2}
connections=${WRK_CONNECTIONS:-64}
duration=${WRK_DURATION:-15s}
path=${WRK_PATH:-/web/index}

for tool in nginx wrk python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "bench/proxy.sh: $tool is missing (apt-get install -y nginx wrk)" >&2
        exit 1
    fi
done

cargo build --release -q -p gantry-proxy --examples

work=$(mktemp -d)
pids=()
cleanup() {
    # start_listening runs in $(...): its programs' pids are in a file.
    if [ -f "$work/pids" ]; then
        while read -r pid; do pids+=("$pid"); done <"$work/pids"
    fi
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Starts a program that prints "listening on ADDR" and echoes ADDR.
start_listening() {
    local name=$1
    shift
    "$@" >"$work/$name.out" 2>"$work/$name.err" &
    echo $! >>"$work/pids"
    for _ in $(seq 1 200); do
        if grep -q '^listening on ' "$work/$name.out" 2>/dev/null; then
            sed -n 's/^listening on //p' "$work/$name.out"
            return
        fi
        sleep 0.05
    done
    echo "bench/proxy.sh: $name did not start:" >&2
    cat "$work/$name.err" >&2
    exit 1
}

wait_for_ok() {
    local url=$1
    for _ in $(seq 1 100); do
        if python3 -c 'import sys,urllib.request; sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=1).read()==b"ok" else 1)' "$url" 2>/dev/null; then
            return
        fi
        sleep 0.05
    done
    echo "bench/proxy.sh: $url does not answer 200 ok" >&2
    exit 1
}

backend=$(start_listening backend target/release/examples/backend 127.0.0.1:0)

nginx_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/nginx/client_body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    upstream api { server $backend; keepalive 64; }
    upstream web { server $backend; keepalive 64; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host \$host;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto \$scheme;
    proxy_set_header X-Forwarded-Host \$host;
    server {
        listen 127.0.0.1:$nginx_port;
        location /api/ { proxy_pass http://api; }
        location / { proxy_pass http://web; }
    }
}
EOF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" 2>"$work/nginx.err" &
pids+=($!)
wait_for_ok "http://127.0.0.1:$nginx_port$path"

gantry_port=$(free_port)
gantry=$(start_listening gantry target/release/examples/lb "127.0.0.1:$gantry_port" "$backend")
wait_for_ok "http://$gantry$path"
wait_for_ok "http://$gantry/api/x"

# The same listener with its access log on (a line per request to a file).
logged_port=$(free_port)
logged=$(GANTRY_LB_ACCESS_LOG="$work/access.log" start_listening logged target/release/examples/lb "127.0.0.1:$logged_port" "$backend")
wait_for_ok "http://$logged$path"

# Prints "REQUESTS_PER_SECOND P99 NON_2XX ERRORS" for one wrk run.
measure() {
    local url=$1 out
    # A short warm-up fills both proxies' upstream pools first.
    wrk -t"$threads" -c"$connections" -d2s "$url" >/dev/null
    out=$(wrk -t"$threads" -c"$connections" -d"$duration" --latency "$url")
    echo "$out" >>"$work/wrk.log"
    local rps p99 non2xx errors
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
    errors=$(awk '/Socket errors:/ {print $0}' <<<"$out")
    echo "$rps ${p99:-?} ${non2xx:-0} ${errors:-none}"
}

printf 'wrk -t%s -c%s -d%s --latency %s on %s cores\n' "$threads" "$connections" "$duration" "$path" "$(nproc)"
for target in nginx gantry gantry+log; do
    case $target in
        nginx) url="http://127.0.0.1:$nginx_port$path" ;;
        gantry) url="http://$gantry$path" ;;
        *) url="http://$logged$path" ;;
    esac
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    read -r rps p99 non2xx errors <<<"$(measure "$url")"
    printf '%-10s %10s req/s   p99 %8s   non-2xx %s   errors: %s   (load before: %s)\n' \
        "$target" "$rps" "$p99" "$non2xx" "$errors" "$load"
done
