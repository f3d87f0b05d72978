/* alloc.c: every engine allocation goes through here, so tests can inject failures. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static fs_allocator fs_alloc_hook; /* all NULL: libc */

void fs_set_allocator(const fs_allocator *alloc)
{
    if (alloc == NULL) {
        memset(&fs_alloc_hook, 0, sizeof fs_alloc_hook);
    } else {
        fs_alloc_hook = *alloc;
    }
}

size_t fs__mul_size(size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size) {
        return SIZE_MAX;
    }
    return count * size;
}

void *fs__malloc(size_t bytes)
{
    if (bytes == 0) {
        bytes = 1;
    }
    if (bytes == SIZE_MAX) {
        return NULL;
    }
    if (fs_alloc_hook.malloc_fn != NULL) {
        return fs_alloc_hook.malloc_fn(fs_alloc_hook.user, bytes);
    }
    return malloc(bytes);
}

void *fs__calloc(size_t count, size_t size)
{
    size_t bytes = fs__mul_size(count, size);
    void *p = fs__malloc(bytes);
    if (p != NULL) {
        memset(p, 0, bytes == 0 ? 1 : bytes);
    }
    return p;
}

void *fs__realloc(void *ptr, size_t bytes)
{
    if (bytes == 0) {
        bytes = 1;
    }
    if (bytes == SIZE_MAX) {
        return NULL;
    }
    if (fs_alloc_hook.realloc_fn != NULL) {
        return fs_alloc_hook.realloc_fn(fs_alloc_hook.user, ptr, bytes);
    }
    return realloc(ptr, bytes);
}

void fs__free(void *ptr)
{
    if (ptr == NULL) {
        return;
    }
    if (fs_alloc_hook.free_fn != NULL) {
        fs_alloc_hook.free_fn(fs_alloc_hook.user, ptr);
        return;
    }
    free(ptr);
}

void fs_free(void *ptr)
{
    fs__free(ptr);
}

char *fs__strndup(const char *s, size_t len)
{
    char *d = fs__malloc(len + 1);
    if (d != NULL) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

char *fs__strdup(const char *s)
{
    return fs__strndup(s, strlen(s));
}
