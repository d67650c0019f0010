#!/usr/bin/env bash
# Inference throughput of imported ONNX models, all in one run: qsh's `eval` as users run it
# (the img/s it prints) on the ImageNet sample: the first eval of a session, which decodes and
# resizes every JPEG (overlapped with inference), and the best later one, which finds the crops
# qsh keeps; against ONNX Runtime and OpenVINO on the same file with the same batch and threads (on
# a ready-made input tensor: no decoding), and, as the like-for-like of qsh's first eval, ONNX
# Runtime with the images decoded and preprocessed by PIL in the same loop (torchvision's
# evaluation transform, as Python users run it). Models: EfficientNet-Lite0 (shared) and a full-width
# ResNet-18 exported from PyTorch with random weights (made here; needs torch). Prints the CPU's
# ISA, the OpenMP policy and the ratios.
#
# usage: Benchmarks/imported-throughput.sh [--threads N] [--batch N] [--images N] [--repeats N]
# Environment as for eval-throughput.sh (QSH_MODELS, QSH_DATA, QSH_BINARY or QSH_SCRATCH_PATH).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
threads="$(nproc)"
batch=32
images=320
repeats=2
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) threads="$2"; shift 2 ;;
        --batch) batch="$2"; shift 2 ;;
        --images) images="$2"; shift 2 ;;
        --repeats) repeats="$2"; shift 2 ;;
        *) echo "unknown option $1 (expected --threads, --batch, --images, --repeats)" >&2; exit 2 ;;
    esac
done
. "$root/Benchmarks/common.sh"
python3 -c "import numpy, onnxruntime, openvino, PIL" 2>/dev/null || python3 -m pip install -q numpy onnx onnxruntime openvino pillow
require_torch
qsh="$(qsh_binary)"
engine="$(engine_binary)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

isa="$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -x -E 'avx2|avx512f|avx512_vnni|avx_vnni|amx_int8' | tr '\n' ' ')"
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# ISA flags: ${isa:-none of avx2/avx512f/avx512_vnni/avx_vnni/amx_int8}; threads=$threads batch=$batch, $images images, best of $repeats; OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset (qsh: passive)}; load average $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$work/resnet18.onnx" <<'PY'
import sys, torch, torch.nn as nn
torch.manual_seed(0)
class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False); self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False); self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))
class ResNet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False); self.bn1 = nn.BatchNorm2d(64); self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = [64, 128, 256, 512]; layers = []; cin = 64
        for i, w in enumerate(widths):
            layers.append(nn.Sequential(Block(cin, w, 1 if i == 0 else 2), Block(w, w, 1))); cin = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1); self.fc = nn.Linear(512, 1000)
    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))
