#!/usr/bin/env bash
# Compare forward + backward of WideResNet-28-2 (batch 160 by default) between ccssl-nn and
# PyTorch on the CPU with the same thread count. Runs alternate (ours, PyTorch) for ROUNDS
# rounds so that load from other processes hits both; prints each round's images/s and ratio,
# then the median ratio as the last line: `ratio <ours/pytorch>`.
#
# Usage: tools/bench/wrn_compare.sh [THREADS] [BATCH] [ROUNDS]
# Env: PYTHON (default /work/venv/bin/python if present, else python3), CARGO_TARGET_DIR.
set -euo pipefail
threads=${1:-2}
batch=${2:-160}
rounds=${3:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-python3}
cd "$root"
cargo build --release -q -p ccssl-nn --example wrn_bench
bench="${CARGO_TARGET_DIR:-$root/target}/release/examples/wrn_bench"
ratios=()
for round in $(seq 1 "$rounds"); do
    ours=$("$bench" --threads "$threads" --batch "$batch" --iters 3 --warmup 1 | tail -1 | awk '{print $2}')
    torch=$("$python" tools/bench/wrn_torch.py --threads "$threads" --batch "$batch" --iters 3 --warmup 1 | tail -1 | awk '{print $2}')
    ratio=$(awk -v a="$ours" -v b="$torch" 'BEGIN { printf "%.3f", a / b }')
    echo "round $round: ccssl-nn $ours images/s, pytorch $torch images/s, ratio $ratio"
    ratios+=("$ratio")
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
echo "ratio $median"
