#!/usr/bin/env python3
"""The gateway's task queue, measured from outside one `aop` binary.

    python3 bench/tasks.py target/release/aop [N]        # N tasks, default 10,000

Starts on free loopback ports a node serving a zone with one sleeper agent (`aop agent
serve --kind sleeper`), and `aop gateway --data-dir TMP --agent-concurrency 16
--queue-size N`. Then, over one MCP session (one keep-alive HTTP connection):

1. pauses the sleeper's queue and submits N tasks one after another (`submit_task`, each
   answered after its fsync): p50/p99/max submit latency;
2. the gateway's RSS before and after, per pending task;
3. SIGKILLs the gateway and restarts it on the same data dir: the reload time from the
   gateway's `task store loaded` log line (its elapsed_ms), beside the same for an empty
   data dir, and checks that get_queue_stats still counts N pending tasks;
4. resumes the queue (16 at a time, `ms` = 10) and times until all N completed.

Loopback only; it stops everything it started. Compare figures from one machine.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from procs import free_port, rss_kib, wait_port  # noqa: E402

AOP = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
SLEEPER = "sleeper.bench.test"


class Mcp:
    """One 2025-era MCP session over one keep-alive connection."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.session = None
        self.next_id = 1
        self.rpc("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                "clientInfo": {"name": "bench-tasks", "version": "1"}})
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def post(self, message):
        headers = {"Content-Type": "application/json",
                   "Accept": "application/json, text/event-stream"}
        if self.session:
            headers["mcp-session-id"] = self.session
        self.conn.request("POST", "/mcp", body=json.dumps(message), headers=headers)
        response = self.conn.getresponse()
        body = response.read().decode()
        self.session = response.getheader("mcp-session-id") or self.session
        for line in body.splitlines():
            if line.startswith("data: {"):
                return json.loads(line[6:])
        return json.loads(body) if body.startswith("{") else None

    def rpc(self, method, params):
        self.next_id += 1
        answer = self.post({"jsonrpc": "2.0", "id": self.next_id, "method": method,
                            "params": params})
        if "error" in answer:
            raise SystemExit(f"{method}: {answer['error']}")
        return answer["result"]

    def tool(self, name, arguments):
        return self.rpc("tools/call", {"name": name, "arguments": arguments})["structuredContent"]


def percentile(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))]


work = tempfile.mkdtemp(prefix="aop-bench-tasks-")
agent_port, grpc = free_port(), free_port()
children = []


def spawn(argv):
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children.append(child)
    return child


try:
    spawn([AOP, "agent", "serve", "--name", "sleeper", "--kind", "sleeper",
           "--listen", f"127.0.0.1:{agent_port}"])
    wait_port(agent_port, deadline=60, poll=0.005)
    zone = os.path.join(work, "bench.test.toml")
    with open(zone, "w") as f:
        f.write(f"""[zone]
origin = "bench.test"
serial = 1
ttl = 300
negative_ttl = 60
servers = [{{ grpc = "http://127.0.0.1:{grpc}" }}]

[[agent]]
name = "sleeper"
timeout_ms = 60000
input_schema = {{ type = "object", properties = {{ task = {{ type = "string" }}, ms = {{ type = "integer" }} }}, required = ["task"] }}
endpoints = [{{ url = "http://127.0.0.1:{agent_port}/mcp", tool = "sleeper" }}]
""")
    spawn([AOP, "node", "--zone", zone, "--grpc", f"127.0.0.1:{grpc}", "--node-id", "bench"])
    wait_port(grpc, deadline=60, poll=0.005)

    def gateway(data_dir):
        port = free_port()
        started = time.time()
        log = open(os.path.join(work, f"gateway-{port}.log"), "w")
        child = subprocess.Popen([AOP, "gateway", "--resolver", f"http://127.0.0.1:{grpc}",
                                  "--listen", f"127.0.0.1:{port}", "--mount", "bench.test",
                                  "--data-dir", data_dir, "--agent-concurrency", "16",
                                  "--queue-size", str(N), "--log-format", "json"],
                                 stdout=subprocess.DEVNULL, stderr=log,
                                 env=dict(os.environ, RUST_LOG="info"))
        children.append(child)
        wait_port(port, deadline=60, poll=0.005)
        return child, port, time.time() - started, log.name

    def load_ms(log_path, deadline=120):
        # The listener is bound before the store loads: wait for the gateway's own line.
        end = time.time() + deadline
        while time.time() < end:
            with open(log_path) as f:
                for line in f:
                    if "task store loaded" in line:
                        fields = json.loads(line).get("fields", {})
                        return fields.get("elapsed_ms"), fields.get("tasks")
            time.sleep(0.01)
        raise SystemExit(f"no 'task store loaded' line in {log_path}")

    data = os.path.join(work, "gateway")
    gw, port, _, _ = gateway(data)
    mcp = Mcp(port)
    paused = mcp.tool("pause_agent_queue", {"agent_name": SLEEPER})
    assert paused["success"], paused
    time.sleep(1)
    rss_before = rss_kib(gw.pid)
    latencies = []
    for i in range(N):
        t0 = time.perf_counter()
        answer = mcp.tool("submit_task", {"agent_name": SLEEPER,
                                          "arguments": {"task": f"t{i}", "ms": 10},
                                          "priority": i % 4})
        latencies.append((time.perf_counter() - t0) * 1000)
        assert answer["success"], answer
    rss_after = rss_kib(gw.pid)
    latencies.sort()
    print(f"submit_task x{N} (fsync'd, one client, sequential): "
          f"p50 {percentile(latencies, 0.50):.2f} ms, p99 {percentile(latencies, 0.99):.2f} ms, "
          f"max {latencies[-1]:.2f} ms")
    print(f"gateway RSS {rss_before // 1024} -> {rss_after // 1024} MiB with {N} pending tasks: "
          f"{(rss_after - rss_before) * 1024 / N:.0f} bytes per pending task")
    size = os.path.getsize(os.path.join(data, "gateway-tasks.redb"))
    print(f"task store file: {size / 1048576:.1f} MiB ({size / N:.0f} bytes per task)")

    gw.send_signal(signal.SIGKILL)
    gw.wait()
    _, _, _, empty_log = gateway(os.path.join(work, "empty"))
    empty_ms, _ = load_ms(empty_log)
    gw, port, _, log_path = gateway(data)
    loaded_ms, loaded_tasks = load_ms(log_path)
    mcp = Mcp(port)
    stats = mcp.tool("get_queue_stats", {"agent_name": SLEEPER})["stats"]
    assert stats["pending_tasks"] == N and stats["queue_status"] == "paused", stats
    print(f"restart after SIGKILL: the task store loaded {loaded_tasks} tasks in {loaded_ms} ms "
          f"(an empty one: {empty_ms} ms); get_queue_stats counts all {N} pending")

    t0 = time.time()
    mcp.tool("resume_agent_queue", {"agent_name": SLEEPER})
    while True:
        stats = mcp.tool("get_queue_stats", {"agent_name": SLEEPER})["stats"]
        if stats["completed_tasks"] + stats["failed_tasks"] >= N:
            break
        time.sleep(0.2)
    elapsed = time.time() - t0
    print(f"{N} tasks of 10 ms run 16 at a time in {elapsed:.1f} s "
          f"({N / elapsed:.0f} tasks/s; failed {stats['failed_tasks']}, "
          f"average processing {stats['average_processing_time'] * 1000:.1f} ms)")
finally:
    for child in children:
        if child.poll() is None:
            child.kill()
            child.wait()
    shutil.rmtree(work, ignore_errors=True)
