#!/usr/bin/env bash
# Int8 inference throughput on the 10,000 CIFAR-10 test images, all in one run: qsh's float
# engine, its fake-quant simulation and its int8 engine (the `eval` lines qsh prints), against
# ONNX Runtime and OpenVINO running the QDQ file qsh exports for the same quantized state, with
# their int8 kernels (default graph optimizations). Prints the CPU's ISA and the ratios.
#
# usage: Benchmarks/int8-throughput.sh [--threads N] [--batch N] [--repeats N] [--models "resnet20 resnet56"]
#                                      [--weight-bits "7 8"]
# W7A8 is the int8 engine's safe scheme on CPUs without VNNI (docs/export.md); W8A8 runs its
# layers in float there (qsh) or saturates (ONNX Runtime, OpenVINO). Environment as for
# eval-throughput.sh (QSH_MODELS, QSH_DATA, QSH_BINARY or QSH_SCRATCH_PATH).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
threads="$(nproc)"
batch=200
repeats=3
names="resnet20 resnet56"
weight_bits="7 8"
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) threads="$2"; shift 2 ;;
        --batch) batch="$2"; shift 2 ;;
        --repeats) repeats="$2"; shift 2 ;;
        --models) names="$2"; shift 2 ;;
        --weight-bits) weight_bits="$2"; shift 2 ;;
        *) echo "unknown option $1 (expected --threads, --batch, --repeats, --models, --weight-bits)" >&2; exit 2 ;;
    esac
done
. "$root/Benchmarks/common.sh"
python3 -c "import numpy, onnxruntime, openvino" 2>/dev/null || python3 -m pip install -q numpy onnx onnxruntime openvino
qsh="$(qsh_binary)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

isa="$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -x -E 'avx2|avx512f|avx512_vnni|avx_vnni|amx_int8' | tr '\n' ' ')"
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# ISA flags: ${isa:-none of avx2/avx512f/avx512_vnni/avx_vnni/amx_int8}; threads=$threads batch=$batch best of $repeats; OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}; load average $(cut -d' ' -f1-3 /proc/loadavg)"

results="$work/results"
for name in $names; do
    for bits in $weight_bits; do
        recipe="$work/$name-w$bits.qs"
        {
            echo "set threads=$threads progress=false"
            echo "load $name"
            for _ in $(seq "$repeats"); do echo "eval cifar10 batch=$batch"; done
            echo "fold bn"
            echo "quantize weights bits=$bits scheme=symmetric granularity=channel"
            echo "quantize activations bits=8 scheme=asymmetric granularity=tensor"
            echo "calibrate data=cifar10-train samples=512 method=minmax"
            for _ in $(seq "$repeats"); do echo "eval cifar10 batch=$batch"; done
            for _ in $(seq "$repeats"); do echo "eval cifar10 batch=$batch engine=int8"; done
            echo "export onnx \"$work/$name-w$bits.onnx\""
        } > "$recipe"
        QSH_MODELS="$models" QSH_DATA="$data" "$qsh" "$recipe" > "$work/$name-w$bits.log"
        # The eval lines in order: float model, simulation, int8 engine (repeats each).
        python3 - "$work/$name-w$bits.log" "$repeats" "$name" "$bits" >> "$results" <<'PY'
import re, sys
log, repeats, name, bits = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
text = open(log).read()
evals = [(float(a), float(b)) for a, b in re.findall(r"top-1 ([\d.]+)%.*?, ([\d.]+) images/s\)", text)]
engine = re.search(r"engine int8 \(([^)]*)\): (\d+) of (\d+)", text)
for label, group in (("qsh-float", evals[:repeats]), ("qsh-simulated", evals[repeats:2 * repeats]), ("qsh-int8", evals[2 * repeats:])):
    print(f"{name} w{bits} {label} top1={group[0][0]:.2f} images_per_s={max(r for _, r in group):.1f}")
print(f"{name} w{bits} qsh-int8-layers {engine.group(2)}/{engine.group(3)} isa={engine.group(1).replace(' ', '')}")
PY
        python3 "$root/Benchmarks/int8_reference.py" "$work/$name-w$bits.onnx" --data "$batches" --threads "$threads" \
            --batch "$batch" --repeats "$repeats" --label "$name w$bits" >> "$results"
    done
done
cat "$results"

python3 - "$results" <<'PY'
import re, sys
rows = {}
notes = []
for line in open(sys.argv[1]):
    parts = line.split()
    key, runtime = (parts[0], parts[1]), parts[2]
    if runtime == "qsh-int8-layers":
        notes.append(f"{parts[0]} {parts[1]}: {parts[3]} layers int8 in qsh ({parts[4]})")
        continue
    rate = float(re.search(r"images_per_s=([\d.]+)", line).group(1))
    top1 = float(re.search(r"top1=([\d.]+)", line).group(1))
    rows.setdefault(key, {})[runtime] = (rate, top1)
print()
header = ["model", "weights", "float", "simulated", "int8", "ORT int8", "OpenVINO int8", "int8/float", "int8/ORT", "int8/OpenVINO"]
print("  ".join(f"{h:>13}" for h in header))
for (model, bits), r in rows.items():
    f, s, i = r["qsh-float"][0], r["qsh-simulated"][0], r["qsh-int8"][0]
    o, v = r["onnxruntime"][0], r["openvino"][0]
    cells = [model, bits, f"{f:.0f}", f"{s:.0f}", f"{i:.0f}", f"{o:.0f}", f"{v:.0f}", f"{i / f:.2f}", f"{i / o:.2f}", f"{i / v:.2f}"]
    print("  ".join(f"{c:>13}" for c in cells))
print()
print("top-1 (%):")
for (model, bits), r in rows.items():
    print(f"  {model} {bits}: " + ", ".join(f"{k} {v[1]:.2f}" for k, v in r.items()))
for note in notes:
    print("  " + note)
PY
