/* jit_cache.c — the persistent JIT cache: compiled programs on disk, keyed by device,
 * driver, library version, source and defines. A file carries a header and a checksum;
 * anything damaged, truncated or foreign is ignored (and rebuilt by the caller). Files
 * are written to a temporary name and renamed, so readers never see half a file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "core/jit_cache.h"

#define MAGIC "ATTNJIT"
#define FORMAT_VERSION 1u
#define ENDIAN_MARK 0x01020304u

typedef struct file_header {
    char magic[8];         /* "ATTNJIT\0" */
    uint32_t version;      /* FORMAT_VERSION */
    uint32_t endian;       /* ENDIAN_MARK as written by this machine */
    uint64_t key_bytes;    /* the key string, not terminated */
    uint64_t payload_bytes;
    uint64_t checksum;     /* FNV-1a over key and payload */
} file_header;

uint64_t attn__fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; ++i) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

#define FNV_SEED 0xcbf29ce484222325ull

/* "<dir>/<backend>-<16 hex digits of the key's hash>.bin" */
static char *path_for(const char *dir, const char *backend, const char *key)
{
    size_t n = strlen(dir) + strlen(backend) + 32;
    char *path = malloc(n);
    if (path)
        snprintf(path, n, "%s/%s-%016llx.bin", dir, backend,
                 (unsigned long long)attn__fnv1a(FNV_SEED, key, strlen(key)));
    return path;
}

/* mkdir -p with 0700 for what it creates. */
static int make_dirs(const char *dir)
{
    char *d = strdup(dir);
    if (!d)
        return -1;
    for (char *p = d + 1; *p; ++p) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(d, 0700) != 0 && errno != EEXIST) {
            free(d);
            return -1;
        }
        *p = '/';
    }
    int r = mkdir(d, 0700) != 0 && errno != EEXIST ? -1 : 0;
    free(d);
    return r;
}

int attn__jit_cache_load(const char *dir, const char *backend, const char *key, void **payload,
                         size_t *bytes)
{
    *payload = NULL;
    *bytes = 0;
    if (!dir || !*dir)
        return 0;
    char *path = path_for(dir, backend, key);
    if (!path)
        return 0;
    FILE *f = fopen(path, "rb");
    free(path);
    if (!f)
        return 0;
    file_header h;
    const size_t klen = strlen(key);
    int ok = fread(&h, sizeof h, 1, f) == 1 && !memcmp(h.magic, MAGIC, sizeof MAGIC) &&
             h.version == FORMAT_VERSION && h.endian == ENDIAN_MARK && h.key_bytes == klen &&
             h.payload_bytes > 0 && h.payload_bytes < ((uint64_t)1 << 32);
    char *kbuf = ok ? malloc(klen + 1) : NULL;
    void *data = ok ? malloc((size_t)h.payload_bytes) : NULL;
    ok = ok && kbuf && data && fread(kbuf, 1, klen, f) == klen &&
         fread(data, 1, (size_t)h.payload_bytes, f) == h.payload_bytes && fgetc(f) == EOF;
    /* The key itself, not only its hash: a colliding or foreign file is not ours. */
    ok = ok && !memcmp(kbuf, key, klen) &&
         attn__fnv1a(attn__fnv1a(FNV_SEED, kbuf, klen), data, (size_t)h.payload_bytes) ==
             h.checksum;
    fclose(f);
    free(kbuf);
    if (!ok) {
        free(data);
        return 0;
    }
    *payload = data;
    *bytes = (size_t)h.payload_bytes;
    return 1;
}

int attn__jit_cache_store(const char *dir, const char *backend, const char *key,
                          const void *payload, size_t bytes)
{
    if (!dir || !*dir || !payload || !bytes || make_dirs(dir) != 0)
        return 0;
    char *path = path_for(dir, backend, key);
    if (!path)
        return 0;
    size_t tn = strlen(path) + 48;
    char *tmp = malloc(tn);
    if (!tmp) {
        free(path);
        return 0;
    }
    static _Thread_local unsigned counter;
    snprintf(tmp, tn, "%s.tmp.%ld.%u", path, (long)getpid(), ++counter);
    file_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, MAGIC, sizeof MAGIC);
    h.version = FORMAT_VERSION;
    h.endian = ENDIAN_MARK;
    h.key_bytes = strlen(key);
    h.payload_bytes = bytes;
    h.checksum = attn__fnv1a(attn__fnv1a(FNV_SEED, key, strlen(key)), payload, bytes);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    int ok = f && fwrite(&h, sizeof h, 1, f) == 1 &&
             fwrite(key, 1, strlen(key), f) == strlen(key) && fwrite(payload, 1, bytes, f) == bytes;
    if (f)
        ok = fclose(f) == 0 && ok;
    else if (fd >= 0)
        close(fd);
    ok = ok && rename(tmp, path) == 0;
    if (!ok)
        unlink(tmp);
    free(tmp);
    free(path);
    return ok;
}
