#!/usr/bin/env python3
"""Orchestration overhead of gantry's pipeline engine, measured end to end.

Runs (a) one stage of 100 parallel `true` shell actions and (b) 50 sequential
stages of one `true` action, against a `gantry server` started here, and
prints per-action overhead = (execution wall time - the actions' own run
time) / actions, where "own run time" is what `sh -c true` costs on this
machine (measured in the same run). Also prints the server's peak resident
memory and the time from `gantry run` to the first action's start, with a
running server and with the embedded one.

With GANTRY_BENCH_POSTGRES set to the URL of a PostgreSQL server's
maintenance database (scripts/postgres prints one; start it with
GANTRY_TEST_POSTGRES_FSYNC=on for durable commits, as SQLite's are), the
running-server measurements are made twice, with the store in the data
dir's SQLite and in a fresh PostgreSQL database (`gantry server --database`),
and their ratio is printed (issue 14's target: within 2x).

Usage: bench/orchestration.py [path/to/gantry]   (default: target/release/gantry)
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GANTRY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/gantry")
RUNS = 3


def ms(ts):
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000


def pipeline(name, stages):
    lines = ["version: 1", f"name: {name}", "stages:"]
    for s, actions in enumerate(stages):
        lines.append(f"  - name: S{s}")
        lines.append("    actions:")
        for a in range(actions):
            lines.append(f"      - {{name: a{a}, type: shell, commands: ['true']}}")
    return "\n".join(lines) + "\n"


def bare_true_ms(n=200):
    start = time.perf_counter()
    for _ in range(n):
        subprocess.run(["sh", "-c", "true"], check=True)
    return (time.perf_counter() - start) * 1000 / n


def run(file, data_dir):
    t0 = time.time() * 1000
    out = subprocess.run([GANTRY, "--data-dir", data_dir, "run", "-f", file, "--json"],
                         capture_output=True, text=True)
    t1 = time.time() * 1000
    if out.returncode != 0:
        sys.exit(f"gantry run failed: {out.stderr}\n{out.stdout}")
    execution = json.loads(out.stdout.strip().splitlines()[-1])
    actions = [a for s in execution["stages"] for a in s["actions"]]
    first_start = min(ms(a["started_at"]) for a in actions)
    wall = ms(execution["finished_at"]) - ms(execution["started_at"])
    return {"cli_wall": t1 - t0, "wall": wall, "first": first_start - t0, "n": len(actions)}


def vm(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return 0.0


def fresh_postgres_database(server_url):
    name = f"gantry_bench_{os.getpid()}_{int(time.time() * 1000)}"
    subprocess.run(["psql", server_url, "-qc", f"CREATE DATABASE {name}"], check=True)
    return server_url.rsplit("/", 1)[0] + "/" + name


def measure(tmp, backend, par, seq, true_ms):
    """Overhead per action (median ms) of each pipeline on a running server
    whose store is `backend`."""
    data = os.path.join(tmp, f"data-{backend}")
    args = [GANTRY, "--data-dir", data, "server", "--listen", "127.0.0.1:0", "--registry-listen", "127.0.0.1:0"]
    if backend == "postgres":
        args += ["--database", fresh_postgres_database(os.environ["GANTRY_BENCH_POSTGRES"])]
    print(f"-- store: {backend}")
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        if os.path.exists(os.path.join(data, "server.json")):
            break
        time.sleep(0.05)
    time.sleep(1.0)
    idle_rss = vm(server.pid, 'VmRSS')
    overheads = {}
    try:
        results = {}
        for label, file in (("parallel 100", par), ("sequential 50", seq)):
            rs = [run(file, data) for _ in range(RUNS)]
            results[label] = rs
            n = rs[0]["n"]
            # Parallel: the actions' own time is one `true` (they overlap);
            # sequential: n of them back to back.
            own = true_ms if label.startswith("parallel") else true_ms * n
            per_action = statistics.median((r["wall"] - own) / n for r in rs)
            overheads[label] = per_action
            walls = ", ".join(f"{r['wall']:.0f}" for r in rs)
            target = "< 1" if label.startswith("parallel") else "< 2"
            print(f"{label}: execution wall {walls} ms; overhead per action (median of {RUNS}): {per_action:.2f} ms (target {target})")
        first = statistics.median(r["first"] for rs in results.values() for r in rs)
        print(f"gantry run -> first action start, running server: {first:.0f} ms (median)")
        print(f"server resident memory: idle {idle_rss:.1f} MB (target < 30), peak {vm(server.pid, 'VmHWM'):.1f} MB (target < 50), now {vm(server.pid, 'VmRSS'):.1f} MB")
    finally:
        server.terminate()
        server.wait()
    return overheads


def main():
    tmp = tempfile.mkdtemp(prefix="gantry-bench-")
    par = os.path.join(tmp, "parallel.yaml")
    seq = os.path.join(tmp, "sequential.yaml")
    with open(par, "w") as f:
        f.write(pipeline("parallel", [100]))
    with open(seq, "w") as f:
        f.write(pipeline("sequential", [1] * 50))
    # For scale (issue 17): Buildbot needs about 108 ms per sequential step
    # and 350 ms per parallel build.
    print("for scale: Buildbot ~108 ms per sequential step, ~350 ms per parallel build")
    true_ms = bare_true_ms()
    print(f"sh -c true on this machine: {true_ms:.2f} ms")

    overheads = {}
    for backend in ["sqlite"] + (["postgres"] if os.environ.get("GANTRY_BENCH_POSTGRES") else []):
        overheads[backend] = measure(tmp, backend, par, seq, true_ms)
    if "postgres" in overheads:
        for label in overheads["sqlite"]:
            ratio = overheads["postgres"][label] / overheads["sqlite"][label]
            print(f"{label}: PostgreSQL / SQLite overhead per action = {ratio:.2f}x (target within 2x)")

    embedded = [run(seq, os.path.join(tmp, f"embedded{i}"))["first"] for i in range(RUNS)]
    print(f"gantry run -> first action start, embedded server (fresh data dir): {statistics.median(embedded):.0f} ms (median)")


if __name__ == "__main__":
    main()
