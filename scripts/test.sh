#!/usr/bin/env bash
# Builds and runs every test: unit, numerical, end-to-end and documentation tests.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d ../shared/models ] && export QSH_MODELS="${QSH_MODELS:-$PWD/../shared/models}"
[ -d ../shared/data ] && export QSH_DATA="${QSH_DATA:-$PWD/../shared/data}"
# The qsh binary chooses passive OpenMP waiting itself; the in-process tests need it set here
# (spinning oneDNN threads slow a loaded machine several times over).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
# One release build serves the tests and the end-to-end runs of the qsh binary beside them.
swift test -c release "$@"
# On CPUs with AVX-512, oneDNN runs at that level in the test process and qsh's own AVX2 kernels
# stand aside, yet the qsh binary runs them for float inference where 512-bit FMAs compute no
# more than 256-bit ones (--isa auto): test them once more with oneDNN capped at AVX2.
if [ $# -eq 0 ] && grep -qw avx512f /proc/cpuinfo; then
    ONEDNN_MAX_CPU_ISA=AVX2 swift test -c release --skip-build --filter 'BlockedConvolutionTests|EngineCompiledModelTests|EngineAccuracyTests'
fi
