/*
 * fuzz_spool.c: the spool reader and its recovery (issue 5) must take any byte string as a
 * spool file without crashing or reading out of bounds: the scanner reports frames that all
 * lie inside the input, in the order found; the size-cap policies keep at most cap of them;
 * and opening the bytes as a spool file either refuses them or recovers a file that scans
 * clean, holds exactly the frames the scanner found, and takes appends afterwards.
 */
#include "spool.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct seen {
    const uint8_t *base;
    size_t len;
    fs_spool_rec recs[4096];
    size_t n;
} seen;

static int on_rec(void *arg, const fs_spool_rec *rec)
{
    seen *s = arg;
    const uint8_t *p = (const uint8_t *)rec->payload;
    if (p < s->base || p + rec->len > s->base + s->len || rec->len == 0 ||
        rec->offset + FS_SPOOL_FRAME_BYTES + rec->len > s->len) {
        abort(); /* a record outside the input */
    }
    if (s->n < sizeof s->recs / sizeof s->recs[0]) {
        s->recs[s->n++] = *rec;
    }
    return 0;
}

static char g_dir[64];

static void check_recovery(const uint8_t *data, size_t size, size_t n_valid)
{
    char path[128], err[320];
    fs_spool *sp = NULL;
    fs_spool_recovery rec;
    if (g_dir[0] == '\0') {
        snprintf(g_dir, sizeof g_dir, "/tmp/fs-fuzz-spool-XXXXXX");
        if (mkdtemp(g_dir) == NULL) {
            abort();
        }
    }
    snprintf(path, sizeof path, "%s/f.spool", g_dir);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, size, f) != size) {
        abort();
    }
    fclose(f);
    if (fs_spool_open(g_dir, "f", &sp, &rec, err, sizeof err) == 0) {
        uint64_t n, seen_count, bytes;
        fs_spool_stats(sp, &n, &seen_count, &bytes);
        if (n != n_valid && rec.scan.is_spool) {
            abort(); /* recovery kept other frames than the scanner found */
        }
        fs_strbuf b;
        fs_strbuf_init(&b, 64);
        fs_spool_frame_put(&b, "[1]", 3, 0);
        if (!b.failed && fs_spool_append(sp, (unsigned char *)b.p, b.len, err, sizeof err) == 0 &&
            fs_spool_sync(sp, err, sizeof err) == 0) {
            fs_spool_snapshot *snap = NULL;
            if (fs_spool_snapshot_take(sp, &snap, err, sizeof err) != 0 || snap->n != n + 1 ||
                snap->recs[snap->n - 1].seq != seen_count) {
                abort(); /* the append does not follow the recovered records */
            }
            fs_spool_snapshot_free(snap);
        }
        fs_strbuf_free(&b);
        fs_spool_close(sp);
    }
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static seen s;
    fs_spool_scan sc;
    size_t keep[4096];
    s.base = data;
    s.len = size;
    s.n = 0;
    fs_spool_scan_buffer(data, size, on_rec, &s, &sc);
    if (sc.n_records != s.n && s.n < sizeof s.recs / sizeof s.recs[0]) {
        abort();
    }
    if (size >= FS_SPOOL_HEADER_BYTES && sc.valid_end + sc.torn_bytes != size) {
        abort();
    }
    uint64_t rng = size;
    size_t cap = size > 0 ? 1 + data[0] % 16 : 1;
    for (int policy = 0; policy < 2 && sc.out_of_order == 0; policy++) {
        size_t k =
            fs_spool_select(s.recs, s.n, sc.base_seen, cap, (fs_spool_policy)policy, &rng, keep);
        if (k > cap || k > s.n) {
            abort();
        }
        for (size_t i = 1; i < k; i++) {
            if (keep[i] <= keep[i - 1] || keep[i] >= s.n) {
                abort();
            }
        }
    }
    check_recovery(data, size, sc.n_records);
    return 0;
}
