#!/usr/bin/env bash
# MCP call benchmark: calls through `aop gateway`, beside the same calls made to the agent
# directly and, when the Python venv is there, to a swarms 14.0.2 AOP server.
#
#   bench/call.sh                     # everything below, DURATION=10s per timed run
#   SWARMS=0 bench/call.sh            # skip the Python AOP server
#
# Runs, all with `aop bench call` (a Rust rmcp client):
#   1. CALLS (1000) concurrent calls to a sleeper agent (1 s each) through the gateway:
#      wall time and errors; then the same calls from the same client straight to the
#      sleeper agent (the peer: what the client and the agent cost without the gateway).
#   2. Gateway overhead: an echo agent called one at a time, directly and through the
#      gateway, for DURATION each: p50/p99 of both and their difference.
#   3. discover_agents and search_agents with AGENTS (10000) agents mounted, 1 and 8 in
#      flight, for DURATION each: p50/p99.
#   4. The Python swarms AOP server (stub agents, no LLM; needs `.ci/interop-mcp-venvs` to
#      have built target/interop-swarms-venv, or SWARMS_PYTHON): SWARMS_CALLS (100)
#      concurrent one-second calls, the same through our gateway, and discover_agents /
#      search_agents on its agents.
# Output: a summary table on stdout; JSON of every run in bench/out/call-*.json.
#
# Environment: DURATION (10s), CALLS (1000), AGENTS (10000), SWARMS (1), SWARMS_CALLS (100),
# SWARMS_PYTHON (target/interop-swarms-venv/bin/python), LOAD_DEADLINE seconds (120),
# QUIET_WAIT seconds (60), SKIP_BUILD=1 (use the release binary already built), SERVER_AOP (the aop binary that runs the agents, the node and the
# gateway, default this tree's: another build measured under this tree's load generator).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
DURATION=${DURATION:-10s}
CALLS=${CALLS:-1000}
AGENTS=${AGENTS:-10000}
SWARMS=${SWARMS:-1}
SWARMS_CALLS=${SWARMS_CALLS:-100}
SWARMS_PYTHON=${SWARMS_PYTHON:-$ROOT/target/interop-swarms-venv/bin/python}
LOAD_DEADLINE=${LOAD_DEADLINE:-120}
QUIET_WAIT=${QUIET_WAIT:-60}
AOP=$ROOT/target/release/aop
SERVER_AOP=${SERVER_AOP:-$AOP}
ZONE=$OUT/calls.toml

mkdir -p "$OUT"
source "$ROOT/bench/lib.sh"

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building release binaries"
    cargo build --release --quiet --bin aop
fi

# start_agent KIND NAME: runs a built-in agent on a free port; sets AGENT_URL.
start_agent() {
    local kind=$1 name=$2 log_file=$OUT/agent-$2.log
    "$SERVER_AOP" agent serve --kind "$kind" --name "$name" --listen 127.0.0.1:0 >"$log_file" 2>&1 &
    PIDS+=($!)
    wait_line "$log_file" "serving MCP at" "$!"
    AGENT_URL=$(grep -o 'http://[^ ]*/mcp' "$log_file" | head -1)
}

start_agent sleeper sleeper
SLEEPER_URL=$AGENT_URL
start_agent echo echo
ECHO_URL=$AGENT_URL

log "writing a zone of $AGENTS agents plus the sleeper and echo agents"
python3 "$ROOT/bench/gen_zone.py" --agents "$AGENTS" --origin calls.bench --out "$ZONE" >/dev/null
cat >>"$ZONE" <<EOF

[[agent]]
name = "sleeper"
description = "Sleeps ms milliseconds, for load tests."
timeout_ms = 60000
input_schema = { type = "object", properties = { task = { type = "string" }, ms = { type = "integer" } }, required = ["task"] }
endpoints = [{ url = "$SLEEPER_URL", tool = "sleeper" }]

[[agent]]
name = "echo"
description = "Echoes its task."
endpoints = [{ url = "$ECHO_URL", tool = "echo" }]
EOF

NODE_PORT=$(free_port)
"$SERVER_AOP" node --zone "$ZONE" --grpc "127.0.0.1:$NODE_PORT" --node-id calls >"$OUT/calls-node.log" 2>&1 &
NODE_PID=$!
PIDS+=($NODE_PID)
wait_resolvable "$NODE_PID" "$OUT/calls-node.log" "http://127.0.0.1:$NODE_PORT" echo.calls.bench

GATEWAY_PORT=$(free_port)
"$SERVER_AOP" gateway --resolver "http://127.0.0.1:$NODE_PORT" --listen "127.0.0.1:$GATEWAY_PORT" \
    --mount calls.bench >"$OUT/calls-gateway.log" 2>&1 &
GATEWAY_PID=$!
PIDS+=($GATEWAY_PID)
wait_line "$OUT/calls-gateway.log" "MCP gateway at" "$GATEWAY_PID"
GATEWAY=http://127.0.0.1:$GATEWAY_PORT/mcp

# run LABEL ARGS...: one `aop bench call` run, JSON in $OUT/call-LABEL.json.
run() {
    local label=$1
    shift
    wait_quiet "$label"
    log "bench $label"
    "$AOP" bench call --json "$@" >"$OUT/call-$label.json"
}

