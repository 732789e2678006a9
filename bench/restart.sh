#!/usr/bin/env bash
# Restart from a store: how long a node whose `--data-dir` holds a large zone takes to answer
# again, with nothing else to read it from.
#
#   bench/restart.sh                                  # AGENTS=1000000 (about 2.5 GB free needed)
#   ZONE=/path/to/bench-1m.toml bench/restart.sh      # an existing zone file (origin `bench`)
#   NODE_BIN=/path/to/other/aop bench/restart.sh      # another build of the node
#
# 1. a primary loads the zone file (no store);
# 2. a secondary of it (`--secondary bench=PRIMARY --data-dir D`) takes the full transfer
#    into its store; the time until it answers the zone's SOA over DNS is printed;
# 3. both stop; the secondary starts again on the same store with the primary down (no zone
#    file, no primary: only its store), and is timed from process start to its first SOA
#    answer over DNS (polled every 0.1 s with dig); then its PSS (/proc/PID/smaps_rollup),
#    peak RSS and CPU time by then.
# Everything goes to bench/out/restart/ (gitignored).
#
# Environment: AGENTS (1000000), SEED (1), ZONE (a zone file to use instead of generating
# one; its origin must be `bench`), NODE_BIN (the node's aop; default this tree's release
# build), LOAD_DEADLINE seconds (600), QUIET_WAIT seconds (120: how long to wait for other work
# on the machine to stop before the timed restart).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
OUT=$ROOT/bench/out/restart
AGENTS=${AGENTS:-1000000}
SEED=${SEED:-1}
LOAD_DEADLINE=${LOAD_DEADLINE:-600}
QUIET_WAIT=${QUIET_WAIT:-120}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
AOP=${AOP:-$TARGET/release/aop}
NODE_BIN=${NODE_BIN:-$AOP}

mkdir -p "$OUT"
source "$ROOT/bench/lib.sh"

command -v dig >/dev/null || {
    echo "bench/restart.sh needs dig (Debian: apt-get install bind9-dnsutils)" >&2
    exit 1
}
if [[ ! -x $NODE_BIN ]]; then
    log "building the release binary"
    cargo build --release --bin aop
fi

if [[ -z ${ZONE:-} ]]; then
    ZONE=$OUT/bench-$AGENTS.toml
    if [[ ! -s $ZONE ]]; then
        log "generating $AGENTS agents into $ZONE"
        python3 "$ROOT/bench/gen_zone.py" --agents "$AGENTS" --origin bench --seed "$SEED" \
            --out "$ZONE" --names "$OUT/names-$AGENTS.txt"
    fi
fi

pss_kib() { awk '/^Pss:/ { print $2 }' "/proc/$1/smaps_rollup"; }
secs_since() { awk -v a="$1" -v b="$(now_ns)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }
# wait_soa PID DNS_PORT LOG: until the node answers `bench SOA` over DNS.
wait_soa() {
    local pid=$1 port=$2 node_log=$3 deadline=$((SECONDS + LOAD_DEADLINE))
    until dig +time=1 +tries=1 @127.0.0.1 -p "$port" bench SOA 2>/dev/null |
        grep -q 'ANSWER SECTION'; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "the node exited before answering; its log ($node_log) ends:" >&2
            tail -n 5 "$node_log" >&2
            exit 1
        fi
        if ((SECONDS > deadline)); then
            echo "no SOA answer within $LOAD_DEADLINE s (LOAD_DEADLINE); see $node_log" >&2
            exit 1
        fi
        sleep 0.1
    done
}

STORE=$OUT/store
rm -rf "$STORE"
PRIMARY_GRPC=$(free_port)
SECONDARY_GRPC=$(free_port)
SECONDARY_DNS=$(free_port)
PRIMARY_DNS=$(free_port)

log "primary: $ZONE"
"$NODE_BIN" node --zone "$ZONE" --grpc "127.0.0.1:$PRIMARY_GRPC" --dns "127.0.0.1:$PRIMARY_DNS" \
    --health-probes 0 2>"$OUT/primary.log" &
PRIMARY=$!
PIDS+=("$PRIMARY")
wait_soa "$PRIMARY" "$PRIMARY_DNS" "$OUT/primary.log"

secondary() {
    "$NODE_BIN" node --secondary "bench=http://127.0.0.1:$PRIMARY_GRPC" \
        --grpc "127.0.0.1:$SECONDARY_GRPC" --dns "127.0.0.1:$SECONDARY_DNS" \
        --data-dir "$STORE" --health-probes 0 2>"$1" &
    SECONDARY=$!
    PIDS+=("$SECONDARY")
}

log "secondary: full transfer into $STORE"
T0=$(now_ns)
secondary "$OUT/secondary-transfer.log"
wait_soa "$SECONDARY" "$SECONDARY_DNS" "$OUT/secondary-transfer.log"
TRANSFER_S=$(secs_since "$T0")
stop "$SECONDARY"
stop "$PRIMARY"
STORE_SIZE=$(du -sh "$STORE" | cut -f1)

wait_quiet "the restart"
log "secondary: restart from its store, primary down"
T0=$(now_ns)
secondary "$OUT/secondary-restart.log"
wait_soa "$SECONDARY" "$SECONDARY_DNS" "$OUT/secondary-restart.log"
RESTART_S=$(secs_since "$T0")
CPU_S=$(awk -v t="$(proc_ticks "$SECONDARY")" -v hz="$HZ" 'BEGIN { printf "%.1f", t / hz }')
PSS=$(($(pss_kib "$SECONDARY") / 1024))
HWM=$(($(hwm_kib "$SECONDARY") / 1024))
stop "$SECONDARY"

AGENT_COUNT=$(grep -c '^\[\[agent\]\]' "$ZONE" || true)
printf '\nrestart of a secondary from its store (%s agents, store %s), primary down, node %s\n' \
    "$AGENT_COUNT" "$STORE_SIZE" "$NODE_BIN"
printf '  first transfer into the store: answering after %s s\n' "$TRANSFER_S"
printf '  restart: first SOA answer after %s s; CPU by then %s s; PSS %s MiB; peak RSS %s MiB\n' \
    "$RESTART_S" "$CPU_S" "$PSS" "$HWM"
printf 'logs: %s/{primary,secondary-transfer,secondary-restart}.log\n' "$OUT"
