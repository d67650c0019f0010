#ifndef QSH_CKERNELS_H
#define QSH_CKERNELS_H

#include <stddef.h>

/* Convolution kernels written for one instruction set, each behind a runtime CPU check.
   The engine calls them only when the check says the CPU has that instruction set. */

/* Winograd F(4x4, 3x3) for 3x3, stride-1, undilated, ungrouped float convolutions on
   activations in oneDNN's nChw8c layout (channels in blocks of 8, the layout oneDNN's AVX2
   kernels keep between layers). 36 multiplications per 4x4 output tile and channel pair
   instead of 144. */

/* 1 when the CPU has AVX2 and FMA, which the F(4x4, 3x3) kernels need. */
int qsh_winograd_available(void);

/* Channel counts padded as the packed weights and scratch buffers hold them. */
int qsh_winograd_padded_inputs(int inputChannels);   /* to a multiple of 8 */
int qsh_winograd_padded_outputs(int outputChannels); /* to a multiple of 16 */

/* Floats of packed transformed weights: 36 x paddedInputs x paddedOutputs. */
size_t qsh_winograd_weights_count(int outputChannels, int inputChannels);

/* Transforms plain (K, C, 3, 3) weights into `packed` (qsh_winograd_weights_count floats). */
void qsh_winograd_pack_weights(const float *weights, int outputChannels, int inputChannels, float *packed);

/* Floats of scratch one call of qsh_winograd_tiles needs for up to `tiles` tiles. */
size_t qsh_winograd_scratch_count(int outputChannels, int inputChannels, int tiles);

/* The geometry of one convolution; output height = height + padTop + padBottom - 2. */
typedef struct {
    int batch, inputChannels, outputChannels;
    int height, width, outputHeight, outputWidth;
    int padTop, padLeft;
} qsh_winograd_shape;

/* Computes the 4x4 output tiles [firstTile, firstTile + tileCount) of the whole batch (tiles
   numbered image by image, row by row): destination = clamp(conv(source) + bias
   (+ destination when accumulate), lower, upper). Source and destination are nChw8c; padded
   channels of the source must be zero, and those of the destination are written as zero.
   Different tile ranges may run concurrently with different scratch buffers. */
void qsh_winograd_tiles(const qsh_winograd_shape *shape, const float *source, const float *packedWeights,
                        const float *bias, float *destination, int accumulate, float lower, float upper,
                        long firstTile, int tileCount, float *scratch);

/* Direct convolution as a matrix product over packed input patches (any kernel size and
   stride, undilated, ungrouped), for the layers where oneDNN's direct AVX2 kernel waits on
   memory: strided layers with many channels and the stem. The source is nChw8c, or plain
   NCHW when plainSource is 1; the destination is nChw8c. */

/* 1 when the CPU has AVX2 and FMA. */
int qsh_patch_available(void);

typedef struct {
    int batch, inputChannels, outputChannels;
    int height, width, outputHeight, outputWidth;
    int kernelHeight, kernelWidth, strideY, strideX, padTop, padLeft;
    int plainSource;
} qsh_patch_shape;

/* Columns of the patch matrix: one per weight of an output channel (input channels padded to
   8 for an nChw8c source). */
int qsh_patch_depth(const qsh_patch_shape *shape);

/* Floats of packed weights, and of the scratch one call for up to `pixels` pixels needs. */
size_t qsh_patch_weights_count(const qsh_patch_shape *shape);
size_t qsh_patch_scratch_count(const qsh_patch_shape *shape, int pixels);

/* Plain (K, C, KH, KW) weights into `packed` (qsh_patch_weights_count floats). */
void qsh_patch_pack_weights(const qsh_patch_shape *shape, const float *weights, float *packed);

/* Computes output pixels [firstPixel, firstPixel + count) of the whole batch (numbered image
   by image, row by row), all channels: destination = clamp(conv(source) + bias
   (+ destination when accumulate), lower, upper); padded destination channels are written as
   zero. Different pixel ranges may run concurrently with different scratch buffers. */
void qsh_patch_pixels(const qsh_patch_shape *shape, const float *source, const float *packedWeights, const float *bias,
                      float *destination, int accumulate, float lower, float upper, long firstPixel, int count,
                      float *scratch);

/* Floating-point operations a second with 512-bit FMAs over those with 256-bit FMAs, measured
   (about 2 on CPUs with 512-bit FMA units, about 1 where 512-bit instructions run as two
   halves); 0 without AVX-512. Takes about 2 ms. */
double qsh_fma512_speedup(void);

#endif
