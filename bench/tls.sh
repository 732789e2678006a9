#!/usr/bin/env bash
# What TLS costs the gRPC door (docs/protocol.md §8.1): `aop bench resolve --no-recurse` on
# warm connections against one node over plaintext and the same node's twin over TLS, the
# runs interleaved in one script so both see the same machine.
#
#   bench/tls.sh                          # DURATION=10s per run, ROUNDS=2
#   DURATION=5s ROUNDS=3 AGENTS=10000 bench/tls.sh
#
# Two nodes serve the same generated zone (bench/gen_zone.py), both started with
# --health-probes 0 (the zone's endpoints lead to closed ports): one on http://, one with a
# certificate from a CA this script makes (`aop cert ca`, `aop cert issue`) on https://,
# which the load generator trusts with --ca. Connections are opened once per run and stay
# open, so the figures are TLS's cost per request (record encryption), not its handshakes.
# For each of ROUNDS rounds it runs plaintext then TLS at 128 in flight over 4 connections and
# at 8 over 1, and prints each run, the TLS/plaintext throughput ratio per round and the
# nodes' CPU per request. The target: TLS keeps at least 0.75 of plaintext's throughput.
#
# Environment: DURATION (10s), WARMUP (1s; 0 skips), ROUNDS (2), AGENTS (100000), SEED (1),
# LOAD_DEADLINE seconds (120), QUIET_WAIT seconds (120: how long to wait for other work on the
# machine to stop before each measurement), CARGO_TARGET_DIR (where the release binaries are
# built). Everything it writes goes to bench/out/tls-*.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
ROUNDS=${ROUNDS:-2}
AGENTS=${AGENTS:-100000}
SEED=${SEED:-1}
LOAD_DEADLINE=${LOAD_DEADLINE:-120}
QUIET_WAIT=${QUIET_WAIT:-120}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
AOP=$TARGET/release/aop
ZONE=$OUT/tls-bench-$AGENTS.toml
NAMES=$OUT/tls-names-$AGENTS.txt
CERTS=$OUT/tls-certs

mkdir -p "$OUT"
rm -f "$OUT"/tls-*.json "$OUT"/tls-*.cpu "$OUT"/tls-*.log

# Helpers: cleanup trap, log, free_port, stop, wait_resolvable, wait_line, CPU ticks, wait_quiet.
source "$ROOT/bench/lib.sh"

log "building release binaries"
cargo build --release --bins

log "generating $AGENTS agents into $ZONE"
python3 "$ROOT/bench/gen_zone.py" --agents "$AGENTS" --origin bench --seed "$SEED" \
    --out "$ZONE" --names "$NAMES"
PROBE=$(head -n 1 "$NAMES")

log "making a CA and a certificate for 127.0.0.1 in $CERTS"
rm -rf "$CERTS"
"$AOP" cert ca --out "$CERTS" >/dev/null
"$AOP" cert issue node --ca "$CERTS" --out "$CERTS" --ip 127.0.0.1 >/dev/null
export AOP_CA=$CERTS/ca.pem

PLAIN_PORT=$(free_port)
PLAIN_URL=http://127.0.0.1:$PLAIN_PORT
"$AOP" --log-format json node --zone "$ZONE" --grpc "127.0.0.1:$PLAIN_PORT" --health-probes 0 \
    >"$OUT/tls-node-plain.log" 2>&1 &
PLAIN=$!
PIDS+=("$PLAIN")
TLS_PORT=$(free_port)
TLS_URL=https://127.0.0.1:$TLS_PORT
"$AOP" --log-format json node --zone "$ZONE" --grpc "127.0.0.1:$TLS_PORT" --health-probes 0 \
    --tls-cert "$CERTS/node.pem" --tls-key "$CERTS/node.key" >"$OUT/tls-node-tls.log" 2>&1 &
TLS=$!
PIDS+=("$TLS")
log "plaintext node on $PLAIN_URL, TLS node on $TLS_URL; waiting for both to answer"
wait_resolvable "$PLAIN" "$OUT/tls-node-plain.log" "$PLAIN_URL" "$PROBE"
wait_resolvable "$TLS" "$OUT/tls-node-tls.log" "$TLS_URL" "$PROBE"

