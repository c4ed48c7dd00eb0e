#include "compression.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

int vit_gunzip(const uint8_t *data, size_t size, size_t max_size, uint8_t **out, size_t *out_size, char *error,
               size_t error_size) {
    *out = NULL;
    *out_size = 0;
    z_stream stream;
    memset(&stream, 0, sizeof(stream));
    if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) {
        snprintf(error, error_size, "cannot start zlib");
        return 1;
    }
    size_t capacity = size < max_size / 4 ? size * 4 + 65536 : max_size + 1, length = 0;
    uint8_t *buffer = malloc(capacity);
    int too_large = 0;
    stream.next_in = (Bytef *)data;
    stream.avail_in = (uInt)(size > 0xFFFFFFFFu ? 0xFFFFFFFFu : size);
    size_t remaining_in = size - stream.avail_in;
    int status = Z_OK;
    while (buffer) {
        if (length > max_size) {
            too_large = 1;
            break;
        }
        if (length == capacity) {
            capacity = capacity > max_size / 2 ? max_size + 1 : capacity * 2;
            uint8_t *grown = realloc(buffer, capacity);
            if (!grown) { free(buffer); buffer = NULL; break; }
            buffer = grown;
        }
        stream.next_out = buffer + length;
        size_t room = capacity - length;
        stream.avail_out = (uInt)(room > 0xFFFFFFFFu ? 0xFFFFFFFFu : room);
        uInt before = stream.avail_out;
        status = inflate(&stream, Z_NO_FLUSH);
        length += before - stream.avail_out;
        if (stream.avail_in == 0 && remaining_in > 0) {
            uInt chunk = (uInt)(remaining_in > 0xFFFFFFFFu ? 0xFFFFFFFFu : remaining_in);
            stream.avail_in = chunk;
            remaining_in -= chunk;
        }
        if (status == Z_STREAM_END) {
            // Concatenated gzip members: continue with the next one if input remains.
            if (stream.avail_in == 0 && remaining_in == 0) break;
            inflateReset(&stream);
            continue;
        }
        if (status != Z_OK && status != Z_BUF_ERROR) break;
        if (status == Z_BUF_ERROR && stream.avail_in == 0 && remaining_in == 0) break;
    }
    inflateEnd(&stream);
    if (!buffer) {
        snprintf(error, error_size, "out of memory");
        return 1;
    }
    if (too_large) {
        snprintf(error, error_size, "inflates to more than %zu bytes, the limit (a decompression bomb?)", max_size);
        free(buffer);
        return 1;
    }
    if (status != Z_STREAM_END) {
        snprintf(error, error_size, "%s", status == Z_BUF_ERROR ? "truncated gzip data" : (stream.msg ? stream.msg : "corrupt gzip data"));
        free(buffer);
        return 1;
    }
    *out = buffer;
    *out_size = length;
    return 0;
}

int vit_inflate_raw(const uint8_t *data, size_t size, uint8_t *out, size_t out_size, char *error, size_t error_size) {
    z_stream stream;
    memset(&stream, 0, sizeof(stream));
    if (inflateInit2(&stream, -MAX_WBITS) != Z_OK) {
        snprintf(error, error_size, "cannot start zlib");
        return 1;
    }
    size_t in_left = size, out_left = out_size;
    int status = Z_OK;
    uint8_t none = 0;  // zlib refuses a NULL output even when no byte is to be written
    stream.next_out = out_size > 0 ? out : &none;
    stream.next_in = size > 0 ? (Bytef *)data : &none;
    // zlib counts in 32-bit units: feed at most 4 GiB of input and output per call.
    while (status == Z_OK) {
        if (stream.avail_in == 0 && in_left > 0) {
            uInt chunk = (uInt)(in_left > 0xFFFFFFFFu ? 0xFFFFFFFFu : in_left);
            stream.next_in = (Bytef *)(data + (size - in_left));
            stream.avail_in = chunk;
            in_left -= chunk;
        }
        if (stream.avail_out == 0 && out_left > 0) {
            uInt chunk = (uInt)(out_left > 0xFFFFFFFFu ? 0xFFFFFFFFu : out_left);
            stream.next_out = out + (out_size - out_left);
            stream.avail_out = chunk;
            out_left -= chunk;
        }
        uInt in_before = stream.avail_in, out_before = stream.avail_out;
        status = inflate(&stream, Z_NO_FLUSH);
        // No progress: the input ran out (truncated) or the output is full (more than declared).
        if (status == Z_BUF_ERROR || (status == Z_OK && stream.avail_in == in_before && stream.avail_out == out_before)) break;
    }
    size_t produced = out_size - out_left - stream.avail_out;
    int ok = status == Z_STREAM_END && produced == out_size;
    if (!ok) {
        if (status == Z_STREAM_END)
            snprintf(error, error_size, "inflates to %zu bytes, not the %zu its directory entry declares", produced, out_size);
        else if (status == Z_OK || status == Z_BUF_ERROR)
            snprintf(error, error_size, produced == out_size && out_size > 0
                         ? "inflates past the %zu bytes its directory entry declares"
                         : "its deflate stream ends early: truncated (declared %zu bytes)", out_size);
        else
            snprintf(error, error_size, "corrupt deflate data (%s)", stream.msg ? stream.msg : "zlib error");
    }
    inflateEnd(&stream);
    return ok ? 0 : 1;
}

uint32_t vit_crc32(uint32_t crc, const uint8_t *data, size_t size) {
    uLong value = crc;
    while (size > 0) {
        uInt chunk = (uInt)(size > 0x40000000u ? 0x40000000u : size);
        value = crc32(value, data, chunk);
        data += chunk;
        size -= chunk;
    }
    return (uint32_t)value;
}
