#!/usr/bin/env bash
# A cold start under load: how many questions a resolving node with empty caches sends to each
# level of the tree while it answers a burst of different names under one zone cut.
#
#   bench/cold.sh                          # AGENTS=10000 names, 128 in flight over 4 connections
#   AOP=/path/to/other/aop bench/cold.sh   # the same with another build (before/after)
#
# The federation, on loopback: A serves the root zone, which delegates `org` to B; B serves
# `org`, which delegates `bench.org` to C; C serves `bench.org` with AGENTS generated agents
# (bench/gen_zone.py). R serves no zone and resolves from its root hint (A), its caches empty.
# `aop bench resolve --requests AGENTS` then makes AGENTS lookups of the zone's names,
# CONCURRENCY in flight, starting with R's caches empty (each of its workers takes the names in
# turn from its own place in the list, so the workers' runs overlap and some names repeat). It prints the Resolve questions A, B and
# C answered (their /metrics, aop_queries_total of the gRPC door, before and after the burst).
# A resolver that shares the walk to a cut asks A and B a handful of times; one that walks
# from the root for each name asks them up to once per name in flight.
#
# On loopback a walk from the root takes well under a millisecond, so a burst's lookups barely
# overlap there. To see the cold start of a resolver far from the root, A is paused (SIGSTOP)
# as the burst starts and resumed ROOT_PAUSE_MS later (default 500; 0 to disable): every
# lookup that starts meanwhile meets a root that has not answered yet, as it would across a
# slow link. The pause stays under the resolver's attempt timeout, so nothing fails.
# Everything it writes goes to bench/out/cold-*.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
AGENTS=${AGENTS:-10000}
CONCURRENCY=${CONCURRENCY:-128}
CONNECTIONS=${CONNECTIONS:-4}
ROOT_PAUSE_MS=${ROOT_PAUSE_MS:-500}
if [[ -z ${AOP:-} ]]; then
    cargo build --release --quiet
    AOP=$ROOT/target/release/aop
fi
mkdir -p "$OUT"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
trap 'kill -CONT "${PIDS[@]}" 2>/dev/null; kill "${PIDS[@]}" 2>/dev/null || true' EXIT

declare -A GRPC ADMIN
for node in A B C R; do
    GRPC[$node]=127.0.0.1:$(free_port)
    ADMIN[$node]=127.0.0.1:$(free_port)
done
cat >"$OUT/cold-root.toml" <<EOF
[zone]
origin = "."
serial = 1
ttl = 3600
servers = [{ grpc = "http://${GRPC[A]}" }]
[[delegation]]
zone = "org"
servers = [{ grpc = "http://${GRPC[B]}" }]
ttl = 3600
EOF
cat >"$OUT/cold-org.toml" <<EOF
[zone]
origin = "org"
serial = 1
ttl = 3600
servers = [{ grpc = "http://${GRPC[B]}" }]
[[delegation]]
zone = "bench"
servers = [{ grpc = "http://${GRPC[C]}" }]
ttl = 3600
EOF
python3 bench/gen_zone.py --agents "$AGENTS" --origin bench.org --seed 1 \
    --server "http://${GRPC[C]}" --out "$OUT/cold-leaf.toml" --names "$OUT/cold-names.txt"

start() {
    local node=$1
    shift
    "$AOP" node --grpc "${GRPC[$node]}" --admin "${ADMIN[$node]}" --health-probes 0 "$@" \
        2>"$OUT/cold-$node.log" &
    PIDS+=($!)
}
start A --zone "$OUT/cold-root.toml"
PID_A=$!
start B --zone "$OUT/cold-org.toml"
start C --zone "$OUT/cold-leaf.toml"
start R --root "http://${GRPC[A]}"
# Ready when each node answers for its zone (R: when it resolves through all three).
ready() {
    for _ in $(seq 600); do
        "$AOP" resolve --server "$1" "$2" --no-recurse >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "not ready: $1 $2" >&2
    exit 1
}
ready "http://${GRPC[A]}" org
ready "http://${GRPC[B]}" bench.org
ready "http://${GRPC[C]}" "$(head -1 "$OUT/cold-names.txt")"

# Resolve questions a node's gRPC door answered so far.
questions() {
    curl -fsS "http://${ADMIN[$1]}/metrics" |
        awk '/^aop_queries_total\{door="grpc",method="[^"]*Resolve"/ { n += $NF } END { print n + 0 }'
}
declare -A BEFORE
for node in A B C; do BEFORE[$node]=$(questions $node); done
if ((ROOT_PAUSE_MS > 0)); then
    kill -STOP "$PID_A"
    (sleep "$(python3 -c "print($ROOT_PAUSE_MS / 1000)")" && kill -CONT "$PID_A") &
fi
echo "+ aop bench resolve --server http://${GRPC[R]} --names $OUT/cold-names.txt --requests $AGENTS --concurrency $CONCURRENCY --connections $CONNECTIONS"
"$AOP" bench resolve --server "http://${GRPC[R]}" --names "$OUT/cold-names.txt" \
    --requests "$AGENTS" --concurrency "$CONCURRENCY" --connections "$CONNECTIONS" \
    --duration 600s --json >"$OUT/cold-bench.json" 2>"$OUT/cold-bench.log"
python3 - "$OUT/cold-bench.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lat = r["latency_us"]
print(f"R answered {r['requests']} lookups ({r['errors']} errors) in {r['elapsed_s']:.2f} s, "
      f"{r['throughput_per_s']:,.0f}/s, p50 {lat['p50'] / 1000:.1f} ms, p99 {lat['p99'] / 1000:.1f} ms "
      f"(the root's pause included), R's cache hit ratio {r['cache_hit_ratio']:.3f}")
PY
for node in A B C; do
    echo "questions to $node: $(($(questions $node) - BEFORE[$node]))"
done
