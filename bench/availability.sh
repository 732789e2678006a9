#!/usr/bin/env bash
# The availability run (docs/protocol.md §9.4): a federation in Linux network namespaces, one host
# per node, steady load from a client host and one fault at a time from a printed seed; prints
# attempts, successes, ratios, p50/p99, acknowledged registrations lost and the longest time a
# name was unanswerable. The driver is bench/availability.py (Python 3.11 standard library).
#
#   sudo bench/availability.sh [--duration 600] [--seed N] [--rolling-restart finance.acme]
#
# Needs root, iproute2 and nftables (installed with apt-get when missing). Builds the release
# binary of this tree unless AOP names one. Every namespace, link and process it makes is
# removed at the end, on interrupt, and at the start (left-overs of an earlier run).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "availability: must run as root (network namespaces, nftables)" >&2
    exit 1
fi
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v nft >/dev/null || missing+=(nftables)
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> apt-get install ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ -z "${AOP:-}" ]; then
    echo "==> cargo build --release" >&2
    cargo build --release --quiet
    AOP=target/release/aop
fi
exec python3 bench/availability.py --aop "$AOP" "$@"
