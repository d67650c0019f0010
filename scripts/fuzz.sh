#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer (docs/fuzzing.md).
#
#   scripts/fuzz.sh TARGET [SECONDS] [LIBFUZZER-FLAG...]
#
# TARGET is one of the names below, or `all` to run each in turn for SECONDS (default 60).
# Builds the target's binary with -sanitize=fuzzer,address into .build-fuzz (QSH_FUZZ_SCRATCH
# overrides), then fuzzes from the seeds in Fuzz/corpus/TARGET, keeping what it finds in
# .fuzz/TARGET/corpus. Prints libFuzzer's final stats. Exits non-zero on a crash, a failed
# invariant, a leak, an input slower than 1 s or a run past 2 GB of memory; the reproducer is left
# in .fuzz/TARGET/ (crash-*, leak-*, timeout-*, oom-*) and the whole log in .fuzz/TARGET/log.
# Replay a reproducer with: .build-fuzz/debug/PRODUCT REPRODUCER (QSH_FUZZ_TARGET=TARGET set).
set -euo pipefail
cd "$(dirname "$0")/.."

# name: binary, dictionary, longest input
declare -A product=([qlang]=FuzzQLang [run-record]=FuzzQLang [pickle]=FuzzCheckpoints [torch-legacy]=FuzzCheckpoints
                    [torch-zip]=FuzzCheckpoints [safetensors]=FuzzCheckpoints [cifar]=FuzzCheckpoints
                    [onnx]=FuzzCheckpoints [image]=FuzzCheckpoints)
declare -A dictionary=([qlang]=qlang.dict [run-record]= [pickle]=pickle.dict [torch-legacy]=pickle.dict
                       [torch-zip]=torch-zip.dict [safetensors]=safetensors.dict [cifar]= [onnx]= [image]=)
declare -A maxlen=([qlang]=1024 [run-record]=8192 [pickle]=4096 [torch-legacy]=4096 [torch-zip]=8192 [safetensors]=4096 [cifar]=9219
                   [onnx]=65536 [image]=16384)
# ZIPFoundation leaks a path per archive (Fuzz/lsan.supp): libFuzzer's per-input leak check would
# then run LeakSanitizer after every input, so torch-zip checks for leaks once, at exit.
declare -A extra=([torch-zip]=-detect_leaks=0)
# run-record: the JSON run records `qsh merge` reads (FuzzQLang's harness table).
order=(qlang run-record pickle torch-legacy torch-zip safetensors cifar onnx image)

target="${1:-}"
seconds="${2:-60}"
shift $(( $# < 2 ? $# : 2 ))
if [[ -z "$target" || ( "$target" != all && -z "${product[$target]:-}" ) ]]; then
    echo "usage: scripts/fuzz.sh all|$(IFS='|'; echo "${order[*]}") [SECONDS] [LIBFUZZER-FLAG...]" >&2
    exit 2
fi
targets=("$target")
[[ "$target" == all ]] && targets=("${order[@]}")

scratch="${QSH_FUZZ_SCRATCH:-.build-fuzz}"
build=(swift build -c debug --scratch-path "$scratch" -Xlinker --export-dynamic-symbol=LLVMFuzzerRunDriver
       -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -DQSH_LIBFUZZER -Xswiftc -O)
products=()
for t in "${targets[@]}"; do [[ " ${products[*]} " == *" ${product[$t]} "* ]] || products+=("${product[$t]}"); done
for p in "${products[@]}"; do
    echo "== building $p"
    nice -n 10 "${build[@]}" --product "$p" 2>&1 | grep -v "ld.gold: warning: Cannot export local symbol" | tail -n 3
done
bin="$("${build[@]}" --show-bin-path)"

failed=()
for t in "${targets[@]}"; do
    work=".fuzz/$t"
    mkdir -p "$work/corpus"
    flags=(-max_total_time="$seconds" -timeout=1 -rss_limit_mb=2048 -max_len="${maxlen[$t]}"
           -artifact_prefix="$work/" -print_final_stats=1)
    [[ -n "${dictionary[$t]}" ]] && flags+=(-dict="Fuzz/dict/${dictionary[$t]}")
    [[ -n "${extra[$t]:-}" ]] && flags+=(${extra[$t]})
    echo "== fuzzing $t for ${seconds}s"
    status=0
    # The Swift runtime's own crash backtracer would race libFuzzer's handler: libFuzzer reports.
    # Allocation stacks are left out of reports (malloc_context_size=0): recording them halves the
    # speed; replay a reproducer without it for the full report.
    QSH_FUZZ_TARGET="$t" SWIFT_BACKTRACE=enable=no ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:malloc_context_size=0}" \
        LSAN_OPTIONS="suppressions=$PWD/Fuzz/lsan.supp:print_suppressions=0" TMPDIR="${QSH_FUZZ_TMPDIR:-$([[ -w /dev/shm ]] && echo /dev/shm || echo "${TMPDIR:-/tmp}")}" \
        nice -n 10 "$bin/${product[$t]}" "${flags[@]}" "$@" "$work/corpus" "Fuzz/corpus/$t" >"$work/log" 2>&1 || status=$?
    # libFuzzer's last status line (executions, cov:, ft:, exec/s) and its final stats.
    grep -a -E "^#[0-9]+.*(DONE|cov:)" "$work/log" | tail -n 1 || true
    grep -a -E "^stat::|^Done [0-9]+ runs" "$work/log" || true
    if [[ $status -ne 0 ]]; then
        echo "!! $t failed (exit $status); reproducer and log in $work/:"
        grep -a -E "^==[0-9]+==|^invariant failed|^SUMMARY|Test unit written|Fatal error" "$work/log" | head -n 20 || true
        failed+=("$t")
    fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "failed: ${failed[*]}"
    exit 1
fi
