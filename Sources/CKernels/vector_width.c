/* How many more floating-point operations a second the CPU does with 512-bit FMAs than with
   256-bit ones. CPUs with AVX-512 differ: some have 512-bit FMA units (about 2x), others run
   each 512-bit instruction as two 256-bit halves (about 1x; AMD Zen 4), and there the AVX2
   kernels measured faster for float convolutions (Benchmarks/README.md).

   Each width runs 12 independent FMA chains, enough to fill the FMA pipelines of every current
   x86 core, for a fixed count of instructions; the best of five timings counts, so that a
   preempted run does not decide. About 2 ms in all. */

#include "CKernels.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <time.h>

enum { chains = 12, rounds = 20000, trials = 5 };

static double seconds_now(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

/* The chains' sum goes to `sink` so that the compiler keeps every FMA. */
__attribute__((target("avx2,fma"), noinline))
static double time_256(volatile float *sink) {
    __m256 acc[chains];
    const __m256 scale = _mm256_set1_ps(0.999f), shift = _mm256_set1_ps(1e-3f);
    for (int c = 0; c < chains; c++) acc[c] = _mm256_set1_ps((float)c);
    double start = seconds_now();
    for (int r = 0; r < rounds; r++)
        for (int c = 0; c < chains; c++) acc[c] = _mm256_fmadd_ps(acc[c], scale, shift);
    double elapsed = seconds_now() - start;
    __m256 total = acc[0];
    for (int c = 1; c < chains; c++) total = _mm256_add_ps(total, acc[c]);
    *sink = _mm256_cvtss_f32(total);
    return elapsed;
}

__attribute__((target("avx512f"), noinline))
static double time_512(volatile float *sink) {
    __m512 acc[chains];
    const __m512 scale = _mm512_set1_ps(0.999f), shift = _mm512_set1_ps(1e-3f);
    for (int c = 0; c < chains; c++) acc[c] = _mm512_set1_ps((float)c);
    double start = seconds_now();
    for (int r = 0; r < rounds; r++)
        for (int c = 0; c < chains; c++) acc[c] = _mm512_fmadd_ps(acc[c], scale, shift);
    double elapsed = seconds_now() - start;
    __m512 total = acc[0];
    for (int c = 1; c < chains; c++) total = _mm512_add_ps(total, acc[c]);
    *sink = _mm512_reduce_add_ps(total);
    return elapsed;
}

double qsh_fma512_speedup(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0;
    volatile float sink;
    double best256 = 1e30, best512 = 1e30;
    for (int t = 0; t < trials; t++) {
        double a = time_256(&sink), b = time_512(&sink);
        if (a < best256) best256 = a;
        if (b < best512) best512 = b;
    }
    /* Equal instruction counts: twice the lanes in the same time is a speedup of 2. */
    return best512 > 0 ? 2.0 * best256 / best512 : 0;
}

#else

double qsh_fma512_speedup(void) { return 0; }

#endif
