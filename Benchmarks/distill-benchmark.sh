#!/usr/bin/env bash
# Distillation speed: `distill samples=256 steps=200 batch=64` on resnet20 in qsh against the
# same loop in PyTorch CPU eager (Benchmarks/distill-reference.py: same loss, Adam, clamping,
# batches and best-image bookkeeping), with the same thread count. Prints each side's loop time,
# wall time and peak resident memory (/usr/bin/time -v), and the ratio.
#
# usage: Benchmarks/distill-benchmark.sh [--threads N] [--samples N] [--steps N] [--batch N] [--model resnet20|resnet56]
# Environment: QSH_MODELS (default ../shared/models), QSH_DATA (the folder holding
# cifar-10-batches-bin/, as for qsh; default ../shared/data), QSH_SCRATCH_PATH (SwiftPM build
# folder, default .build), QSH_BINARY (a built qsh to use instead of building), OMP_WAIT_POLICY
# (default passive, as qsh sets it for itself when unset; both sides get the same, since on a
# loaded machine spinning idle OpenMP threads slow either runtime severalfold). Both sides move
# with other load on the machine, so compare them from one run.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
threads="$(nproc)"
samples=256
steps=200
batch=64
model=resnet20
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) threads="$2"; shift 2 ;;
        --samples) samples="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        --batch) batch="$2"; shift 2 ;;
        --model) model="$2"; shift 2 ;;
        *) echo "unknown option $1 (expected --threads, --samples, --steps, --batch, --model)" >&2; exit 2 ;;
    esac
done
. "$root/Benchmarks/common.sh"
depth="$(model_depth "$model")"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

require_torch

qsh="$(qsh_binary)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), threads=$threads, OMP_WAIT_POLICY=$OMP_WAIT_POLICY, load average $(cut -d' ' -f1-3 /proc/loadavg)"
isa_line
echo "# $model: distill samples=$samples steps=$steps batch=$batch lr=0.2"

/usr/bin/time -v "$qsh" run --models "$models" --data "$data" --threads "$threads" \
    -c "load $model; distill samples=$samples steps=$steps batch=$batch lr=0.2 seed=0" \
    > "$work/qsh.out" 2> "$work/qsh.err"
/usr/bin/time -v python3 Benchmarks/distill-reference.py --models "$models" --depth "$depth" --samples "$samples" \
    --steps "$steps" --batch "$batch" --lr 0.2 --threads "$threads" > "$work/torch.out" 2> "$work/torch.err"

qsh_loop="$(sed -n "s/.* in \([0-9.]*\) s: BN statistics loss.*/\1/p" "$work/qsh.out")"
qsh_losses="$(sed -n "s/.*BN statistics loss \([0-9.]*\) -> \([0-9.]*\),.*/\1 -> \2/p" "$work/qsh.out")"
torch_loop="$(sed -n 's/.* seconds=\([0-9.]*\) .*/\1/p' "$work/torch.out")"
torch_losses="$(sed -n 's/.*initial_loss=\([0-9.]*\) final_loss=\([0-9.]*\).*/\1 -> \2/p' "$work/torch.out")"
if [ -z "$qsh_loop" ] || [ -z "$torch_loop" ]; then
    echo "a run failed:" >&2
    cat "$work/qsh.out" "$work/qsh.err" "$work/torch.out" "$work/torch.err" >&2
    exit 1
fi

printf "%-8s loop %8.1f s  wall %8.1f s  peak RSS %6s MiB  loss %s\n" qsh "$qsh_loop" "$(wall "$work/qsh.err")" "$(peak "$work/qsh.err")" "$qsh_losses"
printf "%-8s loop %8.1f s  wall %8.1f s  peak RSS %6s MiB  loss %s\n" pytorch "$torch_loop" "$(wall "$work/torch.err")" "$(peak "$work/torch.err")" "$torch_losses"
awk -v a="$torch_loop" -v b="$qsh_loop" 'BEGIN { printf "speed-up (PyTorch loop time / qsh loop time): %.2fx\n", a / b }'
