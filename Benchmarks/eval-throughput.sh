#!/usr/bin/env bash
# Evaluation throughput on the 10,000 CIFAR-10 test images: qsh's engine (Evaluation.run, the
# code behind `eval cifar10`) against PyTorch CPU eager and ONNX Runtime on the same model,
# batch size and thread count.
#
# usage: Benchmarks/eval-throughput.sh [--threads N] [--batch N] [--repeats N] [--limit N]
# Environment: QSH_MODELS (default ../shared/models), QSH_DATA (the folder holding
# cifar-10-batches-bin/, as for qsh; default ../shared/data), QSH_SCRATCH_PATH (SwiftPM build
# folder, default .build). Measure on a quiet machine: the
# numbers of all three runtimes move with other load, so compare them from one run.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
threads="$(nproc)"
batch=200
repeats=3
limit=""
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) threads="$2"; shift 2 ;;
        --batch) batch="$2"; shift 2 ;;
        --repeats) repeats="$2"; shift 2 ;;
        --limit) limit="$2"; shift 2 ;;
        *) echo "unknown option $1 (expected --threads, --batch, --repeats, --limit)" >&2; exit 2 ;;
    esac
done
. "$root/Benchmarks/common.sh"
limit_args=()
if [ -n "$limit" ]; then limit_args=(--limit "$limit"); fi

python3 -c "import torch, onnxruntime, onnx" 2>/dev/null || pip install -q "torch==2.13.0+cpu" onnx onnxruntime

scratch="${QSH_SCRATCH_PATH:-$root/.build}"
swift build --scratch-path "$scratch" -c release --product EngineBenchmark >&2
bench="$(swift build --scratch-path "$scratch" -c release --show-bin-path)/EngineBenchmark"

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), threads=$threads batch=$batch, load average $(cut -d' ' -f1-3 /proc/loadavg)"
results="$(mktemp)"
trap 'rm -f "$results"' EXIT
"$bench" --models "$models" --data "$data" --threads "$threads" --batch "$batch" --repeats "$repeats" "${limit_args[@]}" \
    resnet20 resnet56 | sed 's/^/qsh /' | tee -a "$results"
python3 "$root/Benchmarks/reference_throughput.py" --models "$models" --data "$batches" --threads "$threads" \
    --batch "$batch" --repeats "$repeats" "${limit_args[@]}" 20 56 2>/dev/null | tee -a "$results"

python3 - "$results" <<'PY'
import re, sys
rates = {}
for line in open(sys.argv[1]):
    runtime, model = line.split()[:2]
    rates[(runtime, model)] = float(re.search(r"images_per_s=([\d.]+)", line).group(1))
print()
print(f"{'model':10} {'qsh img/s':>10} {'pytorch':>10} {'onnxrt':>10} {'qsh/pytorch':>12} {'qsh/onnxrt':>11} {'onnxrt/pytorch':>15}")
for model in ("resnet20", "resnet56"):
    q, p, o = rates[("qsh", model)], rates[("pytorch-eager", model)], rates[("onnxruntime", model)]
    print(f"{model:10} {q:10.1f} {p:10.1f} {o:10.1f} {q / p:12.2f} {q / o:11.2f} {o / p:15.2f}")
PY
