#!/usr/bin/env bash
# Recursive resolution benchmark: `aop bench resolve` through a resolving node over a
# three-level federation on loopback.
#
#   bench/recursive.sh                    # DURATION=10s per measured run
#   DURATION=30s ZIPF="1.0" bench/recursive.sh
#
# The federation: node A serves the root zone `.`, which delegates `org` to node B; B serves
# `org`, which delegates `bench.org` to node C; C serves `bench.org` with AGENTS generated
# agents (bench/gen_zone.py). Node R serves no zone and resolves from its root hint (A).
#
# Measures, with `aop bench resolve` (recursive queries):
#   warm    R with a warm cache, HOT names (the first of the zone) taken in turn, at 128 in
#           flight over 4 connections and at 8 over 1; unmeasured WARM runs at 128/4 first
#           fill the cache (up to 3, until R's cache statistics hold every HOT name).
#   cold    --cold-root A: every lookup in a fresh resolver with empty caches inside the load
#           generator, three upstream hops A -> B -> C, over all AGENTS names, 1 and 8 in flight.
#   zipf    a fresh R (restarted, empty cache), all AGENTS names picked by a Zipf law of each
#           exponent in ZIPF, at 128/4: R's cache hit ratio over the run, cold start included.
#   bare    the bare tonic HashMap server (examples/bare_resolve_server.rs) on the HOT names at
#           128/4 and 8/1, after the same WARM run: the floor that tonic, HTTP/2 and protobuf
#           set on this machine, for the ratio warm/bare.
# Everything it writes goes to bench/out/rec-* (gitignored): zone files, names files, node
# logs, one JSON report per run (rec-LABEL.json) and the cores used during it (rec-LABEL.cpu).
# The load generator shares the machine's cores with every node: read the ratios and the cpu
# columns along with the absolute figures.
#
# Fleet features, to measure what they cost a resolver's answers (run once with each):
#   HEALTH (1): 0 starts every node with --health-probes 0; by default C probes the
#           endpoints of its AGENTS agents (docs/protocol.md §9.1; they lead to closed ports).
#   GOSSIP (0): 1 puts A, B, C and every R in one gossip group on loopback (§9.2), so R
#           orders servers by membership liveness.
#   HEALTH_INTERVAL (empty): the health interval of C's zone (e.g. 600s: 167 probes a second
#           instead of 10,000), to see health in the answers without the probing's load.
#   C_NICE (0): the nice level of C. In a real fleet the primary that probes runs on its own
#           host; here it shares 2 cores with R and the load generator, so its 10,000 probes a
#           second take their cores. C_NICE=19 gives C only what R and the generator leave,
#           which shows what health costs R's answers themselves rather than the machine.
# Environment: DURATION (10s), WARM (3s), AGENTS (100000), HOT (10000), ZIPF ("1.0 1.2"; empty
# skips), SEED (1: zone contents and Zipf draws), LOAD_DEADLINE seconds (120), QUIET_WAIT
# seconds (120: how long to wait for other work on the machine to stop before each
# measurement), RUN_TIMEOUT seconds (300: a bench run that takes longer is killed, reported).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
DURATION=${DURATION:-10s}
WARM=${WARM:-3s}
AGENTS=${AGENTS:-100000}
HOT=${HOT:-10000}
ZIPF=${ZIPF-1.0 1.2}
SEED=${SEED:-1}
LOAD_DEADLINE=${LOAD_DEADLINE:-120}
QUIET_WAIT=${QUIET_WAIT:-120}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
AOP=$ROOT/target/release/aop
BARE=$ROOT/target/release/examples/bare_resolve_server
ROOT_ZONE=$OUT/rec-root.toml
ORG_ZONE=$OUT/rec-org.toml
LEAF_ZONE=$OUT/rec-bench.org-$AGENTS.toml
NAMES_ALL=$OUT/rec-names-$AGENTS.txt
NAMES_HOT=$OUT/rec-names-$HOT.txt

if ((HOT > AGENTS)); then
    printf 'error: HOT (%s) must not exceed AGENTS (%s)\n' "$HOT" "$AGENTS" >&2
    exit 2
fi

mkdir -p "$OUT"
rm -f "$OUT"/rec-*.json "$OUT"/rec-*.cpu "$OUT"/rec-*.log "$OUT"/rec-*.err "$OUT"/rec-*.rss

