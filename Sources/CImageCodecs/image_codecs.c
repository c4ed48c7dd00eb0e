#include "image_codecs.h"

#include <stdio.h>   // before jpeglib.h, which uses FILE
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>
#include <jerror.h>  // the message codes (JWRN_JPEG_EOF)
#include <png.h>

void vit_image_free(vit_rgb_image *image) {
    free(image->pixels);
    image->pixels = NULL;
}

// MARK: - JPEG

struct jpeg_failure {
    struct jpeg_error_mgr manager;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
    int truncated;
};

static void jpeg_fail(j_common_ptr info) {
    struct jpeg_failure *failure = (struct jpeg_failure *)info->err;
    (*info->err->format_message)(info, failure->message);
    longjmp(failure->jump, 1);
}

/// a·b/255 rounded, as Pillow's MULDIV255.
static int muldiv255(int a, int b) {
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

/// libjpeg reports data that ends early as a warning and decodes the rest as grey; Pillow refuses such a file ("image
/// file is truncated"), and so does this decoder: the warning is remembered and turned into an error.
static void jpeg_quiet(j_common_ptr info, int level) {
    struct jpeg_failure *failure = (struct jpeg_failure *)info->err;
    if (level < 0 && info->err->msg_code == JWRN_JPEG_EOF) failure->truncated = 1;
}

static unsigned read16(const uint8_t *p, int big) { return big ? (p[0] << 8) | p[1] : p[0] | (p[1] << 8); }
static unsigned read32(const uint8_t *p, int big) {
    return big ? ((unsigned)p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3] : p[0] | (p[1] << 8) | (p[2] << 16) | ((unsigned)p[3] << 24);
}

/// The orientation tag (0x0112) of IFD0 in an APP1 "Exif" segment, 1 if absent or malformed. Every bound is checked
/// by subtraction from the size known to be larger, so that no offset read from the file can wrap an unsigned sum.
static int exif_orientation(const uint8_t *data, size_t length) {
    if (length < 14 || memcmp(data, "Exif\0\0", 6) != 0) return 1;
    const uint8_t *tiff = data + 6;
    size_t size = length - 6;
    int big = tiff[0] == 'M';
    if (!(tiff[0] == 'M' && tiff[1] == 'M') && !(tiff[0] == 'I' && tiff[1] == 'I')) return 1;
    size_t ifd = read32(tiff + 4, big);
    if (ifd > size || size - ifd < 2) return 1;
    size_t count = read16(tiff + ifd, big);
    size_t entries = (size - ifd - 2) / 12;  // the whole entries that fit after the count
    if (count > entries) count = entries;
    for (size_t i = 0; i < count; i++) {
        const uint8_t *entry = tiff + ifd + 2 + i * 12;
        if (read16(entry, big) == 0x0112) {
            unsigned value = read16(entry + 8, big);
            return value >= 1 && value <= 8 ? (int)value : 1;
        }
    }
    return 1;
}

/// Refuses a declared size of no pixels or more than `max_pixels` (a decompression bomb) before any pixel memory is
/// allocated. Returns 0 when the size is usable.
static int check_size(size_t width, size_t height, size_t max_pixels, char *error, size_t error_size) {
    if (width == 0 || height == 0) {
        snprintf(error, error_size, "declares a %zux%zu image (no pixels)", width, height);
        return VIT_IMAGE_CORRUPT;
    }
    if (width > max_pixels / height) {
        snprintf(error, error_size, "declares %zux%zu = %zu pixels, more than the limit of %zu (a decompression bomb?)",
                 width, height, width * height, max_pixels);
        return VIT_IMAGE_TOO_LARGE;
    }
    return 0;
}

int vit_decode_jpeg(const uint8_t *data, size_t size, size_t max_pixels, vit_rgb_image *out, char *error,
                    size_t error_size) {
    struct jpeg_decompress_struct info;
    struct jpeg_failure failure;
    uint8_t *volatile pixels = NULL;
    uint8_t *volatile row = NULL;
    memset(out, 0, sizeof(*out));
    if (error_size) error[0] = 0;  // set: a message written before the longjmp, kept
    info.err = jpeg_std_error(&failure.manager);
    failure.manager.error_exit = jpeg_fail;
    failure.manager.emit_message = jpeg_quiet;
    failure.truncated = 0;
    volatile int status = VIT_IMAGE_CORRUPT;
    if (setjmp(failure.jump)) {
        if (error[0] == 0) snprintf(error, error_size, "%s", failure.message);
        jpeg_destroy_decompress(&info);
        free(pixels);
        free(row);
        return status;
    }
    jpeg_create_decompress(&info);
    jpeg_mem_src(&info, data, (unsigned long)size);
    jpeg_save_markers(&info, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&info, TRUE);
    int orientation = 1;
    for (jpeg_saved_marker_ptr m = info.marker_list; m; m = m->next) {
        if (m->marker == JPEG_APP0 + 1) orientation = exif_orientation(m->data, m->data_length);
    }
    // Before jpeg_start_decompress, which allocates whole-image buffers for progressive files.
    status = check_size(info.image_width, info.image_height, max_pixels, error, error_size);
    if (status) longjmp(failure.jump, 1);
    status = VIT_IMAGE_CORRUPT;
    int cmyk = info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK;
    info.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&info);
    int width = info.output_width, height = info.output_height, components = info.output_components;
    pixels = malloc((size_t)width * height * 3);
    row = malloc((size_t)width * components);
    if (!pixels || !row) {
        snprintf(error, error_size, "out of memory for a %dx%d image", width, height);
        status = VIT_IMAGE_TOO_LARGE;
        longjmp(failure.jump, 1);
    }
    // Adobe writes CMYK JPEGs inverted (APP14), and Pillow reads those as inverted CMYK ("CMYK;I"). Its
    // cmyk2rgb is R = nk - MULDIV255(C, nk) with nk = 255 - K, which is reproduced here bit for bit.
    int inverted = info.saw_Adobe_marker;
    while (info.output_scanline < info.output_height) {
        uint8_t *target = pixels + (size_t)info.output_scanline * width * 3;
        JSAMPROW rows[1] = {cmyk ? row : target};
        jpeg_read_scanlines(&info, rows, 1);
        if (cmyk) {
            for (int x = 0; x < width; x++) {
                int c = row[4 * x], m = row[4 * x + 1], y = row[4 * x + 2], k = row[4 * x + 3];
                if (inverted) { c = 255 - c; m = 255 - m; y = 255 - y; k = 255 - k; }
                int nk = 255 - k;
                target[3 * x] = (uint8_t)(nk - muldiv255(c, nk));
                target[3 * x + 1] = (uint8_t)(nk - muldiv255(m, nk));
                target[3 * x + 2] = (uint8_t)(nk - muldiv255(y, nk));
            }
        }
    }
    if (failure.truncated) {
        snprintf(failure.message, sizeof failure.message, "image file is truncated (the JPEG data ends early)");
        longjmp(failure.jump, 1);
    }
    jpeg_finish_decompress(&info);
    if (failure.truncated) {  // the end-of-image marker itself missing
        snprintf(failure.message, sizeof failure.message, "image file is truncated (no end-of-image marker)");
        longjmp(failure.jump, 1);
    }
    jpeg_destroy_decompress(&info);
    free(row);
    out->pixels = pixels;
    out->width = width;
    out->height = height;
    out->orientation = orientation;
    return 0;
}

