#!/usr/bin/env bash
# DNS benchmark of `aop node --dns` next to NSD and hickory-dns, with dnsperf, on the same
# zone content at two sizes.
#
#   bench/dns.sh                          # LENGTH=10 s per run, 1,000 and 100,000 agents
#   LENGTH=30 SIZES="100000" bench/dns.sh
#
# For each size it generates the zone with bench/gen_zone.py (host-name endpoints, so the
# agents have no A records, and a DNS door in servers[] for NS + glue), writes the same
# records as an RFC 1035 master file (bench/zone_to_rfc1035.py) for NSD (4.x from Debian,
# foreground, server-count 1, rate limiting off) and hickory-dns 0.26 (`cargo install`,
# query logging off with -q), and a dnsperf query file: each agent's `_mcp._tcp.<agent>` SRV,
# `<agent>` TXT, `<agent>` A (NODATA) and `missing-<i>.bench` A (NXDOMAIN), shuffled with
# a fixed seed (25% each). Then:
#   1. correctness: bench/dns_compare.py digs the three servers for a handful of names of
#      each kind and compares rcode, flags, answer/authority/additional sets (TTLs included,
#      so the RFC 2308 negative SOA TTL counts) with NSD's;
#   2. load: `dnsperf -c 4 -q 200 -l LENGTH` and `-q 16` against each server; queries/s,
#      lost, latency from dnsperf, and the server's CPU time over the run (utime+stime of
#      its processes in /proc/PID/stat) per completed query;
#   3. with PERF=1 (default), one more run against aop under `perf record -g`, top symbols.
# The aop node starts with --health-probes 0: the generated agents' endpoints name hosts that
# do not exist, and probing them would be measured too.
# dnsperf shares the machine's cores with the server under test: compare the servers with
# each other, not with figures from elsewhere. Everything goes to bench/out/dns/ (gitignored);
# the tools installed by cargo go to bench/out/tools/.
#
# Environment: LENGTH seconds per measured run (10), WARMUP seconds of dnsperf before each
# (1; 0 skips), SIZES ("1000 100000"), INFLIGHT ("200 16": the low point is 16, not 8: below
# 16 in flight per dnsperf thread, dnsperf 2.10's receiver loses wake-ups of its sender and
# idles 100 ms at a time with nothing in flight, against any server; README "The -q 8 puzzle",
# bench/dnsperf-q8-fix.patch), CLIENTS (4), SEED (1),
# CHECKS agents sampled per kind for the correctness checks (4), PERF (1), NSD_MINIMAL (yes:
# NSD's `minimal-responses`, so that like aop and hickory-dns it does not add the NS set and
# glue to positive answers; `no` is NSD's own default), LOAD_DEADLINE
# seconds for a server to answer after start (300), RUNS measured runs of each (1; with more,
# the table shows the median run by qps and lists them all), HICKORY (1; 0 leaves hickory-dns
# out, for the 1,000,000-agent size where it takes very long to load), QUIET_WAIT seconds (120: how long to wait
# for other work on the machine to stop before each measurement), AOP (the aop binary to measure;
# unset: this checkout's release build, built first, in CARGO_TARGET_DIR or target/), AOP_BASE (a
# second aop binary, e.g. an older build, measured as "aop base" beside the first on the same
# zone and queries: before/after figures from one run).
#
#   AOP_BASE=/path/to/old/aop HICKORY=0 SIZES="100000 1000000" RUNS=3 bench/dns.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
OUT=$ROOT/bench/out/dns
TOOLS=$ROOT/bench/out/tools
LENGTH=${LENGTH:-10}
WARMUP=${WARMUP:-1}
SIZES=${SIZES:-1000 100000}
INFLIGHT=${INFLIGHT:-200 16}
CLIENTS=${CLIENTS:-4}
SEED=${SEED:-1}
CHECKS=${CHECKS:-4}
PERF=${PERF:-1}
NSD_MINIMAL=${NSD_MINIMAL:-yes}
RUNS=${RUNS:-1}
LOAD_DEADLINE=${LOAD_DEADLINE:-300}
QUIET_WAIT=${QUIET_WAIT:-120}
BUILD_AOP=0
if [[ -z ${AOP:-} ]]; then
    AOP=${CARGO_TARGET_DIR:-$ROOT/target}/release/aop
    BUILD_AOP=1
