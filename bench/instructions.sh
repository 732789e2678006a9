#!/usr/bin/env bash
# Instructions per Resolve: what `aop node` spends on one gRPC Resolve next to the bare tonic
# server (examples/bare_resolve_server.rs) answering the same names, counted by
# `valgrind --tool=callgrind` in the server process. A regression guard: instruction counts
# do not depend on what else the machine runs, so the figures hold on a busy machine where
# throughput figures (bench/resolve.sh) do not.
#
#   bench/instructions.sh                 # 10,000 agents, 20,000 requests per form
#   REQUESTS=50000 bench/instructions.sh
#   MAX_RATIO=1.25 bench/instructions.sh  # exit 1 when a node/bare ratio is above it
#
# Each server runs under callgrind with instrumentation off while it loads (zone parsing is
# not counted); then, per form (`--no-recurse`, then recursive): a warm-up of WARMUP
# requests, the counters zeroed, REQUESTS requests by `aop bench resolve --requests`, and a
# dump. Instructions per request = the dump's total (every thread of the server) / REQUESTS.
# The node is authoritative for the zone and starts with --health-probes 0 (the generated
# zone's endpoints point at closed ports; probing them would be counted too). The bare
# server ignores the recursive flag: its two figures are the same work, measured twice.
#
# Environment: AGENTS (10000), SEED (1), REQUESTS (20000), WARMUP (2000), CONCURRENCY (8),
# CONNECTIONS (1), MAX_RATIO (unset: no check), LOAD_DEADLINE seconds (300),
# NODE_BIN (the aop binary to measure as the node; default the one built here, the client
# always is), CARGO_TARGET_DIR (where the release binaries are built), SKIP_BUILD (1: use the
# binaries already there). Writes bench/out/
# (gitignored): the callgrind dumps (callgrind.<server>-<form>.out, for callgrind_annotate)
# and the logs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
AGENTS=${AGENTS:-10000}
SEED=${SEED:-1}
REQUESTS=${REQUESTS:-20000}
WARMUP=${WARMUP:-2000}
CONCURRENCY=${CONCURRENCY:-8}
CONNECTIONS=${CONNECTIONS:-1}
MAX_RATIO=${MAX_RATIO:-}
LOAD_DEADLINE=${LOAD_DEADLINE:-300}
QUIET_WAIT=0
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
AOP=$TARGET/release/aop
NODE_BIN=${NODE_BIN:-$AOP}
BARE=$TARGET/release/examples/bare_resolve_server
ZONE=$OUT/bench-$AGENTS.toml
NAMES=$OUT/names-$AGENTS.txt

for tool in valgrind callgrind_control; do
    command -v "$tool" >/dev/null || { echo "$tool not found (install valgrind)" >&2; exit 1; }
done
mkdir -p "$OUT"

# Helpers: cleanup trap, log, free_port, stop, wait_resolvable, wait_line.
source "$ROOT/bench/lib.sh"

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building release binaries (aop, bare_resolve_server)"
    cargo build --release --bin aop --example bare_resolve_server
fi

log "generating $AGENTS agents into $ZONE"
python3 "$ROOT/bench/gen_zone.py" --agents "$AGENTS" --origin bench --seed "$SEED" \
    --out "$ZONE" --names "$NAMES"
PROBE=$(head -n 1 "$NAMES")

# callgrind_total FILE: the instructions a dump counts (its `totals:` or `summary:` line).
callgrind_total() {
    awk '/^(totals|summary):/ { print $2; exit }' "$1"
}

