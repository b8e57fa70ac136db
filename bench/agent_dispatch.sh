#!/bin/sh
# Build agents: the time from an action becoming runnable (its start) to
# the first line of its build on an idle agent, over 30 runs, on loopback
# (target: under 50 ms). The server and the agent run in one process,
# talking HTTP; the agent's build is a real shell.
set -eu
cd "$(dirname "$0")/.."
exec cargo test --release --locked -p gantry-agent --test agents dispatch_latency -- --ignored --nocapture
