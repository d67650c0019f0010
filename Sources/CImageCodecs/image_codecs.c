#include "image_codecs.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

static int fail(char *message, size_t size, int code, const char *format, const char *detail) {
    if (message && size > 0) snprintf(message, size, format, detail);
    return code;
}

static int too_large(char *message, size_t size, int width, int height) {
    if (message && size > 0)
        snprintf(message, size, "%d x %d pixels is more than the limit of %llu pixels", width, height,
                 (unsigned long long)QSH_IMAGE_MAX_PIXELS);
    return QSH_IMAGE_TOO_LARGE;
}

/* MARK: JPEG */

typedef struct {
    struct jpeg_error_mgr base;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
    int truncated;
} jpeg_failure;

static void jpeg_stop(j_common_ptr info) {
    jpeg_failure *failure = (jpeg_failure *)info->err;
    (*info->err->format_message)(info, failure->message);
    longjmp(failure->jump, 1);
}

/* Warnings are not printed. A file that ends early is an error, as in Pillow ("image file is
   truncated"); other warnings (extraneous bytes, for example) are decoded through, as Pillow does. */
static void jpeg_note(j_common_ptr info, int level) {
    jpeg_failure *failure = (jpeg_failure *)info->err;
    if (level < 0) {
        if (info->err->msg_code == JWRN_JPEG_EOF) failure->truncated = 1;
        info->err->num_warnings++;
    }
}

/* Pillow reads CMYK JPEGs as inverted (Adobe) CMYK, then converts with
   nk = 255 - k; out = nk - nk * c / 255 (rounded as its MULDIV255). */
static uint8_t cmyk_channel(uint8_t stored_c, uint8_t stored_k) {
    int c = 255 - stored_c, nk = stored_k;
    int product = c * nk + 128;
    int value = nk - (((product >> 8) + product) >> 8);
    return (uint8_t)(value < 0 ? 0 : (value > 255 ? 255 : value));
}

static int decode_jpeg(FILE *file, int header_only, qsh_image *image, char *message, size_t size) {
    struct jpeg_decompress_struct info;
    jpeg_failure failure;
    uint8_t *volatile pixels = NULL;
    uint8_t *volatile row = NULL;
    memset(&failure, 0, sizeof failure);
    info.err = jpeg_std_error(&failure.base);
    failure.base.error_exit = jpeg_stop;
    failure.base.emit_message = jpeg_note;
    if (setjmp(failure.jump)) {
        jpeg_destroy_decompress(&info);
        free(pixels);
        free(row);
        return fail(message, size, QSH_IMAGE_DAMAGED, "not a readable JPEG (%s)", failure.message);
    }
    jpeg_create_decompress(&info);
    jpeg_stdio_src(&info, file);
    jpeg_read_header(&info, TRUE);
    int width = (int)info.image_width, height = (int)info.image_height;
    if ((uint64_t)width * (uint64_t)height > QSH_IMAGE_MAX_PIXELS) {
        jpeg_destroy_decompress(&info);
        return too_large(message, size, width, height);
    }
    image->width = width;
    image->height = height;
    if (header_only) {
        jpeg_destroy_decompress(&info);
        return QSH_IMAGE_OK;
    }
    int cmyk = info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK;
    int gray = info.jpeg_color_space == JCS_GRAYSCALE;
    info.out_color_space = cmyk ? JCS_CMYK : (gray ? JCS_GRAYSCALE : JCS_RGB);
    jpeg_start_decompress(&info);
    int components = info.output_components;
    pixels = malloc((size_t)width * (size_t)height * 3);
    row = malloc((size_t)width * (size_t)components);
    if (!pixels || !row) {
        jpeg_destroy_decompress(&info);
        free(pixels);
        free(row);
        return fail(message, size, QSH_IMAGE_NO_MEMORY, "%s", "out of memory for the decoded image");
    }
    while (info.output_scanline < info.output_height) {
        int y = (int)info.output_scanline;
        uint8_t *out = pixels + (size_t)y * (size_t)width * 3;
        if (!cmyk && components == 3) {
            /* RGB rows land in place: no copy, and most files take this path. */
            JSAMPROW rows[1] = {out};
            if (jpeg_read_scanlines(&info, rows, 1) != 1) break;
            continue;
        }
        JSAMPROW rows[1] = {row};
        if (jpeg_read_scanlines(&info, rows, 1) != 1) break;
        for (int x = 0; x < width; x++) {
            const uint8_t *in = row + (size_t)x * (size_t)components;
            if (cmyk) {
                out[3 * x + 0] = cmyk_channel(in[0], in[3]);
                out[3 * x + 1] = cmyk_channel(in[1], in[3]);
                out[3 * x + 2] = cmyk_channel(in[2], in[3]);
            } else if (components == 1) {
                out[3 * x + 0] = out[3 * x + 1] = out[3 * x + 2] = in[0];
            } else {
                out[3 * x + 0] = in[0];
                out[3 * x + 1] = in[1];
                out[3 * x + 2] = in[2];
            }
        }
    }
    if (failure.truncated) {
        jpeg_destroy_decompress(&info);
        free(pixels);
        free(row);
        return fail(message, size, QSH_IMAGE_DAMAGED, "%s", "the JPEG data ends early (the file is truncated)");
    }
    jpeg_finish_decompress(&info);
    jpeg_destroy_decompress(&info);
    free(row);
    image->pixels = pixels;
    return QSH_IMAGE_OK;
}

