#!/usr/bin/env bash
# Fine-tuning step speed: `finetune ait` on a 4-bit (weights per channel, activations per tensor)
# resnet20 in qsh against the same training step in PyTorch CPU eager
# (Benchmarks/finetune-reference.py: fake-quantized weights and activations at the same places,
# straight-through estimator, KL against precomputed teacher log-probabilities, Nesterov SGD,
# batch norms on running statistics), with the same images count, batch size and thread count.
# qsh runs twice: without gradient inundation (the like-for-like step) and with it (the added
# cost of the kappa search). Each side's images/s covers the training steps of the epochs after
# the first (a warm-up): total images over total step seconds. Also prints wall time and peak
# resident memory and CPU seconds (/usr/bin/time -v) of each whole process, and the ratio qsh / PyTorch.
#
# usage: Benchmarks/finetune-benchmark.sh [--threads N] [--batch N] [--images N] [--epochs N] [--model resnet20|resnet56]
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
batch=64
images=512
epochs=4
model=resnet20
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) threads="$2"; shift 2 ;;
        --batch) batch="$2"; shift 2 ;;
        --images) images="$2"; shift 2 ;;
        --epochs) epochs="$2"; shift 2 ;;
        --model) model="$2"; shift 2 ;;
        *) echo "unknown option $1 (expected --threads, --batch, --images, --epochs, --model)" >&2; exit 2 ;;
    esac
done
. "$root/Benchmarks/common.sh"
depth="$(model_depth "$model")"
if [ "$epochs" -lt 2 ]; then
    echo "--epochs must be at least 2: the first epoch is a warm-up" >&2
    exit 2
fi
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

require_torch

qsh="$(qsh_binary)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

load() { cut -d' ' -f1-3 /proc/loadavg; }
recipe() {
    echo "load $model; distill samples=$images steps=0 seed=0; quantize weights bits=4 scheme=asymmetric granularity=channel;" \
        "quantize activations bits=4; calibrate data=distilled samples=$images method=minmax;" \
        "finetune ait epochs=$epochs batch=$batch inundation=$1"
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), threads=$threads, OMP_WAIT_POLICY=$OMP_WAIT_POLICY, load average $(load)"
isa_line
echo "# $model W4A4: $images Gaussian images, batch $batch, $epochs epochs (the first a warm-up), lr 1e-4, Nesterov momentum 0.9"

# The three runs go back to back so that they share the machine's load.
load_qsh="$(load)"
/usr/bin/time -v "$qsh" run --models "$models" --data "$data" --threads "$threads" -c "$(recipe false)" \
    > "$work/qsh.out" 2> "$work/qsh.err"
load_torch="$(load)"
/usr/bin/time -v python3 Benchmarks/finetune-reference.py --models "$models" --depth "$depth" --images "$images" \
    --batch "$batch" --epochs "$epochs" --threads "$threads" > "$work/torch.out" 2> "$work/torch.err"
load_inundation="$(load)"
/usr/bin/time -v "$qsh" run --models "$models" --data "$data" --threads "$threads" -c "$(recipe true)" \
    > "$work/inundation.out" 2> "$work/inundation.err"

# CPU seconds of the whole process (user + system): less sensitive to other load than wall time.
cpu() { awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.1f", s }' "$1"; }
# Epoch lines end in "N.N s, R img/s"; the rates are more precise than the seconds, so the
# total step time of the epochs after the first is rebuilt as the sum of images / rate.
epoch_rates() { sed -n 's|^epoch \([0-9]*\)/[0-9]* .* \([0-9.]*\) img/s.*|\1 \2|p' "$1"; }
steady_rate() {
    epoch_rates "$1" | awk -v n="$images" '$1 > 1 { seconds += n / $2; count++ }
        END { if (count > 0) printf "%.1f", count * n / seconds }'
}
all_rates() { epoch_rates "$1" | awk '{ printf "%s%s", sep, $2; sep = " " }'; }
qsh_kl() { sed -n 's/.*KL \([0-9.]*\) -> \([0-9.]*\),.*/\1 -> \2/p' "$1"; }

qsh_rate="$(steady_rate "$work/qsh.out")"
inundation_rate="$(steady_rate "$work/inundation.out")"
torch_rate="$(sed -n 's/.* images_per_second=\([0-9.]*\) .*/\1/p' "$work/torch.out")"
if [ -z "$qsh_rate" ] || [ -z "$inundation_rate" ] || [ -z "$torch_rate" ]; then
    echo "a run failed:" >&2
    cat "$work/qsh.out" "$work/qsh.err" "$work/torch.out" "$work/torch.err" "$work/inundation.out" "$work/inundation.err" >&2
    exit 1
fi
torch_rates="$(sed -n 's/.* per_epoch_images_per_second=\(.*\)$/\1/p' "$work/torch.out")"
torch_loss="$(sed -n 's/.* loss=\([0-9.]*->[0-9.]*\) .*/\1/p' "$work/torch.out")"

printf "%-18s %8s img/s  wall %6.1f s  cpu %6.1f s  peak RSS %5s MiB  load %s  epochs: %s img/s  KL over the data %s\n" \
    "qsh" "$qsh_rate" "$(wall "$work/qsh.err")" "$(cpu "$work/qsh.err")" "$(peak "$work/qsh.err")" "$load_qsh" "$(all_rates "$work/qsh.out")" "$(qsh_kl "$work/qsh.out")"
printf "%-18s %8s img/s  wall %6.1f s  cpu %6.1f s  peak RSS %5s MiB  load %s  epochs: %s img/s  mean step loss %s\n" \
    "pytorch" "$torch_rate" "$(wall "$work/torch.err")" "$(cpu "$work/torch.err")" "$(peak "$work/torch.err")" "$load_torch" "$torch_rates" "$torch_loss"
printf "%-18s %8s img/s  wall %6.1f s  cpu %6.1f s  peak RSS %5s MiB  load %s  epochs: %s img/s  KL over the data %s\n" \
    "qsh inundation" "$inundation_rate" "$(wall "$work/inundation.err")" "$(cpu "$work/inundation.err")" "$(peak "$work/inundation.err")" "$load_inundation" \
    "$(all_rates "$work/inundation.out")" "$(qsh_kl "$work/inundation.out")"
# The two qsh runs differ only in the kappa search, so their CPU seconds differ by its cost; that
# difference holds up under other load better than the two step rates do.
awk -v q="$qsh_rate" -v t="$torch_rate" -v i="$inundation_rate" -v b="$batch" -v n="$images" -v e="$epochs" \
    -v plain="$(cpu "$work/qsh.err")" -v inundated="$(cpu "$work/inundation.err")" 'BEGIN {
    steps = e * int((n + b - 1) / b)
    printf "qsh / PyTorch (images/s, inundation=false): %.2fx\n", q / t
    printf "inundation: step time %+.0f%% (with / without - 1), CPU %+.0f ms per step against a %.0f ms step\n",
        100 * (q / i - 1), 1000 * (inundated - plain) / steps, 1000 * b / q
}'