fi
AOP_BASE=${AOP_BASE:-}
HICKORY=$TOOLS/bin/hickory-dns
HICKORY_ON=${HICKORY:-1}
SERVERS=(nsd aop)
if [[ -n $AOP_BASE ]]; then
    SERVERS+=(base)
fi
if [[ $HICKORY_ON == 1 ]]; then
    SERVERS+=(hickory)
fi

mkdir -p "$OUT" "$TOOLS"
rm -f "$OUT"/*.dnsperf "$OUT"/*.warmup "$OUT"/*.udp "$OUT"/*.cpu "$OUT"/*.ready "$OUT"/*.rss "$OUT"/checks-*.out "$OUT"/perf-*.txt
COMMANDS=$OUT/commands.txt
: >"$COMMANDS"

# Helpers: cleanup trap, log, stop, CPU ticks, wait_quiet.
source "$ROOT/bench/lib.sh"

# note COMMAND...: records a command line for the report (paths shortened to bench/out/...).
note() { printf '%s\n' "$*" | sed "s|$ROOT/||g" >>"$COMMANDS"; }

# --- tools ------------------------------------------------------------------------------------
if ! command -v dnsperf >/dev/null || ! command -v nsd >/dev/null || ! command -v dig >/dev/null; then
    log "installing dnsperf, nsd and dig from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsperf nsd dnsutils >/dev/null
fi
if [[ $HICKORY_ON == 1 ]] && ! [[ -x $HICKORY && $("$HICKORY" --version 2>/dev/null) == *" 0.26."* ]]; then
    log "installing hickory-dns 0.26 into $TOOLS (takes minutes)"
    cargo install hickory-dns --version '^0.26' --root "$TOOLS"
fi
if pgrep -x nsd >/dev/null; then
    # Not ours (policy-rc.d denies the package's service here); it may hold port 53, never the
    # free ports used below.
    log "note: nsd processes not started by this script are running: $(pgrep -x nsd | tr '\n' ' ')"
fi
if [[ $BUILD_AOP == 1 ]]; then
    log "building the release binary"
    cargo build --release --bin aop
fi
NSD_VERSION=$(nsd -v 2>&1 | sed -n 1p)
HICKORY_VERSION=$([[ $HICKORY_ON == 1 ]] && "$HICKORY" --version 2>&1 | sed -n 1p || echo "not run")
DNSPERF_VERSION=$(dnsperf -h 2>&1 | sed -n "s/^Version //p")
DIG_VERSION=$(dig -v 2>&1 | sed -n 1p)
AOP_VERSION="commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ' + uncommitted changes in src/')"
if [[ $BUILD_AOP == 0 ]]; then
    AOP_VERSION="$AOP_VERSION (if $AOP was built from it)"
fi
if [[ -n $AOP_BASE ]]; then
    AOP_VERSION="$AOP_VERSION; aop base: $AOP_BASE"
fi

# free_dns_ports N: N distinct loopback ports free for both UDP and TCP.
free_dns_ports() {
    python3 - "$1" <<'PY'
import socket
import sys

held, ports = [], []
while len(ports) < int(sys.argv[1]):
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    port = tcp.getsockname()[1]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.bind(("127.0.0.1", port))
    except OSError:
        tcp.close()
        continue
    held += [tcp, udp]
    ports.append(port)
print(" ".join(map(str, ports)))
PY
}

# wait_dns LABEL PID LOG PORT: polls until the server answers the zone's SOA, or dies, or the
# deadline; writes the seconds from START_NS to the first answer in $OUT/LABEL.ready.
wait_dns() {
    local label=$1 pid=$2 log_file=$3 port=$4 deadline=$((SECONDS + LOAD_DEADLINE))
    local answer
    # (dig prints its errors, "connection refused" among them, to stdout: look for the SOA.)
    until answer=$(dig @127.0.0.1 -p "$port" +norec +time=1 +tries=1 +noall +answer bench SOA 2>/dev/null) \
        && [[ $answer =~ IN[[:space:]]+SOA ]]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$label (pid $pid) exited before answering; its log:"
            cat "$log_file" >&2 || true
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "$label: no answer on port $port within ${LOAD_DEADLINE}s; its log:"
            cat "$log_file" >&2 || true
            exit 1
        fi
        sleep 0.05
    done
    echo $(($(now_ns) - START_NS)) >"$OUT/$label.ready"
}

# start_node BIN LABEL GRPC_PORT DNS_PORT: `BIN node` on the size's zone (after a quiet
# machine), timed from START_NS until it answers over DNS; its PID in NODE_PID, its log in
# $OUT/LABEL-N.log.
start_node() {
    local bin=$1 label=$2 grpc=$3 dns=$4
    wait_quiet "$label start"
    note "$bin" node --zone "$ZONE" --grpc "127.0.0.1:$grpc" --dns "127.0.0.1:$dns" --health-probes 0
    START_NS=$(now_ns)
    "$bin" node --zone "$ZONE" --grpc "127.0.0.1:$grpc" --dns "127.0.0.1:$dns" \
        --health-probes 0 >"$OUT/$label-$N.log" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    wait_dns "$label-$N" "$NODE_PID" "$OUT/$label-$N.log" "$dns"
}

# family PID: the process and its descendants (NSD's process becomes xfrd, which forks the
# main process, which forks the server process).
family() {
    local child
    echo "$1"
    for child in $(pgrep -P "$1" || true); do family "$child"; done
}

# udp_drops PORT: datagrams the kernel dropped on the UDP sockets bound to 127.0.0.1:PORT
# (the last column of /proc/net/udp), then the machine's UDP RcvbufErrors and SndbufErrors.
udp_drops() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p="0100007F:$hex" '$2 == p { d += $NF } END { printf "%d ", d }' /proc/net/udp
    awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) col[$i] = i; h = 1 } else print $col["RcvbufErrors"], $col["SndbufErrors"] }' /proc/net/snmp
}
family_rss_kib() {
    local pid sum=0
    for pid in $(family "$1"); do sum=$((sum + $(rss_kib "$pid"))); done
    echo "$sum"
}

# measure LABEL PORT INFLIGHT QUERIES PID...: one dnsperf run (after a warm-up), its output in
# $OUT/LABEL.dnsperf and in $OUT/LABEL.cpu: wall ns, server ticks, dnsperf ticks, machine ticks.
measure() {
    local label=$1 port=$2 inflight=$3 queries=$4
    shift 4
    wait_quiet "$label"
    if [[ $WARMUP != 0 ]]; then
        dnsperf -s 127.0.0.1 -p "$port" -d "$queries" -c "$CLIENTS" -q "$inflight" -l "$WARMUP" \
            >"$OUT/$label.warmup" 2>&1 || true
    fi
    local cmd=(dnsperf -s 127.0.0.1 -p "$port" -d "$queries" -c "$CLIENTS" -q "$inflight" -l "$LENGTH")
    note "${cmd[*]}"
    log "$label: ${cmd[*]}"
    local t0 m0 s0 g0 t1 m1 s1 g1 rc=0 d0 d1
    d0=$(udp_drops "$port")
    t0=$(now_ns) m0=$(machine_ticks) s0=$(pids_ticks "$@") g0=$(proc_ticks $$)
    "${cmd[@]}" >"$OUT/$label.dnsperf" 2>&1 || rc=$?
    t1=$(now_ns) m1=$(machine_ticks) s1=$(pids_ticks "$@") g1=$(proc_ticks $$)
    d1=$(udp_drops "$port")
    echo "$((t1 - t0)) $((s1 - s0)) $((g1 - g0)) $((m1 - m0)) $rc" >"$OUT/$label.cpu"
    paste -d' ' <(tr ' ' '\n' <<<"$d0") <(tr ' ' '\n' <<<"$d1") | awk '{ printf "%d ", $2 - $1 } END { print "" }' \
        >"$OUT/$label.udp"
    local pid
    for pid in "$@"; do
        kill -0 "$pid" 2>/dev/null || log "warning: $label: server process $pid is gone after the run"
    done
}

for N in $SIZES; do
    ZONE=$OUT/bench-$N.toml
    MASTER=$OUT/bench-$N.zone
    NAMES=$OUT/names-$N.txt
    QUERIES=$OUT/queries-$N.txt
    CHECKFILE=$OUT/checks-$N.txt

    # --- zone, master file, queries ---------------------------------------------------------
    log "generating $N agents: $ZONE, $MASTER, $QUERIES"
    cmd=(python3 "$ROOT/bench/gen_zone.py" --agents "$N" --origin bench --seed "$SEED"
        --endpoint-host '{name}.hosts.example' --dns 127.0.0.1:53 --out "$ZONE" --names "$NAMES")
    note "${cmd[*]}"
    "${cmd[@]}"
    note python3 "$ROOT/bench/zone_to_rfc1035.py" "$ZONE" "$MASTER"
    python3 "$ROOT/bench/zone_to_rfc1035.py" "$ZONE" "$MASTER"
    nsd-checkzone bench "$MASTER" >&2
    python3 - "$NAMES" "$SEED" "$CHECKS" "$QUERIES" "$CHECKFILE" <<'PY'
import random
import sys

names_file, seed, checks, queries_file, check_file = sys.argv[1:6]
names = [line.strip() for line in open(names_file, encoding="utf-8") if line.strip()]
queries = []
for index, name in enumerate(names):
    queries += [f"_mcp._tcp.{name} SRV", f"{name} TXT", f"{name} A", f"missing-{index}.bench A"]
rng = random.Random(int(seed))
rng.shuffle(queries)
with open(queries_file, "w", encoding="utf-8") as out:
    out.write("\n".join(queries) + "\n")

picks = [names[0], names[-1]] + rng.sample(names, min(len(names), max(int(checks) - 2, 0)))
picks = list(dict.fromkeys(picks))[: max(int(checks), 1)]
rows = []
for name in picks:
    rows += [("srv", f"_mcp._tcp.{name}", "SRV"), ("txt", name, "TXT"), ("a-nodata", name, "A")]
for name in picks:
    rows.append(("nxdomain", f"missing-{names.index(name)}.bench", "A"))
name = picks[-1]
rows += [
    ("svcb", name, "SVCB"),
    ("aaaa-nodata", name, "AAAA"),
    ("mx-nodata", name, "MX"),
    ("nx-txt", "missing-x.bench", "TXT"),
    ("nx-below", f"deeper.{name}", "A"),
    ("srv-nodata", f"_mcp._tcp.{name}", "TXT"),
    ("ent", f"_tcp.{name}", "SRV"),
    ("case", name.upper(), "TXT"),
    ("apex-soa", "bench", "SOA"),
    ("apex-ns", "bench", "NS"),
    ("apex-a", "bench", "A"),
    ("glue", "_ns1.bench", "A"),
    ("index", "_index._agents.bench", "TXT"),
    ("ent", "_agents.bench", "TXT"),
    ("outside", "example.com", "A"),
]
with open(check_file, "w", encoding="utf-8") as out:
    for kind, qname, qtype in rows:
        out.write(f"{kind} {qname} {qtype}\n")
PY

    # --- the three servers ------------------------------------------------------------------
    read -r NSD_PORT AOP_PORT HICKORY_PORT BASE_PORT < <(free_dns_ports 4)
    GRPC_PORT=$(free_port)
    BASE_GRPC_PORT=$(free_port)

    NSD_DIR=$OUT/nsd-$N
    rm -rf "$NSD_DIR"
    mkdir -p "$NSD_DIR"
    write_nsd_conf "$NSD_DIR" "$NSD_PORT" "$OUT" "bench-$N.zone" "$NSD_MINIMAL"
    cat >"$OUT/hickory-$N.toml" <<EOF
listen_addrs_ipv4 = ["127.0.0.1"]
listen_port = $HICKORY_PORT
directory = "$OUT"
drop_privileges = false

[[zones]]
zone = "bench"
zone_type = "Primary"
stores = { type = "file", zone_path = "bench-$N.zone" }
EOF

    log "starting nsd on 127.0.0.1:$NSD_PORT"
    wait_quiet "nsd start"
    note nsd -d -c "$NSD_DIR/nsd.conf"
    START_NS=$(now_ns)
    nsd -d -c "$NSD_DIR/nsd.conf" >"$NSD_DIR/stderr.log" 2>&1 &
    NSD_PID=$!
    PIDS+=("$NSD_PID")
    wait_dns "nsd-$N" "$NSD_PID" "$NSD_DIR/stderr.log" "$NSD_PORT"
    sleep 0.5
    NSD_PIDS=$(family "$NSD_PID")

    log "starting aop node on 127.0.0.1:$AOP_PORT"
    start_node "$AOP" aop "$GRPC_PORT" "$AOP_PORT"
    AOP_PID=$NODE_PID

    COMPARE=(--server "nsd=127.0.0.1:$NSD_PORT" --server "aop=127.0.0.1:$AOP_PORT")
    BASE_PID=
    if [[ -n $AOP_BASE ]]; then
        log "starting aop base ($AOP_BASE) on 127.0.0.1:$BASE_PORT"
        start_node "$AOP_BASE" base "$BASE_GRPC_PORT" "$BASE_PORT"
        BASE_PID=$NODE_PID
        COMPARE+=(--server "base=127.0.0.1:$BASE_PORT")
    fi
    HICKORY_PID=
    if [[ $HICKORY_ON == 1 ]]; then
        log "starting hickory-dns on 127.0.0.1:$HICKORY_PORT"
        wait_quiet "hickory-dns start"
        note env -u RUST_LOG "$HICKORY" -q -c "$OUT/hickory-$N.toml"
        START_NS=$(now_ns)
        env -u RUST_LOG "$HICKORY" -q -c "$OUT/hickory-$N.toml" >"$OUT/hickory-$N.log" 2>&1 &
        HICKORY_PID=$!
        PIDS+=("$HICKORY_PID")
        wait_dns "hickory-$N" "$HICKORY_PID" "$OUT/hickory-$N.log" "$HICKORY_PORT"
        COMPARE+=(--server "hickory=127.0.0.1:$HICKORY_PORT")
    fi

    for server in "${SERVERS[@]}"; do
        case $server in
        nsd) pid=$NSD_PID ;;
        aop) pid=$AOP_PID ;;
        base) pid=$BASE_PID ;;
        hickory) pid=$HICKORY_PID ;;
        esac
        echo "$(family_rss_kib "$pid")" >"$OUT/$server-$N.rss"
    done

    # --- correctness --------------------------------------------------------------------------
    log "correctness checks, $N agents"
    cmd=(python3 "$ROOT/bench/dns_compare.py" "${COMPARE[@]}" --queries "$CHECKFILE")
    note "${cmd[*]}"
    "${cmd[@]}" >"$OUT/checks-$N.out"

    # --- load ---------------------------------------------------------------------------------
    for server in "${SERVERS[@]}"; do
        case $server in
        nsd) port=$NSD_PORT pids=$NSD_PIDS ;;
        aop) port=$AOP_PORT pids=$AOP_PID ;;
        base) port=$BASE_PORT pids=$BASE_PID ;;
        hickory) port=$HICKORY_PORT pids=$HICKORY_PID ;;
        esac
        for q in $INFLIGHT; do
            for ((run = 1; run <= RUNS; run++)); do
                # shellcheck disable=SC2086
                measure "$server-$N-q$q-r$run" "$port" "$q" "$QUERIES" $pids
            done
        done
    done

    # --- where aop spends CPU -----------------------------------------------------------------
    if [[ $PERF == 1 && $N == "${SIZES##* }" ]] && command -v perf >/dev/null; then
        q=${INFLIGHT%% *}
        log "perf record -g on aop ($N agents, -q $q)"
        wait_quiet "perf run"
        note perf record -g -p "$AOP_PID" -o "$OUT/perf-aop-$N.data" -- sleep "$LENGTH" "& dnsperf ... -q $q -l $LENGTH"
        perf record -g -p "$AOP_PID" -o "$OUT/perf-aop-$N.data" -- sleep "$LENGTH" \
            >"$OUT/perf-record.log" 2>&1 &
        PERF_PID=$!
        dnsperf -s 127.0.0.1 -p "$AOP_PORT" -d "$QUERIES" -c "$CLIENTS" -q "$q" -l "$LENGTH" \
            >"$OUT/perf-aop-$N.dnsperf" 2>&1 || true
        wait "$PERF_PID" || true
        perf report -i "$OUT/perf-aop-$N.data" --no-children -g none --sort symbol --stdio \
            --percent-limit 0.7 2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 40 \
            >"$OUT/perf-self-$N.txt" || true
        perf report -i "$OUT/perf-aop-$N.data" --children -g none --sort symbol --stdio \
            --percent-limit 3 2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 40 \
            >"$OUT/perf-children-$N.txt" || true
    fi

    if [[ -n $HICKORY_PID ]]; then
        stop "$HICKORY_PID"
    fi
    if [[ -n $BASE_PID ]]; then
        stop "$BASE_PID"
    fi
    stop "$AOP_PID"
    stop "$NSD_PID"
done

# --- report ---------------------------------------------------------------------------------------
SERVERS_LIST="${SERVERS[*]}" python3 - "$OUT" "$SIZES" "$INFLIGHT" "$HZ" "$LENGTH" "$NSD_VERSION" "$HICKORY_VERSION" \
    "$DNSPERF_VERSION" "$DIG_VERSION" "$AOP_VERSION" <<'PY'
import os
import re
import sys
from pathlib import Path

out = Path(sys.argv[1])
sizes = sys.argv[2].split()
inflights = sys.argv[3].split()
hz = int(sys.argv[4])
length = sys.argv[5]
versions = sys.argv[6:11]
servers = os.environ["SERVERS_LIST"].split()
names = {"nsd": "NSD", "aop": "aop node", "base": "aop base", "hickory": "hickory-dns"}


def parse(path):
    text = path.read_text() if path.exists() else ""
    def grab(pattern, cast=float, default=None):
        m = re.search(pattern, text)
        return cast(m.group(1)) if m else default
    r = {
        "sent": grab(r"Queries sent:\s+(\d+)", int, 0),
        "completed": grab(r"Queries completed:\s+(\d+)", int, 0),
        "lost": grab(r"Queries lost:\s+(\d+)", int, 0),
        "qps": grab(r"Queries per second:\s+([\d.]+)", float, 0.0),
        "avg": grab(r"Average Latency \(s\):\s+([\d.]+)", float, 0.0),
        "min": grab(r"Average Latency \(s\):.*min ([\d.]+)", float, 0.0),
        "max": grab(r"Average Latency \(s\):.*max ([\d.]+)", float, 0.0),
        "sd": grab(r"Latency StdDev \(s\):\s+([\d.]+)", float, 0.0),
        "rcodes": (re.search(r"Response codes:\s+(.*)", text) or [None, "?"])[1],
        "resp_size": grab(r"response (\d+)", int, 0),
        "text": text,
    }
    cpu = out / (path.stem + ".cpu")
    if cpu.exists():
        wall_ns, server, gen, machine, rc = (int(v) for v in cpu.read_text().split())
        secs = wall_ns / 1e9
        r.update(
            server_cores=server / hz / secs,
            gen_cores=gen / hz / secs,
            other_cores=(machine - server - gen) / hz / secs,
            us_per_query=server / hz * 1e6 / r["completed"] if r["completed"] else float("nan"),
            rc=rc,
        )
    udp = out / (path.stem + ".udp")
    if udp.exists():
        r["drops"], r["rcvbuf"], r["sndbuf"] = (int(v) for v in udp.read_text().split())
    return r


results, all_runs = {}, {}
for n in sizes:
    for s in servers:
        for q in inflights:
            runs = [parse(path) for path in sorted(out.glob(f"{s}-{n}-q{q}-r*.dnsperf"))]
            runs.sort(key=lambda r: r["qps"])
            results[(s, n, q)] = runs[(len(runs) - 1) // 2] if runs else parse(out / "missing")
            all_runs[(s, n, q)] = runs

print()
print("=" * 100)
print("DNS benchmark: aop node --dns vs NSD vs hickory-dns")
print(f"  {versions[0]} | {versions[1]} | dnsperf {versions[2]} | {versions[3]}")
print(f"  aop: {versions[4]}")
print(f"  machine: {os.cpu_count()} cores, shared by dnsperf and the server under test; "
      f"{length} s per run")
print()
print("commands:")
for line in (out / "commands.txt").read_text().splitlines():
    print(f"  {line}")
print()
for n in sizes:
    print(f"zone: {n} agents; first answer after start / resident memory after load")
    for s in servers:
        ready = out / f"{s}-{n}.ready"
        rss = out / f"{s}-{n}.rss"
        r_ms = int(ready.read_text()) / 1e6 if ready.exists() else float("nan")
        r_kib = int(rss.read_text()) if rss.exists() else 0
        print(f"  {names[s]:12} {r_ms:9.0f} ms  {r_kib / 1024:8.1f} MiB"
              + ("  (main + xfrd + server processes, shared pages counted in each)" if s == "nsd" else ""))
    print()
for n in sizes:
    print(f"correctness checks, {n} agents (reference: NSD)")
    path = out / f"checks-{n}.out"
    for line in (path.read_text().splitlines() if path.exists() else ["  (missing)"]):
        print(f"  {line}")
    print()

print("load: dnsperf -c 4 -q Q -l LENGTH, mix 25% SRV / 25% TXT / 25% A (NODATA) / 25% NXDOMAIN")
header = (f"  {'server':12} {'agents':>7} {'q':>4} {'qps':>9} {'lost %':>7} {'lost':>6} {'avg ms':>7} "
          f"{'max ms':>7} {'srv cores':>9} {'gen':>5} {'other':>5} {'srv us/q':>8} {'x NSD':>6} {'drops':>5} {'rcvbuf':>6}  rcodes")
print(header)
print("  " + "-" * (len(header) - 2))
for n in sizes:
    for q in inflights:
        nsd_qps = results[("nsd", n, q)]["qps"]
        for s in servers:
            r = results[(s, n, q)]
            lost_pct = 100 * r["lost"] / r["sent"] if r["sent"] else float("nan")
            ratio = f"{r['qps'] / nsd_qps:.2f}" if nsd_qps else "n/a"
            print(f"  {names[s]:12} {n:>7} {q:>4} {r['qps']:9.0f} {lost_pct:7.3f} {r['lost']:6} "
                  f"{r['avg'] * 1e3:7.3f} {r['max'] * 1e3:7.2f} {r.get('server_cores', float('nan')):9.2f} "
                  f"{r.get('gen_cores', float('nan')):5.2f} {r.get('other_cores', float('nan')):5.2f} "
                  f"{r.get('us_per_query', float('nan')):8.2f} {ratio:>6} {r.get('drops', '?'):>5} "
                  f"{r.get('rcvbuf', '?'):>6}  {r['rcodes']}")
        print()
print("  srv cores / gen / other: cores busy during the run in the server's processes, in dnsperf,")
print("  and in everything else; 'srv us/q': server CPU time (utime+stime, /proc/PID/stat) over")
print("  the run / queries completed. x NSD: queries/s relative to NSD in the same row group.")
print("  drops: datagrams the kernel dropped on the server's UDP socket during the run (/proc/net/udp);")
print("  rcvbuf: the machine's UDP RcvbufErrors over the run (server and dnsperf sockets together).")
if any(len(v) > 1 for v in all_runs.values()):
    print("  Each row is the median run by qps; every run's qps / lost / us per query:")
    for (s, n, q), runs in all_runs.items():
        listed = ", ".join(f"{r['qps']:.0f}/{r['lost']}/{r.get('us_per_query', float('nan')):.1f}" for r in runs)
        print(f"    {names[s]:12} {n:>7} -q {q:>3}: {listed}")
print()

print("targets (issue 15): aop >= NSD qps at the highest in-flight with 0% loss on both zone sizes;")
print("server CPU < 7 us/query; same answers as NSD on the checks")
top = inflights[0]
for n in sizes:
    a, b = results[("aop", n, top)], results[("nsd", n, top)]
    ratio = a["qps"] / b["qps"] if b["qps"] else 0
    ok = ratio >= 1.0 and a["lost"] == 0
    print(f"  {n:>7} agents, -q {top}: aop/NSD = {ratio:.2f}, aop lost {a['lost']} -> {'PASS' if ok else 'FAIL'}")
for n in sizes:
    for q in inflights:
        us = results[("aop", n, q)].get("us_per_query", float("nan"))
        ref = results[("nsd", n, q)].get("us_per_query", float("nan"))
        print(f"  {n:>7} agents, -q {q}: aop CPU {us:.2f} us/query -> {'PASS' if us < 7 else 'FAIL'}"
              f"   (NSD {ref:.2f} us/query in the same conditions)")
for n in sizes:
    path = out / f"checks-{n}.out"
    tally = [l for l in (path.read_text().splitlines() if path.exists() else []) if l.startswith("agreement")]
    for line in tally:
        print(f"  {n:>7} agents: {line}")

perf = sorted(out.glob("perf-self-*.txt"))
for path in perf:
    n = path.stem.rsplit("-", 1)[1]
    print()
    print(f"perf record -g on aop node, {n} agents, -q {top} (self time by symbol, >= 0.7%):")
    for line in path.read_text().splitlines():
        print(f"  {line}")
    children = out / f"perf-children-{n}.txt"
    if children.exists():
        print(f"  -- inclusive (children) time by symbol, >= 3%:")
        for line in children.read_text().splitlines():
            print(f"  {line}")
    pd = parse(out / f"perf-aop-{n}.dnsperf")
    print(f"  (that run, under perf: {pd['qps']:.0f} qps, lost {pd['lost']})")

print()
print(f"raw dnsperf outputs: {out}/<server>-<agents>-q<Q>.dnsperf; logs: {out}/")
PY
