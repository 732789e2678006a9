#!/usr/bin/env python3
"""The availability run (docs/protocol.md §9.4): a federation in Linux network namespaces, steady
load from a client host, one fault at a time from a printed seed, and the contract's figures.

Run through bench/availability.sh (it builds the binary and installs nftables); needs root.
Python 3.11 standard library only.

Hosts (one network namespace each, a veth pair to one bridge, 10.77.0.0/24, no route out):
  root (.10), acme-1 (.11, primary of acme), acme-2 (.12, its secondary),
  fin-1 (.13, primary of finance.acme), fin-2 and fin-3 (.14, .15, its secondaries),
  globex (.16), agents (.30: writer, analyst and support, two replicas each),
  client (.40: a resolver node and the gateway; the load runs here).

The driver stays in the host's namespace and injects faults; the load runs in the client
namespace (this same file with --worker) and writes one JSON line per operation.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

PREFIX = "aopav"
BRIDGE = f"{PREFIX}-br"
NET = "10.77.0"
GRPC_PORT = 7000
GATEWAY = "127.0.0.1:8000"

HOSTS = {
    "root": 10, "acme1": 11, "acme2": 12, "fin1": 13, "fin2": 14, "fin3": 15,
    "globex": 16, "agents": 30, "client": 40,
}
# Agent replicas on the agents host: (process name, kind, tool, port).
AGENTS = [
    ("writer-1", "writer", "writer", 9001), ("writer-2", "writer", "writer", 9002),
    ("analyst-1", "analyst", "analyst", 9003), ("analyst-2", "analyst", "analyst", 9004),
    ("support-1", "echo", "support", 9005), ("support-2", "echo", "support", 9006),
]
# Names the load resolves: direct names in three zones and a cross-zone alias.
RESOLVE_NAMES = ["writer.acme", "forecasts.acme", "analyst.finance.acme", "support.globex"]
CALLS = [
    ("writer_acme", {"task": "first note. second note"}),
    ("analyst_finance_acme", {"task": "1 2 3 4"}),
    ("support_globex", {"task": "hello"}),
]
# Zones and their servers, primary first.
ZONES = {
    "root": ["root"], "acme": ["acme1", "acme2"],
    "finance.acme": ["fin1", "fin2", "fin3"], "globex": ["globex"],
}
APEX = {"root": "acme", "acme": "writer.acme", "finance.acme": "analyst.finance.acme",
        "globex": "support.globex"}


def ip(host):
    return f"{NET}.{HOSTS[host]}"


def url(host):
    return f"http://{ip(host)}:{GRPC_PORT}"


def ns(host):
    return f"{PREFIX}-{host}"


def veth(host):
    return f"av-{host}"


def log(text):
    print(f"==> {text}", file=sys.stderr, flush=True)


def sh(*args, check=True, quiet=False):
    result = subprocess.run(list(args), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {result.returncode}: {result.stderr.strip()}")
    return result


# ---------------------------------------------------------------- network


def cleanup_network():
    """Every namespace, link and process of a run (this one or one left over)."""
    listed = sh("ip", "netns", "list", check=False).stdout.split("\n")
    ours = [line.split()[0] for line in listed if line.startswith(PREFIX + "-")]
    for name in ours:
        pids = sh("ip", "netns", "pids", name, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
    for name in ours:
        deadline = time.time() + 5
        while sh("ip", "netns", "pids", name, check=False).stdout.strip() and time.time() < deadline:
            time.sleep(0.05)
        sh("ip", "netns", "del", name, check=False)
    for host in HOSTS:
        sh("ip", "link", "del", veth(host), check=False)
    sh("ip", "link", "del", BRIDGE, check=False)
    left = [line for line in sh("ip", "netns", "list", check=False).stdout.split("\n")
            if line.startswith(PREFIX + "-")]
    links = sh("ip", "-o", "link", "show", check=False).stdout
    if left or f" {BRIDGE}:" in links or " av-" in links:
        raise RuntimeError(f"cleanup left namespaces {left} or links behind")


def build_network():
    sh("ip", "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "link", "set", BRIDGE, "up")
    for host in HOSTS:
        sh("ip", "netns", "add", ns(host))
        sh("ip", "link", "add", veth(host), "type", "veth", "peer", "name", "eth0",
           "netns", ns(host))
        sh("ip", "link", "set", veth(host), "master", BRIDGE)
        sh("ip", "link", "set", veth(host), "up")
        sh("ip", "-n", ns(host), "addr", "add", f"{ip(host)}/24", "dev", "eth0")
        sh("ip", "-n", ns(host), "link", "set", "eth0", "up")
        sh("ip", "-n", ns(host), "link", "set", "lo", "up")


LOSS_TABLE = "aopav_loss"


def loss_on(host, percent):
    rules = (f"table inet {LOSS_TABLE} {{\n"
             f" chain in {{ type filter hook input priority 0; policy accept;"
             f" numgen random mod 100 < {percent} drop; }}\n"
             f" chain out {{ type filter hook output priority 0; policy accept;"
             f" numgen random mod 100 < {percent} drop; }}\n}}\n")
    subprocess.run(["ip", "netns", "exec", ns(host), "nft", "-f", "-"], input=rules, text=True,
                   check=True, capture_output=True)


def loss_off(host):
    sh("ip", "netns", "exec", ns(host), "nft", "delete", "table", "inet", LOSS_TABLE, check=False)


# ---------------------------------------------------------------- federation


def zone_files(work):
    ttl = "ttl = 3\nnegative_ttl = 3\nrefresh = 10\nretry = 2\nexpire = 86400\n"

    def servers(zone):
        return ", ".join(f'{{ grpc = "{url(h)}" }}' for h in ZONES[zone])

    def endpoints(tool):
        return ", ".join(f'{{ url = "http://{ip("agents")}:{port}/mcp", tool = "{tool}" }}'
                         for (_, _, t, port) in AGENTS if t == tool)

    files = {
        "root": f"""[zone]
