/*
 * dataset_internal.h: what dataset.c and dataset_read.c share; not for other modules.
 */
#ifndef FS_DATASET_INTERNAL_H
#define FS_DATASET_INTERNAL_H

#include "dataset.h"

/* Write a sentence into diag (may be NULL) and return err. */
fs_err fs__dataset_diag(fs_diag *diag, fs_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Whether s (len bytes) is empty or only whitespace. */
int fs__dataset_blank(const char *s, size_t len);

/* The engine's rule for field and level names: 1..63 bytes, no control characters. */
int fs__dataset_name_ok(const char *s, size_t len);

/* A quoted, printable copy of a cell (len bytes) for messages, cut to fit buf (size >= 8). */
void fs__dataset_excerpt(const char *s, size_t len, char *buf, size_t size);

#endif /* FS_DATASET_INTERNAL_H */