SLEEP_ARGS='{"task":"load test","ms":1000}'
run warmup --url "$GATEWAY" --tool echo_calls_bench --args '{"task":"warm"}' --calls 200 --concurrency 8
run sleepers-gateway --url "$GATEWAY" --tool sleeper_calls_bench --args "$SLEEP_ARGS" \
    --calls "$CALLS" --concurrency "$CALLS"
run sleepers-direct --url "$SLEEPER_URL" --tool sleeper --args "$SLEEP_ARGS" \
    --calls "$CALLS" --concurrency "$CALLS"
run echo-direct --url "$ECHO_URL" --tool echo --args '{"task":"hello"}' --concurrency 1 --duration "$DURATION"
run echo-gateway --url "$GATEWAY" --tool echo_calls_bench --args '{"task":"hello"}' --concurrency 1 --duration "$DURATION"
for c in 1 8; do
    run "discover-c$c" --url "$GATEWAY" --tool discover_agents --args '{}' --concurrency "$c" --duration "$DURATION"
    run "search-c$c" --url "$GATEWAY" --tool search_agents --args '{"query":"invoice reconciles"}' \
        --concurrency "$c" --duration "$DURATION"
done

SWARMS_RAN=0
if [[ $SWARMS == 1 && -x $SWARMS_PYTHON ]]; then
    SWARMS_PORT=$(free_port)
    log "starting the swarms AOP server (stub agents, no LLM) on $SWARMS_PORT"
    "$SWARMS_PYTHON" "$ROOT/tests/clients/swarms_stub_server.py" --port "$SWARMS_PORT" \
        >"$OUT/swarms.log" 2>&1 &
    SWARMS_PID=$!
    PIDS+=($SWARMS_PID)
    deadline=$((SECONDS + LOAD_DEADLINE))
    until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $SWARMS_PORT), 0.5)" 2>/dev/null; do
        if ! kill -0 "$SWARMS_PID" 2>/dev/null || ((SECONDS >= deadline)); then
            log "the swarms server did not start; its log:"
            cat "$OUT/swarms.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    SWARMS_URL=http://127.0.0.1:$SWARMS_PORT/mcp
    run swarms-sleepers --url "$SWARMS_URL" --tool sleeper --args '{"task":"load test"}' \
        --calls "$SWARMS_CALLS" --concurrency "$SWARMS_CALLS" --timeout 600s
    run swarms-sleepers-ours --url "$GATEWAY" --tool sleeper_calls_bench --args "$SLEEP_ARGS" \
        --calls "$SWARMS_CALLS" --concurrency "$SWARMS_CALLS"
    run swarms-discover --url "$SWARMS_URL" --tool discover_agents --args '{}' --concurrency 1 --duration "$DURATION"
    run swarms-search --url "$SWARMS_URL" --tool search_agents --args '{"query":"echo"}' --concurrency 1 --duration "$DURATION"
    SWARMS_RAN=1
elif [[ $SWARMS == 1 ]]; then
    log "skipping the swarms AOP server: $SWARMS_PYTHON not found (run .ci/interop-mcp-venvs)"
else
    log "skipping the swarms AOP server (SWARMS=0)"
fi

python3 - "$OUT" "$SWARMS_RAN" <<'PY'
import json, sys
out, swarms = sys.argv[1], sys.argv[2] == "1"
def load(label):
    with open(f"{out}/call-{label}.json") as f:
        return json.load(f)
def ms(us):
    return f"{us / 1000:.3f} ms"
def row(label, what):
    r = load(label)
    l = r["latency_us"]
    print(f"| {what} | {r['calls']} | {r['errors']} | {r['elapsed_s']:.2f} s | {r['throughput_per_s']:.1f}/s | {ms(l['p50'])} | {ms(l['p99'])} |")
print("| run | calls | errors | wall | throughput | p50 | p99 |")
print("| --- | --- | --- | --- | --- | --- | --- |")
row("sleepers-gateway", "1 s sleeper via gateway, all concurrent")
row("sleepers-direct", "1 s sleeper, direct to the agent, all concurrent")
row("echo-direct", "echo, direct to the agent, 1 in flight")
row("echo-gateway", "echo, through the gateway, 1 in flight")
for c in (1, 8):
    row(f"discover-c{c}", f"discover_agents, {c} in flight")
    row(f"search-c{c}", f"search_agents, {c} in flight")
if swarms:
    row("swarms-sleepers", "swarms AOP: 1 s sleeper, all concurrent")
    row("swarms-sleepers-ours", "gateway: the same calls")
    row("swarms-discover", "swarms AOP: discover_agents, 1 in flight")
    row("swarms-search", "swarms AOP: search_agents, 1 in flight")
d, g = load("echo-direct")["latency_us"], load("echo-gateway")["latency_us"]
print()
print(f"gateway overhead per call: p50 {ms(g['p50'] - d['p50'])}, p99 {ms(g['p99'] - d['p99'])}")
sg, sd = load("sleepers-gateway"), load("sleepers-direct")
print(f"all-at-once sleepers: {sg['elapsed_s']:.2f} s through the gateway, {sd['elapsed_s']:.2f} s direct "
      f"(ratio {sg['elapsed_s'] / sd['elapsed_s']:.2f})")
PY
