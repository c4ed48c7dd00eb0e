// zlib for the readers of untrusted files: gzip (.tar.gz image folders, gzipped IDX files), raw deflate and CRC-32
// (zip members: .pth and .npz).
#ifndef SWIFTVIT_COMPRESSION_H
#define SWIFTVIT_COMPRESSION_H

#include <stddef.h>
#include <stdint.h>

/// Inflates a gzip stream (one or more members) into a malloc'd buffer (free with free()), stopping with an error
/// once the output would pass `max_size` bytes (a small file can inflate a thousandfold). Each member's trailer is
/// checked (zlib verifies its CRC-32 and its length modulo 2^32). Returns 0 on success, else writes a message into
/// `error`.
int vit_gunzip(const uint8_t *data, size_t size, size_t max_size, uint8_t **out, size_t *out_size, char *error,
               size_t error_size);

/// Inflates one raw deflate stream (a zip member: no zlib or gzip wrapper) of `size` bytes into exactly `out_size`
/// bytes at `out`. Returns 0 when the stream ends exactly there; else writes into `error` why not: it needs more
/// output than declared, its input ends before the stream does (never a loop: each call consumes input or fails), or
/// it is corrupt.
int vit_inflate_raw(const uint8_t *data, size_t size, uint8_t *out, size_t out_size, char *error, size_t error_size);

/// CRC-32 (zip's and gzip's) of `size` bytes, continuing `crc` (0 to start).
uint32_t vit_crc32(uint32_t crc, const uint8_t *data, size_t size);

#endif
