/* The register-blocked FMA block every AVX2 kernel here multiplies with. Private to
   Sources/CKernels; include only from files compiled with AVX2 and FMA enabled per function. */

#ifndef QSH_MICROKERNEL_AVX2_H
#define QSH_MICROKERNEL_AVX2_H

#if defined(__x86_64__)
#include <immintrin.h>
#define QSH_AVX2 __attribute__((target("avx2,fma")))

/* m[6 x 16] = v[6 x depth] u[depth x 16]: rows of v `vStride` floats apart, u as depth rows of
   16, rows of m `mStride` floats apart. Twelve accumulators, two weight loads and six
   broadcasts per step: the FMA units, not the loads, set the pace. */
QSH_AVX2 static inline void qsh_kernel6x16(const float *v, int vStride, int depth, const float *u, float *m, int mStride) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int c = 0; c < depth; c++) {
        __m256 u0 = _mm256_loadu_ps(u + c * 16), u1 = _mm256_loadu_ps(u + c * 16 + 8), b;
        b = _mm256_broadcast_ss(v + c);
        c00 = _mm256_fmadd_ps(b, u0, c00); c01 = _mm256_fmadd_ps(b, u1, c01);
        b = _mm256_broadcast_ss(v + vStride + c);
        c10 = _mm256_fmadd_ps(b, u0, c10); c11 = _mm256_fmadd_ps(b, u1, c11);
        b = _mm256_broadcast_ss(v + 2 * vStride + c);
        c20 = _mm256_fmadd_ps(b, u0, c20); c21 = _mm256_fmadd_ps(b, u1, c21);
        b = _mm256_broadcast_ss(v + 3 * vStride + c);
        c30 = _mm256_fmadd_ps(b, u0, c30); c31 = _mm256_fmadd_ps(b, u1, c31);
        b = _mm256_broadcast_ss(v + 4 * vStride + c);
        c40 = _mm256_fmadd_ps(b, u0, c40); c41 = _mm256_fmadd_ps(b, u1, c41);
        b = _mm256_broadcast_ss(v + 5 * vStride + c);
        c50 = _mm256_fmadd_ps(b, u0, c50); c51 = _mm256_fmadd_ps(b, u1, c51);
    }
    _mm256_storeu_ps(m, c00); _mm256_storeu_ps(m + 8, c01); m += mStride;
    _mm256_storeu_ps(m, c10); _mm256_storeu_ps(m + 8, c11); m += mStride;
    _mm256_storeu_ps(m, c20); _mm256_storeu_ps(m + 8, c21); m += mStride;
    _mm256_storeu_ps(m, c30); _mm256_storeu_ps(m + 8, c31); m += mStride;
    _mm256_storeu_ps(m, c40); _mm256_storeu_ps(m + 8, c41); m += mStride;
    _mm256_storeu_ps(m, c50); _mm256_storeu_ps(m + 8, c51);
}
#endif

#endif
