#!/usr/bin/env bash
# Resolve benchmark of `aop node` on a 100,000-agent zone, next to a bare tonic server
# answering from a HashMap (examples/bare_resolve_server.rs) under the same load.
#
#   bench/resolve.sh                      # DURATION=10s per run
#   DURATION=30s AGENTS=200000 bench/resolve.sh
#
# Measures: zone load time (process start -> first answer), resident memory per agent,
# and `aop bench resolve --no-recurse` at 128 in flight over 4 connections and at 8 in flight
# over 1 connection, against the node and against the bare server. Everything it writes
# goes to bench/out/ (gitignored). The load generator shares the machine's cores with the
# server: read the registry/bare ratios, not the absolute figures. Nodes start with
# --health-probes 0: the generated zone's endpoints point at closed ports, and probing them
# (10,000 probes a second at 100,000 agents) would be measured too. What one Resolve costs,
# free of the machine's noise, is bench/instructions.sh's to count.
#
# Environment: DURATION (10s), WARMUP (1s; 0 skips), AGENTS (100000), SEED (1),
# LOAD_DEADLINE seconds (120), QUIET_WAIT seconds (120: how long to wait for other work on the
# machine to stop before each measurement), CARGO_TARGET_DIR (where the release binaries are built),
# SKIP_BUILD=1 (use the release binaries already built), RECURSIVE=1 (the registry is asked
# recursive questions, `aop bench resolve`'s default and the gateway's way, instead of
# --no-recurse; the bare server answers both alike), NODE_AOP (the aop binary that runs the
# node, default this tree's; the load generator and the bare server stay this tree's, so
# another build of the node is measured under the same load).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
AGENTS=${AGENTS:-100000}
SEED=${SEED:-1}
LOAD_DEADLINE=${LOAD_DEADLINE:-120}
QUIET_WAIT=${QUIET_WAIT:-120}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
AOP=$TARGET/release/aop
BARE=$TARGET/release/examples/bare_resolve_server
NODE_AOP=${NODE_AOP:-$AOP}
RECURSIVE=${RECURSIVE:-0}
if [[ $RECURSIVE == 1 ]]; then
    FORM=()
    export FORM_NAME="resolve (recursive: the node's own answers, through its resolver)"
else
    FORM=(--no-recurse)
    export FORM_NAME="resolve --no-recurse"
fi
ZONE=$OUT/bench-$AGENTS.toml
NAMES=$OUT/names-$AGENTS.txt
TINY_ZONE=$ROOT/zones/finance.acme.toml

mkdir -p "$OUT"

# Helpers: cleanup trap, log, free_port, stop, wait_resolvable, wait_line, CPU ticks, wait_quiet.
source "$ROOT/bench/lib.sh"

# bench LABEL URL C K SERVER_PID: one measured run (after an optional warm-up), JSON in
# $OUT/LABEL.json and, in $OUT/LABEL.cpu, the cores used during the run by the server, by
# the load generator and by everything else on the machine (noise from other work).
bench() {
    local label=$1 url=$2 concurrency=$3 connections=$4 server=$5
    wait_quiet "$label"
    if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
        "$AOP" bench resolve --server "$url" --names "$NAMES" "${FORM[@]}" --json \
            --concurrency "$concurrency" --connections "$connections" \
            --duration "$WARMUP" >/dev/null
    fi
    log "bench $label: $concurrency in flight over $connections connection(s) for $DURATION"
    local t0 m0 s0 g0 t1 m1 s1 g1
    t0=$(now_ns) m0=$(machine_ticks) s0=$(proc_ticks "$server") g0=$(proc_ticks $$)
    "$AOP" bench resolve --server "$url" --names "$NAMES" "${FORM[@]}" --json \
        --concurrency "$concurrency" --connections "$connections" \
        --duration "$DURATION" >"$OUT/$label.json"
    t1=$(now_ns) m1=$(machine_ticks) s1=$(proc_ticks "$server") g1=$(proc_ticks $$)
    awk -v t=$((t1 - t0)) -v m=$((m1 - m0)) -v s=$((s1 - s0)) -v g=$((g1 - g0)) -v hz="$HZ" \
        'BEGIN { secs = t / 1e9; printf "%.2f %.2f %.2f\n", s / hz / secs, g / hz / secs, (m - s - g) / hz / secs }' \
        >"$OUT/$label.cpu"
}

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building release binaries and examples"
    cargo build --release --examples --bins
