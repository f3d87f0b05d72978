/*
 * dataset_levels.c: the distinct values of a learned categorical column, interned in order of
 * appearance with an open-addressing hash table (dataset_internal.h).
 */
#include "dataset_internal.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

void fs__levels_free(fs_levels *lv)
{
    for (size_t i = 0; i < lv->n; i++) {
        free(lv->names[i]);
    }
    free(lv->names);
    free(lv->slots);
    memset(lv, 0, sizeof *lv);
}

static int levels_rehash(fs_levels *lv, size_t n_slots)
{
    uint32_t *slots = calloc(n_slots, sizeof *slots);
    if (slots == NULL) {
        return -1;
    }
    for (size_t id = 0; id < lv->n; id++) {
        size_t at = (size_t)hash_bytes(lv->names[id], strlen(lv->names[id])) & (n_slots - 1);
        while (slots[at] != 0) {
            at = (at + 1) & (n_slots - 1);
        }
        slots[at] = (uint32_t)id + 1;
    }
    free(lv->slots);
    lv->slots = slots;
    lv->n_slots = n_slots;
    return 0;
}

long fs__levels_intern(fs_levels *lv, const char *value, size_t len)
{
    size_t at;
    if (lv->n_slots == 0 && levels_rehash(lv, 64) != 0) {
        return -1;
    }
    at = (size_t)hash_bytes(value, len) & (lv->n_slots - 1);
    while (lv->slots[at] != 0) {
        const char *name = lv->names[lv->slots[at] - 1];
        if (strlen(name) == len && memcmp(name, value, len) == 0) {
            return (long)lv->slots[at] - 1;
        }
        at = (at + 1) & (lv->n_slots - 1);
    }
    if (lv->n == FS_DATASET_MAX_LEVELS) {
        return -2;
    }
    if (lv->n == lv->cap) {
        size_t cap = lv->cap == 0 ? 16 : lv->cap * 2;
        char **names = realloc(lv->names, cap * sizeof *names);
        if (names == NULL) {
            return -1;
        }
        lv->names = names;
        lv->cap = cap;
    }
    lv->names[lv->n] = malloc(len + 1);
    if (lv->names[lv->n] == NULL) {
        return -1;
    }
    memcpy(lv->names[lv->n], value, len);
    lv->names[lv->n][len] = '\0';
    lv->slots[at] = (uint32_t)lv->n + 1;
    lv->n++;
    if (lv->n * 2 > lv->n_slots && levels_rehash(lv, lv->n_slots * 2) != 0) {
        return -1;
    }
    return (long)lv->n - 1;
}
