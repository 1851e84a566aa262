/* jit_cache.c — the persistent JIT cache: compiled programs on disk, keyed by device,
 * driver, library version, source and defines. A file carries a header and a checksum;
 * anything damaged, truncated or foreign is ignored (and rebuilt by the caller). Files
 * are written to a temporary name and renamed, so readers never see half a file. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
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

int attn__jit_cache_read(const char *path, char **key, void **payload, size_t *bytes)
{
    *key = NULL;
    *payload = NULL;
    *bytes = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    /* The sizes in the header must add up to the file's size before anything is
     * allocated from them: a foreign file's "header" must not make us allocate gigabytes. */
    struct stat sb;
    file_header h;
    int ok = fstat(fileno(f), &sb) == 0 && fread(&h, sizeof h, 1, f) == 1 &&
             !memcmp(h.magic, MAGIC, sizeof MAGIC) && h.version == FORMAT_VERSION &&
             h.endian == ENDIAN_MARK && h.key_bytes > 0 && h.key_bytes < ((uint64_t)1 << 20) &&
             h.payload_bytes > 0 && h.payload_bytes < ((uint64_t)1 << 32) &&
             (uint64_t)sb.st_size == sizeof h + h.key_bytes + h.payload_bytes;
    char *kbuf = ok ? malloc((size_t)h.key_bytes + 1) : NULL;
    void *data = ok ? malloc((size_t)h.payload_bytes) : NULL;
    ok = ok && kbuf && data && fread(kbuf, 1, (size_t)h.key_bytes, f) == h.key_bytes &&
         fread(data, 1, (size_t)h.payload_bytes, f) == h.payload_bytes && fgetc(f) == EOF;
    /* A key is text: one with a NUL inside would compare as a shorter key. */
    ok = ok && !memchr(kbuf, '\0', (size_t)h.key_bytes) &&
         attn__fnv1a(attn__fnv1a(FNV_SEED, kbuf, (size_t)h.key_bytes), data,
                     (size_t)h.payload_bytes) == h.checksum;
    fclose(f);
    if (!ok) {
        free(kbuf);
        free(data);
        return 0;
    }
    kbuf[h.key_bytes] = '\0';
    *key = kbuf;
    *payload = data;
    *bytes = (size_t)h.payload_bytes;
    return 1;
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
    char *stored = NULL;
    void *data = NULL;
    size_t n = 0;
    int ok = attn__jit_cache_read(path, &stored, &data, &n);
    free(path);
    /* The key itself, not only its hash: a colliding or foreign file is not ours. */
    ok = ok && !strcmp(stored, key);
    free(stored);
    if (!ok) {
        free(data);
        return 0;
    }
    *payload = data;
    *bytes = n;
    return 1;
}

int attn__write_atomic(const char *dir, const char *path, const void *const *parts,
                       const size_t *sizes, int num_parts)
{
    if (!dir || !*dir || make_dirs(dir) != 0)
        return 0;
    size_t tn = strlen(path) + 48;
    char *tmp = malloc(tn);
    if (!tmp)
        return 0;
    /* A name no other writer uses: other processes differ in pid, other threads of this
     * one in the counter (a per-thread counter would repeat across threads). */
    static atomic_uint counter;
    snprintf(tmp, tn, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    int ok = f != NULL;
    for (int i = 0; ok && i < num_parts; ++i)
        ok = !sizes[i] || fwrite(parts[i], 1, sizes[i], f) == sizes[i];
    if (f)
        ok = fclose(f) == 0 && ok;
    else if (fd >= 0)
        close(fd);
    ok = ok && rename(tmp, path) == 0;
    if (!ok && fd >= 0)
        unlink(tmp); /* only a file this call created */
    free(tmp);
    return ok;
}

int attn__jit_cache_store(const char *dir, const char *backend, const char *key,
                          const void *payload, size_t bytes)
{
    if (!dir || !*dir || !payload || !bytes)
        return 0;
    char *path = path_for(dir, backend, key);
    if (!path)
        return 0;
    file_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, MAGIC, sizeof MAGIC);
    h.version = FORMAT_VERSION;
    h.endian = ENDIAN_MARK;
    h.key_bytes = strlen(key);
    h.payload_bytes = bytes;
    h.checksum = attn__fnv1a(attn__fnv1a(FNV_SEED, key, strlen(key)), payload, bytes);
    const void *parts[3] = {&h, key, payload};
    const size_t sizes[3] = {sizeof h, strlen(key), bytes};
    const int ok = attn__write_atomic(dir, path, parts, sizes, 3);
    free(path);
    return ok;
}
