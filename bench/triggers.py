#!/usr/bin/env python3
"""Triggers (issue 11), measured against a `gantry server` started here.

1. Webhook received -> first action started: a commit is pushed to a local
   bare repository (file:// URL, so gantry fetches it into its mirror), a
   signed generic webhook is posted, and the delay from sending it to the
   source action's start (the server's own timestamp) is recorded. Also the
   time until the 202 answer. Target: p50 under 200 ms.
2. Polling: 100 repositories, each the source of a registered pipeline with
   `poll: 10s` and nothing pushed, for a while; the server's CPU time (its
   own and its git children's, from /proc) over the wall time, as a share
   of one core. Target: under 2 %. Measured twice: repositories on this
   machine (file://), and the same served by `git daemon` (git://, as a
   remote forge would be; the daemon's CPU is the forge's, not counted).

Prints figures, not pass/fail.

Usage: bench/triggers.py [path/to/gantry] [--pushes N] [--poll-seconds S] [--no-webhooks]
       (default: target/release/gantry, 30 pushes, 60 s)
"""
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
GANTRY = ARGS[0] if ARGS else os.path.join(ROOT, "target/release/gantry")
SECRET = "bench secret"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def option(name, default):
    if name in sys.argv:
        return int(sys.argv[sys.argv.index(name) + 1])
    return default


PUSHES = option("--pushes", 30)
POLL_SECONDS = option("--poll-seconds", 60)
REPOSITORIES = 100


def ms(ts):
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000


def git(cwd, *args):
    env = dict(os.environ, GIT_AUTHOR_NAME="Bench", GIT_AUTHOR_EMAIL="bench@example.com",
               GIT_COMMITTER_NAME="Bench", GIT_COMMITTER_EMAIL="bench@example.com")
    out = subprocess.run(["git", "-C", cwd, "-c", "commit.gpgsign=false", *args],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"git {args} failed: {out.stderr}")
    return out.stdout.strip()


