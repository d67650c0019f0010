/* Winograd F(4x4, 3x3) convolution on nChw8c activations, AVX2 + FMA.

   A 6x6 input tile d gives a 4x4 output tile  Y = A^T [ (G g G^T) . (B^T d B) ] A  (Lavin and
   Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), with the interpolation
   points 0, +-1, +-2 and infinity. Per tile, the elementwise products over all input
   channels are 36 matrix products  M[p] = V[p] U[p]  (tiles x inputs times inputs x outputs),
   which run on a register-blocked 6x16 FMA kernel. Every function here except the weight
   packing is compiled for AVX2 and runs only after qsh_winograd_available() said yes. */

#include "CKernels.h"
#include "microkernel_avx2.h"

#include <string.h>

static int round_up(int value, int multiple) { return (value + multiple - 1) / multiple * multiple; }

int qsh_winograd_padded_inputs(int inputChannels) { return round_up(inputChannels, 8); }
int qsh_winograd_padded_outputs(int outputChannels) { return round_up(outputChannels, 16); }

size_t qsh_winograd_weights_count(int outputChannels, int inputChannels) {
    return (size_t)36 * qsh_winograd_padded_inputs(inputChannels) * qsh_winograd_padded_outputs(outputChannels);
}

/* Rows of the tile matrices, a multiple of the kernel's 6. */
static int padded_tiles(int tiles) { return round_up(tiles, 6); }

/* Floats from one position's matrix to the next. The transforms touch all 36 positions of a
   tile at once; a distance that is a multiple of 4 KiB would put those 36 lines in the same L1
   set (8 ways), so every distance is offset by one cache line. */
static size_t position_stride(int rows, int columns) {
    size_t floats = (size_t)rows * columns;
    return floats % 1024 == 0 ? floats + 16 : floats;
}

size_t qsh_winograd_scratch_count(int outputChannels, int inputChannels, int tiles) {
    int rows = padded_tiles(tiles);
    return 36 * (position_stride(rows, qsh_winograd_padded_inputs(inputChannels))
                 + position_stride(rows, qsh_winograd_padded_outputs(outputChannels)));
}

/* U = G g G^T per (output, input) pair, in double so the packed floats are correctly rounded,
   stored for the kernel as [position][16-output panel][input][16]. */
void qsh_winograd_pack_weights(const float *weights, int outputChannels, int inputChannels, float *packed) {
    static const double G[6][3] = {
        {1.0 / 4, 0, 0},
        {-1.0 / 6, -1.0 / 6, -1.0 / 6},
        {-1.0 / 6, 1.0 / 6, -1.0 / 6},
        {1.0 / 24, 1.0 / 12, 1.0 / 6},
        {1.0 / 24, -1.0 / 12, 1.0 / 6},
        {0, 0, 1},
    };
    int inputs = qsh_winograd_padded_inputs(inputChannels);
    int outputs = qsh_winograd_padded_outputs(outputChannels);
    memset(packed, 0, qsh_winograd_weights_count(outputChannels, inputChannels) * sizeof(float));
    for (int k = 0; k < outputChannels; k++) {
        for (int c = 0; c < inputChannels; c++) {
            const float *g = weights + ((size_t)k * inputChannels + c) * 9;
            double half[6][3]; /* G g */
            for (int i = 0; i < 6; i++)
                for (int j = 0; j < 3; j++)
                    half[i][j] = G[i][0] * g[0 * 3 + j] + G[i][1] * g[1 * 3 + j] + G[i][2] * g[2 * 3 + j];
            for (int i = 0; i < 6; i++) {
                for (int j = 0; j < 6; j++) {
                    double u = half[i][0] * G[j][0] + half[i][1] * G[j][1] + half[i][2] * G[j][2];
                    size_t position = (size_t)i * 6 + j;
                    size_t panel = (size_t)k / 16;
                    packed[((position * (outputs / 16) + panel) * inputs + c) * 16 + k % 16] = (float)u;
                }
            }
        }
    }
}

#if defined(__x86_64__)

