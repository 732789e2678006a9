#!/usr/bin/env bash
# Memory and start time of a loaded zone: `aop node` without and with --data-dir, and NSD on
# the same records, one server at a time.
#
#   bench/load.sh                                   # 100,000 and 1,000,000 agents
#   SIZES=100000 AOP=/path/to/aop bench/load.sh
#
# For each size it generates the zone with bench/gen_zone.py (the options bench/dns.sh uses:
# seed 1, host-name endpoints, a DNS door in servers[]) and the same records as an RFC 1035
# master file (bench/zone_to_rfc1035.py) for NSD, unless both are already in OUT (delete them
# to regenerate). Then, for each server in turn: the time from its start to the first answer
# to the zone's SOA over DNS, and, once it has settled (its processes used under 0.05 s of
# CPU in the last second: NSD answers while its server process is still being forked with a
# second copy of the zone, and would be measured half-way), the proportional set size summed
# over all its processes (Pss in /proc/PID/smaps_rollup: shared pages counted once), the
# largest peak RSS (VmHWM) of its processes and their CPU time. aop runs with --health-probes 0 (the generated
# endpoints name hosts that do not exist); with --data-dir it starts on an empty directory,
# so the first start seeds the store from the file. NSD 4.x (Debian): foreground,
# server-count 1, `database: ""` (no nsd.db), rate limiting off.
#
# Environment: SIZES ("100000 1000000"), AOP (target/release/aop), OUT (bench/out/load),
# SEED (1), LOAD_DEADLINE seconds for a server to answer (600), SETTLE_DEADLINE seconds to
# wait for it to go quiet after that (120), NSD (1; 0 leaves NSD out).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
SIZES=${SIZES:-100000 1000000}
AOP=${AOP:-$ROOT/target/release/aop}
OUT=${OUT:-$ROOT/bench/out/load}
SEED=${SEED:-1}
LOAD_DEADLINE=${LOAD_DEADLINE:-600}
SETTLE_DEADLINE=${SETTLE_DEADLINE:-120}
NSD_ON=${NSD:-1}
mkdir -p "$OUT"

# Helpers: free_port, write_nsd_conf (its log is replaced by this script's).
source "$ROOT/bench/lib.sh"
log() { echo "[load] $*" >&2; }

for tool in dig python3; do
    command -v "$tool" >/dev/null || { log "$tool is needed"; exit 1; }
done
if [[ $NSD_ON == 1 ]] && ! command -v nsd >/dev/null; then
    log "nsd is needed (apt-get install nsd), or NSD=0"
    exit 1
fi
[[ -x $AOP ]] || { log "no aop binary at $AOP (cargo build --release, or set AOP)"; exit 1; }

# family PID: the process and its descendants (NSD forks).
family() {
    local child
    echo "$1"
    for child in $(pgrep -P "$1" || true); do family "$child"; done
}

# wait_soa PID PORT LOG: until the server answers the SOA of `bench`, dies, or the deadline.
wait_soa() {
    local pid=$1 port=$2 log_file=$3 deadline=$((SECONDS + LOAD_DEADLINE)) answer
    until answer=$(dig @127.0.0.1 -p "$port" +norec +time=1 +tries=1 +noall +answer bench SOA 2>/dev/null) \
        && [[ $answer =~ IN[[:space:]]+SOA ]]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "pid $pid exited before answering; its log:"
            tail -20 "$log_file" >&2 || true
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "no answer on port $port within ${LOAD_DEADLINE}s"
            kill "$pid" 2>/dev/null || true
            exit 1
        fi
        sleep 0.05
    done
}

# ticks PID: CPU ticks of the process and its descendants so far.
ticks() {
    local p sum=0
    for p in $(family "$1"); do
        sum=$((sum + $(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$sum"
}

# settle PID: waits until the server's processes used under 0.05 s of CPU in a second (at
# most SETTLE_DEADLINE seconds; a line says so if it never settled).
settle() {
    local pid=$1 deadline=$((SECONDS + SETTLE_DEADLINE)) before after quiet
    quiet=$(($(getconf CLK_TCK) / 20))
    after=$(ticks "$pid")
    while ((SECONDS < deadline)); do
        before=$after
        sleep 1
        after=$(ticks "$pid")
        ((after - before <= quiet)) && return 0
    done
    log "pid $pid still busy after ${SETTLE_DEADLINE}s; measured anyway"
}

# report LABEL AGENTS PID START_NS: one result line, then stops the server.
report() {
    local label=$1 agents=$2 pid=$3 start=$4 ready pss=0 hwm=0 ticks=0 p h
    ready=$(($(date +%s%N) - start))
    settle "$pid"
    for p in $(family "$pid"); do
        pss=$((pss + $(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup")))
        h=$(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status")
        ((h > hwm)) && hwm=$h
        ticks=$((ticks + $(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$p/stat")))
    done
    printf '%-22s %9s agents: first SOA after %6.2f s; PSS %5d MiB; peak RSS %5d MiB; CPU %6.2f s\n' \
        "$label" "$agents" "$(bc -l <<<"$ready / 1000000000")" $((pss / 1024)) $((hwm / 1024)) \
        "$(bc -l <<<"$ticks / $(getconf CLK_TCK)")"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

log "aop: $AOP ($("$AOP" --version 2>/dev/null || echo unknown version))"
for N in $SIZES; do
    ZONE=$OUT/bench-$N.toml
    MASTER=$OUT/bench-$N.zone
    if [[ ! -s $ZONE || ! -s $MASTER ]]; then
        log "generating $N agents: $ZONE, $MASTER"
        python3 "$ROOT/bench/gen_zone.py" --agents "$N" --origin bench --seed "$SEED" \
            --endpoint-host '{name}.hosts.example' --dns 127.0.0.1:53 --out "$ZONE" \
            --names "$OUT/names-$N.txt"
        python3 "$ROOT/bench/zone_to_rfc1035.py" "$ZONE" "$MASTER"
    fi

    if [[ $NSD_ON == 1 ]]; then
        NSD_DIR=$OUT/nsd-$N
        rm -rf "$NSD_DIR"
        mkdir -p "$NSD_DIR"
        PORT=$(free_port)
        write_nsd_conf "$NSD_DIR" "$PORT" "$OUT" "bench-$N.zone" yes
        START=$(date +%s%N)
        nsd -d -c "$NSD_DIR/nsd.conf" >"$NSD_DIR/stderr.log" 2>&1 &
        PID=$!
        wait_soa "$PID" "$PORT" "$NSD_DIR/nsd.log"
        report "nsd" "$N" "$PID" "$START"
    fi

    for mode in memory data-dir; do
        GRPC=$(free_port)
        DNS=$(free_port)
        args=(node --zone "$ZONE" --grpc "127.0.0.1:$GRPC" --dns "127.0.0.1:$DNS" --health-probes 0)
        if [[ $mode == data-dir ]]; then
            rm -rf "$OUT/data-$N"
            args+=(--data-dir "$OUT/data-$N")
        fi
        START=$(date +%s%N)
        "$AOP" "${args[@]}" >"$OUT/aop-$N-$mode.log" 2>&1 &
        PID=$!
        wait_soa "$PID" "$DNS" "$OUT/aop-$N-$mode.log"
        report "aop ($mode)" "$N" "$PID" "$START"
        rm -rf "$OUT/data-$N"
    done
done
