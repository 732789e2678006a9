#!/usr/bin/env bash
# What one change costs the node as its zone grows: node CPU per registration into a zone
# preloaded with AGENTS agents, one registration in flight (each its own commit and its own
# new snapshot), then durable registrations per second with CONCURRENCY in flight (as
# bench/register.sh measures into an empty zone).
#
#   bench/change_cost.sh                        # SIZES="0 1000 100000", COUNT=500, THROUGHPUT=5000
#   SIZES="1000000" bench/change_cost.sh        # a million agents (about 7 GB while loading)
#   NODE_BIN=/path/to/other/aop bench/change_cost.sh   # measure another build of the node
#
# Per size: bench/gen_zone.py writes the zone (origin `bench`, SEED 1), the node loads it
# with --health-probes 0 (the generated endpoints point at closed ports) and a fresh
# --data-dir; once it answers, the node's CPU (utime+stime from /proc/PID/stat) is read
# around `aop bench register --concurrency 1 --count COUNT`, and divided by COUNT. Then
# `aop bench register --count THROUGHPUT --concurrency CONCURRENCY` gives registrations/s
# (fsync on every commit), and the node's peak RSS (VmHWM). One node at a time.
#
# Environment: SIZES, COUNT (500), WARMUP (20 registrations before the count), THROUGHPUT (5000; 0 skips), CONCURRENCY (64), SEED (1),
# NODE_BIN (default: the release aop built here), AOP (the client; default that release aop),
# CARGO_TARGET_DIR, SKIP_BUILD (1: use the binary already there), LOAD_DEADLINE seconds (600).
# Writes bench/out/change_cost/ (gitignored).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
OUT=$ROOT/bench/out/change_cost
SIZES=${SIZES:-0 1000 100000}
COUNT=${COUNT:-500}
WARMUP=${WARMUP:-20}
THROUGHPUT=${THROUGHPUT:-5000}
CONCURRENCY=${CONCURRENCY:-64}
SEED=${SEED:-1}
LOAD_DEADLINE=${LOAD_DEADLINE:-600}
QUIET_WAIT=0
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
AOP=${AOP:-$TARGET/release/aop}
NODE_BIN=${NODE_BIN:-$AOP}
mkdir -p "$OUT"

source "$ROOT/bench/lib.sh"

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building the release aop"
    cargo build --release --bin aop
fi

rm -f "$OUT/bench.key"
"$AOP" key new bench-key --zone bench --out "$OUT/bench.key" >/dev/null 2>&1

printf '%-10s %8s %14s %12s %14s\n' agents load_s cpu_ms_per_reg regs_per_s peak_rss_mib
for agents in $SIZES; do
    port=$(free_port)
    url=http://127.0.0.1:$port
    zone=$OUT/bench-$agents.toml
    if [[ ! -s $zone ]]; then
        if ((agents == 0)); then
            printf '[zone]\norigin = "bench"\nserial = 1\nservers = [{ grpc = "%s" }]\n' \
                http://127.0.0.1:7100 >"$zone"
        else
            log "generating $agents agents"
            python3 bench/gen_zone.py --agents "$agents" --origin bench --seed "$SEED" \
                --server http://127.0.0.1:7100 --out "$zone" --names "$OUT/names-$agents.txt"
        fi
    fi
    rm -rf "$OUT/data-$agents"
    log "loading $agents agents: $NODE_BIN node --zone $zone --grpc 127.0.0.1:$port"
    start=$(now_ns)
    "$NODE_BIN" node --zone "$zone" --grpc "127.0.0.1:$port" --data-dir "$OUT/data-$agents" \
        --update-key "$OUT/bench.key" --health-probes 0 2>"$OUT/node-$agents.log" &
    node=$!
    PIDS+=("$node")
    if ((agents == 0)); then
        # Nothing to resolve: wait for the zone itself.
        until "$AOP" zone dump --server "$url" bench --json 2>/dev/null | grep -q "\"transferred_from\": \"$url\""; do
            kill -0 "$node" 2>/dev/null || { cat "$OUT/node-$agents.log" >&2; exit 1; }
            sleep 0.05
        done
    else
        wait_resolvable "$node" "$OUT/node-$agents.log" "$url" "$(head -1 "$OUT/names-$agents.txt")"
    fi
    load_s=$(awk -v ns=$(($(now_ns) - start)) 'BEGIN { printf "%.1f", ns / 1e9 }')
    # A few changes first, so one-time work (a first snapshot, connections) is not counted.
    "$AOP" bench register --server "$url" --zone bench --key-file "$OUT/bench.key" \
        --count "$WARMUP" --concurrency 1 >"$OUT/warmup-$agents.txt"
    t0=$(proc_ticks "$node")
    "$AOP" bench register --server "$url" --zone bench --key-file "$OUT/bench.key" \
        --count "$COUNT" --concurrency 1 >"$OUT/serial-$agents.txt"
    t1=$(proc_ticks "$node")
    cpu=$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$COUNT" 'BEGIN { printf "%.2f", t * 1000 / hz / n }')
    log "$agents agents: $((t1 - t0)) ticks of node CPU for $COUNT registrations: $cpu ms each"
    rate=-
    if ((THROUGHPUT > 0)); then
        "$AOP" bench register --server "$url" --zone bench --key-file "$OUT/bench.key" \
            --count "$THROUGHPUT" --concurrency "$CONCURRENCY" >"$OUT/throughput-$agents.txt"
        rate=$(grep -oE '[0-9.]+/s' "$OUT/throughput-$agents.txt" | head -1 || true)
    fi
    peak=$(($(hwm_kib "$node") / 1024))
    stop "$node"
    printf '%-10s %8s %14s %12s %14s\n' "$agents" "$load_s" "$cpu" "$rate" "$peak"
done
