#!/usr/bin/env bash
# Benchmark (not a test): images/s of the full unlabeled transform (weak + strong + contrast
# views of one image) on one core, ccssl-augment (release build, 1 thread) against the
# equivalent torchvision/Pillow pipeline, in the same run. Rates are images per second of CPU
# time, so other processes on a shared machine do not skew them; wall-clock rates are shown
# too. Last line: `ratio <ours/pillow>` of the CPU-time rates.
#
# Usage: tools/bench/augment.sh [SECONDS]   (CPU seconds per side, default 5)
# Environment: CIFAR_DIR (default ../shared/data/cifar10 from the repository root),
#              VENV (default /work/venv), CARGO_TARGET_DIR (default target),
#              BENCH_CPU (core to pin both sides to with taskset, default 0).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
seconds="${1:-5}"
cifar="${CIFAR_DIR:-$root/../shared/data/cifar10}/data_batch_1.bin"
python="${VENV:-/work/venv}/bin/python"
target="${CARGO_TARGET_DIR:-$root/target}"
cpu="${BENCH_CPU:-0}"

[[ -f "$cifar" ]] || { echo "augment.sh: $cifar not found; set CIFAR_DIR" >&2; exit 2; }
[[ -x "$python" ]] || { echo "augment.sh: $python not found; set VENV" >&2; exit 2; }

pin=()
if command -v taskset >/dev/null; then pin=(taskset -c "$cpu"); fi

(cd "$root" && CARGO_TARGET_DIR="$target" cargo build --quiet --release -p ccssl-augment --example augment_bench)

echo "machine: $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores online, load $(cut -d' ' -f1 /proc/loadavg)"
ours_out=$("${pin[@]}" "$target/release/examples/augment_bench" "$cifar" "$seconds")
theirs_out=$(OMP_NUM_THREADS=1 "${pin[@]}" "$python" "$root/tools/bench/augment_bench.py" "$cifar" "$seconds")
field() { awk -v k="$1" '$1 == k {print $2}'; }
ours=$(field images_per_cpu_s <<<"$ours_out")
theirs=$(field images_per_cpu_s <<<"$theirs_out")
echo "ours   (ccssl-augment, 1 thread): $ours images/CPU-s ($(field images_per_wall_s <<<"$ours_out") images/wall-s)"
echo "pillow (torchvision + Pillow):    $theirs images/CPU-s ($(field images_per_wall_s <<<"$theirs_out") images/wall-s)"
awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "ratio %.1f\n", a / b }'
