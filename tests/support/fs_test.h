/*
 * fs_test.h: helpers for flowscore's cmocka tests. Include after <cmocka.h>'s prerequisites
 * (this header includes them itself).
 */
#ifndef FS_TEST_H
#define FS_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "flowscore.h"

/* |a - b| <= tol, both finite; the message names both values and the difference. */
#define FS_ASSERT_NEAR(a, b, tol)                                                                  \
    do {                                                                                           \
        double fs_a_ = (double)(a), fs_b_ = (double)(b), fs_t_ = (double)(tol);                    \
        if (!isfinite(fs_a_) || !isfinite(fs_b_) || fabs(fs_a_ - fs_b_) > fs_t_) {                 \
            fail_msg("%s = %.10g, %s = %.10g: |diff| %.3g > %.3g", #a, fs_a_, #b, fs_b_,           \
                     fabs(fs_a_ - fs_b_), fs_t_);                                                  \
        }                                                                                          \
    } while (0)

/* assert_int_equal on an fs_err, naming both codes on failure. */
#define FS_ASSERT_OK(expr)                                                                         \
    do {                                                                                           \
        fs_err fs_e_ = (expr);                                                                     \
        if (fs_e_ != FS_OK) {                                                                      \
            fail_msg("%s returned %s", #expr, fs_err_name(fs_e_));                                 \
        }                                                                                          \
    } while (0)

#define FS_ASSERT_ERR(expr, want)                                                                  \
    do {                                                                                           \
        fs_err fs_e_ = (expr);                                                                     \
        if (fs_e_ != (want)) {                                                                     \
            fail_msg("%s returned %s, expected %s", #expr, fs_err_name(fs_e_), fs_err_name(want)); \
        }                                                                                          \
    } while (0)

/*
 * A test allocator that fails the Nth allocation (counting from 1) and counts live blocks,
 * so that a constructor can be shown to return FS_ERR_NOMEM without leaking, for every N.
 */
typedef struct fs_test_failing_alloc {
    long fail_at; /* 0: never fail */
    long calls;
    long live;
} fs_test_failing_alloc;

static inline void *fs_test_fa_malloc(void *user, size_t bytes)
{
    fs_test_failing_alloc *fa = user;
    fa->calls++;
    if (fa->fail_at != 0 && fa->calls == fa->fail_at) {
        return NULL;
    }
    void *p = malloc(bytes);
    if (p != NULL) {
        fa->live++;
    }
    return p;
}

static inline void *fs_test_fa_realloc(void *user, void *ptr, size_t bytes)
{
    fs_test_failing_alloc *fa = user;
    fa->calls++;
    if (fa->fail_at != 0 && fa->calls == fa->fail_at) {
        return NULL;
    }
    void *p = realloc(ptr, bytes);
    if (p != NULL && ptr == NULL) {
        fa->live++;
    }
    return p;
}

static inline void fs_test_fa_free(void *user, void *ptr)
{
    fs_test_failing_alloc *fa = user;
    if (ptr != NULL) {
        fa->live--;
    }
    free(ptr);
}

static inline void fs_test_fa_install(fs_test_failing_alloc *fa, long fail_at)
{
    fa->fail_at = fail_at;
    fa->calls = 0;
    fa->live = 0;
    fs_allocator a = { fs_test_fa_malloc, fs_test_fa_realloc, fs_test_fa_free, fa };
    fs_set_allocator(&a);
}

/* Path of a file under ../shared, or NULL (after printing why) when it is absent. */
static inline const char *fs_test_shared_path(char *buf, size_t len, const char *rel)
{
    struct stat st;
    snprintf(buf, len, "%s/%s", FS_SHARED_DIR, rel);
    if (stat(buf, &st) != 0) {
        print_message("skipping: %s not found (../shared is absent)\n", buf);
        return NULL;
    }
    return buf;
}

/* Read a whole file (malloc'd, NUL-terminated); NULL on error. */
static inline char *fs_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (f == NULL) {
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    buf = malloc((size_t)n + 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf != NULL) {
        buf[n] = '\0';
        if (len != NULL) {
            *len = (size_t)n;
        }
    }
    return buf;
}

#endif /* FS_TEST_H */