# Helpers: cleanup trap, log, free_port, stop, wait_resolvable, wait_line, CPU ticks, wait_quiet.
source "$ROOT/bench/lib.sh"

# start_node ID PORT LOG ARG...: starts `aop node` in the background; its pid in NODE_PID.
HEALTH=${HEALTH:-1}
GOSSIP=${GOSSIP:-0}
C_NICE=${C_NICE:-0}
GOSSIP_KEY=$OUT/rec-gossip.key
GOSSIP_SEED=
if [[ $GOSSIP == 1 ]]; then
    head -c 32 /dev/urandom | base64 >"$GOSSIP_KEY"
fi
start_node() {
    local id=$1 port=$2 log_file=$3 fleet=() gossip nice_level=0
    shift 3
    if [[ $id == C-* ]]; then
        nice_level=$C_NICE
    fi
    if [[ $HEALTH == 0 ]]; then
        fleet+=(--health-probes 0)
    fi
    if [[ $GOSSIP == 1 ]]; then
        gossip=127.0.0.1:$(free_port)
        fleet+=(--gossip "$gossip" --gossip-key "$GOSSIP_KEY")
        if [[ -n $GOSSIP_SEED ]]; then
            fleet+=(--gossip-seed "$GOSSIP_SEED")
        else
            GOSSIP_SEED=$gossip
        fi
    fi
    nice -n "$nice_level" "$AOP" --log-format json node --grpc "127.0.0.1:$port" --node-id "$id" "${fleet[@]}" "$@" >"$log_file" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
}

# show_logs: the tail of every node log of this run, for a failure report.
show_logs() {
    local file
    for file in "$OUT"/rec-*.log; do
        [[ -e $file ]] || continue
        log "last lines of $file:"
        tail -n 20 "$file" >&2 || true
    done
}

# cache_stats URL FILE: R's cache statistics (from a recursive lookup of PROBE, a cache hit
# once the cache is warm) into FILE as JSON.
cache_stats() {
    "$AOP" resolve --server "$1" --stats --json --timeout 5s "$PROBE" >"$2"
}

# run_bench JSON ARG...: one `aop bench resolve --json ARG...`, report in JSON; a failure or a
# hang (RUN_TIMEOUT) stops the script with the generator's stderr and the node logs.
run_bench() {
    local json=$1
    shift
    local status=0
    timeout --kill-after=10 "$RUN_TIMEOUT" "$AOP" bench resolve --json "$@" \
        >"$json" 2>"${json%.json}.err" || status=$?
    if ((status != 0)); then
        if ((status == 124)); then
            log "aop bench resolve $* did not finish within ${RUN_TIMEOUT}s and was killed"
        fi
        log "aop bench resolve $* exited with status $status; its stderr:"
        cat "${json%.json}.err" >&2 || true
        show_logs
        exit 1
    fi
}

# one_line JSON: the report in one line, for the progress log.
one_line() {
    jq -c '{requests, errors, throughput_per_s: (.throughput_per_s | floor), latency_us, outcomes,
            cache_hit_ratio, error_samples}' "$1"
}

# measure LABEL "NAME:PID ..." ARG...: one measured run of `aop bench resolve --json
# --duration DURATION ARG...`, JSON in $OUT/rec-LABEL.json and, in $OUT/rec-LABEL.cpu, the
# cores used during the run by the servers listed (together, then each), by the load
# generator and by everything else on the machine (noise from other work).
measure() {
    local label=$1 servers=$2
    shift 2
    local spec pid i t0 m0 g0 t1 m1 g1 srv=0
    local -a names=() pids=() before=() after=()
    for spec in $servers; do
        names+=("${spec%%:*}")
        pids+=("${spec#*:}")
    done
    log "bench $label: $* for $DURATION"
    t0=$(now_ns) m0=$(machine_ticks) g0=$(proc_ticks $$)
    for pid in "${pids[@]}"; do before+=("$(proc_ticks "$pid")"); done
    run_bench "$OUT/rec-$label.json" --duration "$DURATION" "$@"
    t1=$(now_ns) m1=$(machine_ticks) g1=$(proc_ticks $$)
    for pid in "${pids[@]}"; do after+=("$(proc_ticks "$pid")"); done
    local each=""
    for i in "${!pids[@]}"; do
        srv=$((srv + after[i] - before[i]))
        each+=" ${names[i]}=$((after[i] - before[i]))"
    done
    awk -v t=$((t1 - t0)) -v m=$((m1 - m0)) -v s=$srv -v g=$((g1 - g0)) -v hz="$HZ" -v each="$each" \
        'BEGIN {
            secs = t / 1e9
            printf "%.2f %.2f %.2f\n", s / hz / secs, g / hz / secs, (m - s - g) / hz / secs
            n = split(each, parts, " ")
            for (i = 1; i <= n; i++) {
                split(parts[i], kv, "=")
                printf "%s%s=%.2f", (i > 1 ? " " : ""), kv[1], kv[2] / hz / secs
            }
            printf "\n"
        }' >"$OUT/rec-$label.cpu"
    log "  $(one_line "$OUT/rec-$label.json")"
    log "  cores srv/gen/other: $(head -n 1 "$OUT/rec-$label.cpu" | tr ' ' /) ($(sed -n 2p "$OUT/rec-$label.cpu"))"
}