// MARK: - PNG

struct png_memory {
    const uint8_t *data;
    size_t size;
    size_t offset;
};

static void png_read_memory(png_structp png, png_bytep target, png_size_t length) {
    struct png_memory *source = png_get_io_ptr(png);
    if (length > source->size - source->offset) png_error(png, "truncated PNG data");
    memcpy(target, source->data + source->offset, length);
    source->offset += length;
}

static void png_fail(png_structp png, png_const_charp message) {
    char *buffer = png_get_error_ptr(png);
    snprintf(buffer, 256, "%s", message);
    png_longjmp(png, 1);
}

static void png_quiet(png_structp png, png_const_charp message) { (void)png; (void)message; }

int vit_decode_png(const uint8_t *data, size_t size, size_t max_pixels, vit_rgb_image *out, char *error,
                   size_t error_size) {
    char message[256] = "unknown libpng error";
    memset(out, 0, sizeof(*out));
    if (error_size) error[0] = 0;  // set: a message written before the longjmp, kept
    if (size < 8 || png_sig_cmp(data, 0, 8)) {
        snprintf(error, error_size, "not a PNG signature");
        return VIT_IMAGE_CORRUPT;
    }
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, message, png_fail, png_quiet);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (!png || !info) {
        snprintf(error, error_size, "cannot create a PNG reader");
        png_destroy_read_struct(&png, &info, NULL);
        return VIT_IMAGE_CORRUPT;
    }
    volatile int status = VIT_IMAGE_CORRUPT;
    if (setjmp(png_jmpbuf(png))) {
        if (error[0] == 0) snprintf(error, error_size, "%s", message);
        png_destroy_read_struct(&png, &info, NULL);
        free(pixels);
        free(rows);
        return status;
    }
    struct png_memory source = {data, size, 0};
    png_set_read_fn(png, &source, png_read_memory);
    png_read_info(png, info);
    png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
    status = check_size(width, height, max_pixels, error, error_size);
    if (status) png_longjmp(png, 1);
    status = VIT_IMAGE_CORRUPT;
    png_set_expand(png);            // palette -> RGB, gray < 8 bits -> 8 bits, tRNS -> alpha
    png_set_strip_16(png);          // 16-bit samples -> their high byte, as Pillow
    png_set_strip_alpha(png);       // drop alpha without compositing, as Pillow's convert("RGB")
    png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)width * 3) png_error(png, "unexpected row layout after conversion");
    pixels = malloc((size_t)width * height * 3);
    rows = malloc(sizeof(png_bytep) * height);
    if (!pixels || !rows) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + (size_t)y * width * 3;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    out->pixels = pixels;
    out->width = (int)width;
    out->height = (int)height;
    out->orientation = 1;
    return 0;
}