origin = "."
serial = 1
{ttl}servers = [{servers("root")}]
[[delegation]]
zone = "acme"
servers = [{servers("acme")}]
ttl = 30
[[delegation]]
zone = "globex"
servers = [{servers("globex")}]
ttl = 30
""",
        "acme": f"""[zone]
origin = "acme"
serial = 1
{ttl}servers = [{servers("acme")}]
[[agent]]
name = "writer"
description = "Writer"
endpoints = [{endpoints("writer")}]
[[alias]]
name = "forecasts"
target = "analyst.finance.acme."
[[delegation]]
zone = "finance"
servers = [{servers("finance.acme")}]
ttl = 30
""",
        "finance.acme": f"""[zone]
origin = "finance.acme"
serial = 1
{ttl}servers = [{servers("finance.acme")}]
[[agent]]
name = "analyst"
description = "Analyst"
endpoints = [{endpoints("analyst")}]
""",
        "globex": f"""[zone]
origin = "globex"
serial = 1
{ttl}servers = [{servers("globex")}]
[[agent]]
name = "support"
description = "Support"
endpoints = [{endpoints("support")}]
""",
    }
    paths = {}
    for zone, text in files.items():
        path = os.path.join(work, f"{zone}.toml")
        with open(path, "w") as f:
            f.write(text)
        paths[zone] = path
    return paths


class Federation:
    """Every process of the run, by name, each in its host's namespace; restartable."""

    def __init__(self, aop, work):
        self.aop = aop
        self.work = work
        self.commands = {}  # name -> (host, argv)
        self.procs = {}
        self.lock = threading.Lock()

    def define(self, name, host, argv):
        self.commands[name] = (host, argv)

    def start(self, name):
        host, argv = self.commands[name]
        out = open(os.path.join(self.work, "logs", f"{name}.log"), "ab")
        proc = subprocess.Popen(["ip", "netns", "exec", ns(host), self.aop, *argv],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        with self.lock:
            self.procs[name] = proc

    def kill(self, name, sig=signal.SIGKILL):
        with self.lock:
            proc = self.procs.get(name)
        if proc and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def alive(self, name):
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def stop_all(self):
        for name in list(self.procs):
            self.kill(name, signal.SIGTERM)


def client_aop(aop, *args, timeout=30):
    return subprocess.run(["ip", "netns", "exec", ns("client"), aop, *args], capture_output=True,
                          text=True, timeout=timeout)


def wait_serving(aop, fed, name, host, zone, deadline_s=60):
    """Until the node answers its zone's name non-recursively (or dies, or the deadline); the
    resolver node, which has no zone, recursively."""
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        if not fed.alive(name):
            raise RuntimeError(f"{name} exited; see {fed.work}/logs/{name}.log")
        flags = [] if name == "resolver" else ["--no-recurse"]
        r = client_aop(aop, "resolve", *flags, "--timeout", "1s", "--server", url(host),
                       APEX[zone], timeout=10)
        if r.returncode == 0:
            return time.time()
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not serve {zone} within {deadline_s}s")


def wait_port(host, port, deadline_s=30):
    deadline = time.time() + deadline_s
    probe = (f"import socket,sys\ns=socket.socket()\ns.settimeout(0.5)\n"
             f"sys.exit(s.connect_ex(('{ip(host) if host != 'client' else '127.0.0.1'}',{port})))")
    while time.time() < deadline:
        if subprocess.run(["ip", "netns", "exec", ns(host), sys.executable, "-c", probe]).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {host}:{port} after {deadline_s}s")


def start_federation(aop, work):
    os.makedirs(os.path.join(work, "logs"), exist_ok=True)
    key = os.path.join(work, "fin.key")
    subprocess.run([aop, "key", "new", "avail", "--zone", "finance.acme", "--out", key, "--json"],
                   capture_output=True, text=True, check=True)
    zones = zone_files(work)
    fed = Federation(aop, work)
    root_hint = ["--root", url("root")]

    def node(name, host, *extra):
        data = os.path.join(work, "data", name)
        os.makedirs(data, exist_ok=True)
        fed.define(name, host, ["node", "--node-id", name, "--grpc", f"{ip(host)}:{GRPC_PORT}",
                                "--data-dir", data, *root_hint, *extra])

    node("root", "root", "--zone", zones["root"])
    node("acme1", "acme1", "--zone", zones["acme"])
    node("acme2", "acme2", "--secondary", f"acme={url('acme1')}")
    node("fin1", "fin1", "--zone", zones["finance.acme"], "--update-key", key)
    node("fin2", "fin2", "--secondary", f"finance.acme={url('fin1')}")
    node("fin3", "fin3", "--secondary", f"finance.acme={url('fin1')}")
    node("globex", "globex", "--zone", zones["globex"])
    fed.define("resolver", "client", ["node", "--node-id", "resolver", "--grpc",
                                      f"{ip('client')}:{GRPC_PORT}", *root_hint])
    fed.define("gateway", "client", ["gateway", "--resolver", url("client"), "--listen", GATEWAY,
                                     "--mount", "acme", "--mount", "finance.acme",
                                     "--mount", "globex"])
    for (name, kind, tool, port) in AGENTS:
        fed.define(name, "agents", ["agent", "serve", "--kind", kind, "--name", tool, "--listen",
                                    f"{ip('agents')}:{port}"])
    for (name, _, _, port) in AGENTS:
        fed.start(name)
    for zone, hosts in ZONES.items():
        for host in hosts:
            fed.start(host)
    fed.start("resolver")
    for zone, hosts in ZONES.items():
        for host in hosts:
            wait_serving(aop, fed, host, host, zone)
    wait_serving(aop, fed, "resolver", "client", "finance.acme")
    fed.start("gateway")
    wait_port("client", int(GATEWAY.split(":")[1]))
    for (name, _, _, port) in AGENTS:
        wait_port("agents", port)
    return fed, key


# ---------------------------------------------------------------- load (client namespace)


def percentile(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


class Recorder:
    def __init__(self, path):
        self.file = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def op(self, kind, name, start, end, ok, **extra):
        line = json.dumps({"kind": kind, "name": name, "start": start, "end": end, "ok": ok,
                           **extra})
        with self.lock:
            self.file.write(line + "\n")


def mcp_post(body, session=None, timeout=5.0):
    headers = {"Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}
    if session:
        headers["Mcp-Session-Id"] = session
    req = urllib.request.Request(f"http://{GATEWAY}/mcp", data=json.dumps(body).encode(),
                                 method="POST", headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        text = resp.read().decode()
        sid = resp.headers.get("mcp-session-id")
    if not text.strip():
        return None, sid
    if text.lstrip().startswith("{"):
        return json.loads(text), sid
    found = None
    for line in text.splitlines():
        if line.startswith("data:") and line[5:].strip():
            message = json.loads(line[5:])
            if message.get("id") == body.get("id"):
                found = message
    return found, sid


def mcp_session():
    message, sid = mcp_post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "availability", "version": "1"}}})
    mcp_post({"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
    return sid


def paced(rate, stop, action):
    """Calls action(i) `rate` times a second on a pool, until stop is set."""
    pool = ThreadPoolExecutor(max_workers=max(4, int(rate)))
    interval = 1.0 / rate
    due = time.time()
    i = 0
    while not stop.is_set():
        pool.submit(action, i)
        i += 1
        due += interval
        delay = due - time.time()
        if delay > 0:
            stop.wait(delay)
    pool.shutdown(wait=True)


def worker(config_path):
    """The load, in the client namespace, until the file STOP appears next to its output."""
    # An interrupt is the driver's to handle: it stops this process and cleans up.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with open(config_path) as f:
        cfg = json.load(f)
    aop, rec = cfg["aop"], Recorder(cfg["out"])
    stop = threading.Event()
    resolver = url("client")

    def resolve(i):
        name = RESOLVE_NAMES[i % len(RESOLVE_NAMES)]
        start = time.time()
        r = subprocess.run([aop, "resolve", "--server", resolver, "--timeout", "2s", "--json",
                            name], capture_output=True, text=True)
        end = time.time()
        stale = False
        if r.returncode == 0:
            try:
                stale = bool(json.loads(r.stdout).get("stale"))
            except ValueError:
                pass
        rec.op("resolve", name, start, end, r.returncode == 0, stale=stale,
               error=r.stderr.strip()[-300:] if r.returncode else None)

    sessions = threading.local()

    def call(i):
        tool, args = CALLS[i % len(CALLS)]
        start = time.time()
        error = None
        ok = False
        try:
            if getattr(sessions, "sid", None) is None:
                sessions.sid = mcp_session()
            message, _ = mcp_post({"jsonrpc": "2.0", "id": i + 1, "method": "tools/call",
                                   "params": {"name": tool, "arguments": args}},
                                  sessions.sid, timeout=10.0)
            if message is None:
                error = "no answer"
            elif "error" in message:
                error = json.dumps(message["error"])[:300]
            elif message["result"].get("isError"):
                error = json.dumps(message["result"].get("content"))[:300]
            else:
                ok = True
        except (urllib.error.URLError, OSError, ValueError) as e:
            error = str(e)[:300]
            if isinstance(e, urllib.error.HTTPError) and e.code == 404:
                sessions.sid = None
        rec.op("call", tool, start, time.time(), ok, error=error)

    def register(i):
        name = f"reg-{cfg['seed']}-{i}"
        start = time.time()
        r = subprocess.run([aop, "register", "--server", url("fin1"), "--zone", "finance.acme",
                            "--name", name, "--url", f"http://{ip('agents')}:9999/mcp",
                            "--lease", "86400", "--key-file", cfg["key"], "--timeout", "10s"],
                           capture_output=True, text=True)
        rec.op("register", name, start, time.time(), r.returncode == 0,
               error=r.stderr.strip()[-300:] if r.returncode else None)

    keepalives = []
    for k in range(cfg["keepalives"]):
        out = open(os.path.join(os.path.dirname(cfg["out"]), "logs", f"keepalive-{k}.log"), "ab")
        keepalives.append(subprocess.Popen(
            [aop, "register", "--keepalive", "--server", url("fin1"), "--zone", "finance.acme",
             "--name", f"ka-{k}", "--url", f"http://{ip('agents')}:{9100 + k}/mcp",
             "--lease", "15", "--key-file", cfg["key"]], stdout=out, stderr=subprocess.STDOUT))
    threads = [threading.Thread(target=paced, args=(cfg["resolve_rate"], stop, resolve)),
               threading.Thread(target=paced, args=(cfg["call_rate"], stop, call)),
               threading.Thread(target=paced, args=(cfg["register_rate"], stop, register))]
    for t in threads:
        t.start()
    stop_file = cfg["out"] + ".stop"
    while not os.path.exists(stop_file):
        time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    with open(cfg["out"] + ".keepalive-pids", "w") as f:
        json.dump([p.pid for p in keepalives], f)
    # The keepalive processes stay up until the driver has checked their endpoints.
    while not os.path.exists(stop_file + "2"):
        time.sleep(0.2)
    for p in keepalives:
        p.send_signal(signal.SIGTERM)
    for p in keepalives:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


# ---------------------------------------------------------------- faults


class Faults:
    def __init__(self, fed, aop, rng, every, down):
        self.fed, self.aop, self.rng, self.every, self.down = fed, aop, rng, every, down
        self.events = []  # (start, end, text)
        self.active_host_cut = None
        self.active_loss = None

    def victims(self):
        nodes = [h for hosts in ZONES.values() for h in hosts]
        return nodes + [a[0] for a in AGENTS]

    def one(self, stop):
        kind = self.rng.choice(["kill", "kill", "cut", "loss"])
        start = time.time()
        if kind == "kill":
            victim = self.rng.choice(self.victims())
            text = f"SIGKILL {victim}, restart after {self.down:.0f}s"
            self.fed.kill(victim)
            stop.wait(self.down)
            self.fed.start(victim)
        elif kind == "cut":
            host = self.rng.choice([h for h in HOSTS if h != "client"])
            text = f"link of {host} down {self.down:.0f}s"
            self.active_host_cut = host
            sh("ip", "link", "set", veth(host), "down")
            stop.wait(self.down)
            sh("ip", "link", "set", veth(host), "up")
            self.active_host_cut = None
        else:
            host = self.rng.choice([h for h in HOSTS if h != "client"])
            percent = self.rng.choice([10, 30, 50])
            text = f"{percent}% loss on {host} for {self.down:.0f}s"
            self.active_loss = host
            loss_on(host, percent)
            stop.wait(self.down)
            loss_off(host)
            self.active_loss = None
        self.events.append((start, time.time(), text))
        log(f"fault +{start - T0:.1f}s: {text}")

    def run(self, stop):
        """A fault starts every `every` seconds (or as soon as the previous one healed)."""
        due = time.time() + self.every
        while not stop.wait(max(0.0, due - time.time())):
            due += self.every
            self.one(stop)

    def heal_all(self):
        for host in HOSTS:
            sh("ip", "link", "set", veth(host), "up", check=False)
            loss_off(host)


def rolling_restart(fed, aop, zone, stop, events):
    """Restarts ZONE's servers one at a time (SIGTERM, start, wait until it serves the zone
    again), secondaries first, then the primary; over and over until the run ends."""
    hosts = ZONES[zone]
    order = hosts[1:] + hosts[:1]
    while not stop.is_set():
        for host in order:
            start = time.time()
            fed.kill(host, signal.SIGTERM)
            fed.start(host)
            served = wait_serving(aop, fed, host, host, zone)
            events.append((start, served, f"restart {host} (serving again after "
                                          f"{served - start:.2f}s)"))
            log(f"+{start - T0:.1f}s: restarted {host}: serving again after {served - start:.2f}s")
            if stop.wait(3):
                return


# ---------------------------------------------------------------- figures


def figures(ops, events, lost, checked, keepalive_missing, keepalives):
    by_kind = {}
    for op in ops:
        by_kind.setdefault(op["kind"], []).append(op)
    print(f"{'operation':<10} {'attempts':>9} {'successes':>10} {'ratio':>9} {'p50 ms':>8} "
          f"{'p99 ms':>8}  target")
    targets = {"resolve": 99.99, "call": 99.95, "register": 99.9}
    result = {}
    for kind in ("resolve", "call", "register"):
        items = by_kind.get(kind, [])
        ok = [o for o in items if o["ok"]]
        ratio = 100.0 * len(ok) / len(items) if items else 0.0
        lat = [1000 * (o["end"] - o["start"]) for o in ok]
        mark = "met" if ratio >= targets[kind] else "MISSED"
        print(f"{kind:<10} {len(items):>9} {len(ok):>10} {ratio:>8.3f}% {percentile(lat, 50):>8.1f} "
              f"{percentile(lat, 99):>8.1f}  >= {targets[kind]}% {mark}")
        result[kind] = {"attempts": len(items), "successes": len(ok), "ratio": ratio,
                        "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99)}
    stale = sum(1 for o in by_kind.get("resolve", []) if o.get("stale"))
    print(f"stale answers among successful resolves: {stale}")
    # Longest unanswerable: per name, from the first failed request to the next success.
    longest, longest_name, longest_at = 0.0, None, None
    for name in RESOLVE_NAMES:
        first_fail = None
        for o in sorted((o for o in by_kind.get("resolve", []) if o["name"] == name),
                        key=lambda o: o["start"]):
            if not o["ok"]:
                if first_fail is None:
                    first_fail = o["start"]
            elif first_fail is not None:
                gap = o["end"] - first_fail
                if gap > longest:
                    longest, longest_name, longest_at = gap, name, first_fail
                first_fail = None
        if first_fail is not None:
            gap = time.time() - first_fail
            if gap > longest:
                longest, longest_name, longest_at = gap, name, first_fail
    where = f" ({longest_name} from +{longest_at - T0:.1f}s)" if longest_name else ""
    print(f"longest time a name was unanswerable: {longest:.2f}s{where}  target < 2 s "
          f"{'met' if longest < 2 else 'MISSED'}")
    print(f"acknowledged registrations lost: {lost} of {checked} (checked at the primary and "
          f"through the resolver)  target 0 {'met' if lost == 0 else 'MISSED'}")
    print(f"keepalive endpoints missing at the end: {keepalive_missing} of {keepalives}")
    failures = [o for o in ops if not o["ok"]]
    if failures:
        print(f"failed operations ({len(failures)}; first 40, with the fault active then):")
        for o in sorted(failures, key=lambda o: o["start"])[:40]:
            fault = next((t for (s, e, t) in events if s - 0.5 <= o["start"] <= e + 5), "none")
            print(f"  +{o['start'] - T0:7.2f}s {o['kind']:<8} {o['name']:<22} "
                  f"{1000 * (o['end'] - o['start']):7.0f} ms  [{fault}]  {o.get('error')}")
    result.update({"longest_unanswerable_s": longest, "lost": lost, "checked": checked,
                   "keepalive_missing": keepalive_missing, "stale": stale})
    return result


def check_registrations(aop, names):
    """Acknowledged registrations missing at the primary or through the resolver."""
    def missing(name):
        full = f"{name}.finance.acme"
        at_primary = client_aop(aop, "resolve", "--no-recurse", "--timeout", "5s", "--server",
                                url("fin1"), full)
        through = client_aop(aop, "resolve", "--timeout", "5s", "--server", url("client"), full)
        return [where for (where, r) in (("primary", at_primary), ("resolver", through))
                if r.returncode != 0]
    lost = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        for name, where in zip(names, pool.map(missing, names)):
            if where:
                lost.append((name, where))
    return lost


T0 = time.time()


def main():
    global T0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--aop", required=True, help="the aop binary")
    parser.add_argument("--duration", type=float, default=120, help="seconds of load")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--fault-every", type=float, default=4, help="seconds between faults")
    parser.add_argument("--fault-length", type=float, default=3,
                        help="seconds a killed process stays down, a link cut or lossy")
    parser.add_argument("--rolling-restart", metavar="ZONE", choices=list(ZONES),
                        help="no random faults: restart ZONE's servers one at a time")
    parser.add_argument("--resolve-rate", type=float, default=20)
    parser.add_argument("--call-rate", type=float, default=10)
    parser.add_argument("--register-rate", type=float, default=1)
    parser.add_argument("--keepalives", type=int, default=10)
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    parser.add_argument("--worker", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return 0
    if os.geteuid() != 0:
        print("availability: must run as root (network namespaces)", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    print(f"seed {seed} (rerun with --seed {seed})", flush=True)
    rng = random.Random(seed)
    aop = os.path.abspath(args.aop)
    work = tempfile.mkdtemp(prefix="aop-availability-")

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    log("removing what a previous run left")
    cleanup_network()
    fed = None
    stop = threading.Event()
    code = 0
    load = None
    try:
        build_network()
        log(f"network: {len(HOSTS)} namespaces on bridge {BRIDGE}, {NET}.0/24; work dir {work}")
        fed, key = start_federation(aop, work)
        log("federation serving; starting the load")
        out = os.path.join(work, "ops.jsonl")
        config = {"aop": aop, "out": out, "key": key, "seed": seed,
                  "resolve_rate": args.resolve_rate, "call_rate": args.call_rate,
                  "register_rate": args.register_rate, "keepalives": args.keepalives}
        with open(os.path.join(work, "worker.json"), "w") as f:
            json.dump(config, f)
        load = subprocess.Popen(["ip", "netns", "exec", ns("client"), sys.executable,
                                 os.path.abspath(__file__), "--aop", aop, "--worker",
                                 os.path.join(work, "worker.json")])
        T0 = time.time()
        time.sleep(min(5, args.duration / 10))
        events = []
        if args.rolling_restart:
            injector = threading.Thread(target=rolling_restart,
                                        args=(fed, aop, args.rolling_restart, stop, events))
            faults = None
        else:
            faults = Faults(fed, aop, rng, args.fault_every, args.fault_length)
            injector = threading.Thread(target=faults.run, args=(stop,))
        injector.start()
        end = T0 + args.duration
        while time.time() < end and load.poll() is None:
            time.sleep(0.5)
        stop.set()
        injector.join()
        if faults:
            events = faults.events
            faults.heal_all()
        for name in fed.commands:
            if not fed.alive(name):
                fed.start(name)
        open(out + ".stop", "w").close()
        deadline = time.time() + 60
        while not os.path.exists(out + ".keepalive-pids") and time.time() < deadline:
            time.sleep(0.2)
        log(f"load stopped after {time.time() - T0:.0f}s; checking registrations")
        ops = []
        with open(out) as f:
            for line in f:
                ops.append(json.loads(line))
        # Every acknowledged one-shot registration, and every keepalive endpoint, must be there.
        for zone, hosts in ZONES.items():
            for host in hosts:
                wait_serving(aop, fed, host, host, zone)
        acked = [o["name"] for o in ops if o["kind"] == "register" and o["ok"]]
        lost = check_registrations(aop, acked)
        for name, where in lost[:20]:
            print(f"LOST: {name}.finance.acme (missing at: {', '.join(where)})")
        ka_missing = len(check_registrations(aop, [f"ka-{k}" for k in range(args.keepalives)]))
        open(out + ".stop2", "w").close()
        load.wait(60)
        print(f"duration {args.duration:.0f}s, seed {seed}, faults injected: {len(events)}"
              f"{' (rolling restart of ' + args.rolling_restart + ')' if args.rolling_restart else ''}")
        print(f"load: {args.resolve_rate:g} resolves/s (aop resolve, 2 s deadline), "
              f"{args.call_rate:g} calls/s (MCP through the gateway), "
              f"{args.register_rate:g} one-shot registrations/s, {args.keepalives} keepalive "
              f"endpoints (lease 15 s)")
        result = figures(ops, events, len(lost), len(acked), ka_missing, args.keepalives)
        if args.rolling_restart:
            failed = sum(1 for o in ops if o["kind"] == "resolve" and not o["ok"])
            print(f"rolling restart of {args.rolling_restart}: {len(events)} restarts, "
                  f"failed resolutions: {failed} (target 0)")
            result["rolling_restart_failed_resolutions"] = failed
        result.update({"seed": seed, "duration_s": args.duration, "faults": len(events),
                       "events": [(s - T0, e - T0, t) for (s, e, t) in events]})
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
        if lost:
            code = 1
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        code = 130
    except Exception as e:  # noqa: BLE001 - the harness reports any failure and cleans up
        log(f"harness failed: {e}")
        code = 3
    finally:
        stop.set()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if load and load.poll() is None:
            load.kill()
        if fed:
            fed.stop_all()
        try:
            cleanup_network()
            log(f"cleaned up every namespace, link and process; logs in {work}")
        except RuntimeError as e:
            log(f"cleanup failed: {e}")
            code = code or 4
    return code


if __name__ == "__main__":
    sys.exit(main())