# warm_up LABEL URL NAMES: an unmeasured run over NAMES at 128 in flight over 4 connections for
# WARM, its report in $OUT/rec-LABEL.warmup.json.
warm_up() {
    local label=$1 url=$2 names=$3
    log "warm-up for $label: 128 in flight over 4 connections for $WARM (not measured)"
    run_bench "$OUT/rec-$label.warmup.json" --server "$url" --names "$names" \
        --concurrency 128 --connections 4 --duration "$WARM"
    log "  $(one_line "$OUT/rec-$label.warmup.json")"
}

# warm_cache LABEL URL: warm-up runs over the HOT names (up to 3) until R's answer cache holds
# every one of them (R has been asked for nothing else) after a warm-up without errors.
warm_cache() {
    local label=$1 url=$2 entries errors round
    for round in 1 2 3; do
        warm_up "$label" "$url" "$NAMES_HOT"
        cache_stats "$url" "$OUT/rec-$label.warmup-stats.json"
        entries=$(jq '.cache_stats.levels[] | select(.level == "answers") | .entries' \
            "$OUT/rec-$label.warmup-stats.json")
        errors=$(jq .errors "$OUT/rec-$label.warmup.json")
        log "  R's answer cache after warm-up $round: $entries entries (want $HOT), warm-up errors: $errors"
        if ((entries >= HOT && errors == 0)); then
            return 0
        fi
    done
    log "warning: the cache is not warm for every name before $label; measuring anyway"
}

log "building release binaries and examples"
cargo build --release --bins --examples

# --- the federation's addresses and zones -------------------------------------------------
PORT_A=$(free_port)
PORT_B=$(free_port)
PORT_C=$(free_port)
until [[ $PORT_A != "$PORT_B" && $PORT_B != "$PORT_C" && $PORT_A != "$PORT_C" ]]; do
    PORT_B=$(free_port)
    PORT_C=$(free_port)
done
URL_A=http://127.0.0.1:$PORT_A
URL_B=http://127.0.0.1:$PORT_B
URL_C=http://127.0.0.1:$PORT_C

log "writing the root zone (A, $URL_A) and org (B, $URL_B)"
cat >"$ROOT_ZONE" <<EOF
# Written by bench/recursive.sh: the root zone, on node A; it only delegates org to node B.
[zone]
origin = "."
serial = 1
ttl = 3600
negative_ttl = 300
contact = "bench@example.invalid"
servers = [{ grpc = "$URL_A" }]

[[delegation]]
zone = "org"
servers = [{ grpc = "$URL_B" }]
ttl = 3600
EOF
cat >"$ORG_ZONE" <<EOF
# Written by bench/recursive.sh: zone org, on node B; it only delegates bench.org to node C.
[zone]
origin = "org"
serial = 1
ttl = 3600
negative_ttl = 300
contact = "bench@example.invalid"
servers = [{ grpc = "$URL_B" }]

[[delegation]]
zone = "bench"
servers = [{ grpc = "$URL_C" }]
ttl = 3600
EOF
"$AOP" zone check "$ROOT_ZONE" "$ORG_ZONE" >&2

log "generating $AGENTS agents of bench.org (C, $URL_C) into $LEAF_ZONE"
python3 "$ROOT/bench/gen_zone.py" --agents "$AGENTS" --origin bench.org --seed "$SEED" \
    ${HEALTH_INTERVAL:+--health-interval "$HEALTH_INTERVAL"} \
    --server "$URL_C" --out "$LEAF_ZONE" --names "$NAMES_ALL"