fi
log "the node under test: $NODE_AOP"

log "generating $AGENTS agents into $ZONE"
python3 "$ROOT/bench/gen_zone.py" --agents "$AGENTS" --origin bench --seed "$SEED" \
    --out "$ZONE" --names "$NAMES"
PROBE=$(head -n 1 "$NAMES")
ZONE_BYTES=$(stat -c %s "$ZONE")

# --- the registry on the big zone: load time, memory, throughput --------------------------
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
log "starting aop node on $URL"
wait_quiet "the load-time measurement"
LOAD_M0=$(machine_ticks) LOAD_G0=$(proc_ticks $$)
START_NS=$(now_ns)
"$NODE_AOP" --log-format json node --zone "$ZONE" --grpc "127.0.0.1:$PORT" \
    --health-probes 0 >"$OUT/node.log" 2>&1 &
NODE=$!
PIDS+=("$NODE")
wait_resolvable "$NODE" "$OUT/node.log" "$URL" "$PROBE"
READY_NS=$(now_ns)
LOAD_CPU=$(awk -v t=$((READY_NS - START_NS)) -v m=$(($(machine_ticks) - LOAD_M0)) \
    -v s="$(proc_ticks "$NODE")" -v g=$(($(proc_ticks $$) - LOAD_G0)) -v hz="$HZ" \
    'BEGIN { secs = t / 1e9; printf "%.2f %.2f", s / hz / secs, (m - s - g) / hz / secs }')
NODE_RSS=$(rss_kib "$NODE")
NODE_HWM=$(hwm_kib "$NODE")
bench registry-c128-k4 "$URL" 128 4 "$NODE"
bench registry-c8-k1 "$URL" 8 1 "$NODE"
NODE_RSS_AFTER=$(rss_kib "$NODE")
stop "$NODE"

# --- the registry on the demo's tiny zone: the baseline resident set -----------------------
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
log "starting aop node on $URL with $TINY_ZONE (memory baseline)"
"$NODE_AOP" --log-format json node --zone "$TINY_ZONE" --grpc "127.0.0.1:$PORT" \
    --health-probes 0 >"$OUT/node-tiny.log" 2>&1 &
TINY=$!
PIDS+=("$TINY")
wait_resolvable "$TINY" "$OUT/node-tiny.log" "$URL" analyst.finance.acme
TINY_RSS=$(rss_kib "$TINY")
stop "$TINY"

# --- the bare server ------------------------------------------------------------------------
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
log "starting bare_resolve_server on $URL"
"$BARE" --names "$NAMES" --listen "127.0.0.1:$PORT" >"$OUT/bare.log" 2>&1 &
BARE_PID=$!
PIDS+=("$BARE_PID")
wait_line "$OUT/bare.log" "listening on" "$BARE_PID"
BARE_RSS=$(rss_kib "$BARE_PID")
bench bare-c128-k4 "$URL" 128 4 "$BARE_PID"
bench bare-c8-k1 "$URL" 8 1 "$BARE_PID"
stop "$BARE_PID"

# --- summary -------------------------------------------------------------------------------
python3 - "$OUT" "$AGENTS" "$ZONE_BYTES" "$START_NS" "$READY_NS" "$NODE_RSS" "$NODE_HWM" \
    "$NODE_RSS_AFTER" "$TINY_RSS" "$BARE_RSS" "$DURATION" "$LOAD_CPU" <<'PY'
import json
import os
import sys
from datetime import datetime
from pathlib import Path

out = Path(sys.argv[1])
agents = int(sys.argv[2])
zone_bytes = int(sys.argv[3])
start_ns, ready_ns = int(sys.argv[4]), int(sys.argv[5])
node_rss, node_hwm, node_rss_after, tiny_rss, bare_rss = (int(v) * 1024 for v in sys.argv[6:11])
duration = sys.argv[11]
load_node_cores, load_other_cores = sys.argv[12].split()

def log_time(message):
    """Seconds from process start to the first log line with this message, or None."""
    for line in (out / "node.log").read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("fields", {}).get("message") == message:
            stamp = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
            return stamp.timestamp() - start_ns / 1e9
    return None

def mib(b):
    return f"{b / 2**20:8.1f} MiB"

print()
print(f"zone: {agents} agents, {zone_bytes} bytes ({zone_bytes / agents:.0f} bytes/agent of TOML)")
print()
print("load time (process start ->)")
for label, message in [("'loaded zone' logged", "loaded zone"),
                       ("'gRPC door listening' logged", "gRPC door listening")]:
    t = log_time(message)
    print(f"  {label:30} {'n/a' if t is None else f'{t * 1000:8.0f} ms'}")
