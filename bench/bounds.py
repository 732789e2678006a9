#!/usr/bin/env python3
"""What one client can hold of a node and a gateway, probed from outside one `aop` binary.

    python3 bench/bounds.py target/release/aop zones/finance.acme.toml
    python3 bench/bounds.py /path/to/older/aop zones/finance.acme.toml   # the same, before

1. 1,000 idle TCP connections to a node's gRPC door from one address (half send the HTTP/2
   preface and SETTINGS, half nothing): how many are still open 12 s later, and how long an
   `aop resolve` takes meanwhile.
2. 5,000 MCP `initialize` requests to a gateway from one client: how many sessions are
   granted, the HTTP statuses, and the gateway's RSS before and after.

Loopback only; it starts the node and the gateway itself on free ports and stops them.
Compare binaries run one after the other on the same machine, not with figures from
elsewhere.
"""
import json
import os
import resource
import select
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from procs import free_port, rss_kib, wait_port  # noqa: E402

AOP, ZONE = sys.argv[1], sys.argv[2]
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))


grpc = free_port()
node = subprocess.Popen(
    [AOP, "node", "--zone", ZONE, "--grpc", f"127.0.0.1:{grpc}", "--node-id", "probe"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wait_port(grpc)

# --- 2: idle connections
conns = []
for i in range(1000):
    s = socket.create_connection(("127.0.0.1", grpc))
    if i % 2 == 0:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
    conns.append(s)
time.sleep(12)
open_count = 0
for s in conns:
    s.setblocking(False)
    try:
        r, _, _ = select.select([s], [], [], 0)
        if not r:
            open_count += 1
            continue
        # drain: a peer that closed reads b"" (or reset) eventually
        closed = False
        while True:
            try:
                data = s.recv(65536)
            except BlockingIOError:
                break
            except OSError:
                closed = True
                break
            if not data:
                closed = True
                break
        if not closed:
            open_count += 1
    except OSError:
        pass
t0 = time.time()
res = subprocess.run([AOP, "resolve", "--server", f"http://127.0.0.1:{grpc}", "--no-recurse",
                      "analyst.finance.acme"], capture_output=True, text=True, timeout=60)
resolve_ms = (time.time() - t0) * 1000
for s in conns:
    s.close()
print(f"idle connections still open after 12 s: {open_count} of 1000; "
      f"aop resolve meanwhile: exit {res.returncode} in {resolve_ms:.0f} ms")

# --- 9: gateway sessions
gw = free_port()
gateway = subprocess.Popen(
    [AOP, "gateway", "--resolver", f"http://127.0.0.1:{grpc}", "--listen", f"127.0.0.1:{gw}",
     "--mount", "finance.acme"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wait_port(gw)
time.sleep(1)
before = rss_kib(gateway.pid)
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "probe", "version": "1"}}}).encode()
granted = refused = 0
statuses = {}
t0 = time.time()
for _ in range(5000):
    req = urllib.request.Request(f"http://127.0.0.1:{gw}/mcp", data=body, method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Accept": "application/json, text/event-stream"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read(1)
            if resp.headers.get("mcp-session-id"):
                granted += 1
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
    except urllib.error.HTTPError as e:
        refused += 1
        statuses[e.code] = statuses.get(e.code, 0) + 1
elapsed = time.time() - t0
time.sleep(2)
after = rss_kib(gateway.pid)
print(f"5000 initializes from one client in {elapsed:.1f} s: {granted} sessions granted, "
      f"statuses {statuses}; gateway RSS {before // 1024} -> {after // 1024} MiB "
      f"(+{(after - before) / 1024:.0f} MiB)")
gateway.terminate()
node.terminate()
gateway.wait(10)
node.wait(10)
