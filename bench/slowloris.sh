#!/usr/bin/env bash
# The load balancer under a slow-header (slowloris) flood: wrk's request
# rate through gantry's proxy (crates/proxy/examples/lb.rs, default
# ListenerConfig) in front of bench/proxy.sh's backend, first alone, then
# while crates/proxy/examples/slowloris.rs holds FLOOD_CONNECTIONS
# connections that never finish their request head (reopened as the proxy
# closes them, which its 10 s header-read timeout does).
# Prints both rates and their ratio; the target is a ratio above 0.80.
# Everything runs on 127.0.0.1 and stops by itself.
#
# Needs wrk and python3 (apt-get install -y wrk python3).
# Settings: WRK_THREADS (2), WRK_CONNECTIONS (64), WRK_DURATION (10s),
# FLOOD_CONNECTIONS (5000), FLOOD_INTERVAL_MS (3000, between header lines).
set -euo pipefail
cd "$(dirname "$0")/.."

threads=${WRK_THREADS:-2}
connections=${WRK_CONNECTIONS:-64}
duration=${WRK_DURATION:-10s}
flood=${FLOOD_CONNECTIONS:-5000}
interval=${FLOOD_INTERVAL_MS:-3000}
path=/web/index

for tool in wrk python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "bench/slowloris.sh: $tool is missing (apt-get install -y wrk python3)" >&2
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

# Starts a program that prints "listening on ADDR" (in this shell, so the
# cleanup knows its pid) and leaves ADDR in $work/NAME.addr.
start_listening() {
    local name=$1
    shift
    "$@" >"$work/$name.out" 2>"$work/$name.err" &
    pids+=($!)
    for _ in $(seq 1 200); do
        if grep -q '^listening on ' "$work/$name.out" 2>/dev/null; then
            sed -n 's/^listening on //p' "$work/$name.out" >"$work/$name.addr"
            return
        fi
        sleep 0.05
    done
    echo "bench/slowloris.sh: $name did not start:" >&2
    cat "$work/$name.err" >&2
    exit 1
}

# CPU seconds a process has used so far.
cpu() {
    awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"
}

start_listening backend target/release/examples/backend 127.0.0.1:0
backend=$(cat "$work/backend.addr")
lb_port=$(free_port)
start_listening gantry target/release/examples/lb "127.0.0.1:$lb_port" "$backend"
lb_pid=${pids[-1]}
lb=$(cat "$work/gantry.addr")
url="http://$lb$path"

# Prints "REQUESTS_PER_SECOND NON_2XX ERRORS" for one wrk run.
measure() {
    local out rps non2xx errors
    out=$(wrk -t"$threads" -c"$connections" -d"$duration" "$url")
    echo "$out" >>"$work/wrk.log"
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
    errors=$(awk '/Socket errors:/ {$1=$2=""; print $0}' <<<"$out")
    echo "$rps ${non2xx:-0} ${errors:-none}"
}

printf 'wrk -t%s -c%s -d%s %s on %s cores; flood: %s slow-header connections\n' \
    "$threads" "$connections" "$duration" "$path" "$(nproc)" "$flood"
wrk -t"$threads" -c"$connections" -d2s "$url" >/dev/null # warm-up
lb_cpu=$(cpu "$lb_pid")
read -r base base_non2xx base_errors <<<"$(measure)"
lb_cpu=$(python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.1f}")' "$lb_cpu" "$(cpu "$lb_pid")")
printf 'without flood %10s req/s   non-2xx %s   errors: %s\n' "$base" "$base_non2xx" "$base_errors"
printf '  CPU seconds during that run: load balancer %s\n' "$lb_cpu"

secs=${duration%s}
target/release/examples/slowloris "$lb_port" "$flood" "$((secs + 25))" "$interval" >"$work/flood.out" 2>"$work/flood.err" &
flood_pid=$!
pids+=("$flood_pid")
for _ in $(seq 1 300); do
    grep -q '^ready' "$work/flood.out" 2>/dev/null && break
    sleep 0.1
done
if ! grep -q '^ready' "$work/flood.out"; then
    echo "bench/slowloris.sh: the flood did not get its connections open:" >&2
    cat "$work/flood.out" "$work/flood.err" >&2
    exit 1
fi
# Let the first round of header timeouts (10 s) and reopenings begin.
sleep 12
lb_cpu=$(cpu "$lb_pid")
flood_cpu=$(cpu "$flood_pid")
read -r flooded flood_non2xx flood_errors <<<"$(measure)"
lb_cpu=$(python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.1f}")' "$lb_cpu" "$(cpu "$lb_pid")")
flood_cpu=$(python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.1f}")' "$flood_cpu" "$(cpu "$flood_pid")")
printf 'with flood    %10s req/s   non-2xx %s   errors: %s\n' "$flooded" "$flood_non2xx" "$flood_errors"
printf '  CPU seconds during that run: load balancer %s, flood %s\n' "$lb_cpu" "$flood_cpu"
wait "$flood_pid" || true
sed -n 's/^done: /flood: /p' "$work/flood.out"
python3 -c 'import sys; b, f = float(sys.argv[1]), float(sys.argv[2]); print(f"ratio {f / b:.2f} (target > 0.80)")' "$base" "$flooded"