int qsh_winograd_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* B^T x for one column of six vectors. */
QSH_AVX2 static inline void input_transform6(const __m256 d[6], __m256 r[6]) {
    const __m256 four = _mm256_set1_ps(4), five = _mm256_set1_ps(5), two = _mm256_set1_ps(2);
    __m256 a = _mm256_fnmadd_ps(four, d[2], d[4]);  /* d4 - 4 d2 */
    __m256 b = _mm256_fnmadd_ps(four, d[1], d[3]);  /* d3 - 4 d1 */
    __m256 c = _mm256_sub_ps(d[4], d[2]);           /* d4 - d2 */
    __m256 e = _mm256_mul_ps(two, _mm256_sub_ps(d[3], d[1])); /* 2 (d3 - d1) */
    r[0] = _mm256_add_ps(_mm256_fnmadd_ps(five, d[2], _mm256_mul_ps(four, d[0])), d[4]);
    r[1] = _mm256_add_ps(a, b);
    r[2] = _mm256_sub_ps(a, b);
    r[3] = _mm256_add_ps(c, e);
    r[4] = _mm256_sub_ps(c, e);
    r[5] = _mm256_add_ps(_mm256_fnmadd_ps(five, d[3], _mm256_mul_ps(four, d[1])), d[5]);
}

/* A^T x for one column of six vectors. */
QSH_AVX2 static inline void output_transform6(const __m256 m[6], __m256 o[4]) {
    const __m256 two = _mm256_set1_ps(2), four = _mm256_set1_ps(4), eight = _mm256_set1_ps(8);
    __m256 sum12 = _mm256_add_ps(m[1], m[2]), diff12 = _mm256_sub_ps(m[1], m[2]);
    __m256 sum34 = _mm256_add_ps(m[3], m[4]), diff34 = _mm256_sub_ps(m[3], m[4]);
    o[0] = _mm256_add_ps(_mm256_add_ps(m[0], sum12), sum34);
    o[1] = _mm256_fmadd_ps(two, diff34, diff12);
    o[2] = _mm256_fmadd_ps(four, sum34, sum12);
    o[3] = _mm256_add_ps(_mm256_fmadd_ps(eight, diff34, diff12), m[5]);
}

/* Transforms the input tiles of [firstTile, firstTile + count) into V[36][rows][inputs]. */
QSH_AVX2 static void transform_inputs(const qsh_winograd_shape *s, const float *source, long firstTile, int count,
                                      int rows, float *V) {
    int inputs = qsh_winograd_padded_inputs(s->inputChannels), blocks = inputs / 8;
    int tilesY = (s->outputHeight + 3) / 4, tilesX = (s->outputWidth + 3) / 4;
    size_t stride = position_stride(rows, inputs);
    const __m256 zero = _mm256_setzero_ps();
    /* Channel blocks outermost: consecutive tiles then read neighbouring pixels of six rows of
       one plane, which the hardware prefetcher follows; tiles outermost would interleave the
       rows of every block's plane. */
    for (int block = 0; block < blocks; block++) {
        for (int t = 0; t < count; t++) {
            long tile = firstTile + t;
            int image = (int)(tile / ((long)tilesY * tilesX)), within = (int)(tile % ((long)tilesY * tilesX));
            int y0 = within / tilesX * 4 - s->padTop, x0 = within % tilesX * 4 - s->padLeft;
            int inside = y0 >= 0 && x0 >= 0 && y0 + 6 <= s->height && x0 + 6 <= s->width;
            const float *plane = source + ((size_t)image * blocks + block) * s->height * s->width * 8;
            __m256 d[6][6], columns[6][6];
            for (int i = 0; i < 6; i++) {
                int y = y0 + i;
                for (int j = 0; j < 6; j++) {
                    int x = x0 + j;
                    d[i][j] = inside || (y >= 0 && y < s->height && x >= 0 && x < s->width)
                        ? _mm256_loadu_ps(plane + ((size_t)y * s->width + x) * 8) : zero;
                }
            }
            /* B^T d: each column j of d, transformed along the rows. */
            for (int j = 0; j < 6; j++) {
                __m256 column[6] = {d[0][j], d[1][j], d[2][j], d[3][j], d[4][j], d[5][j]}, r[6];
                input_transform6(column, r);
                for (int i = 0; i < 6; i++) columns[i][j] = r[i];
            }
            /* (B^T d) B: each row i, transformed along the columns. */
            for (int i = 0; i < 6; i++) {
                __m256 r[6];
                input_transform6(columns[i], r);
                for (int j = 0; j < 6; j++)
                    _mm256_storeu_ps(V + (size_t)(i * 6 + j) * stride + (size_t)t * inputs + block * 8, r[j]);
            }
        }
    }
    /* Rows past the last tile feed the kernel but are never read back; zero keeps them finite. */
    for (int p = 0; p < 36; p++)
        memset(V + (size_t)p * stride + (size_t)count * inputs, 0, (size_t)(rows - count) * inputs * sizeof(float));
}

