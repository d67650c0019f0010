#!/usr/bin/env bash
# Single-layer speed of float convolutions on one core: oneDNN 2.6's pick against qsh's own AVX2
# kernel for the layer (Winograd F(4x4, 3x3) for 3x3 stride 1, the packed-patch product
# otherwise), on the layer shapes of ResNet-18 (batch 32 at 224x224) and the CIFAR ResNets
# (batch 200). Compiles Benchmarks/ConvolutionLayers/convolution_layers.c
# against Sources/CKernels and the system oneDNN; prints the CPU's ISA with the figures.
#
# usage: Benchmarks/convolution-layers.sh ["BATCH C K SIZE KERNEL STRIDE" ...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cc -O2 -I"$root/Sources/CKernels/include" "$root/Benchmarks/ConvolutionLayers/convolution_layers.c" \
    "$root"/Sources/CKernels/*.c -o "$work/layers" -ldnnl -lm
isa="$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -x -E 'avx2|avx512f|avx512_vnni|avx_vnni|amx_int8' | tr '\n' ' ')"
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); ISA flags: ${isa:-none}; one core; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# batch   C    K size window  oneDNN kernel   oneDNN ms  GFLOP/s  qsh           ms  GFLOP/s speedup max rel diff"
if [ $# -eq 0 ]; then
    set -- "32 64 64 56 3 1" "32 128 128 28 3 1" "32 256 256 14 3 1" "32 512 512 7 3 1" \
        "32 128 256 28 3 2" "32 256 512 14 3 2" "32 64 128 56 3 2" "32 3 64 224 7 2" \
        "200 16 16 32 3 1" "200 32 32 16 3 1" "200 64 64 8 3 1"
fi
for shape in "$@"; do
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 "$work/layers" $shape
done
echo "# GFLOP/s counts a direct convolution's multiply-adds for both (Winograd does 4 times fewer)."
