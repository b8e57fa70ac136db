#!/usr/bin/env python3
"""Leader failover after `kill -9` (issue 14): two `gantry server`s on one
PostgreSQL database, the leader running an execution; the leader is killed
and the time is measured until the standby, now leading, has started the
first action of a new run (`gantry run` is retried against it until it
answers). Prints the distribution over TRIALS trials; target < 5 s.

What the time is made of: the lease running out (--lease-ms, default
3000 ms, by the database's clock), the standby's next try (every third of
the lease), opening the store (replay, recovery of the interrupted
execution), and the run's start.

Usage: GANTRY_BENCH_POSTGRES=$(scripts/postgres) bench/failover.py [path/to/gantry] [trials]
"""
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GANTRY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/gantry")
TRIALS = int(sys.argv[2]) if len(sys.argv) > 2 else 20
KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
LONG = """version: 1
name: long
stages:
  - name: Work
    actions:
      - {name: slow, type: shell, commands: ["sleep 60"]}
"""
QUICK = """version: 1
name: quick
stages:
  - name: Work
    actions:
      - {name: a, type: shell, commands: ["true"]}
"""


def ms(ts):
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000


def server(tmp, name, url):
    data = os.path.join(tmp, name)
    env = dict(os.environ, GANTRY_MASTER_KEY=KEY)
    proc = subprocess.Popen([GANTRY, "--data-dir", data, "server", "--listen", "127.0.0.1:0",
                             "--registry-listen", "127.0.0.1:0", "--database", url,
                             "--blob-dir", os.path.join(tmp, "blobs")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, data


def gantry(data, *args):
    env = dict(os.environ, GANTRY_MASTER_KEY=KEY)
    return subprocess.run([GANTRY, "--data-dir", data, *args], env=env, capture_output=True, text=True)


def wait_for(path, limit=60):
    deadline = time.time() + limit
    while not os.path.exists(path):
        if time.time() > deadline:
            sys.exit(f"{path} never appeared")
        time.sleep(0.02)


def main():
    base = os.environ.get("GANTRY_BENCH_POSTGRES")
    if not base:
        sys.exit("set GANTRY_BENCH_POSTGRES to a PostgreSQL server's URL (scripts/postgres prints one)")
    name = f"gantry_failover_{os.getpid()}"
    subprocess.run(["psql", base, "-qc", f"CREATE DATABASE {name}"], check=True)
    url = base.rsplit("/", 1)[0] + "/" + name
    tmp = tempfile.mkdtemp(prefix="gantry-failover-")
    long_file, quick_file = os.path.join(tmp, "long.yaml"), os.path.join(tmp, "quick.yaml")
    with open(long_file, "w") as f:
        f.write(LONG)
    with open(quick_file, "w") as f:
        f.write(QUICK)
    times = []
    for trial in range(TRIALS):
        leader, a = server(tmp, f"a{trial}", url)
        wait_for(os.path.join(a, "server.json"))
        standby, b = server(tmp, f"b{trial}", url)
        time.sleep(0.5)
        out = gantry(a, "run", "-f", long_file, "--no-follow")
        if out.returncode != 0:
            sys.exit(f"run on the leader failed: {out.stderr}")
        time.sleep(0.3)
        t0 = time.time() * 1000
        leader.send_signal(signal.SIGKILL)
        leader.wait()
        wait_for(os.path.join(b, "server.json"))
        while True:
            out = gantry(b, "run", "-f", quick_file, "--no-follow")
            if out.returncode == 0:
                break
            time.sleep(0.02)
        execution_id = out.stdout.strip()
        while True:
            view = json.loads(gantry(b, "status", execution_id, "--json").stdout)
            started = view["stages"][0]["actions"][0].get("started_at")
            if started:
                break
            time.sleep(0.02)
        times.append(ms(started) - t0)
        print(f"trial {trial + 1}: {times[-1]:.0f} ms")
        standby.send_signal(signal.SIGTERM)
        standby.wait()
    times.sort()
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    print(f"failover, kill -9 of the leader -> the new leader starts an action: "
          f"min {times[0]:.0f} ms, median {statistics.median(times):.0f} ms, p95 {p95:.0f} ms, "
          f"max {times[-1]:.0f} ms over {len(times)} trials (target < 5000 ms)")


if __name__ == "__main__":
    main()
