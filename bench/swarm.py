#!/usr/bin/env python3
"""Rolling deploys on Docker Swarm: gantry's swarm runtime vs Swarm alone.

(1) gantry: a pipeline builds a busybox-httpd image into the embedded
registry and deploys a 2-replica service on the `swarm` runtime behind
gantry's load balancer. wrk drives steady load through the load balancer
while a second run deploys v2 (rolling, max_percent 200); prints wrk's
failed requests (non-2xx and socket errors) and the deploy action's time to
healthy. (2) Swarm alone: the same image pair (built with `docker build`)
as `docker service create --replicas 2 --update-order start-first` with a
`--health-cmd` of the same interval, published in host mode on dynamic
ports (one node: the ingress mesh needs IPVS, and two tasks cannot share
one host port), then `docker service update --image v2` until it has
converged (the CLI waits); timed with Swarm's defaults (parallelism 1,
monitor 5 s) and with parallelism 2 (both new tasks at once, as gantry).

Needs an initialised swarm (`docker swarm init --advertise-addr 127.0.0.1`),
wrk and busybox-static. Usage: bench/swarm.py [path/to/gantry]
(default: target/release/gantry).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GANTRY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/gantry")
PORT = int(os.environ.get("PORT", "18191"))
HEALTH = "interval: 1s, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2, grace_period: 0s"
SERVE = "exec /app/busybox httpd -f -p $PORT -h www"


def sh(*args, check=True, **kw):
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=300, **kw)


def pipeline():
    return f"""version: 1
name: web
environments:
  bench:
    runtime: swarm
    load_balancer: {{listen: "127.0.0.1:{PORT}", rules: [{{priority: 10, path: "/*", service: web}}]}}
services:
  web:
    replicas: 2
    health_check: {{path: /health, {HEALTH}}}
    deployment: {{min_healthy_percent: 100, max_percent: 200, drain: 1s, circuit_breaker: {{threshold: 2, rollback: true}}}}
stages:
  - name: Source
    actions: [{{name: checkout, type: source, outputs: [Src]}}]
  - name: Build
    actions:
      - {{name: web, type: image, inputs: [Src], context: site, repository: bench/web, workdir: /app,
         entrypoint: ["/app/busybox", "sh", "-c", "{SERVE}"], outputs: [Img]}}
  - name: Deploy
    actions: [{{name: web, type: deploy, environment: bench, service: web, inputs: [Img]}}]
