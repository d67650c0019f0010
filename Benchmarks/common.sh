# Shared by the benchmark scripts that compare qsh with PyTorch; sourced, not run.
# Expects $root (the package root). Sets $models, $data and $batches, defines the helpers below.

# QSH_MODELS and QSH_DATA mean what they mean to qsh: the folder of the checkpoints, and the
# folder that holds cifar-10-batches-bin/ (as qsh does, a folder holding test_batch.bin itself
# is accepted too). $batches is the folder of the batch files, for the Python references.
models="${QSH_MODELS:-$root/../shared/models}"
data="${QSH_DATA:-$root/../shared/data}"
if [ -f "$data/cifar-10-batches-bin/test_batch.bin" ]; then
    batches="$data/cifar-10-batches-bin"
else
    batches="$data"
fi

# The depth of the akamaster CIFAR ResNet the PyTorch side builds for a qsh model name.
model_depth() {
    case "$1" in
        resnet20) echo 20 ;;
        resnet56) echo 56 ;;
        *) echo "--model must be resnet20 or resnet56 (the PyTorch side builds the akamaster ResNet)" >&2; exit 2 ;;
    esac
}

require_torch() { python3 -c "import torch" 2>/dev/null || pip install -q "torch==2.13.0+cpu"; }

# $QSH_BINARY, or a release build in $QSH_SCRATCH_PATH (default .build).
qsh_binary() {
    if [ -n "${QSH_BINARY:-}" ]; then
        echo "$QSH_BINARY"
        return
    fi
    local scratch="${QSH_SCRATCH_PATH:-$root/.build}"
    swift build --scratch-path "$scratch" -c release --product qsh >&2
    echo "$(swift build --scratch-path "$scratch" -c release --show-bin-path)/qsh"
}

# A release build of EngineBenchmark (the engine through its public API) in $QSH_SCRATCH_PATH.
engine_binary() {
    local scratch="${QSH_SCRATCH_PATH:-$root/.build}"
    swift build --scratch-path "$scratch" -c release --product EngineBenchmark >&2
    echo "$(swift build --scratch-path "$scratch" -c release --show-bin-path)/EngineBenchmark"
}

# Wall seconds and peak resident MiB from a `/usr/bin/time -v` report.
wall() { awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$1"; }
peak() { awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$1"; }

# The CPU's vector extensions, and the caps on them that both sides honour: ONEDNN_MAX_CPU_ISA
# (qsh's oneDNN and PyTorch's) and ATEN_CPU_CAPABILITY (PyTorch's own kernels). With
# ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 an AVX-512 machine runs as an AVX2 one would.
isa_line() {
    local isa
    isa="$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -x -E 'avx2|avx512f|avx512_vnni|avx_vnni|amx_int8' | tr '\n' ' ')"
    echo "# ISA flags: ${isa:-none of avx2/avx512f/avx512_vnni/avx_vnni/amx_int8}; ONEDNN_MAX_CPU_ISA=${ONEDNN_MAX_CPU_ISA:-unset}; ATEN_CPU_CAPABILITY=${ATEN_CPU_CAPABILITY:-unset}"
}