model = ResNet18().eval()
torch.onnx.export(model, torch.randn(1, 3, 224, 224), sys.argv[1], opset_version=13, dynamo=False,
                  input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
PY

results="$work/results"
for name in efficientnet-lite0 resnet18; do
    if [ "$name" = resnet18 ]; then file="$work/resnet18.onnx"; norm="mean=0.485, 0.456, 0.406 std=0.229, 0.224, 0.225"
    else file="$models/efficientnet-lite0.onnx"; norm="mean=0.498039 std=0.501961"; fi
    {
        echo "set threads=$threads progress=false"
        echo "load $name from \"$file\" $norm"
        for _ in $(seq "$repeats"); do echo "eval imagefolder \"imagenet-sample\" batch=$batch limit=$images"; done
    } > "$work/$name.qs"
    QSH_MODELS="$models" QSH_DATA="$data" "$qsh" "$work/$name.qs" > "$work/$name.log"
    python3 - "$work/$name.log" "$name" >> "$results" <<'PY'
import re, sys
rates = [float(r) for r in re.findall(r"([\d.]+) images/s\)", open(sys.argv[1]).read())]
# The first eval decodes every JPEG; later ones find the crops qsh keeps (CropCache).
print(f"{sys.argv[2]} first {rates[0]:.1f}")
print(f"{sys.argv[2]} qsh {max(rates[1:] or rates):.1f}")
PY
    # The engine alone on a ready-made batch, as the two runtimes below are timed.
    "$engine" --onnx "$file" --threads "$threads" --batch "$batch" --images "$images" --repeats "$repeats" \
        | sed -E "s/.*images_per_s=([0-9.]+).*/$name engine \1/" >> "$results"
    python3 - "$file" "$name" "$threads" "$batch" "$images" "$repeats" "$data/imagenet-sample" "$norm" >> "$results" <<'PY'
import os, re, sys, time, numpy as np, onnxruntime as ort, openvino as ov
from PIL import Image
file, name, threads, batch, images, repeats = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
folder = sys.argv[7]
mean, std = ([float(v) for v in re.search(key + r"=([\d., ]+?)(?: std=|$)", sys.argv[8]).group(1).split(",")] for key in ("mean", "std"))
x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
batches = max(1, images // batch)
def best(run):
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(batches): run()
        times.append(time.perf_counter() - start)
    return batches * batch / min(times)
options = ort.SessionOptions(); options.intra_op_num_threads = threads; options.inter_op_num_threads = 1
session = ort.InferenceSession(file, options, providers=["CPUExecutionProvider"])
print(f"{name} onnxruntime {best(lambda: session.run(None, {'input': x})):.1f}")
# The same images as qsh's `eval imagefolder ... limit=N` (sorted class folders, sorted files),
# decoded and preprocessed as torchvision's evaluation transform does: shorter side to 256 by
# PIL's antialiased bilinear filter, centre crop 224, normalize; then ONNX Runtime, batch by batch.
paths = [os.path.join(folder, c, f) for c in sorted(os.listdir(folder)) if os.path.isdir(os.path.join(folder, c))
         for f in sorted(os.listdir(os.path.join(folder, c)))][:batches * batch]
mean_, std_ = np.array(mean, np.float32).reshape(-1, 1, 1), np.array(std, np.float32).reshape(-1, 1, 1)
def preprocess(path):
    image = Image.open(path).convert("RGB")
    w, h = image.size
    scale = 256 / min(w, h)
    image = image.resize((max(256, round(w * scale)), max(256, round(h * scale))), Image.BILINEAR)
    w, h = image.size
    left, top = int(round((w - 224) / 2)), int(round((h - 224) / 2))
    pixels = np.asarray(image.crop((left, top, left + 224, top + 224)), np.float32).transpose(2, 0, 1) / 255
    return (pixels - mean_) / std_
def decode_and_run():
    start = time.perf_counter()
    for first in range(0, len(paths), batch):
        session.run(None, {"input": np.stack([preprocess(p) for p in paths[first:first + batch]])})
    return len(paths) / (time.perf_counter() - start)
print(f"{name} onnxruntime+decode {max(decode_and_run() for _ in range(repeats)):.1f}")
core = ov.Core()
# OpenVINO computes in bfloat16 by default on CPUs with avx512_bf16 or AMX; qsh and ONNX Runtime
# compute in float32, so it is held to float32 too.
compiled = core.compile_model(file, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                            "INFERENCE_PRECISION_HINT": "f32"})
request = compiled.create_infer_request()
print(f"{name} openvino {best(lambda: request.infer({0: x})):.1f}")
PY
done
cat "$results"
python3 - "$results" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    model, runtime, rate = line.split()
    rows.setdefault(model, {})[runtime] = float(rate)
print()
print(f"{'model':>18} {'1st eval':>9} {'eval':>8} {'engine':>8} {'ORT':>8} {'OpenVINO':>9} {'ORT+PIL':>8} {'1st/best':>9} {'eval/best':>10} "
      f"{'engine/best':>12} {'1st/ORT+PIL':>12}")
for model, r in rows.items():
    best = max(r["onnxruntime"], r["openvino"])
    print(f"{model:>18} {r['first']:>9.1f} {r['qsh']:>8.1f} {r['engine']:>8.1f} {r['onnxruntime']:>8.1f} {r['openvino']:>9.1f} "
          f"{r['onnxruntime+decode']:>8.1f} {r['first'] / best:>9.2f} {r['qsh'] / best:>10.2f} {r['engine'] / best:>12.2f} "
          f"{r['first'] / r['onnxruntime+decode']:>12.2f}")
PY