# measure SERVER PID FORM FLAGS...: warm-up, zero, REQUESTS requests, dump; prints the
# instructions per request and keeps the dump as callgrind.SERVER-FORM.out.
measure() {
    local server=$1 pid=$2 form=$3 url=$4
    shift 4
    "$AOP" bench resolve --server "$url" --names "$NAMES" --concurrency "$CONCURRENCY" \
        --connections "$CONNECTIONS" --duration 1h --requests "$WARMUP" --json "$@" >/dev/null
    callgrind_control --zero "$pid" >/dev/null 2>&1
    "$AOP" bench resolve --server "$url" --names "$NAMES" --concurrency "$CONCURRENCY" \
        --connections "$CONNECTIONS" --duration 1h --requests "$REQUESTS" --json "$@" \
        >"$OUT/instructions-$server-$form.json"
    local before
    before=$(ls "$OUT"/callgrind.raw.* 2>/dev/null | wc -l)
    callgrind_control --dump="$server-$form" "$pid" >/dev/null 2>&1
    # The dump is written by the server's own thread: wait for the new file to be complete.
    local deadline=$((SECONDS + 60)) file=""
    while :; do
        file=$(ls -t "$OUT"/callgrind.raw.* 2>/dev/null | head -n 1 || true)
        if [[ $(ls "$OUT"/callgrind.raw.* 2>/dev/null | wc -l) -gt $before && -n $file ]] &&
            [[ -n $(callgrind_total "$file") ]]; then
            break
        fi
        if ((SECONDS >= deadline)); then
            log "no callgrind dump from $server"
            exit 1
        fi
        sleep 0.2
    done
    mv "$file" "$OUT/callgrind.$server-$form.out"
    python3 - "$OUT/instructions-$server-$form.json" "$REQUESTS" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
requests = int(sys.argv[2])
if report["requests"] != requests or report["errors"]:
    sys.exit(f"{sys.argv[1]}: {report['requests']} requests, {report['errors']} errors "
             f"(expected {requests}, none): {report['error_samples']}")
PY
    awk -v total="$(callgrind_total "$OUT/callgrind.$server-$form.out")" -v n="$REQUESTS" \
        'BEGIN { printf "%.0f\n", total / n }'
}

# run_server NAME PID URL: both forms against one server; sets FIGURES[NAME-FORM].
declare -A FIGURES
run_server() {
    local server=$1 pid=$2 url=$3
    callgrind_control --instr=on "$pid" >/dev/null 2>&1
    log "$server: $REQUESTS Resolve --no-recurse ($CONCURRENCY in flight over $CONNECTIONS connection(s))"
    FIGURES[$server-norecurse]=$(measure "$server" "$pid" norecurse "$url" --no-recurse)
    log "$server: $REQUESTS Resolve, recursive"
    FIGURES[$server-recursive]=$(measure "$server" "$pid" recursive "$url")
    stop "$pid"
    rm -f "$OUT"/callgrind.raw.*
}

rm -f "$OUT"/callgrind.raw.*
CALLGRIND=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.raw.%p")

PORT=$(free_port)
URL=http://127.0.0.1:$PORT
log "starting aop node under callgrind on $URL (loading $AGENTS agents uninstrumented)"
"${CALLGRIND[@]}" "$NODE_BIN" --log-format json node --zone "$ZONE" --grpc "127.0.0.1:$PORT" \
    --health-probes 0 >"$OUT/instructions-node.log" 2>&1 &
NODE=$!
PIDS+=("$NODE")
wait_resolvable "$NODE" "$OUT/instructions-node.log" "$URL" "$PROBE"
run_server node "$NODE" "$URL"

PORT=$(free_port)
URL=http://127.0.0.1:$PORT
log "starting bare_resolve_server under callgrind on $URL"
"${CALLGRIND[@]}" "$BARE" --names "$NAMES" --listen "127.0.0.1:$PORT" \
    >"$OUT/instructions-bare.log" 2>&1 &
BARE_PID=$!
PIDS+=("$BARE_PID")
wait_line "$OUT/instructions-bare.log" "listening on" "$BARE_PID"
run_server bare "$BARE_PID" "$URL"
rm -f "$OUT"/callgrind.raw.*

echo
echo "instructions per Resolve (callgrind, every server thread; $AGENTS agents, $REQUESTS requests,"
echo "$CONCURRENCY in flight over $CONNECTIONS connection(s))"
printf '  %-14s %12s %12s %8s\n' form node bare node/bare
failed=0
for form in norecurse recursive; do
    node=${FIGURES[node-$form]} bare=${FIGURES[bare-$form]}
    ratio=$(awk -v a="$node" -v b="$bare" 'BEGIN { printf "%.2f", a / b }')
    label=$([[ $form == norecurse ]] && echo "--no-recurse" || echo "recursive")
    printf '  %-14s %12s %12s %8s\n' "$label" "$node" "$bare" "$ratio"
    if [[ -n $MAX_RATIO ]] && awk -v r="$ratio" -v m="$MAX_RATIO" 'BEGIN { exit !(r > m) }'; then
        echo "  $label: node/bare $ratio is above MAX_RATIO $MAX_RATIO" >&2
        failed=1
    fi
done
echo
echo "dumps: $OUT/callgrind.{node,bare}-{norecurse,recursive}.out (callgrind_annotate --inclusive=yes FILE)"
exit "$failed"