# run LABEL URL C K PID: one measured run (after a warm-up on the same settings); the report in
# $OUT/tls-LABEL.json, the node's cores and the machine's other cores in $OUT/tls-LABEL.cpu.
run() {
    local label=$1 url=$2 concurrency=$3 connections=$4 server=$5
    wait_quiet "$label"
    if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
        "$AOP" bench resolve --server "$url" --names "$NAMES" --no-recurse --json \
            --concurrency "$concurrency" --connections "$connections" --duration "$WARMUP" >/dev/null
    fi
    log "bench $label: $concurrency in flight over $connections connection(s) for $DURATION"
    local t0 m0 s0 g0 t1 m1 s1 g1
    t0=$(now_ns) m0=$(machine_ticks) s0=$(proc_ticks "$server") g0=$(proc_ticks $$)
    "$AOP" bench resolve --server "$url" --names "$NAMES" --no-recurse --json \
        --concurrency "$concurrency" --connections "$connections" --duration "$DURATION" \
        >"$OUT/tls-$label.json"
    t1=$(now_ns) m1=$(machine_ticks) s1=$(proc_ticks "$server") g1=$(proc_ticks $$)
    awk -v t=$((t1 - t0)) -v m=$((m1 - m0)) -v s=$((s1 - s0)) -v g=$((g1 - g0)) -v hz="$HZ" \
        'BEGIN { secs = t / 1e9; printf "%.2f %.2f %.2f\n", s / hz / secs, g / hz / secs, (m - s - g) / hz / secs }' \
        >"$OUT/tls-$label.cpu"
}

for round in $(seq 1 "$ROUNDS"); do
    for shape in "128 4" "8 1"; do
        read -r c k <<<"$shape"
        run "r$round-plain-c$c-k$k" "$PLAIN_URL" "$c" "$k" "$PLAIN"
        run "r$round-tls-c$c-k$k" "$TLS_URL" "$c" "$k" "$TLS"
    done
done
stop "$PLAIN"
stop "$TLS"

python3 - "$OUT" "$ROUNDS" "$DURATION" "$AGENTS" <<'PY'
import json
import sys
from pathlib import Path

out, rounds, duration, agents = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]

def load(label):
    report = json.loads((out / f"tls-{label}.json").read_text())
    node, gen, other = (float(v) for v in (out / f"tls-{label}.cpu").read_text().split())
    return report, node, gen, other

print()
print(f"gRPC Resolve --no-recurse, {agents}-agent zone, {duration} per run, warm connections")
header = (f"  {'round':5} {'c/k':6} {'door':5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
          f" {'node cores':>10} {'node µs/req':>11} {'gen':>5} {'other':>6}")
print(header)
print("  " + "-" * (len(header) - 2))
ratios = {}
for r in range(1, rounds + 1):
    for c, k in ((128, 4), (8, 1)):
        figures = {}
        for door in ("plain", "tls"):
            report, node, gen, other = load(f"r{r}-{door}-c{c}-k{k}")
            rate = report["throughput_per_s"]
            figures[door] = rate
            per_request = node / rate * 1e6 if rate else float("nan")
            mark = "*" if other > 0.25 else " "
            print(f"  {r:<5} {c}/{k:<4} {door:5} {rate:9.0f} {report['latency_us']['p50'] / 1000:8.3f}"
                  f" {report['latency_us']['p99'] / 1000:8.3f} {report['errors']:6d} {node:10.2f}"
                  f" {per_request:11.1f} {gen:5.2f} {other:5.2f}{mark}")
        ratios.setdefault(f"{c}/{k}", []).append(figures["tls"] / figures["plain"])
print()
print("TLS / plaintext throughput (target >= 0.75; '*' above: other work took over 0.25 cores)")
for shape, values in ratios.items():
    listed = ", ".join(f"{v:.2f}" for v in values)
    print(f"  {shape:6} {listed}   mean {sum(values) / len(values):.2f}")
PY
