#!/usr/bin/env bash
# Evaluation throughput on the 10,000 CIFAR-10 test images: the qsh binary (`eval cifar10`) and its engine (Evaluation.run, the
# code behind `eval cifar10`) against PyTorch CPU eager, ONNX Runtime and OpenVINO on the same model,
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

python3 -c "import torch, onnxruntime, onnx, openvino" 2>/dev/null || pip install -q "torch==2.13.0+cpu" onnx onnxruntime openvino

bench="$(engine_binary)"

qsh="$(qsh_binary)"

isa="$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -x -E 'avx2|avx512f|avx512_vnni|avx_vnni|amx_int8' | tr '\n' ' ')"
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), threads=$threads batch=$batch, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# ISA flags: ${isa:-none of avx2/avx512f/avx512_vnni/avx_vnni/amx_int8}; OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset (qsh: passive)}; QSH_OWN_KERNELS=${QSH_OWN_KERNELS:-unset (on)}"
results="$(mktemp)"
recipe="$(mktemp --suffix=.qs)"
trap 'rm -f "$results" "$recipe"' EXIT
# The qsh binary as users run it: `eval cifar10` prints the img/s of the whole command.
for model in resnet20 resnet56; do
    {
        echo "set threads=$threads progress=false"
        echo "load $model"
        for _ in $(seq "$repeats"); do echo "eval cifar10 batch=$batch${limit:+ limit=$limit}"; done
    } > "$recipe"
    QSH_MODELS="$models" QSH_DATA="$data" "$qsh" "$recipe" | python3 -c "
import re, sys
text = sys.stdin.read()
rate = max(float(r) for r in re.findall(r'([\d.]+) images/s\)', text))
top1 = re.findall(r'top-1 ([\d.]+)%', text)[-1]
print(f'qsh-eval $model top1={top1} images_per_s={rate:.1f}')" | tee -a "$results"
done
"$bench" --models "$models" --data "$data" --threads "$threads" --batch "$batch" --repeats "$repeats" "${limit_args[@]}" \
    resnet20 resnet56 | sed 's/^/engine /' | tee -a "$results"
python3 "$root/Benchmarks/reference_throughput.py" --models "$models" --data "$batches" --threads "$threads" \
    --batch "$batch" --repeats "$repeats" "${limit_args[@]}" 20 56 2>/dev/null | tee -a "$results"

python3 - "$results" <<'PY'
import re, sys
rates = {}
for line in open(sys.argv[1]):
    runtime, model = line.split()[:2]
    rates[(runtime, model)] = float(re.search(r"images_per_s=([\d.]+)", line).group(1))
print()
print(f"{'model':10} {'qsh eval':>9} {'engine':>8} {'pytorch':>8} {'onnxrt':>8} {'openvino':>9} {'eval/ORT':>9} {'eval/OV':>8} "
      f"{'eval/best':>10} {'eval/pytorch':>13}")
for model in ("resnet20", "resnet56"):
    q, e = rates[("qsh-eval", model)], rates[("engine", model)]
    p, o, v = rates[("pytorch-eager", model)], rates[("onnxruntime", model)], rates[("openvino", model)]
    print(f"{model:10} {q:9.1f} {e:8.1f} {p:8.1f} {o:8.1f} {v:9.1f} {q / o:9.2f} {q / v:8.2f} {q / max(o, v):10.2f} {q / p:13.2f}")
PY
