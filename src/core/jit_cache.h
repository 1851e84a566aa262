/* jit_cache.h — compiled programs on disk (src/core/jit_cache.c). */
#ifndef ATTN_CORE_JIT_CACHE_H
#define ATTN_CORE_JIT_CACHE_H

#include <stddef.h>
#include <stdint.h>

/* 64-bit FNV-1a, continued from h (start with 0xcbf29ce484222325). */
uint64_t attn__fnv1a(uint64_t h, const void *data, size_t n);

/* Reads the cache file at `path` whatever its key: 1 with the (malloc'ed, terminated) key
 * and payload when the file is whole and its checksum holds; 0 otherwise. For tools and
 * tests that look at a cache file; the library loads through attn__jit_cache_load. */
int attn__jit_cache_read(const char *path, char **key, void **payload, size_t *bytes);

/* Loads the payload stored under `key` for `backend` in `dir`: 1 and a malloc'ed payload
 * when a whole, intact file with exactly this key exists; 0 otherwise (missing, damaged,
 * truncated, foreign — the caller rebuilds). */
int attn__jit_cache_load(const char *dir, const char *backend, const char *key, void **payload,
                         size_t *bytes);

/* Writes the concatenated parts to `path` (in `dir`, which it creates with mode 0700)
 * atomically: a temporary file unique to this process and call, then a rename, so
 * readers never see half a file. 1 on success; on failure no file of this call remains. */
int attn__write_atomic(const char *dir, const char *path, const void *const *parts,
                       const size_t *sizes, int num_parts);

/* Stores a payload atomically (attn__write_atomic); creates dir. 1 on success. */
int attn__jit_cache_store(const char *dir, const char *backend, const char *key,
                          const void *payload, size_t bytes);

#endif