for line in (out / "node.log").read_text().splitlines():
    try:
        fields = json.loads(line).get("fields", {})
    except json.JSONDecodeError:
        continue
    if fields.get("message") == "zone files loaded" and "elapsed_ms" in fields:
        print(f"  {'(node: zone files loaded in)':30} {float(fields['elapsed_ms']):8.0f} ms  (parse + build, as the node logs it)")
print(f"  {'first answer (aop resolve poll)':30} {(ready_ns - start_ns) / 1e6:8.0f} ms"
      "  (includes ~20 ms poll period and a CLI start-up per poll)")
print(f"  (cores busy while loading: node {load_node_cores}, other processes {load_other_cores})")
print()
print("memory (VmRSS)")
rows = [
    (f"node, {agents} agents, after load", f"{mib(node_rss)}   peak during load (VmHWM) {mib(node_hwm)}"),
    ("node, after the bench runs", mib(node_rss_after)),
    ("node, demo zone (3 agents)", mib(tiny_rss)),
    (f"bare server, {agents} names", mib(bare_rss)),
    ("RSS / agent", f"{node_rss / agents:8.0f} bytes"),
    ("(RSS - baseline) / agent", f"{(node_rss - tiny_rss) / agents:8.0f} bytes"),
    ("zone file / agent", f"{zone_bytes / agents:8.0f} bytes"),
    ("(RSS - baseline) / file size", f"{(node_rss - tiny_rss) / zone_bytes:8.2f} x"),
    ("(RSS - baseline - file) / agent", f"{(node_rss - tiny_rss - zone_bytes) / agents:8.0f} bytes beyond the raw text"),
]
for label, value in rows:
    print(f"  {label:34} {value}")
print()

def load(label):
    return json.loads((out / f"{label}.json").read_text())

def cpu(label):
    path = out / f"{label}.cpu"
    return "/".join(path.read_text().split()) if path.exists() else "n/a"

def ms(us):
    return f"{us / 1000:.3f}"

runs = [("128 in flight / 4 conns", "c128-k4"), ("8 in flight / 1 conn", "c8-k1")]
print(f"{os.environ.get('FORM_NAME', 'resolve --no-recurse')}, {duration} per run (latencies in ms)")
header = f"  {'run':25} {'server':9} {'req/s':>9} {'p50':>7} {'p90':>7} {'p99':>7} {'p999':>7} {'max':>8} {'errors':>6} {'cpu srv/gen/other':>18}  outcomes"
print(header)
print("  " + "-" * (len(header) - 2))
for title, key in runs:
    for server in ("registry", "bare"):
        r = load(f"{server}-{key}")
        l = r["latency_us"]
        outcomes = ", ".join(f"{k} {v}" for k, v in r["outcomes"].items())
        print(f"  {title:25} {server:9} {r['throughput_per_s']:9.0f} {ms(l['p50']):>7} "
              f"{ms(l['p90']):>7} {ms(l['p99']):>7} {ms(l['p999']):>7} {ms(l['max']):>8} "
              f"{r['errors']:6} {cpu(server + '-' + key):>18}  {outcomes}")
        for sample in r.get("error_samples", []):
            print(f"  {'':25} {'':9} error: {sample}")
    reg, bare = load(f"registry-{key}"), load(f"bare-{key}")
    ratio = lambda a, b: f"{a / b:.2f}" if b else "n/a"
    lr, lb = reg["latency_us"], bare["latency_us"]
    print(f"  {title:25} {'reg/bare':9} {ratio(reg['throughput_per_s'], bare['throughput_per_s']):>9} "
          f"{ratio(lr['p50'], lb['p50']):>7} {ratio(lr['p90'], lb['p90']):>7} "
          f"{ratio(lr['p99'], lb['p99']):>7} {ratio(lr['p999'], lb['p999']):>7} "
          f"{ratio(lr['max'], lb['max']):>8}")
print()
print(f"  cpu srv/gen/other: cores busy during the run in the server, the load generator and")
print(f"  everything else ({os.cpu_count()} cores in all); 'other' well above 0 means the run was disturbed.")
print()
print(f"raw reports: {out}/{{registry,bare}}-{{c128-k4,c8-k1}}.json; node log: {out}/node.log")
PY
