#!/usr/bin/env python3
"""Push to production (issue 11): the time from a commit on the sample shop's
main branch to both production backends serving the new digests, split into
gantry's part and the actions' own run time.

Setup: `gantry demo --auto-approve` in a fresh data dir builds the shop and
runs its eight-step pipeline once (staging, E2E, approval, promote,
production) and registers the pipeline, arming its `git` trigger (a poll of
the shop's repository every 2 s, examples/shop/gantry.yaml). Then, timed:

1. one commit changes both backends (catalog: a price; orders: its order
   cap), on main in the repository the trigger watches (`git commit` there
   is the push: the repository gantry polls is that checkout);
2. nothing is started by hand: the trigger starts an execution pinned to the
   commit; the shop's pipeline builds, deploys to staging, runs the E2E
   tests, waits for approval, promotes the tested digests and deploys to
   production;
3. the production load balancer is polled (`/api/catalog`, `/api/orders`,
   every ~20 ms) until every answer of both services comes from the new
   revision, whose digest `env status` confirms is new.

Approval: the test variant of the issue. Before the timed commit, the bench
applies a copy of the shop's pipeline whose approval has the policy
`auto_approve_after: 0s` (formats.md section 6): the approval approves
itself, as `gantry`, as soon as it waits. Its wait (its action's start to
finish: gantry's timer) is reported and subtracted all the same: in real
use a person decides there.

The split, over the window [commit, both services serving only the new
revision]: "actions" is the time some action other than the approval runs
(parallel actions overlap, so this is their union, not their sum); the
approval wait as above; gantry's part is the rest: noticing the commit
(poll) and starting the execution. The engine stamps an action's start with
the time of the event that let it start, so there are no gaps between
actions in the execution JSON: gantry's work per attempt (work dir, `#{...}`,
input artifacts, importing outputs) is inside each action's time. For build
and test actions it is also shown apart, from their logs: the time before
the buildspec's first phase and after its last counted as gantry's. Source,
image, promote and deploy actions are gantry's built-in action types: their
time (a deploy's is mostly its health checks and drain, as the shop
configures them) stays the actions'.

Prints figures, not pass/fail. Needs what `gantry demo` needs (git, cargo
for the shop's builds; Docker and Chromium are used when present).

Usage: bench/push_to_production.py [path/to/gantry]
       (default: target/release/gantry)
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GANTRY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/gantry")
BACKENDS = ("catalog", "orders")
FINISHED = ("Succeeded", "Failed", "Stopped", "Superseded")


def ms(ts):
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000


def now_ms():
    return time.time() * 1000


def git(cwd, *args):
    out = subprocess.run(["git", "-C", cwd, "-c", "user.name=Bench", "-c",
                          "user.email=bench@example.com", "-c", "commit.gpgsign=false", *args],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"git {args} failed: {out.stderr}")
    return out.stdout.strip()


def edit(path, old, new):
    with open(path) as f:
        text = f.read()
    if old not in text:
        sys.exit(f"{path} no longer holds {old!r}: update the bench")
    with open(path, "w") as f:
        f.write(text.replace(old, new, 1))


class Api:
    def __init__(self, data):
        with open(os.path.join(data, "server.json")) as f:
            self.base = json.load(f)["api"]
        with open(os.path.join(data, "admin.token")) as f:
            self.token = f.read().strip()

    def logs(self, execution, stage, action):
        lines, after = [], 0
        while True:
            page = self.call(f"/api/v1/executions/{execution}/logs?after={after}"
                             f"&stage={stage}&action={action}")
            lines += page["lines"]
            if not page["lines"] or page["next"] == after:
                return lines
            after = page["next"]

    def call(self, path, body=None):
        request = urllib.request.Request(
            self.base + path, method="POST" if body is not None else "GET",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)


def union(intervals):
    """Total length covered by (start, end) intervals."""
    total, end = 0.0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


class Watcher(threading.Thread):
    """Polls a production path through the load balancer, noting which
    revision answered when."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url, self.seen, self.stop = url, [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            at = now_ms()
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    revision = str(json.load(response).get("revision"))
            except Exception:  # a refused or failed request serves nothing new
                revision = None
            self.seen.append((at, revision))
            time.sleep(0.02)

    def serving(self, revision):
        """(first answer from `revision`, first answer after which every
        answer came from it), or None."""
        first = next((t for t, r in self.seen if r == revision), None)
        last_other = max((t for t, r in self.seen if r != revision), default=None)
        only = next((t for t, r in self.seen if r == revision
                     and (last_other is None or t > last_other)), None)
        return (first, only) if first is not None and only is not None else None