head -n "$HOT" "$NAMES_ALL" >"$NAMES_HOT"
PROBE=$(head -n 1 "$NAMES_ALL")

# --- the authoritative nodes ----------------------------------------------------------------
log "starting A (.) on $URL_A, B (org) on $URL_B, C (bench.org, $AGENTS agents) on $URL_C"
start_node A-root "$PORT_A" "$OUT/rec-A.log" --zone "$ROOT_ZONE"
A=$NODE_PID
start_node B-org "$PORT_B" "$OUT/rec-B.log" --zone "$ORG_ZONE"
B=$NODE_PID
start_node C-bench-org "$PORT_C" "$OUT/rec-C.log" --zone "$LEAF_ZONE"
C=$NODE_PID
wait_resolvable "$A" "$OUT/rec-A.log" "$URL_A" "$PROBE"
wait_resolvable "$B" "$OUT/rec-B.log" "$URL_B" "$PROBE"
wait_resolvable "$C" "$OUT/rec-C.log" "$URL_C" "$PROBE"

# start_resolver LOG: starts a fresh R (no zones, root hint A) on a new port; sets R, URL_R.
start_resolver() {
    local log_file=$1 port
    port=$(free_port)
    URL_R=http://127.0.0.1:$port
    log "starting R (resolver, no zones, --root $URL_A) on $URL_R"
    start_node R-resolver "$port" "$log_file" --root "$URL_A"
    R=$NODE_PID
    wait_line "$log_file" "gRPC door listening" "$R"
}

start_resolver "$OUT/rec-R.log"

log "one recursive lookup through R, hop by hop"
if ! "$AOP" resolve --server "$URL_R" --trace --timeout 5s "$PROBE" >"$OUT/rec-trace.txt" 2>&1; then
    cat "$OUT/rec-trace.txt" >&2
    show_logs
    exit 1
fi
sed -n '/;; trace/,$p' "$OUT/rec-trace.txt" >&2

# --- a. and b.: R with a warm cache ---------------------------------------------------------
NODES="A:$A B:$B C:$C R:$R"
for run in "warm-c128-k4 128 4" "warm-c8-k1 8 1"; do
    read -r label concurrency connections <<<"$run"
    wait_quiet "$label"
    warm_cache "$label" "$URL_R"
    measure "$label" "$NODES" --server "$URL_R" --names "$NAMES_HOT" \
        --concurrency "$concurrency" --connections "$connections"
    cache_stats "$URL_R" "$OUT/rec-$label.stats.json"
done

# --- c.: cold resolutions, three hops each, inside the load generator -----------------------
for run in "cold-c1-k1 1 1" "cold-c8-k1 8 1"; do
    read -r label concurrency connections <<<"$run"
    wait_quiet "$label"
    measure "$label" "$NODES" --server "$URL_R" --cold-root "$URL_A" --names "$NAMES_ALL" \
        --concurrency "$concurrency" --connections "$connections"
done

# --- d.: cache hit ratio of a fresh R under Zipf-distributed lookups ------------------------
for exponent in $ZIPF; do
    label=zipf$exponent-c128-k4
    stop "$R"
    start_resolver "$OUT/rec-R-zipf$exponent.log"
    wait_quiet "$label"
    measure "$label" "A:$A B:$B C:$C R:$R" --server "$URL_R" --names "$NAMES_ALL" \
        --zipf "$exponent" --seed "$SEED" --concurrency 128 --connections 4
    cache_stats "$URL_R" "$OUT/rec-$label.stats.json"
    rss_kib "$R" >"$OUT/rec-$label.rss"
done
stop "$R"
stop "$A"
stop "$B"
C_RSS=$(rss_kib "$C")
stop "$C"

# --- e.: the bare server on the HOT names ---------------------------------------------------
PORT=$(free_port)
URL_BARE=http://127.0.0.1:$PORT
log "starting bare_resolve_server on $URL_BARE with the $HOT hot names"
"$BARE" --names "$NAMES_HOT" --listen "127.0.0.1:$PORT" >"$OUT/rec-bare.log" 2>&1 &
BARE_PID=$!
PIDS+=("$BARE_PID")
wait_line "$OUT/rec-bare.log" "listening on" "$BARE_PID"
for run in "bare-c128-k4 128 4" "bare-c8-k1 8 1"; do
    read -r label concurrency connections <<<"$run"
    wait_quiet "$label"
    warm_up "$label" "$URL_BARE" "$NAMES_HOT"
    measure "$label" "bare:$BARE_PID" --server "$URL_BARE" --names "$NAMES_HOT" \
        --concurrency "$concurrency" --connections "$connections"
