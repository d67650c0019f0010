#ifndef QSH_IMAGE_CODECS_H
#define QSH_IMAGE_CODECS_H

#include <stddef.h>
#include <stdint.h>

/* Decoding JPEG and PNG files to 8-bit RGB, the way Pillow's Image.open(...).convert("RGB")
   sees them: grayscale replicated, palettes looked up, alpha dropped (not composited),
   16-bit samples reduced to their high byte (16-bit grayscale clipped at 255, as Pillow's
   I;16 to L conversion does), CMYK JPEGs converted with Pillow's formula. A damaged file is
   an error code and a message, never a crash: libjpeg and libpng errors return through
   setjmp/longjmp. */

/* Images with more pixels than this are refused before any pixel memory is allocated. */
#define QSH_IMAGE_MAX_PIXELS ((uint64_t)1 << 28)

enum {
    QSH_IMAGE_OK = 0,
    QSH_IMAGE_UNREADABLE = 1,     /* the file cannot be opened or read */
    QSH_IMAGE_UNKNOWN_FORMAT = 2, /* neither a JPEG nor a PNG signature */
    QSH_IMAGE_DAMAGED = 3,        /* the decoder rejected the data */
    QSH_IMAGE_TOO_LARGE = 4,      /* more than QSH_IMAGE_MAX_PIXELS pixels */
    QSH_IMAGE_NO_MEMORY = 5,
};

typedef struct {
    int width;
    int height;
    /* width * height * 3 bytes, RGB, row-major; NULL after a header-only call.
       Release with qsh_image_free. */
    uint8_t *pixels;
} qsh_image;

/* Decodes `path` into `image`. With `header_only`, only the size is read (and checked against
   the limit). On failure, returns a nonzero code and writes a one-line reason to `message`. */
int qsh_image_decode(const char *path, int header_only, qsh_image *image, char *message, size_t message_size);

void qsh_image_free(qsh_image *image);

#endif