/* MARK: PNG */

typedef struct {
    char message[200];
} png_failure;

/* Keeps libpng's message and returns to the setjmp on png_jmpbuf in decode_png. */
static void png_stop(png_structp png, png_const_charp text) {
    png_failure *failure = (png_failure *)png_get_error_ptr(png);
    snprintf(failure->message, sizeof failure->message, "%s", text);
    png_longjmp(png, 1);
}

static void png_quiet(png_structp png, png_const_charp text) {
    (void)png;
    (void)text;
}

static int decode_png(FILE *file, int header_only, qsh_image *image, char *message, size_t size) {
    png_failure failure;
    memset(&failure, 0, sizeof failure);
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &failure, png_stop, png_quiet);
    if (!png) return fail(message, size, QSH_IMAGE_NO_MEMORY, "%s", "out of memory for the PNG reader");
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return fail(message, size, QSH_IMAGE_NO_MEMORY, "%s", "out of memory for the PNG reader");
    }
    uint8_t *volatile data = NULL;
    png_bytep *volatile rows = NULL;
    uint8_t *volatile pixels = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(data);
        free(rows);
        free(pixels);
        return fail(message, size, QSH_IMAGE_DAMAGED, "not a readable PNG (%s)", failure.message);
    }
    png_init_io(png, file);
    png_read_info(png, info);
    int width = (int)png_get_image_width(png, info), height = (int)png_get_image_height(png, info);
    if ((uint64_t)width * (uint64_t)height > QSH_IMAGE_MAX_PIXELS) {
        png_destroy_read_struct(&png, &info, NULL);
        return too_large(message, size, width, height);
    }
    image->width = width;
    image->height = height;
    if (header_only) {
        png_destroy_read_struct(&png, &info, NULL);
        return QSH_IMAGE_OK;
    }
    int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    /* 16-bit grayscale is clipped at 255 rather than reduced to its high byte (Pillow's I;16). */
    int clip_gray16 = depth == 16 && color == PNG_COLOR_TYPE_GRAY;
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16 && !clip_gray16) png_set_strip_16(png);
    if (!clip_gray16) png_set_gray_to_rgb(png);
    png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t row_bytes = png_get_rowbytes(png, info);
    int channels = png_get_channels(png, info);
    data = malloc(row_bytes * (size_t)height);
    rows = malloc(sizeof(png_bytep) * (size_t)(height > 0 ? height : 1));
    pixels = malloc((size_t)width * (size_t)height * 3);
    if (!data || !rows || !pixels) {
        png_destroy_read_struct(&png, &info, NULL);
        free(data);
        free(rows);
        free(pixels);
        return fail(message, size, QSH_IMAGE_NO_MEMORY, "%s", "out of memory for the decoded image");
    }
    for (int y = 0; y < height; y++) rows[y] = data + (size_t)y * row_bytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    for (int y = 0; y < height; y++) {
        const uint8_t *in = rows[y];
        uint8_t *out = pixels + (size_t)y * (size_t)width * 3;
        for (int x = 0; x < width; x++) {
            if (clip_gray16) {
                int value = (in[2 * x] << 8) | in[2 * x + 1];
                out[3 * x + 0] = out[3 * x + 1] = out[3 * x + 2] = (uint8_t)(value > 255 ? 255 : value);
            } else {
                const uint8_t *pixel = in + (size_t)x * (size_t)channels;
                out[3 * x + 0] = pixel[0];
                out[3 * x + 1] = pixel[channels >= 3 ? 1 : 0];
                out[3 * x + 2] = pixel[channels >= 3 ? 2 : 0];
            }
        }
    }
    png_destroy_read_struct(&png, &info, NULL);
    free(data);
    free(rows);
    image->pixels = pixels;
    return QSH_IMAGE_OK;
}

/* MARK: Entry */

int qsh_image_decode(const char *path, int header_only, qsh_image *image, char *message, size_t message_size) {
    image->width = 0;
    image->height = 0;
    image->pixels = NULL;
    if (message && message_size > 0) message[0] = 0;
    FILE *file = fopen(path, "rb");
    if (!file) return fail(message, message_size, QSH_IMAGE_UNREADABLE, "%s", "cannot be opened");
    unsigned char signature[8];
    size_t read = fread(signature, 1, sizeof signature, file);
    rewind(file);
    int code;
    static const unsigned char png_signature[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    if (read >= 3 && signature[0] == 0xFF && signature[1] == 0xD8 && signature[2] == 0xFF) {
        code = decode_jpeg(file, header_only, image, message, message_size);
    } else if (read == 8 && memcmp(signature, png_signature, 8) == 0) {
        code = decode_png(file, header_only, image, message, message_size);
    } else {
        code = fail(message, message_size, QSH_IMAGE_UNKNOWN_FORMAT, "%s",
                    read == 0 ? "the file is empty" : "neither a JPEG nor a PNG (no JPEG or PNG signature at its start)");
    }
    fclose(file);
    return code;
}

void qsh_image_free(qsh_image *image) {
    free(image->pixels);
    image->pixels = NULL;
}
