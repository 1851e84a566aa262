/* shaders.h — kernel sources from shaders/, embedded at build time by src/embed.py. */
#ifndef ATTN_CORE_SHADERS_H
#define ATTN_CORE_SHADERS_H

typedef struct attn__shader {
    const char *name;   /* file name, e.g. "attn_fwd_cpu.cl" */
    const char *source;
} attn__shader;

/* Terminated by an entry whose name is NULL. */
extern const attn__shader attn__shaders[];

/* The embedded source called `name`, or NULL. */
const char *attn__shader_source(const char *name);

#endif