struct png_buffer {
    uint8_t *data;
    size_t size;
    size_t capacity;
};

static void png_write_memory(png_structp png, png_bytep source, png_size_t length) {
    struct png_buffer *buffer = png_get_io_ptr(png);
    if (buffer->size + length > buffer->capacity) {
        size_t capacity = buffer->capacity ? buffer->capacity * 2 : 65536;
        while (capacity < buffer->size + length) capacity *= 2;
        uint8_t *grown = realloc(buffer->data, capacity);
        if (!grown) png_error(png, "out of memory");
        buffer->data = grown;
        buffer->capacity = capacity;
    }
    memcpy(buffer->data + buffer->size, source, length);
    buffer->size += length;
}

static void png_flush_memory(png_structp png) { (void)png; }

int vit_encode_png(const uint8_t *pixels, int width, int height, int channels, uint8_t **out, size_t *out_size,
                   char *error, size_t error_size) {
    char message[256] = "unknown libpng error";
    *out = NULL;
    *out_size = 0;
    int color = channels == 1 ? PNG_COLOR_TYPE_GRAY : channels == 3 ? PNG_COLOR_TYPE_RGB : channels == 4 ? PNG_COLOR_TYPE_RGBA : -1;
    if (color < 0 || width <= 0 || height <= 0) {
        snprintf(error, error_size, "cannot encode %dx%d with %d channels", width, height, channels);
        return 1;
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, message, png_fail, png_quiet);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    struct png_buffer buffer = {NULL, 0, 0};
    if (!png || !info) {
        snprintf(error, error_size, "cannot create a PNG writer");
        png_destroy_write_struct(&png, &info);
        return 1;
    }
    if (setjmp(png_jmpbuf(png))) {
        snprintf(error, error_size, "%s", message);
        png_destroy_write_struct(&png, &info);
        free(buffer.data);
        return 1;
    }
    png_set_write_fn(png, &buffer, png_write_memory, png_flush_memory);
    png_set_IHDR(png, info, width, height, 8, color, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++) png_write_row(png, (png_const_bytep)(pixels + (size_t)y * width * channels));
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    *out = buffer.data;
    *out_size = buffer.size;
    return 0;
}
