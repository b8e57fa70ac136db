#!/usr/bin/env python3
"""Progressive delivery, measured (issue 13). Starts a release gantry
server, builds busybox httpd images into its registry (v1, v2, and `bad`,
whose /cgi-bin/app answers 500 to about one request in five), applies four
environments with one 2-replica service each, and under steady wrk load
through each environment's load balancer prints:

1. canary 10% -> 50% -> 100% (steps with manual pauses, promoted by the
   CLI): requests failed over the whole shift, and at each step the share
   of responses from the new revision (counted by body) against its weight;
2. the `bad` revision as a canary (20%, analysis max_error_rate 1%, window
   10s, min_requests 50): seconds from the canary taking traffic to the
   rollback, against window + 2 s, and the client requests that failed;
3. blue/green with a test listener and termination_wait: green on the test
   listener before the switch, requests failed across the switch and the
   switch back (abort within termination_wait);
4. a rolling deploy with a 1 s health interval and healthy threshold 2:
   seconds until the service is healthy on the new revision.

Needs wrk (apt-get install wrk) and busybox-static.
Usage: bench/progressive.py [path/to/gantry]   (default: target/release/gantry)
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GANTRY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/gantry")

# Counts each response by its body: "two" is the new revision.
COUNT_LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init() new, old, other = 0, 0, 0 end
function response(status, headers, body)
  if status ~= 200 then other = other + 1
  elseif body:find("two") then new = new + 1
  elseif body:find("one") then old = old + 1
  else other = other + 1 end
end
function done()
  local n, o, x = 0, 0, 0
  for _, t in ipairs(threads) do n = n + t:get("new"); o = o + t:get("old"); x = x + t:get("other") end
  io.write(string.format("BODIES new=%d old=%d other=%d\\n", n, o, x))
end
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(*args, **kw):
    subprocess.run(args, check=True, **kw)


def site(path, body, failing):
    os.makedirs(os.path.join(path, "www/cgi-bin"))
    shutil.copy("/bin/busybox", os.path.join(path, "busybox"))
    with open(os.path.join(path, "www/health"), "w") as f:
        f.write("ok\n")
    with open(os.path.join(path, "www/index.html"), "w") as f:
        f.write(body + "\n")
    fail = "$(( $$ % 5 ))" if failing else "1"
    cgi = os.path.join(path, "www/cgi-bin/app")
    with open(cgi, "w") as f:
        f.write("#!/bin/sh\n"
                f"if [ {fail} -eq 0 ]; then\n"
                "  printf 'HTTP/1.0 500 Internal Server Error\\r\\nContent-Type: text/plain\\r\\n\\r\\nfail\\n'\n"
                "else\n"
                f"  printf 'HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\n{body}\\n'\n"
                "fi\n")
    os.chmod(cgi, 0o755)


def project(ports, test_port):
    env = lambda name, deployment: f"""  {name}:
    runtime: process
    load_balancer: {{listen: "127.0.0.1:{ports[name]}", rules: [{{priority: 10, path: "/*", service: web}}]}}
    services: {{web: {{deployment: {deployment}}}}}
"""
    entry = '["/app/busybox", "sh", "-c", "exec $GANTRY_ROOTFS/app/busybox httpd -f -p $PORT -h www"]'
    image = lambda tag: (f"      - {{name: {tag}, type: image, inputs: [Src], context: {tag}, repository: bench/site, tag: {tag}, workdir: /app,\n"
                         f"         entrypoint: {entry}, outputs: [Img{tag}]}}\n")
    return ("version: 1\nname: images\nenvironments:\n"
            + env("canary", "{strategy: steps, steps: [{weight: 10}, {pause: manual}, {weight: 50}, {pause: manual}, {weight: 100}], drain: 1s}")
            + env("bad", "{strategy: canary, canary: {percent: 20, interval: 1s}, analysis: {max_error_rate: 1%, min_requests: 50, window: 10s}, drain: 1s}")
            + env("bluegreen", f"{{strategy: blue_green, blue_green: {{test_listener: \"127.0.0.1:{test_port}\", shift_after: manual, termination_wait: 1m}}, drain: 1s}}")
            + env("rolling", "{strategy: rolling, min_healthy_percent: 100, max_percent: 200, drain: 1s}")
            + """services:
  web:
    replicas: 2
    health_check: {path: /health, interval: 1s, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2, grace_period: 0s}