def main():
    tmp = tempfile.mkdtemp(prefix="gantry-push-bench-")
    data = os.path.join(tmp, "demo")
    log = open(os.path.join(tmp, "demo.log"), "w")
    print(f"setting up: gantry demo --auto-approve in {data} (its log: {log.name})", flush=True)
    demo = subprocess.Popen([GANTRY, "--data-dir", data, "demo", "--auto-approve", "--json"],
                            stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        run(data, demo)
    finally:
        subprocess.run([GANTRY, "--data-dir", data, "shutdown", "--stop-services"],
                       capture_output=True)
        try:
            demo.wait(timeout=60)
        except subprocess.TimeoutExpired:
            demo.kill()


def run(data, demo):
    first = None
    for line in demo.stdout:
        if line.startswith("{"):
            first = json.loads(line)
            break
    if not first or first["status"] != "Succeeded":
        sys.exit(f"the demo's first run did not succeed: {first and first['status']}")
    api = Api(data)
    before = {s["name"]: s for s in api.call("/api/v1/environments/production")["services"]}
    production = api.call("/api/v1/environments/production")["url"]
    triggers = api.call("/api/v1/triggers")
    print(f"first run: {first['id']} {first['status']}; trigger: {triggers[0]['watches']}")

    # The test variant: the same pipeline, its approval approving itself.
    shop = os.path.join(data, "shop-repo", "examples", "shop")
    with open(os.path.join(shop, "gantry.yaml")) as f:
        text = f.read()
    gate = "        timeout: 7d\n\n  # 7."
    if gate not in text:
        sys.exit("examples/shop/gantry.yaml changed: the approval's timeout line was not found")
    variant = os.path.join(shop, "gantry.auto-approve.yaml")
    with open(variant, "w") as f:
        f.write(text.replace(gate, "        timeout: 7d\n        policy: {auto_approve_after: 0s}\n\n  # 7."))
    out = subprocess.run([GANTRY, "--data-dir", data, "apply", "-f", variant],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"applying the test variant failed: {out.stderr}")
    print(f"test variant applied: {out.stdout.strip()}")

    watchers = {s: Watcher(f"{production}api/{s}") for s in BACKENDS}
    for w in watchers.values():
        w.start()
    time.sleep(0.5)
    repo = os.path.join(data, "shop-repo")
    edit(os.path.join(repo, "examples/shop/catalog/src/lib.rs"),
         "price_cents: 1299", "price_cents: 1199")
    edit(os.path.join(repo, "examples/shop/orders/src/lib.rs"),
         "pub const MAX_ORDERS: usize = 10_000;", "pub const MAX_ORDERS: usize = 12_000;")
    git(repo, "add", "examples/shop/catalog/src/lib.rs", "examples/shop/orders/src/lib.rs")
    pushed = now_ms()
    git(repo, "commit", "-q", "-m", "catalog: a sale; orders: a higher cap")
    commit = git(repo, "rev-parse", "HEAD")

    execution = None
    while True:
        if execution is None:
            for e in api.call("/api/v1/executions?pipeline=shop"):
                if e.get("source_revisions", {}).get("checkout") == commit:
                    execution = e
                    print(f"commit {commit[:12]} -> execution {e['id']}, started by "
                          f"{e['trigger']['type']} ({e['trigger']['detail']})", flush=True)
            if execution is None and now_ms() - pushed > 120_000:
                sys.exit(f"no execution started on {commit}: {api.call('/api/v1/triggers')}")
        else:
            execution = api.call(f"/api/v1/executions/{execution['id']}")
            if execution["status"] in FINISHED:
                break
        time.sleep(0.05)
    time.sleep(2)  # the load balancer keeps answering from the new revisions
    for w in watchers.values():
        w.stop.set()
        w.join()
    if execution["status"] != "Succeeded":
        sys.exit(f"the triggered execution ended {execution['status']}")

    after = {s["name"]: s for s in api.call("/api/v1/environments/production")["services"]}
    served = {}
    for s in BACKENDS:
        old, new = before[s], after[s]
        if new["digest"] == old["digest"]:
            sys.exit(f"{s}: production still runs {old['digest']}")
        window = watchers[s].serving(str(new["revision"]))
        if window is None:
            sys.exit(f"{s}: the load balancer never answered from revision {new['revision']}")
        served[s] = window
        print(f"  {s}: {old['digest'][:19]} (revision {old['revision']}) -> "
              f"{new['digest'][:19]} (revision {new['revision']})")
    for s in after:
        if s not in BACKENDS:
            same = "same digest, deploy skipped" if after[s]["digest"] == before[s]["digest"] \
                else "new digest"
            print(f"  {s}: {same}")

    done = max(only for _, only in served.values())
    total = done - pushed
    start = ms(execution["started_at"])
    end = ms(execution["finished_at"])
    approval, runs, stages, commands = [], [], {}, []
    for stage in execution["stages"]:
        for a in stage["actions"]:
            if not a.get("started_at") or not a.get("finished_at"):
                continue
            span = (ms(a["started_at"]), ms(a["finished_at"]))
            if a.get("type") == "approval":
                approval.append(span)
                by = (a.get("decided") or {}).get("by")
                if by != "gantry":
                    sys.exit(f"the approval was decided by {by!r}, not by its policy")
                continue
            runs.append(span)
            stages.setdefault(stage["name"], []).append(span)
            if a.get("type") in ("build", "test"):
                # The buildspec's own run: its first phase's start to its
                # last phase's end, as its log lines are stamped.
                lines = api.logs(execution["id"], stage["name"], a["name"])
                phases = [ms(l["at"]) for l in lines
                          if "Entering phase" in l["line"] or "Phase complete:" in l["line"]]
                commands.append((min(phases), max(phases)) if phases else span)
            else:
                commands.append(span)
    clip = lambda spans: [(a, min(b, done)) for a, b in spans if a < done]
    actions = union(clip(runs))
    waited = union(clip(approval))
    gantry = total - actions - waited
    trigger = start - pushed
    own = union(clip(commands))

    print()
    print("push to production (one commit changing catalog and orders, both deployed):")
    print(f"  git commit -> both production backends serving only the new digests: "
          f"{total / 1000:.1f} s")
    for s, (first_new, only) in served.items():
        print(f"    {s}: first answer from the new digest at +{(first_new - pushed) / 1000:.1f} s, "
              f"only the new digest from +{(only - pushed) / 1000:.1f} s")
    print(f"  actions' own run time (union of their runs; parallel ones overlap): "
          f"{actions / 1000:.1f} s")
    for name, spans in stages.items():
        spans = clip(spans)
        if spans:
            print(f"    {name:<16} {union(spans) / 1000:6.1f} s")
    print(f"  approval wait (the test variant's policy auto_approve_after: 0s; "
          f"subtracted): {waited / 1000:.2f} s")
    print(f"  gantry's part: {gantry / 1000:.2f} s ({100 * gantry / total:.1f} %)")
    print(f"    commit -> execution started (poll every 2 s): {trigger / 1000:.2f} s")
    print(f"    between actions: {(gantry - trigger) / 1000:.2f} s (the engine stamps a start "
          f"with the event that allowed it)")
    print(f"  counting gantry's work inside build and test actions (before the buildspec's "
          f"first phase, after its last) as gantry's:")
    print(f"    actions {own / 1000:.1f} s, gantry {(total - own - waited) / 1000:.2f} s "
          f"({100 * (total - own - waited) / total:.1f} %)")
    print(f"  (the execution ended at +{(end - pushed) / 1000:.1f} s: the deploy actions "
          f"finish after the old replicas drained)")


if __name__ == "__main__":
    main()