"""


def deploy_seconds(run_json):
    import json
    from datetime import datetime
    e = json.loads(run_json.strip().splitlines()[-1])
    a = e["stages"][2]["actions"][0]
    t = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    return a["status"], t(a["finished_at"]) - t(a["started_at"])


def wrk_failures(text):
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    total = re.search(r"(\d+) requests in", text)
    failed = int(non2xx.group(1)) if non2xx else 0
    if sock:
        failed += sum(int(x) for x in sock.groups())
    return int(total.group(1)) if total else 0, failed


def gantry_rolling(work):
    repo = os.path.join(work, "repo")
    data = os.path.join(work, "data")
    os.makedirs(os.path.join(repo, "site/www"))
    shutil.copy("/bin/busybox", os.path.join(repo, "site/busybox"))
    with open(os.path.join(repo, "site/www/health"), "w") as f:
        f.write("ok\n")
    with open(os.path.join(repo, "site/www/index.html"), "w") as f:
        f.write("v1\n")
    with open(os.path.join(repo, "gantry.yaml"), "w") as f:
        f.write(pipeline())
    git = ["git", "-C", repo, "-c", "user.name=b", "-c", "user.email=b@b"]
    sh("git", "init", "-q", "-b", "main", repo)
    sh(*git, "add", "-A")
    sh(*git, "commit", "-qm", "v1")
    run = lambda: subprocess.run([GANTRY, "--data-dir", data, "run", "--json"], cwd=repo,
                                 capture_output=True, text=True)
    try:
        first = run()
        if first.returncode != 0:
            sys.exit(f"first gantry run failed: {first.stderr}\n{first.stdout}")
        status, secs = deploy_seconds(first.stdout)
        print(f"gantry: first deploy of 2 replicas {status} in {secs:.2f}s")
        with open(os.path.join(repo, "site/www/index.html"), "w") as f:
            f.write("v2\n")
        sh(*git, "commit", "-qam", "v2")
        wrk = subprocess.Popen(["wrk", "-t2", "-c16", "-d16s", f"http://127.0.0.1:{PORT}/"],
                               stdout=subprocess.PIPE, text=True)
        time.sleep(2)
        second = run()
        out, _ = wrk.communicate()
        status, secs = deploy_seconds(second.stdout)
        total, failed = wrk_failures(out)
        print(f"gantry: rolling deploy v1 -> v2 {status}: healthy and switched in {secs:.2f}s; "
              f"wrk {total} requests, {failed} failed")
        return secs, failed
    finally:
        subprocess.run([GANTRY, "--data-dir", data, "shutdown", "--stop-services"],
                       capture_output=True)


def swarm_alone(work, parallelism):
    ctx = os.path.join(work, "ctx")
    os.makedirs(os.path.join(ctx, "www"), exist_ok=True)
    shutil.copy("/bin/busybox", os.path.join(ctx, "busybox"))
    with open(os.path.join(ctx, "www/health"), "w") as f:
        f.write("ok\n")
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        # /bin/sh too: Swarm runs a --health-cmd with `/bin/sh -c`.
        f.write('FROM scratch\nCOPY busybox /app/busybox\nCOPY busybox /bin/sh\nCOPY www /app/www\nWORKDIR /app\n'
                'ENV PORT=8080\nENTRYPOINT ["/app/busybox", "sh", "-c", "' + SERVE + '"]\n')
    for tag in ("v1", "v2"):
        with open(os.path.join(ctx, "www/index.html"), "w") as f:
            f.write(tag + "\n")
        sh("docker", "build", "-q", "-t", f"gantry-bench/swarm-web:{tag}", ctx,
           env={**os.environ, "DOCKER_BUILDKIT": "0"})
    name = f"gantry-bench-swarm-{os.getpid()}-{parallelism}"
    health = ["--health-cmd", "/app/busybox wget -q -O /dev/null http://127.0.0.1:8080/health",
              "--health-interval", "1s", "--health-timeout", "500ms", "--health-retries", "2",
              "--health-start-period", "0s"]
    try:
        sh("docker", "service", "create", "--quiet", "--name", name, "--replicas", "2",
           "--publish", "mode=host,target=8080", "--update-order", "start-first",
           "--update-parallelism", str(parallelism), "--no-resolve-image", *health,
           "gantry-bench/swarm-web:v1")
        began = time.monotonic()
        sh("docker", "service", "update", "--quiet", "--no-resolve-image", "--image",
           "gantry-bench/swarm-web:v2", name)
        secs = time.monotonic() - began
        print(f"swarm alone (start-first, parallelism {parallelism}, monitor 5s default): "
              f"update converged in {secs:.2f}s")
        return secs
    finally:
        sh("docker", "service", "rm", name, check=False)


def main():
    state = sh("docker", "info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
    if state != "active":
        sys.exit(f"the engine is not in a swarm ({state}): docker swarm init --advertise-addr 127.0.0.1")
    work = tempfile.mkdtemp(prefix="gantry-bench-swarm-")
    try:
        g, failed = gantry_rolling(work)
        s1 = swarm_alone(work, 1)
        s2 = swarm_alone(work, 2)
        print(f"\nsummary: gantry {g:.2f}s with {failed} failed requests; "
              f"Swarm alone {s1:.2f}s (parallelism 1), {s2:.2f}s (parallelism 2)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
