#!/usr/bin/env bash
# Search benchmark: `aop bench search` against
#   1. one node serving one zone of 100,000 agents (the index of one zone), calm and then
#      while CHURN registrations/deregistrations a second change the zone (each a new serial
#      whose index the next search must follow), and
#   2. a federation of three levels on loopback, one node per level (l1 -> l2.l1 -> l3.l2.l1,
#      AGENTS_PER_LEVEL agents each), searched from the top: every search is answered by
#      the first node, its child and its grandchild over gRPC, merged at each level.
#
#   bench/search.sh                         # DURATION=10s per run
#   DURATION=30s AGENTS=200000 bench/search.sh
#
# Queries are 1-3 words drawn from the generator's vocabulary (some very common, such as
# "assistant", which every description holds). Latency is per search, client side, at
# CONCURRENCY in flight over 2 connections; the load generator shares the 2 cores with the
# nodes. Nodes start with --health-probes 0: the generated agents' endpoints point at closed
# ports, and probing them would be measured too. Everything goes to bench/out/ (gitignored).
#
# Environment: DURATION (10s), AGENTS (100000), AGENTS_PER_LEVEL (10000), CONCURRENCY (4),
# CHURN changes per second (20; 0 skips the churn run), SEED (1), LOAD_DEADLINE seconds
# (180), QUIET_WAIT seconds (60), THREE_LEVELS (1; 0 skips run 2). AOP: an aop binary
# already built (default: this tree's release build, built first, under CARGO_TARGET_DIR
# when set). NODE_AOP: another aop binary for the nodes only (an older build, to compare;
# the load generator stays AOP, which has `bench search --churn`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
OUT=$ROOT/bench/out/search
DURATION=${DURATION:-10s}
AGENTS=${AGENTS:-100000}
AGENTS_PER_LEVEL=${AGENTS_PER_LEVEL:-10000}
CONCURRENCY=${CONCURRENCY:-4}
SEED=${SEED:-1}
LOAD_DEADLINE=${LOAD_DEADLINE:-180}
QUIET_WAIT=${QUIET_WAIT:-60}
CHURN=${CHURN:-20}
THREE_LEVELS=${THREE_LEVELS:-1}
mkdir -p "$OUT"
source "$ROOT/bench/lib.sh"

if [[ -z ${AOP:-} ]]; then
    log "building the release binary"
    cargo build --release --quiet
    AOP=${CARGO_TARGET_DIR:-$ROOT/target}/release/aop
fi
NODE_AOP=${NODE_AOP:-$AOP}

QUERIES=$OUT/queries.txt
python3 - "$QUERIES" "$SEED" <<'PY'
import random, sys
sys.path.insert(0, "bench")
import gen_zone as g
rng = random.Random(int(sys.argv[2]))
words = g.SUBJECTS + [v.split()[0] for v in g.VERBS] + g.TAGS + g.CAPABILITIES + ["assistant"]
with open(sys.argv[1], "w") as out:
    for _ in range(1000):
        out.write(" ".join(rng.sample(words, rng.randint(1, 3))) + "\n")
PY

# wait_searchable PID LOG URL ZONE: until one search of ZONE answers (indexes built).
wait_searchable() {
    local pid=$1 log_file=$2 url=$3 zone=$4 deadline=$((SECONDS + LOAD_DEADLINE))
    until "$AOP" search --server "$url" --zone "$zone" --timeout 60s invoice >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "node $pid exited; its log:"; cat "$log_file" >&2; exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "no search answer from $url within ${LOAD_DEADLINE}s"; exit 1
        fi
        sleep 0.1
    done
}

# run LABEL URL ZONE [EXTRA ARGS...]
run() {
    local label=$1 url=$2 zone=$3
    shift 3
    wait_quiet "$label"
    log "bench $label: $CONCURRENCY in flight for $DURATION $*"
    "$AOP" bench search --server "$url" --zone "$zone" --queries "$QUERIES" \
        --concurrency "$CONCURRENCY" --connections 2 --duration "$DURATION" "$@" | tee "$OUT/$label.txt"
}

# 1. One zone, AGENTS agents.
port=$(free_port)
zone=$OUT/one-$AGENTS.toml
python3 bench/gen_zone.py --agents "$AGENTS" --origin bench --server "http://127.0.0.1:$port" \
    --seed "$SEED" --out "$zone"
rm -rf "$OUT/one-data" "$OUT/bench.key"
"$AOP" key new bench-key --zone bench --out "$OUT/bench.key" >/dev/null 2>&1
log "node with $AGENTS agents on :$port (store in $OUT/one-data, accepting updates signed with $OUT/bench.key)"
"$NODE_AOP" node --zone "$zone" --grpc "127.0.0.1:$port" --data-dir "$OUT/one-data" \
    --update-key "$OUT/bench.key" --health-probes 0 >"$OUT/one.log" 2>&1 &
PIDS+=($!); one=$!
t0=$(now_ns)
wait_searchable "$one" "$OUT/one.log" "http://127.0.0.1:$port" bench
log "loaded and indexed in $(( ($(now_ns) - t0) / 1000000 )) ms (first search included); RSS $(rss_kib "$one") KiB"
run "one-zone-$AGENTS" "http://127.0.0.1:$port" bench
if ((CHURN > 0)); then
    run "one-zone-$AGENTS-churn-$CHURN" "http://127.0.0.1:$port" bench --churn "$CHURN" --key-file "$OUT/bench.key"
fi
stop "$one"

# 2. Three levels, one node each.
if ((THREE_LEVELS == 0)); then
    exit 0
fi
p1=$(free_port); p2=$(free_port); p3=$(free_port)
python3 bench/gen_zone.py --agents "$AGENTS_PER_LEVEL" --origin l1 --server "http://127.0.0.1:$p1" --seed 11 --out "$OUT/l1.toml"
python3 bench/gen_zone.py --agents "$AGENTS_PER_LEVEL" --origin l2.l1 --server "http://127.0.0.1:$p2" --seed 12 --out "$OUT/l2.toml"
python3 bench/gen_zone.py --agents "$AGENTS_PER_LEVEL" --origin l3.l2.l1 --server "http://127.0.0.1:$p3" --seed 13 --out "$OUT/l3.toml"
printf '\n[[delegation]]\nzone = "l2"\nservers = [{ grpc = "http://127.0.0.1:%s" }]\n' "$p2" >>"$OUT/l1.toml"
printf '\n[[delegation]]\nzone = "l3"\nservers = [{ grpc = "http://127.0.0.1:%s" }]\n' "$p3" >>"$OUT/l2.toml"
for level in 1 2 3; do
    port_var=p$level
    "$NODE_AOP" node --zone "$OUT/l$level.toml" --grpc "127.0.0.1:${!port_var}" --health-probes 0 >"$OUT/l$level.log" 2>&1 &
    PIDS+=($!)
done
wait_searchable "${PIDS[-1]}" "$OUT/l1.log" "http://127.0.0.1:$p1" l1
searched=$("$AOP" search --server "http://127.0.0.1:$p1" --zone l1 --json invoice | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d["searched"]), d["partial"])')
log "one search from the top covers (zones, partial): $searched"
run "three-levels-$AGENTS_PER_LEVEL" "http://127.0.0.1:$p1" l1