def repository(tmp, name):
    """A bare repository with one commit on main, and a clone to push from."""
    origin = os.path.join(tmp, f"{name}.git")
    work = os.path.join(tmp, f"{name}-work")
    os.makedirs(origin)
    git(origin, "init", "-q", "--bare", "-b", "main")
    os.makedirs(work)
    git(work, "init", "-q", "-b", "main")
    git(work, "remote", "add", "origin", origin)
    with open(os.path.join(work, "file.txt"), "w") as f:
        f.write("0\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "first")
    git(work, "push", "-q", "origin", "main")
    return origin, work


def pipeline(name, origin, trigger, url=None):
    url = url or f"file://{origin}"
    return f"""version: 1
name: {name}
stages:
  - name: Source
    actions:
      - name: checkout
        type: source
        repository: {url}
        branch: main
        outputs: [Src]
  - name: Build
    actions:
      - {{name: show, type: shell, inputs: [Src], commands: ['true']}}
triggers:
  - git:
      source: checkout
{trigger}"""


class Server:
    def __init__(self, data):
        self.data = data
        self.process = subprocess.Popen(
            [GANTRY, "--data-dir", data, "server", "--listen", "127.0.0.1:0",
             "--registry-listen", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        info = os.path.join(data, "server.json")
        for _ in range(200):
            if os.path.exists(info):
                break
            time.sleep(0.05)
        time.sleep(0.5)
        with open(info) as f:
            self.api = json.load(f)["api"]
        with open(os.path.join(data, "admin.token")) as f:
            self.token = f.read().strip()

    def gantry(self, *args):
        out = subprocess.run([GANTRY, "--data-dir", self.data, *args], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"gantry {args} failed: {out.stderr}")
        return out.stdout

    def get(self, path):
        request = urllib.request.Request(self.api + path,
                                         headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request) as response:
            return json.load(response)

    def hook(self, pipeline, body, delivery):
        signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(
            f"{self.api}/hooks/{pipeline}", data=body, method="POST",
            headers={"Content-Type": "application/json", "X-Gantry-Event": "push",
                     "X-Gantry-Delivery": delivery,
                     "X-Gantry-Signature-256": f"sha256={signature}"})
        with urllib.request.urlopen(request) as response:
            return response.status

    def cpu_seconds(self):
        """The server's CPU time, its own and its waited-for children's."""
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # utime, stime, cutime, cstime are fields 14-17 (1-based), here 11-14.
        return sum(int(x) for x in fields[11:15]) / CLK_TCK

    def stop(self):
        self.process.terminate()
        self.process.wait()


def webhook_latency(tmp):
    data = os.path.join(tmp, "hook-data")
    server = Server(data)
    try:
        server.gantry("param", "put", "/bench/hook", SECRET, "--type", "SecureString")
        origin, work = repository(tmp, "hooked")
        file = os.path.join(tmp, "hooked.yaml")
        with open(file, "w") as f:
            f.write(pipeline("hooked", origin,
                             "      webhook: {provider: generic, secret: /bench/hook}\n"))
        server.gantry("apply", "-f", file)
        latencies, answers = [], []
        before = git(work, "rev-parse", "HEAD")
        for i in range(PUSHES):
            with open(os.path.join(work, "file.txt"), "w") as f:
                f.write(f"{i + 1}\n")
            git(work, "commit", "-q", "-am", f"change {i + 1}")
            git(work, "push", "-q", "origin", "main")
            after = git(work, "rev-parse", "HEAD")
            body = json.dumps({"ref": "refs/heads/main", "before": before, "after": after}).encode()
            known = {e["id"] for e in server.get("/api/v1/executions?pipeline=hooked")}
            sent = time.time() * 1000
            status = server.hook("hooked", body, f"bench-{i}")
            answers.append(time.time() * 1000 - sent)
            if status != 202:
                sys.exit(f"webhook answered {status}")
            # Wait for the execution to end, so that the next push does not
            # supersede it.
            while True:
                runs = server.get("/api/v1/executions?pipeline=hooked")
                new = [e for e in runs if e["id"] not in known]
                if new and new[0]["status"] in ("Succeeded", "Failed", "Stopped", "Superseded"):
                    first = new[0]["stages"][0]["actions"][0]["started_at"]
                    latencies.append(ms(first) - sent)
                    break
                time.sleep(0.01)
            before = after
        latencies.sort()
        p50 = statistics.median(latencies)
        p90 = latencies[int(len(latencies) * 0.9) - 1]
        print(f"webhook received -> first action started ({PUSHES} pushes, local bare repo via file://): "
              f"p50 {p50:.1f} ms, p90 {p90:.1f} ms, max {latencies[-1]:.1f} ms (target p50 < 200)")
        print(f"webhook answered (202): median {statistics.median(answers):.1f} ms, "
              f"max {max(answers):.1f} ms (target < 100)")
    finally:
        server.stop()


def polling_cpu(tmp, remote):
    kind = "git-daemon" if remote else "local"
    base = os.path.join(tmp, f"poll-{kind}")
    os.makedirs(base)
    daemon = None
    if remote:
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        daemon = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1",
             f"--port={port}", f"--base-path={base}", base],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data = os.path.join(base, "data")
    server = Server(data)
    try:
        for i in range(REPOSITORIES):
            origin, _ = repository(base, f"polled{i}")
            url = f"git://127.0.0.1:{port}/polled{i}.git" if remote else None
            file = os.path.join(base, f"polled{i}.yaml")
            with open(file, "w") as f:
                f.write(pipeline(f"polled{i}", origin, "      poll: 10s\n", url))
            server.gantry("apply", "-f", file)
        # Let every poller take its first look (within one interval).
        time.sleep(12)
        cpu0, wall0 = server.cpu_seconds(), time.time()
        time.sleep(POLL_SECONDS)
        cpu1, wall1 = server.cpu_seconds(), time.time()
        polls = REPOSITORIES * (wall1 - wall0) / 10
        share = 100 * (cpu1 - cpu0) / (wall1 - wall0)
        print(f"polling {REPOSITORIES} {kind} repositories every 10 s for {wall1 - wall0:.0f} s "
              f"(~{polls:.0f} polls): server + git CPU {cpu1 - cpu0:.2f} s = {share:.2f} % of one core "
              f"({1000 * (cpu1 - cpu0) / polls:.2f} ms per poll) (target < 2 %)")
        states = server.get("/api/v1/triggers")
        failing = [t for t in states if t["last_error"]]
        print(f"triggers listed: {len(states)}, with an error: {len(failing)}")
    finally:
        server.stop()
        if daemon:
            daemon.terminate()
            daemon.wait()


def main():
    tmp = tempfile.mkdtemp(prefix="gantry-bench-triggers-")
    if "--no-webhooks" not in sys.argv:
        webhook_latency(tmp)
    polling_cpu(tmp, remote=False)
    polling_cpu(tmp, remote=True)


if __name__ == "__main__":
    main()
