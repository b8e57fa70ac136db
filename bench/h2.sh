#!/usr/bin/env bash
# HTTPS and HTTP/2 figures: gantry's load balancer (crates/proxy, an https
# listener with ALPN h2 and http/1.1) against nginx with `http2` on, both
# terminating TLS with the same certificate (ECDSA P-256, made here by
# openssl) in front of the same HTTP/1.1 backend
# (crates/proxy/examples/backend.rs, `200 ok`), with the same two path
# rules as bench/proxy.sh and keep-alive connections to the backend.
#
# Three runs against each, one after the other:
#   h2load   HTTP/2, H2_CLIENTS connections x H2_STREAMS concurrent streams
#            for DURATION: requests/s, failures, and the p99 of the
#            per-request times h2load logs (--log-file);
#   wrk      HTTP/1.1 over TLS with keep-alive: requests/s and p99;
#   wrk      with `Connection: close`, so every request is a new TCP
#            connection and a full TLS 1.3 handshake: handshakes/s.
#
# Needs Debian's nginx, wrk, nghttp2-client (h2load), openssl, python3.
# Settings: DURATION (10s), WRK_THREADS (2), WRK_CONNECTIONS (64),
# H2_CLIENTS (16), H2_STREAMS (10), BENCH_PATH (/web/index).
# Binaries come from ${CARGO_TARGET_DIR:-target}/release/examples.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${DURATION:-10s}
threads=${WRK_THREADS:-2}
connections=${WRK_CONNECTIONS:-64}
h2_clients=${H2_CLIENTS:-16}
h2_streams=${H2_STREAMS:-10}
path=${BENCH_PATH:-/web/index}
bin=${CARGO_TARGET_DIR:-target}/release/examples

for tool in nginx wrk h2load openssl python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "bench/h2.sh: $tool is missing (apt-get install -y nginx wrk nghttp2-client openssl)" >&2
        exit 1
    fi
done

cargo build --release -q -p gantry-proxy --examples

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Starts a program that prints "listening on ADDR" and sets the variable
# named NAME to ADDR. Runs in this shell (not in `$(...)`), so the program's
# pid reaches `pids` and the cleanup stops it.
start_listening() {
    local name=$1
    shift
    "$@" >"$work/$name.out" 2>"$work/$name.err" &
    pids+=($!)
    for _ in $(seq 1 200); do
        if grep -q '^listening on ' "$work/$name.out" 2>/dev/null; then
            printf -v "$name" '%s' "$(sed -n 's/^listening on //p' "$work/$name.out")"
            return
        fi
        sleep 0.05
    done
    echo "bench/h2.sh: $name did not start:" >&2
    cat "$work/$name.err" >&2
    exit 1
}

wait_for_ok() {
    local url=$1
    for _ in $(seq 1 100); do
        if [ "$(curl -sk --max-time 1 "$url" 2>/dev/null)" = ok ]; then
            return
        fi
        sleep 0.05
    done
    echo "bench/h2.sh: $url does not answer 200 ok" >&2
    exit 1
}

# One certificate for both, valid for 127.0.0.1 and localhost.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$work/key.pem" -out "$work/cert.pem" -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null

start_listening backend "$bin/backend" 127.0.0.1:0

nginx_port=$(free_port)
mkdir -p "$work/nginx"
# nginx 1.22 (Debian 12) takes `http2` on the listen line; 1.25+ would
# also take `http2 on;`.
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
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    keepalive_requests 1000000;
    http2_max_requests 1000000;
    server {
        listen 127.0.0.1:$nginx_port ssl http2;
        location /api/ { proxy_pass http://api; }
        location / { proxy_pass http://web; }
    }
}
EOF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" 2>"$work/nginx.err" &
pids+=($!)
wait_for_ok "https://127.0.0.1:$nginx_port$path"

gantry_port=$(free_port)
start_listening gantry env GANTRY_LB_CERT="$work/cert.pem" GANTRY_LB_KEY="$work/key.pem" \
    "$bin/lb" "127.0.0.1:$gantry_port" "$backend"
wait_for_ok "https://$gantry$path"

seconds=${duration%s}

# Prints "REQUESTS_PER_SECOND P99 FAILED" for one h2load run.
h2() {
    local url=$1 out log=$work/h2load.log
    h2load -t"$threads" -c"$h2_clients" -m"$h2_streams" -D 2 "$url" >/dev/null
    rm -f "$log"
    out=$(h2load -t"$threads" -c"$h2_clients" -m"$h2_streams" -D "$seconds" --log-file="$log" "$url")
    echo "$out" >>"$work/h2load.out"
    local rps failed p99
    rps=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
    failed=$(sed -n 's/^requests: .* \([0-9]*\) failed, \([0-9]*\) errored.*/\1+\2/p' <<<"$out")
    # Column 3: microseconds from the request's start to its response's end.
    p99=$(cut -f3 "$log" | sort -n | awk '{v[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; printf "%.2fms", v[i]/1000}')
    echo "${rps:-?} ${p99:-?} ${failed:-?}"
}

# Prints "REQUESTS_PER_SECOND P99 NON_2XX ERRORS" for one wrk run.
wrk_run() {
    local url=$1 out
    shift
    wrk -t"$threads" -c"$connections" -d2s "$@" "$url" >/dev/null
    out=$(wrk -t"$threads" -c"$connections" -d"$duration" --latency "$@" "$url")
    echo "$out" >>"$work/wrk.log"
    local rps p99 non2xx errors
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
    errors=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4"/"$6"/"$8"/"$10}' <<<"$out")
    echo "$rps ${p99:-?} ${non2xx:-0} ${errors:-0/0/0/0}"
}

echo "$(nproc) cores; $duration per run; path $path; nginx $(nginx -v 2>&1 | sed 's/.*nginx\///')"
printf 'h2load -t%s -c%s -m%s (HTTP/2 over TLS)\n' "$threads" "$h2_clients" "$h2_streams"
for target in nginx gantry; do
    if [ "$target" = nginx ]; then url="https://127.0.0.1:$nginx_port$path"; else url="https://$gantry$path"; fi
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    read -r rps p99 failed <<<"$(h2 "$url")"
    printf '  %-7s %10s req/s   p99 %9s   failed+errored %s   (load before: %s)\n' \
        "$target" "$rps" "$p99" "$failed" "$load"
done
printf 'wrk -t%s -c%s --latency (HTTP/1.1 over TLS, keep-alive)\n' "$threads" "$connections"
for target in nginx gantry; do
    if [ "$target" = nginx ]; then url="https://127.0.0.1:$nginx_port$path"; else url="https://$gantry$path"; fi
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    read -r rps p99 non2xx errors <<<"$(wrk_run "$url")"
    printf '  %-7s %10s req/s   p99 %8s   non-2xx %s   errors c/r/w/t %s   (load before: %s)\n' \
        "$target" "$rps" "$p99" "$non2xx" "$errors" "$load"
done
printf 'wrk -t%s -c%s -H "Connection: close" (a new TLS 1.3 handshake per request)\n' "$threads" "$connections"
for target in nginx gantry; do
    if [ "$target" = nginx ]; then url="https://127.0.0.1:$nginx_port$path"; else url="https://$gantry$path"; fi
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    read -r rps p99 non2xx errors <<<"$(wrk_run "$url" -H 'Connection: close')"
    printf '  %-7s %10s handshakes/s   p99 %8s   non-2xx %s   errors c/r/w/t %s   (load before: %s)\n' \
        "$target" "$rps" "$p99" "$non2xx" "$errors" "$load"
done
