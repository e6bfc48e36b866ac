#!/usr/bin/env bash
# Times the full CCSSL training step of WideResNet-28-2 at batch 16, mu 3 (160 images per step).
# It runs ours (`ccssl bench step`) and then PyTorch (tools/bench/step_torch.py) with the same
# thread count. The last line it prints is `ratio <ours/pytorch>` of the images per second.
#
# Environment: THREADS (default: nproc), STEPS (timed steps, default 10), PYTHON (an
# interpreter with torch and numpy, default python3), CARGO_TARGET_DIR (as cargo uses it).
set -euo pipefail
cd "$(dirname "$0")/../.."

threads=${THREADS:-$(nproc)}
steps=${STEPS:-10}
python=${PYTHON:-python3}
args=(--model wrn-28-2 --batch 16 --mu 3 --threads "$threads" --steps "$steps")

cargo build --release --quiet -p ccssl --bin ccssl
ours_output=$("${CARGO_TARGET_DIR:-target}/release/ccssl" bench step "${args[@]}")
echo "== ours"
echo "$ours_output"
torch_output=$("$python" tools/bench/step_torch.py "${args[@]}")
echo "== pytorch"
echo "$torch_output"

ours=$(awk '/^images_per_second/ { print $2 }' <<<"$ours_output")
torch=$(awk '/^images_per_second/ { print $2 }' <<<"$torch_output")
awk -v ours="$ours" -v torch="$torch" 'BEGIN { printf "ratio %.3f\n", ours / torch }'