stages:
  - name: Source
    actions: [{name: checkout, type: source, outputs: [Src]}]
  - name: Build
    actions:
""" + image("v1") + image("v2") + image("bad"))


class Gantry:
    def __init__(self, data, cwd):
        self.data, self.cwd = data, cwd

    def run(self, *args, check=True):
        out = subprocess.run([GANTRY, "--data-dir", self.data, *args], cwd=self.cwd,
                             capture_output=True, text=True)
        if check and out.returncode != 0:
            sys.exit(f"gantry {' '.join(args)} failed: {out.stderr}\n{out.stdout}")
        return out

    def background(self, *args):
        return subprocess.Popen([GANTRY, "--data-dir", self.data, *args], cwd=self.cwd,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def share(self, env, revision):
        status = json.loads(self.run("env", "status", env, "--json").stdout)
        for t in status["services"][0].get("traffic", []):
            if t["revision"] == revision:
                return t["percent"]
        return 0

    def revision(self, env):
        return json.loads(self.run("env", "status", env, "--json").stdout)["services"][0]["revision"]

    def wait_share(self, env, revision, percent, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.share(env, revision) == percent:
                return time.time()
            time.sleep(0.1)
        sys.exit(f"{env}: revision {revision} never took {percent}%")


def wrk(port, seconds, path="/", script=None, connections=16):
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        args += ["-s", script]
    return subprocess.Popen(args + [f"http://127.0.0.1:{port}{path}"], stdout=subprocess.PIPE, text=True)


def failures(text):
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    total = re.search(r"(\d+) requests in", text)
    return (int(total.group(1)) if total else 0,
            int(non2xx.group(1)) if non2xx else 0,
            sum(int(x) for x in sock.groups()) if sock else 0)


def bodies(text):
    m = re.search(r"BODIES new=(\d+) old=(\d+) other=(\d+)", text)
    return tuple(int(x) for x in m.groups())


def main():
    work = tempfile.mkdtemp(prefix="gantry-progressive-")
    repo, data = os.path.join(work, "repo"), os.path.join(work, "data")
    os.makedirs(repo)
    ports = {name: free_port() for name in ("canary", "bad", "bluegreen", "rolling")}
    test_port = free_port()
    site(os.path.join(repo, "v1"), "one", False)
    site(os.path.join(repo, "v2"), "two", False)
    site(os.path.join(repo, "bad"), "two", True)
    with open(os.path.join(repo, "gantry.yaml"), "w") as f:
        f.write(project(ports, test_port))
    script = os.path.join(work, "count.lua")
    with open(script, "w") as f:
        f.write(COUNT_LUA)
    git = ["git", "-C", repo, "-c", "user.name=b", "-c", "user.email=b@b"]
    sh("git", "init", "-q", "-b", "main", repo)
    sh(*git, "add", "-A")
    sh(*git, "commit", "-qm", "sites")
    server = subprocess.Popen([GANTRY, "--data-dir", data, "server", "--listen", "127.0.0.1:0",
                               "--registry-listen", "127.0.0.1:0"],
                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "server.log"), "w"))
    g = Gantry(data, repo)
    try:
        for _ in range(200):
            if os.path.exists(os.path.join(data, "server.json")):
                break
            time.sleep(0.05)
        g.run("run", "--json")
        for env in ports:
            g.run("deploy", env, "web", "--image", "bench/site:v1")
        print(f"gantry {g.run('version').stdout.strip()}; 2 replicas per service; wrk -t2 -c16\n")

        # 1. Canary 10% -> 50% -> 100% under steady load.
        port = ports["canary"]
        load = wrk(port, 30)
        time.sleep(1)
        deploy = g.background("deploy", "canary", "web", "--image", "bench/site:v2")
        print("== canary 10% -> 50% -> 100% (steps, promoted at each manual pause)")
        for weight in (10, 50):
            g.wait_share("canary", 2, weight)
            measure = wrk(port, 4, script=script, connections=8)
            new, old, other = bodies(measure.communicate()[0])
            total = new + old + other
            print(f"  weight {weight:3d}%: revision 2 served {100 * new / total:5.1f}% of {total} responses "
                  f"(revision 1 {old}, other {other})")
            g.run("deploy", "promote", "canary", "web")
        deploy.wait()
        measure = wrk(port, 3, script=script, connections=8)
        new, old, other = bodies(measure.communicate()[0])
        print(f"  weight 100%: revision 2 served {100 * new / (new + old + other):5.1f}% of {new + old + other} responses")
        total, non2xx, sock = failures(load.communicate()[0])
        print(f"  deploy exit {deploy.returncode}; steady load: {total} requests, {non2xx} non-2xx, {sock} socket errors\n")

        # 2. A revision failing ~20% of requests, rolled back by its analysis.
        port = ports["bad"]
        print("== canary of a revision failing ~20% of requests (analysis: max_error_rate 1%, window 10s, min_requests 50)")
        load = wrk(port, 20, path="/cgi-bin/app")
        time.sleep(1)
        started = time.time()
        deploy = g.background("deploy", "bad", "web", "--image", "bench/site:bad")
        canary_at = None
        while deploy.poll() is None:
            if canary_at is None and g.share("bad", 2) > 0:
                canary_at = time.time()
            time.sleep(0.05)
        ended = time.time()
        out, err = deploy.communicate()
        time.sleep(1)
        total, non2xx, sock = failures(load.communicate()[0])
        reason = next((line for line in (out + err).splitlines() if line.startswith("error:")), "?")
        took = ended - (canary_at or started)
        print(f"  deploy exit {deploy.returncode}: {reason[:200]}")
        print(f"  canary took traffic -> rolled back: {took:.1f}s (window + 2 s = 12 s); whole deploy {ended - started:.1f}s")
        print(f"  clients: {total} requests, {non2xx} non-2xx (the canary's 500s), {sock} socket errors; "
              f"serving revision {g.revision('bad')} after\n")

        # 3. Blue/green: test listener, switch, switch back.
        port = ports["bluegreen"]
        print("== blue/green with a test listener, switch and switch back (abort within termination_wait)")
        load = wrk(port, 30)
        time.sleep(1)
        deploy = g.background("deploy", "bluegreen", "web", "--image", "bench/site:v2")
        green = None
        for _ in range(600):
            try:
                out = subprocess.run(["curl", "-s", "--max-time", "1", f"http://127.0.0.1:{test_port}/"],
                                     capture_output=True, text=True)
                if out.returncode == 0 and out.stdout.strip():
                    green = out.stdout.strip()
                    break
            except OSError:
                pass
            time.sleep(0.1)
        prod = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/"], capture_output=True, text=True).stdout.strip()
        print(f"  before the switch: test listener answers {green!r}, production {prod!r}")
        g.run("deploy", "promote", "bluegreen", "web")
        switched = g.wait_share("bluegreen", 2, 100)
        time.sleep(3)
        g.run("deploy", "abort", "bluegreen", "web")
        back = time.time()
        deploy.wait()
        time.sleep(2)
        prod = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/"], capture_output=True, text=True).stdout.strip()
        total, non2xx, sock = failures(load.communicate()[0])
        print(f"  switched, switched back {back - switched:.1f}s later; production answers {prod!r}; deploy exit {deploy.returncode}")
        print(f"  steady load: {total} requests, {non2xx} non-2xx, {sock} socket errors\n")

        # 4. Rolling, health interval 1 s, healthy threshold 2.
        port = ports["rolling"]
        print("== rolling deploy, 2 replicas, health interval 1s, healthy threshold 2")
        load = wrk(port, 15)
        time.sleep(1)
        t0 = time.time()
        g.run("deploy", "rolling", "web", "--image", "bench/site:v2")
        took = time.time() - t0
        total, non2xx, sock = failures(load.communicate()[0])
        print(f"  {took:.2f}s until the service is healthy on revision 2 ({took / 2:.2f}s per replica)")
        print(f"  steady load: {total} requests, {non2xx} non-2xx, {sock} socket errors")
    finally:
        subprocess.run([GANTRY, "--data-dir", data, "shutdown", "--stop-services"], capture_output=True)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
