#!/usr/bin/env bash
# Durable registrations per second (fsync on every commit) at a zone's primary, and how long
# each change takes to reach a secondary (NOTIFY + incremental transfer).
#
#   bench/register.sh                 # COUNT=20000 CONCURRENCY=64, then 1,000 changes at 1 in flight
#
# Prints the commands it runs. Both nodes keep their stores under bench/out/register/. The
# primary starts with --health-probes 0: the registered agents' endpoints point at a closed
# port (127.0.0.1:9), and probing them would be measured too.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-20000}
CONCURRENCY=${CONCURRENCY:-64}
OUT=bench/out/register
rm -rf "$OUT" && mkdir -p "$OUT"
cargo build --release --quiet
AOP=target/release/aop
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=$(port); S=$(port)
cat > "$OUT/bench.toml" <<ZONE
[zone]
origin = "bench"
serial = 1
ttl = 60
refresh = 60
servers = [{ grpc = "http://127.0.0.1:$P" }, { grpc = "http://127.0.0.1:$S" }]
ZONE
run() { echo "+ $*"; "$@"; }
run $AOP key new bench-key --zone bench --out "$OUT/bench.key" > "$OUT/node-lines.toml"
# Waits until the node at $1 serves the zone itself (a dump asked of a node that does not may
# come from the zone's other servers; transferred_from says which answered).
wait_dump() { for _ in $(seq 300); do $AOP zone dump --server "$1" bench --json 2>/dev/null | grep -q "\"transferred_from\": \"$1\"" && return 0; sleep 0.1; done; echo "no zone at $1" >&2; exit 1; }
run $AOP node --zone "$OUT/bench.toml" --grpc 127.0.0.1:$P --data-dir "$OUT/primary" --update-key "$OUT/bench.key" --health-probes 0 2> "$OUT/primary.log" &
PRIMARY=$!
trap 'kill $PRIMARY ${SECONDARY:-} 2>/dev/null || true' EXIT
wait_dump http://127.0.0.1:$P
run $AOP node --secondary bench=http://127.0.0.1:$P --grpc 127.0.0.1:$S --data-dir "$OUT/secondary" 2> "$OUT/secondary.log" &
SECONDARY=$!
wait_dump http://127.0.0.1:$S
echo "== throughput: $COUNT registrations, $CONCURRENCY in flight"
run $AOP bench register --server http://127.0.0.1:$P --zone bench --key-file "$OUT/bench.key" \
  --count "$COUNT" --concurrency "$CONCURRENCY" --secondary http://127.0.0.1:$S
echo "== convergence: 1,000 changes, 1 in flight"
run $AOP bench register --server http://127.0.0.1:$P --zone bench --key-file "$OUT/bench.key" \
  --count 1000 --concurrency 1 --secondary http://127.0.0.1:$S
echo "store: $(du -h "$OUT/primary/aop.redb" | cut -f1) primary, $(du -h "$OUT/secondary/aop.redb" | cut -f1) secondary"