/* The 36 products M[p] = V[p] U[p]. */
QSH_AVX2 static void multiply(const float *V, const float *U, float *M, int rows, int inputs, int outputs) {
    int panels = outputs / 16;
    size_t strideV = position_stride(rows, inputs), strideM = position_stride(rows, outputs);
    for (int p = 0; p < 36; p++) {
        const float *v = V + (size_t)p * strideV;
        float *m = M + (size_t)p * strideM;
        for (int panel = 0; panel < panels; panel++) {
            const float *u = U + ((size_t)p * panels + panel) * inputs * 16;
            for (int row = 0; row < rows; row += 6)
                qsh_kernel6x16(v + (size_t)row * inputs, inputs, inputs, u, m + (size_t)row * outputs + panel * 16, outputs);
        }
    }
}

/* Y = A^T M A per tile and block of 8 outputs, then bias, residual and clamp, into nChw8c. */
QSH_AVX2 static void transform_outputs(const qsh_winograd_shape *s, const float *M, const float *bias, float *destination,
                                       int accumulate, float lower, float upper, long firstTile, int count, int rows) {
    int outputs = qsh_winograd_padded_outputs(s->outputChannels), blocks = (s->outputChannels + 7) / 8;
    int tilesY = (s->outputHeight + 3) / 4, tilesX = (s->outputWidth + 3) / 4;
    size_t stride = position_stride(rows, outputs);
    const __m256 low = _mm256_set1_ps(lower), high = _mm256_set1_ps(upper);
    for (int block = 0; block < blocks; block++) {  /* blocks outermost, as for the inputs */
        for (int t = 0; t < count; t++) {
            long tile = firstTile + t;
            int image = (int)(tile / ((long)tilesY * tilesX)), within = (int)(tile % ((long)tilesY * tilesX));
            int y0 = within / tilesX * 4, x0 = within % tilesX * 4;
            __m256 rowsOf[4][6];
            for (int j = 0; j < 6; j++) {
                __m256 column[6], o[4];
                for (int i = 0; i < 6; i++)
                    column[i] = _mm256_loadu_ps(M + (size_t)(i * 6 + j) * stride + (size_t)t * outputs + block * 8);
                output_transform6(column, o);
                for (int i = 0; i < 4; i++) rowsOf[i][j] = o[i];
            }
            __m256 b = _mm256_loadu_ps(bias + block * 8);
            float *plane = destination + ((size_t)image * blocks + block) * s->outputHeight * s->outputWidth * 8;
            for (int i = 0; i < 4; i++) {
                int y = y0 + i;
                if (y >= s->outputHeight) break;
                __m256 o[4];
                output_transform6(rowsOf[i], o);
                for (int j = 0; j < 4; j++) {
                    int x = x0 + j;
                    if (x >= s->outputWidth) break;
                    float *target = plane + ((size_t)y * s->outputWidth + x) * 8;
                    __m256 value = _mm256_add_ps(o[j], b);
                    if (accumulate) value = _mm256_add_ps(value, _mm256_loadu_ps(target));
                    _mm256_storeu_ps(target, _mm256_min_ps(_mm256_max_ps(value, low), high));
                }
            }
        }
    }
}

QSH_AVX2 void qsh_winograd_tiles(const qsh_winograd_shape *shape, const float *source, const float *packedWeights,
                                 const float *bias, float *destination, int accumulate, float lower, float upper,
                                 long firstTile, int tileCount, float *scratch) {
    int rows = padded_tiles(tileCount);
    int inputs = qsh_winograd_padded_inputs(shape->inputChannels), outputs = qsh_winograd_padded_outputs(shape->outputChannels);
    float *V = scratch, *M = scratch + 36 * position_stride(rows, inputs);
    transform_inputs(shape, source, firstTile, tileCount, rows, V);
    multiply(V, packedWeights, M, rows, inputs, outputs);
    transform_outputs(shape, M, bias, destination, accumulate, lower, upper, firstTile, tileCount, rows);
}

#else

int qsh_winograd_available(void) { return 0; }

void qsh_winograd_tiles(const qsh_winograd_shape *shape, const float *source, const float *packedWeights,
                        const float *bias, float *destination, int accumulate, float lower, float upper,
                        long firstTile, int tileCount, float *scratch) {
    (void)shape; (void)source; (void)packedWeights; (void)bias; (void)destination; (void)accumulate;
    (void)lower; (void)upper; (void)firstTile; (void)tileCount; (void)scratch;
}

#endif
