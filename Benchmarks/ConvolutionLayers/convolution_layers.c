/* One float convolution layer at a time, on one core: oneDNN 2.6's own pick (format_tag_any
   weights, nChw8c activations, or a plain NCHW source for the stem, as CompiledModel asks for
   them) against qsh's kernel for the layer (Sources/CKernels): Winograd F(4x4, 3x3) for 3x3
   stride 1, the packed-patch product otherwise. Same input for both; best of 4 runs, each timed
   in process CPU seconds so other load on the machine moves the figures less. Also prints the
   largest difference between the two outputs, relative to the largest output.
   Built and run by Benchmarks/convolution-layers.sh. */

#include "CKernels.h"

#include <dnnl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CHECK(call) do { if ((call) != dnnl_success) { fprintf(stderr, "%s failed\n", #call); exit(1); } } while (0)

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: convolution_layers BATCH CHANNELS_IN CHANNELS_OUT SIZE KERNEL STRIDE\n");
        return 2;
    }
    int n = atoi(argv[1]), c = atoi(argv[2]), k = atoi(argv[3]), size = atoi(argv[4]);
    int kernel = atoi(argv[5]), stride = atoi(argv[6]), pad = kernel / 2;
    int outSize = (size + 2 * pad - kernel) / stride + 1;
    /* The stem's few channels come in plain NCHW, as the network's input does. */
    int plainSource = c < 8;
    int inBlocks = (c + 7) / 8, outBlocks = (k + 7) / 8;
    size_t sourceCount = plainSource ? (size_t)n * c * size * size : (size_t)n * inBlocks * size * size * 8;
    size_t outPlane = (size_t)outSize * outSize * 8;

    dnnl_engine_t engine;
    dnnl_stream_t stream;
    CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
    dnnl_dims_t sourceDims = {n, c, size, size}, weightDims = {k, c, kernel, kernel}, biasDims = {k};
    dnnl_dims_t outDims = {n, k, outSize, outSize};
    dnnl_memory_desc_t source, weights, bias, destination, plainWeights;
    CHECK(dnnl_memory_desc_init_by_tag(&source, 4, sourceDims, dnnl_f32, plainSource ? dnnl_abcd : dnnl_aBcd8b));
    CHECK(dnnl_memory_desc_init_by_tag(&weights, 4, weightDims, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&plainWeights, 4, weightDims, dnnl_f32, dnnl_abcd));
    CHECK(dnnl_memory_desc_init_by_tag(&bias, 1, biasDims, dnnl_f32, dnnl_a));
    CHECK(dnnl_memory_desc_init_by_tag(&destination, 4, outDims, dnnl_f32, dnnl_aBcd8b));
    dnnl_convolution_desc_t descriptor;
    dnnl_dims_t strides = {stride, stride}, padding = {pad, pad};
    CHECK(dnnl_convolution_forward_desc_init(&descriptor, dnnl_forward_inference, dnnl_convolution_direct, &source, &weights,
                                             &bias, &destination, strides, padding, padding));
    dnnl_primitive_desc_t primitiveDescriptor;
    CHECK(dnnl_primitive_desc_create(&primitiveDescriptor, &descriptor, NULL, engine, NULL));
    const char *implementation;
    CHECK(dnnl_primitive_desc_query(primitiveDescriptor, dnnl_query_impl_info_str, 0, &implementation));
    const dnnl_memory_desc_t *pickedWeights = dnnl_primitive_desc_query_md(primitiveDescriptor, dnnl_query_weights_md, 0);
    dnnl_primitive_t convolution, reorder;
    CHECK(dnnl_primitive_create(&convolution, primitiveDescriptor));

    dnnl_memory_t sourceMemory, weightMemory, plainWeightMemory, biasMemory, outMemory;
    CHECK(dnnl_memory_create(&sourceMemory, &source, engine, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&weightMemory, pickedWeights, engine, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&plainWeightMemory, &plainWeights, engine, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&biasMemory, &bias, engine, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&outMemory, &destination, engine, DNNL_MEMORY_ALLOCATE));
    float *input, *plain, *biasValues, *oneDNNOutput;
    CHECK(dnnl_memory_get_data_handle(sourceMemory, (void **)&input));
    CHECK(dnnl_memory_get_data_handle(plainWeightMemory, (void **)&plain));
    CHECK(dnnl_memory_get_data_handle(biasMemory, (void **)&biasValues));
    CHECK(dnnl_memory_get_data_handle(outMemory, (void **)&oneDNNOutput));
    srand(1);
    size_t plane = (size_t)size * size * 8;
    for (size_t i = 0; i < sourceCount; i++)
        input[i] = plainSource || (i % 8) + (i / plane % inBlocks) * 8 < (size_t)c ? (float)rand() / RAND_MAX * 2 - 1 : 0;
    for (size_t i = 0; i < (size_t)k * c * kernel * kernel; i++)
        plain[i] = ((float)rand() / RAND_MAX * 2 - 1) / sqrtf((float)kernel * kernel * c);
    for (int i = 0; i < k; i++) biasValues[i] = (float)rand() / RAND_MAX - 0.5f;
    dnnl_primitive_desc_t reorderDescriptor;
    CHECK(dnnl_reorder_primitive_desc_create(&reorderDescriptor, &plainWeights, engine, pickedWeights, engine, NULL));
    CHECK(dnnl_primitive_create(&reorder, reorderDescriptor));
    dnnl_exec_arg_t reorderArguments[2] = {{DNNL_ARG_FROM, plainWeightMemory}, {DNNL_ARG_TO, weightMemory}};
    CHECK(dnnl_primitive_execute(reorder, stream, 2, reorderArguments));
    dnnl_exec_arg_t arguments[4] = {{DNNL_ARG_SRC, sourceMemory}, {DNNL_ARG_WEIGHTS, weightMemory},
                                    {DNNL_ARG_BIAS, biasMemory}, {DNNL_ARG_DST, outMemory}};
    double oneDNN = INFINITY;
    for (int run = 0; run < 4; run++) {
        double start = cpu_seconds();
        CHECK(dnnl_primitive_execute(convolution, stream, 4, arguments));
        CHECK(dnnl_stream_wait(stream));
        double seconds = cpu_seconds() - start;
        if (seconds < oneDNN) oneDNN = seconds;
    }

    double own = INFINITY, largest = 0, difference = 0;
    const char *ownName = kernel == 3 && stride == 1 && !plainSource ? "winograd" : "patch";
    float *output = calloc((size_t)n * outBlocks * outPlane, sizeof(float));
    float *paddedBias = calloc((size_t)outBlocks * 8, sizeof(float));
    for (int i = 0; i < k; i++) paddedBias[i] = biasValues[i];
    if (ownName[0] == 'w' && qsh_winograd_available()) {
        float *packed = malloc(qsh_winograd_weights_count(k, c) * sizeof(float));
        qsh_winograd_pack_weights(plain, k, c, packed);
        qsh_winograd_shape shape = {n, c, k, size, size, size, size, 1, 1};
        int tiles = n * ((size + 3) / 4) * ((size + 3) / 4);
        /* Tiles per call as WinogradConvolution.preferredTilesPerChunk picks them. */
        int chunk = c + k <= 64 ? 144 : (c * k / (c + k) + 5) / 6 * 6;
        chunk = chunk < 24 ? 24 : chunk > 144 ? 144 : chunk;
        float *scratch = malloc(qsh_winograd_scratch_count(k, c, chunk) * sizeof(float));
        for (int run = 0; run < 4; run++) {
            double start = cpu_seconds();
            for (long first = 0; first < tiles; first += chunk)
                qsh_winograd_tiles(&shape, input, packed, paddedBias, output, 0, -INFINITY, INFINITY, first,
                                   (int)(tiles - first < chunk ? tiles - first : chunk), scratch);
            double seconds = cpu_seconds() - start;
            if (seconds < own) own = seconds;
        }
    } else if (ownName[0] == 'p' && qsh_patch_available()) {
        qsh_patch_shape shape = {n, c, k, size, size, outSize, outSize, kernel, kernel, stride, stride, pad, pad, plainSource};
        float *packed = malloc(qsh_patch_weights_count(&shape) * sizeof(float));
        qsh_patch_pack_weights(&shape, plain, packed);
        long pixels = (long)n * outSize * outSize;
        int chunk = getenv("CHUNK") ? atoi(getenv("CHUNK")) : 96;
        float *scratch = malloc(qsh_patch_scratch_count(&shape, chunk) * sizeof(float));
        for (int run = 0; run < 4; run++) {
            double start = cpu_seconds();
            for (long first = 0; first < pixels; first += chunk)
                qsh_patch_pixels(&shape, input, packed, paddedBias, output, 0, -INFINITY, INFINITY, first,
                                 (int)(pixels - first < chunk ? pixels - first : chunk), scratch);
            double seconds = cpu_seconds() - start;
            if (seconds < own) own = seconds;
        }
    }
    for (size_t i = 0; i < (size_t)n * outBlocks * outPlane; i++) {
        if (fabsf(oneDNNOutput[i]) > largest) largest = fabsf(oneDNNOutput[i]);
        if (fabsf(output[i] - oneDNNOutput[i]) > difference) difference = fabsf(output[i] - oneDNNOutput[i]);
    }
    double flops = 2.0 * n * c * k * outSize * outSize * kernel * kernel;
    printf("%5d %4d %4d %4d %2dx%d/%d  %-14s %9.2f %8.1f  %-8s %9.2f %8.1f %7.2f %12.1e\n", n, c, k, size, kernel, kernel,
           stride, implementation, oneDNN * 1e3, flops / oneDNN / 1e9, ownName, own * 1e3, flops / own / 1e9, oneDNN / own,
           difference / largest);
    return 0;
}
