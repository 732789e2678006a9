# Shared helpers of the benchmark scripts in bench/ (sourced, not run).
#
# The sourcing script sets `set -euo pipefail`, then before calling these: AOP (the aop
# binary), LOAD_DEADLINE (seconds to wait for a process to answer or print a line) and
# QUIET_WAIT (seconds to wait for the machine to be quiet). Processes it starts in the
# background go into PIDS; the EXIT trap set here stops those still running.

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '==> %s\n' "$*" >&2; }

now_ns() { date +%s%N; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# stop PID: ends a process this script started.
stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# wait_resolvable PID LOG URL NAME: polls until the node answers NAME, or dies, or the deadline.
wait_resolvable() {
    local pid=$1 log_file=$2 url=$3 name=$4
    local deadline=$((SECONDS + LOAD_DEADLINE))
    until "$AOP" resolve --no-recurse --timeout 2s --server "$url" "$name" >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "process $pid exited before answering; its log:"
            cat "$log_file" >&2 || true
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "no answer for $name from $url within ${LOAD_DEADLINE}s"
            exit 1
        fi
        sleep 0.02
    done
}

# wait_line FILE TEXT PID: waits until FILE contains TEXT.
wait_line() {
    local file=$1 text=$2 pid=$3
    local deadline=$((SECONDS + LOAD_DEADLINE))
    until grep -q "$text" "$file" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
            log "process $pid did not print '$text'"
            cat "$file" >&2 || true
            exit 1
        fi
        sleep 0.02
    done
}

# CPU time in clock ticks: of a process (itself plus its waited-for children), and of the
# whole machine (everything but idle and iowait).
proc_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 + $14 + $15 }'; }
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
HZ=$(getconf CLK_TCK)

# wait_quiet WHAT: waits (up to QUIET_WAIT seconds) until the rest of the machine has used
# less than 0.15 cores over one second, so other work does not run alongside a measurement
# (the servers under test are idle then, and count too).
wait_quiet() {
    local what=$1 deadline=$((SECONDS + QUIET_WAIT)) m0 g0 busy
    while :; do
        m0=$(machine_ticks) g0=$(proc_ticks $$)
        sleep 1
        busy=$(($(machine_ticks) - m0 - ($(proc_ticks $$) - g0)))
        if ((busy * 100 < 15 * HZ)); then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            log "warning: the machine is busy ($(awk -v b="$busy" -v hz="$HZ" 'BEGIN { printf "%.2f", b / hz }') cores) before $what; measuring anyway"
            return 0
        fi
    done
}


# pids_ticks PID...: the CPU ticks of several processes, summed (see proc_ticks).
pids_ticks() {
    local pid sum=0
    for pid in "$@"; do
        sum=$((sum + $(proc_ticks "$pid")))
    done
    echo "$sum"
}

# write_nsd_conf DIR PORT ZONESDIR ZONEFILE MINIMAL: an NSD 4.x config in DIR/nsd.conf serving
# zone `bench` from ZONESDIR/ZONEFILE on 127.0.0.1:PORT, as the benchmarks run it: one server
# process, no database file, no user or chroot change, rate limiting off, and
# `minimal-responses: MINIMAL` (yes: like the node and hickory-dns, no NS set and glue on
# positive answers).
write_nsd_conf() {
    local dir=$1 port=$2 zonesdir=$3 zonefile=$4 minimal=$5
    cat >"$dir/nsd.conf" <<EOF
server:
    ip-address: 127.0.0.1
    port: $port
    server-count: 1
    zonesdir: "$zonesdir"
    pidfile: "$dir/nsd.pid"
    database: ""
    zonelistfile: "$dir/zone.list"
    xfrdfile: "$dir/xfrd.state"
    logfile: "$dir/nsd.log"
    username: ""
    chroot: ""
    verbosity: 0
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
    minimal-responses: $minimal
remote-control:
    control-enable: no
zone:
    name: bench
    zonefile: "$zonefile"
EOF
}
