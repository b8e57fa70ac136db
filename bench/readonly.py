#!/usr/bin/env python3
"""Read-only commands with no server running: the time from starting
`gantry` to its output, which includes starting an embedded server on the
data dir (issue target: under 10 ms). Uses the release build, or the
binary given as the first argument."""
import os
import shutil
import sys
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if len(sys.argv) > 1:
    GANTRY = sys.argv[1]
else:
    GANTRY = os.path.join(ROOT, "target", "release", "gantry")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "gantry"], cwd=ROOT, check=True)
data = tempfile.mkdtemp(prefix="gantry-readonly-")
try:
    # A data dir that has seen a server once (database, keys, admin token).
    subprocess.run([GANTRY, "--data-dir", data, "executions"], capture_output=True, check=True)
    for command in (["executions"], ["status", "nope"], ["logs", "nope"], ["param", "list"], ["env", "list"]):
        times = []
        for _ in range(21):
            start = time.perf_counter()
            subprocess.run([GANTRY, "--data-dir", data] + command, capture_output=True)
            times.append((time.perf_counter() - start) * 1000)
        print(f"gantry {' '.join(command):<14} median {statistics.median(times):5.1f} ms, min {min(times):5.1f} ms (21 runs, no server)")
finally:
    shutil.rmtree(data, ignore_errors=True)
