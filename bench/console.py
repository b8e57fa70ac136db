#!/usr/bin/env python3
"""The web console (issue 12): server time of the pipelines page and the
execution (pipeline) view with N executions in the store (p50/p99 of the
time to the full answer, on loopback), the page weight of the execution
view (HTML + CSS + JS, no images), and the time from a change (an execution
started through the API) to its `change` event on the console's SSE stream.

Usage: bench/console.py [GANTRY_BINARY] (default target/release/gantry);
N from GANTRY_BENCH_EXECUTIONS (default 10000). Also the history page
(first page, and page 100 with filters), and the server's memory (RSS from
/proc) before and after 200 open SSE connections."""
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GANTRY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "release", "gantry")
N = int(os.environ.get("GANTRY_BENCH_EXECUTIONS", "10000"))
PIPELINE = """version: 1
name: bench
stages:
  - name: Approve
    actions:
      - {name: release, type: approval}
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, body=body, headers=headers or {})
    answer = conn.getresponse()
    data = answer.read()
    conn.close()
    return answer, data


def main():
    data = tempfile.mkdtemp(prefix="gantry-console-bench-")
    port, registry = free_port(), free_port()
    server = subprocess.Popen(
        [GANTRY, "--data-dir", data, "server", "--listen", f"127.0.0.1:{port}",
         "--registry-listen", f"127.0.0.1:{registry}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                request(port, "GET", "/api/v1/health")
                break
            except OSError:
                time.sleep(0.05)
        token = open(os.path.join(data, "admin.token")).read().strip()
        api = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        start = json.dumps({"file": os.path.join(data, "gantry.yaml"), "text": PIPELINE})
        # N executions: each waits at its approval until the next one
        # supersedes it.
        t0 = time.perf_counter()
        ids = []
        lock = threading.Lock()

        def starter(count):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for _ in range(count):
                conn.request("POST", "/api/v1/executions", body=start, headers=api)
                answer = conn.getresponse()
                body = answer.read()
                assert answer.status == 201, body
                with lock:
                    ids.append(json.loads(body)["id"])
            conn.close()
        threads = [threading.Thread(target=starter, args=(N // 4 + (1 if i < N % 4 else 0),)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(f"{N} executions started in {time.perf_counter() - t0:.1f} s")
        # A session through a one-time sign-in link.
        answer, body = request(port, "POST", "/api/v1/console/links", b"{}", api)
        assert answer.status == 200, (answer.status, body)
        link = json.loads(body)["path"]
        answer, _ = request(port, "GET", link)
        cookie = answer.getheader("Set-Cookie").split(";")[0]
        browser = {"Cookie": cookie}
        answer, body = request(port, "GET", "/api/v1/executions?limit=1", headers=api)
        latest = json.loads(body)[0]["id"]
        for name, path, headers in [
                ("pipelines page /", "/", browser),
                ("history page /history", "/history", browser),
                ("history page 100, filtered", "/history?page=100&status=Superseded&trigger=manual", browser),
                ("API: 51 executions (JSON)", "/api/v1/executions?limit=51", api),
                ("execution view /executions/ID", f"/executions/{latest}", browser),
                ("execution view, live fragment", f"/executions/{latest}?fragment=true", browser)]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            times = []
            for i in range(220):
                t = time.perf_counter()
                conn.request("GET", path, headers=headers)
                answer = conn.getresponse()
                page = answer.read()
                assert answer.status == 200, (answer.status, page[:200])
                if i >= 20:
                    times.append((time.perf_counter() - t) * 1000)
            conn.close()
            times.sort()
            print(f"{name:<32} p50 {statistics.median(times):6.2f} ms  p99 {times[int(len(times) * 0.99) - 1]:6.2f} ms  "
                  f"({len(page)} bytes, 200 requests, {N} executions)")
        _, html = request(port, "GET", f"/executions/{latest}", headers=browser)
        _, css = request(port, "GET", "/assets/console.css", headers=browser)
        _, js = request(port, "GET", "/assets/console.js", headers=browser)
        print(f"execution view page weight: {len(html) + len(css) + len(js)} bytes "
              f"(HTML {len(html)}, CSS {len(css)}, JS {len(js)}; no images)")
        # Change -> SSE event.
        sse = socket.create_connection(("127.0.0.1", port))
        sse.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n".encode())
        sse.settimeout(10)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += sse.recv(4096)
        buf = buf.split(b"\r\n\r\n", 1)[1]
        latencies = []
        for _ in range(50):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            t = time.perf_counter()
            conn.request("POST", "/api/v1/executions", body=start, headers=api)
            answer = conn.getresponse()
            answer.read()
            while b"event: change" not in buf:
                buf += sse.recv(4096)
            latencies.append((time.perf_counter() - t) * 1000)
            buf = b""
            conn.close()
            time.sleep(0.05)
            # Drain what else the start changed (its supersession).
            sse.settimeout(0.2)
            try:
                while True:
                    if not sse.recv(4096):
                        break
            except socket.timeout:
                pass
            sse.settimeout(10)
        latencies.sort()
        print(f"change -> SSE event (request sent to event read): p50 {statistics.median(latencies):.2f} ms, "
              f"max {latencies[-1]:.2f} ms (50 changes)")
        sse.close()
        # Memory: the server's RSS before and after 200 open event streams.
        def rss_kib():
            with open(f"/proc/{server.pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
            return 0
        time.sleep(0.5)
        before = rss_kib()
        streams = []
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n".encode())
            streams.append(s)
        for s in streams:
            s.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(4096)
            assert b" 200 " in head.split(b"\r\n", 1)[0], head[:200]
        # One change reaches all 200 (each stream's task wakes and writes).
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/api/v1/executions", body=start, headers=api)
        conn.getresponse().read()
        conn.close()
        time.sleep(1.0)
        after = rss_kib()
        print(f"200 open SSE connections: server RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB "
              f"(+{(after - before) / 1024:.2f} MiB)")
        for s in streams:
            s.close()
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
