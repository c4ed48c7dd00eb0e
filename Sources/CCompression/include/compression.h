// gzip decompression through zlib, for .tar.gz image folders and gzipped IDX files.
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

#endif