done
stop "$BARE_PID"

# --- summary -------------------------------------------------------------------------------
python3 - "$OUT" "$AGENTS" "$HOT" "$DURATION" "$WARM" "$ZIPF" "$SEED" "$C_RSS" <<'PY'
import json
import os
import sys
from pathlib import Path

out = Path(sys.argv[1])
agents, hot = int(sys.argv[2]), int(sys.argv[3])
duration, warm, zipf, seed = sys.argv[4], sys.argv[5], sys.argv[6].split(), sys.argv[7]
c_rss = int(sys.argv[8]) * 1024


def load(label):
    path = out / f"rec-{label}.json"
    return json.loads(path.read_text()) if path.exists() else None


def cpu(label):
    path = out / f"rec-{label}.cpu"
    if not path.exists():
        return "n/a", ""
    lines = path.read_text().splitlines()
    return "/".join(lines[0].split()), (lines[1] if len(lines) > 1 else "")


def ms(us):
    return f"{us / 1000:.3f}"


DISTURBED = 0.25  # cores used by other work during a run above which the run is flagged


def disturbed(label):
    path = out / f"rec-{label}.cpu"
    return path.exists() and float(path.read_text().split()[2]) > DISTURBED


runs = [
    ("warm-c128-k4", f"warm R, {hot} names", "128/4"),
    ("warm-c8-k1", f"warm R, {hot} names", "8/1"),
    ("cold-c1-k1", f"cold, 3 hops, {agents} names", "1/1"),
    ("cold-c8-k1", f"cold, 3 hops, {agents} names", "8/1"),
]
runs += [(f"zipf{s}-c128-k4", f"fresh R, zipf {s}, {agents}", "128/4") for s in zipf]
runs += [
    ("bare-c128-k4", f"bare HashMap, {hot} names", "128/4"),
    ("bare-c8-k1", f"bare HashMap, {hot} names", "8/1"),
]

print()
print(f"recursive Resolve through R over . (A) -> org (B) -> bench.org (C, {agents} agents);")
print(f"{duration} per run, warm-up {warm} before the warm and bare runs (latencies in ms)")
header = (f"  {'run':16} {'what':32} {'c/k':>5} {'req/s':>9} {'p50':>7} {'p90':>7} {'p99':>7} "
          f"{'p999':>7} {'max':>8} {'errors':>6} {'cpu srv/gen/other ':>19} {'hit %':>6}  outcomes")
print(header)
print("  " + "-" * (len(header) - 2))
for label, what, ck in runs:
    r = load(label)
    if r is None:
        print(f"  {label:16} {what:32} {ck:>5} (not run)")
        continue
    l = r["latency_us"]
    hit = r.get("cache_hit_ratio")
    hit = "-" if hit is None else f"{100 * hit:.2f}"
    outcomes = ", ".join(f"{k} {v}" for k, v in r["outcomes"].items())
    print(f"  {label:16} {what:32} {ck:>5} {r['throughput_per_s']:9.0f} {ms(l['p50']):>7} "
          f"{ms(l['p90']):>7} {ms(l['p99']):>7} {ms(l['p999']):>7} {ms(l['max']):>8} "
          f"{r['errors']:6} {cpu(label)[0] + ('*' if disturbed(label) else ' '):>19} {hit:>6}  {outcomes}")
    for sample in r.get("error_samples", []):
        print(f"  {'':16} error: {sample}")


def ratio(a, b):
    return f"{a / b:.2f}" if b else "n/a"


for key in ("c128-k4", "c8-k1"):
    reg, bare = load(f"warm-{key}"), load(f"bare-{key}")
    if reg is None or bare is None:
        continue
    lr, lb = reg["latency_us"], bare["latency_us"]
    print(f"  {'warm/bare ' + key:16} {'ratio registry-warm / bare':32} {'':>5} "
          f"{ratio(reg['throughput_per_s'], bare['throughput_per_s']):>9} "
          f"{ratio(lr['p50'], lb['p50']):>7} {ratio(lr['p90'], lb['p90']):>7} "
          f"{ratio(lr['p99'], lb['p99']):>7} {ratio(lr['p999'], lb['p999']):>7} "
          f"{ratio(lr['max'], lb['max']):>8}")
