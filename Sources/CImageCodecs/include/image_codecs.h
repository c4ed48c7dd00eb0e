// Thin C wrappers over libjpeg-turbo and libpng. Both libraries report errors by longjmp, which Swift cannot
// catch, so every call that can fail runs here behind setjmp and returns a status with a message instead.
#ifndef SWIFTVIT_IMAGE_CODECS_H
#define SWIFTVIT_IMAGE_CODECS_H

#include <stddef.h>
#include <stdint.h>

/// A decoded 8-bit RGB image, HWC, row-major. Free `pixels` with vit_image_free.
typedef struct {
    uint8_t *pixels;
    int width;
    int height;
    /// EXIF orientation tag (1-8) of a JPEG, 1 when absent; not yet applied to `pixels`.
    int orientation;
} vit_rgb_image;

/// What a decoder returns: 0 on success, else one of these with a message in `error`.
enum {
    /// Not decodable: malformed, truncated (as Pillow, data that ends early is an error), or no pixels.
    VIT_IMAGE_CORRUPT = 1,
    /// The header declares more than `max_pixels` pixels; nothing was allocated for them.
    VIT_IMAGE_TOO_LARGE = 2,
};

/// Decodes a JPEG (grayscale, YCbCr/RGB, CMYK/YCCK) to RGB, refusing one of more than `max_pixels` pixels before
/// decoding it.
int vit_decode_jpeg(const uint8_t *data, size_t size, size_t max_pixels, vit_rgb_image *out, char *error,
                    size_t error_size);

/// Decodes a PNG (1-16 bits; gray, gray+alpha, RGB, RGBA, palette; interlaced or not) to 8-bit RGB as PIL's
/// convert("RGB") does: 16-bit samples keep their high byte, alpha is dropped, palettes are expanded. Refuses one of
/// more than `max_pixels` pixels before decoding it.
int vit_decode_png(const uint8_t *data, size_t size, size_t max_pixels, vit_rgb_image *out, char *error,
                   size_t error_size);

/// Encodes 8-bit pixels (channels 1 gray, 3 RGB or 4 RGBA) as PNG into a malloc'd buffer (free with free()).
int vit_encode_png(const uint8_t *pixels, int width, int height, int channels, uint8_t **out, size_t *out_size,
                   char *error, size_t error_size);

void vit_image_free(vit_rgb_image *image);

#endif
