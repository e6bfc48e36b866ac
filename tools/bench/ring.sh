#!/usr/bin/env bash
# Ring benchmark (not a test): builds the release example `ring_bench` of ccssl-pipe and runs
# it. It moves 1 MiB slots between two processes and prints the ring's GB/s, single-thread
# memcpy GB/s measured in the same run, the median one-way handoff latency of a 64-byte slot,
# and as its last line `ratio <ring/memcpy>`.
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --quiet --release -p ccssl-pipe --example ring_bench
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
exec "${CARGO_TARGET_DIR:-target}/release/examples/ring_bench"