print()
print("  cpu srv/gen/other: cores busy during the run in the servers (A+B+C+R, or the bare")
print("  server), the load generator and everything else "
      f"({os.cpu_count()} cores in all); 'other' well above 0 means")
print(f"  the run was disturbed (* marks over {DISTURBED} cores). hit %: R's answer-cache hits /")
print("  lookups during the run.")
flagged = [label for label, _, _ in runs if disturbed(label)]
if flagged:
    print(f"  disturbed by other work on the machine: {', '.join(flagged)}")
print()
print("cores per server during each run")
for label, _, _ in runs:
    each = cpu(label)[1]
    if each:
        print(f"  {label:16} {each}")
print()

stats_rows = []
for label, _, _ in runs:
    path = out / f"rec-{label}.stats.json"
    if not path.exists():
        continue
    levels = {l["level"]: l for l in json.loads(path.read_text())["cache_stats"]["levels"]}
    rss_path = out / f"rec-{label}.rss"
    rss = f"{int(rss_path.read_text()) / 1024:.1f} MiB" if rss_path.exists() else ""
    stats_rows.append((label, levels, rss))
if stats_rows:
    print("R's caches after the run (entries; hits/misses since R started)")
    for label, levels, rss in stats_rows:
        parts = [f"{name} {l['entries']} ({l['hits']}/{l['misses']}, "
                 f"{l['weighted_bytes'] / 2**20:.1f}/{l['capacity_bytes'] / 2**20:.0f} MiB, "
                 f"{l['evictions']} evicted)"
                 for name, l in levels.items()]
        print(f"  {label:16} " + "; ".join(parts) + (f"; R VmRSS {rss}" if rss else ""))
    print(f"  C (bench.org, {agents} agents) VmRSS at the end: {c_rss / 2**20:.1f} MiB")
    print()

targets = [
    ("warm-c128-k4", "throughput >= 70,000/s", lambda r: r["throughput_per_s"] >= 70_000,
     lambda r: f"{r['throughput_per_s']:.0f}/s"),
    ("warm-c128-k4", "p99 < 6 ms", lambda r: r["latency_us"]["p99"] < 6_000,
     lambda r: f"{ms(r['latency_us']['p99'])} ms"),
    ("warm-c8-k1", "p99 < 1 ms", lambda r: r["latency_us"]["p99"] < 1_000,
     lambda r: f"{ms(r['latency_us']['p99'])} ms"),
    ("cold-c1-k1", "p50 < 2 ms", lambda r: r["latency_us"]["p50"] < 2_000,
     lambda r: f"{ms(r['latency_us']['p50'])} ms"),
    ("cold-c1-k1", "p99 < 5 ms", lambda r: r["latency_us"]["p99"] < 5_000,
     lambda r: f"{ms(r['latency_us']['p99'])} ms"),
]
targets += [(label, "no errors", lambda r: r["errors"] == 0, lambda r: f"{r['errors']} errors")
            for label, _, _ in runs]
print("targets")
for label, text, ok, shown in targets:
    r = load(label)
    if r is None:
        continue
    print(f"  {label:16} {text:24} {shown(r):>14}  {'met' if ok(r) else 'MISSED'}")
print()

print("node logs (rec-A, B, C, R*): warnings and errors")
for path in sorted(p for p in out.glob("rec-*.log") if p.name != "rec-bare.log"):
    counts, first = {}, []
    for line in path.read_text().splitlines():
        try:
            level = json.loads(line).get("level", "")
        except json.JSONDecodeError:
            level = "(not JSON)"
        if level in ("WARN", "ERROR", "(not JSON)"):
            counts[level] = counts.get(level, 0) + 1
            if len(first) < 3:
                first.append(line)
    summary = ", ".join(f"{n} {level}" for level, n in counts.items()) or "none"
    print(f"  {path.name:28} {summary}")
    for line in first:
        print(f"    {line[:300]}")
print()
print(f"raw reports: {out}/rec-*.json (cpu: rec-*.cpu, R's cache statistics: rec-*.stats.json);")
print(f"zones: {out}/rec-root.toml, rec-org.toml, rec-bench.org-{agents}.toml; node logs: {out}/rec-*.log")
PY
