/* Direct convolution as a matrix product over packed input patches, AVX2 + FMA.

   For a chunk of output pixels (taken across the whole batch), each pixel's receptive field is
   copied into one row of a patch matrix P (pixels x depth), and M = P W with the packed weights
   W (depth x outputs) runs on the 6x16 FMA block; an epilogue adds bias and residual, clamps,
   and writes nChw8c. oneDNN's direct AVX2 kernel walks the batch image by image and streams all
   weights once per image, which on deep, small layers (256 -> 512 at 7x7 holds 4.7 MB of
   weights) makes it wait on memory; here a chunk spans images, so the weights are read once per
   chunk. Strided layers also lose nothing to the stride: the gather happens once, in the packing.

   The source is nChw8c (patch columns ordered tap, channel block, lane: each copy moves 8
   channels) or plain NCHW for the stem's few input channels (columns ordered channel, tap row,
   tap column: each copy moves a row of the window). */

#include "CKernels.h"
#include "microkernel_avx2.h"

#include <string.h>

static int round_up(int value, int multiple) { return (value + multiple - 1) / multiple * multiple; }

int qsh_patch_depth(const qsh_patch_shape *s) {
    int taps = s->kernelHeight * s->kernelWidth;
    return s->plainSource ? s->inputChannels * taps : taps * round_up(s->inputChannels, 8);
}

static int padded_outputs(const qsh_patch_shape *s) { return round_up(s->outputChannels, 16); }

size_t qsh_patch_weights_count(const qsh_patch_shape *s) {
    return (size_t)qsh_patch_depth(s) * padded_outputs(s);
}

size_t qsh_patch_scratch_count(const qsh_patch_shape *s, int pixels) {
    size_t rows = (size_t)round_up(pixels, 6);
    return rows * qsh_patch_depth(s) + rows * padded_outputs(s);
}

/* Plain (K, C, KH, KW) weights into [16-output panel][depth][16], depth in the patch order. */
void qsh_patch_pack_weights(const qsh_patch_shape *s, const float *weights, float *packed) {
    int depth = qsh_patch_depth(s), blocks = round_up(s->inputChannels, 8) / 8;
    int kh = s->kernelHeight, kw = s->kernelWidth;
    memset(packed, 0, qsh_patch_weights_count(s) * sizeof(float));
    for (int k = 0; k < s->outputChannels; k++) {
        for (int c = 0; c < s->inputChannels; c++) {
            for (int i = 0; i < kh; i++) {
                for (int j = 0; j < kw; j++) {
                    int row = s->plainSource ? (c * kh + i) * kw + j : ((i * kw + j) * blocks + c / 8) * 8 + c % 8;
                    packed[((size_t)(k / 16) * depth + row) * 16 + k % 16] = weights[(((size_t)k * s->inputChannels + c) * kh + i) * kw + j];
                }
            }
        }
    }
}

#if defined(__x86_64__)

int qsh_patch_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* Rows [0, count) of P for the pixels from firstPixel on (numbered image, row, column). */
QSH_AVX2 static void pack_patches(const qsh_patch_shape *s, const float *source, long firstPixel, int count, float *P) {
    int depth = qsh_patch_depth(s), kh = s->kernelHeight, kw = s->kernelWidth;
    int pixelsPerImage = s->outputHeight * s->outputWidth;
    const __m256 zero = _mm256_setzero_ps();
    for (int t = 0; t < count; t++) {
        long pixel = firstPixel + t;
        int image = (int)(pixel / pixelsPerImage), within = (int)(pixel % pixelsPerImage);
        int y0 = within / s->outputWidth * s->strideY - s->padTop, x0 = within % s->outputWidth * s->strideX - s->padLeft;
        float *row = P + (size_t)t * depth;
        if (s->plainSource) {
            for (int c = 0; c < s->inputChannels; c++) {
                const float *plane = source + ((size_t)image * s->inputChannels + c) * s->height * s->width;
                for (int i = 0; i < kh; i++, row += kw) {
                    int y = y0 + i;
                    if (y < 0 || y >= s->height) { memset(row, 0, (size_t)kw * sizeof(float)); continue; }
                    for (int j = 0; j < kw; j++) {
                        int x = x0 + j;
                        row[j] = x >= 0 && x < s->width ? plane[(size_t)y * s->width + x] : 0;
                    }
                }
            }
        } else {
            int blocks = round_up(s->inputChannels, 8) / 8;
            size_t planeSize = (size_t)s->height * s->width * 8;
            const float *images = source + (size_t)image * blocks * planeSize;
            for (int i = 0; i < kh; i++) {
                int y = y0 + i;
                for (int j = 0; j < kw; j++) {
                    int x = x0 + j;
                    if (y < 0 || y >= s->height || x < 0 || x >= s->width) {
                        for (int b = 0; b < blocks; b++, row += 8) _mm256_storeu_ps(row, zero);
                        continue;
                    }
                    const float *at = images + ((size_t)y * s->width + x) * 8;
                    for (int b = 0; b < blocks; b++, row += 8) _mm256_storeu_ps(row, _mm256_loadu_ps(at + b * planeSize));
                }
            }
        }
    }
}

QSH_AVX2 void qsh_patch_pixels(const qsh_patch_shape *s, const float *source, const float *packedWeights, const float *bias,
                               float *destination, int accumulate, float lower, float upper, long firstPixel, int count,
                               float *scratch) {
    int depth = qsh_patch_depth(s), outputs = padded_outputs(s), rows = round_up(count, 6);
    float *P = scratch, *M = scratch + (size_t)rows * depth;
    pack_patches(s, source, firstPixel, count, P);
    /* Rows past the last pixel feed the kernel but are never read back; zero keeps them finite. */
    memset(P + (size_t)count * depth, 0, (size_t)(rows - count) * depth * sizeof(float));
    for (int panel = 0; panel < outputs / 16; panel++) {
        const float *u = packedWeights + (size_t)panel * depth * 16;
        for (int row = 0; row < rows; row += 6)
            qsh_kernel6x16(P + (size_t)row * depth, depth, depth, u, M + (size_t)row * outputs + panel * 16, outputs);
    }
    int blocks = (s->outputChannels + 7) / 8, pixelsPerImage = s->outputHeight * s->outputWidth;
    const __m256 low = _mm256_set1_ps(lower), high = _mm256_set1_ps(upper);
    for (int t = 0; t < count; t++) {
        long pixel = firstPixel + t;
        int image = (int)(pixel / pixelsPerImage), within = (int)(pixel % pixelsPerImage);
        float *target = destination + ((size_t)image * blocks * pixelsPerImage + within) * 8;
        const float *m = M + (size_t)t * outputs;
        for (int b = 0; b < blocks; b++, target += (size_t)pixelsPerImage * 8) {
            __m256 value = _mm256_add_ps(_mm256_loadu_ps(m + b * 8), _mm256_loadu_ps(bias + b * 8));
            if (accumulate) value = _mm256_add_ps(value, _mm256_loadu_ps(target));
            _mm256_storeu_ps(target, _mm256_min_ps(_mm256_max_ps(value, low), high));
        }
    }
}

#else

int qsh_patch_available(void) { return 0; }

void qsh_patch_pixels(const qsh_patch_shape *s, const float *source, const float *packedWeights, const float *bias,
                      float *destination, int accumulate, float lower, float upper, long firstPixel, int count,
                      float *scratch) {
    (void)s; (void)source; (void)packedWeights; (void)bias; (void)destination; (void)accumulate;
    (void)lower; (void)upper; (void)firstPixel; (void)count; (void)scratch;
}

#endif
