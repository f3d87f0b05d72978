/*
 * test_spool.c: the record spool (server/spool.c, spool_format.c): frame encoding and the
 * scanner, recovery of torn tails at every cut and of damaged frames and headers, the
 * reservoir (uniform over the whole stream, also when compacted lazily) and window policies,
 * compaction that keeps the count of records seen, snapshots, and atomic file writes.
 */
/* labels: unit */
#include "fs_test.h"

#include <fcntl.h>
#include <unistd.h>

#include "spool.h"

static char g_dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/fs-spool-XXXXXX");
    return mkdtemp(g_dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void spool_path(const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s.spool", g_dir, name);
}

/* Frames for records "[i]" .. for i in [from, to): payload text is the record's number. */
static void put_frames(fs_strbuf *b, int from, int to)
{
    for (int i = from; i < to; i++) {
        char p[32];
        int n = snprintf(p, sizeof p, "[%d]", i);
        assert_int_equal(fs_spool_frame_put(b, p, (size_t)n, (unsigned)(i % 2)), 0);
    }
}

static void append(fs_spool *s, int from, int to)
{
    fs_strbuf b;
    char err[320];
    fs_strbuf_init(&b, 256);
    put_frames(&b, from, to);
    assert_int_equal(fs_spool_append(s, (unsigned char *)b.p, b.len, err, sizeof err), 0);
    assert_int_equal(fs_spool_sync(s, err, sizeof err), 0);
    fs_strbuf_free(&b);
}

static fs_spool *open_ok(const char *name, fs_spool_recovery *rec)
{
    fs_spool *s = NULL;
    char err[320] = "";
    if (fs_spool_open(g_dir, name, &s, rec, err, sizeof err) != 0) {
        fail_msg("open %s: %s", name, err);
    }
    return s;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(1 << 20);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

static void write_file(const char *path, const char *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    fclose(f);
}

/* The payloads of a spool's records, as numbers, into out (n returned). */
static size_t numbers(fs_spool *s, int *out, size_t max, uint64_t *seqs)
{
    fs_spool_snapshot *snap = NULL;
    char err[320];
    assert_int_equal(fs_spool_snapshot_take(s, &snap, err, sizeof err), 0);
    assert_true(snap->n <= max);
    for (size_t i = 0; i < snap->n; i++) {
        out[i] = (int)strtol(snap->recs[i].payload + 1, NULL, 10);
        if (seqs != NULL) {
            seqs[i] = snap->recs[i].seq;
        }
    }
    size_t n = snap->n;
    fs_spool_snapshot_free(snap);
    return n;
}

static void test_spool_frames_round_trip(void **state)
{
    (void)state;
    fs_strbuf b;
    unsigned char header[FS_SPOOL_HEADER_BYTES];
    fs_strbuf_init(&b, 256);
    fs_spool_header_encode(header, 7);
    fs_strbuf_put(&b, (const char *)header, sizeof header);
    size_t body = b.len;
    put_frames(&b, 0, 5);
    size_t n = 0;
    assert_int_equal(fs_spool_frames_seal((unsigned char *)b.p + body, b.len - body, 10, &n), 0);
    assert_int_equal(n, 5);
    fs_spool_scan sc;
    assert_int_equal(fs_spool_scan_buffer(b.p, b.len, NULL, NULL, &sc), 0);
    assert_true(sc.is_spool && sc.header_ok);
    assert_int_equal(sc.base_seen, 7);
    assert_int_equal(sc.n_records, 5);
    assert_int_equal(sc.records_seen, 15);
    assert_int_equal(sc.valid_end, b.len);
    assert_int_equal(sc.torn_bytes, 0);
    /* Unsealed frames do not check; a bad length or marker refuses to seal. */
    fs_strbuf_free(&b);
    fs_strbuf_init(&b, 64);
    put_frames(&b, 0, 1);
    b.p[0] = 'X';
    assert_int_equal(fs_spool_frames_seal((unsigned char *)b.p, b.len, 0, &n), -1);
    assert_int_equal(fs_spool_frame_put(&b, "x", 0, 0), -1);
    fs_strbuf_free(&b);
}

static void test_spool_scan_survives_garbage(void **state)
{
    (void)state;
    unsigned char buf[4096];
    uint64_t rng = 1;
    fs_spool_scan sc;
    for (int round = 0; round < 200; round++) {
        size_t len = (size_t)fs_spool_rand_below(&rng, sizeof buf);
        for (size_t i = 0; i < len; i++) {
            buf[i] = (unsigned char)fs_spool_rand_below(&rng, 256);
        }
        if (round % 2 == 0 && len >= 40) {
            memcpy(buf, "FSSPOOL1", 8);
            memcpy(buf + 32, "FSR1", 4); /* a marker without a valid frame */
        }
        assert_int_equal(fs_spool_scan_buffer(buf, len, NULL, NULL, &sc), 0);
        assert_true(sc.valid_end <= len || len < FS_SPOOL_HEADER_BYTES);
        assert_int_equal(sc.n_records, 0);
    }
}

static void test_spool_torn_tail_trimmed_at_every_cut(void **state)
{
    (void)state;
    char path[128];
    fs_spool_recovery rec;
    spool_path("torn", path, sizeof path);
    fs_spool *s = open_ok("torn", &rec);
    assert_true(rec.created);
    append(s, 0, 5);
    fs_spool_close(s);
    size_t len;
    char *full = slurp(path, &len);
    size_t last = len - (FS_SPOOL_FRAME_BYTES + 3); /* "[4]" */
    for (size_t cut = last + 1; cut < len; cut++) {
        int nums[16];
        write_file(path, full, cut);
        s = open_ok("torn", &rec);
        assert_true(rec.truncated);
        assert_int_equal(rec.scan.torn_bytes, cut - last);
        assert_int_equal(numbers(s, nums, 16, NULL), 4);
        uint64_t n, seen, bytes;
        fs_spool_stats(s, &n, &seen, &bytes);
        assert_int_equal(n, 4);
        assert_int_equal(seen, 4); /* the torn record was never acknowledged */
        assert_int_equal(bytes, last);
        fs_spool_close(s);
        size_t now;
        char *again = slurp(path, &now);
        assert_int_equal(now, last); /* trimmed on disk */
        free(again);
    }
    /* Whole frames beyond an acknowledged tail stay; appends continue the seqs. */
    write_file(path, full, len);
    s = open_ok("torn", &rec);
    assert_false(rec.truncated);
    append(s, 5, 7);
    int nums[16];
    uint64_t seqs[16];
    assert_int_equal(numbers(s, nums, 16, seqs), 7);
    assert_int_equal(seqs[6], 6);
    assert_int_equal(nums[6], 6);
    fs_spool_close(s);
    free(full);
}

static void test_spool_damaged_frame_skipped_and_rewritten(void **state)
{
    (void)state;
    char path[128];
    fs_spool_recovery rec;
    spool_path("bits", path, sizeof path);
    fs_spool *s = open_ok("bits", &rec);
    append(s, 0, 5);
    fs_spool_close(s);
    size_t len;
    char *buf = slurp(path, &len);
    size_t frame2 = FS_SPOOL_HEADER_BYTES + 2 * (FS_SPOOL_FRAME_BYTES + 3);
    buf[frame2 + FS_SPOOL_FRAME_BYTES + 1] ^= 0x40; /* a bit flip in record 2's payload */
    write_file(path, buf, len);
    s = open_ok("bits", &rec);
    assert_true(rec.rewritten);
    assert_int_equal(rec.scan.n_corrupt, 1);
    int nums[16];
    uint64_t seqs[16];
    assert_int_equal(numbers(s, nums, 16, seqs), 4);
    assert_int_equal(nums[2], 3);
    assert_int_equal(seqs[2], 3);
    uint64_t n, seen, bytes;
    fs_spool_stats(s, &n, &seen, &bytes);
    assert_int_equal(seen, 5);
    fs_spool_close(s);
    s = open_ok("bits", &rec); /* the rewrite is clean */
    assert_false(rec.rewritten || rec.truncated);
    assert_int_equal(rec.scan.n_records, 4);
    fs_spool_close(s);
    /* A damaged header: the frames are kept and the header rewritten. */
    free(buf);
    buf = slurp(path, &len);
    buf[20] ^= 1;
    write_file(path, buf, len);
    s = open_ok("bits", &rec);
    assert_true(rec.rewritten);
    assert_false(rec.scan.header_ok);
    assert_int_equal(numbers(s, nums, 16, NULL), 4);
    fs_spool_close(s);
    /* Not a spool at all: refused, never overwritten. */
    write_file(path, "hello world, not a spool file at all", 36);
    char err[320] = "";
    assert_int_equal(fs_spool_open(g_dir, "bits", &s, &rec, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a flowscore spool"));
    free(buf);
}

/* Run the stream 0..n-1 through compactions at random points; count survivors per decile. */
static void reservoir_trial(uint64_t *rng, size_t n, size_t cap, size_t *hits)
{
    fs_spool_rec *recs = calloc(n, sizeof *recs);
    size_t *keep = calloc(n, sizeof *keep);
    size_t have = 0, next = 0;
    uint64_t base_seen = 0;
    while (next < n) {
        size_t add = 1 + (size_t)fs_spool_rand_below(rng, cap);
        for (size_t i = 0; i < add && next < n; i++) {
            recs[have].seq = next++;
            have++;
        }
        if (have > cap || next == n) {
            size_t k = fs_spool_select(recs, have, base_seen, cap, FS_SPOOL_RESERVOIR, rng, keep);
            assert_true(k <= cap);
            for (size_t i = 0; i < k; i++) {
                recs[i] = recs[keep[i]]; /* keep is increasing: in place is safe */
                assert_true(i == 0 || recs[i].seq > recs[i - 1].seq);
            }
            have = k;
            base_seen = next;
        }
    }
    for (size_t i = 0; i < have; i++) {
        hits[recs[i].seq * 10 / n]++;
    }
    free(recs);
    free(keep);
}

static void test_spool_reservoir_is_uniform_over_the_stream(void **state)
{
    (void)state;
    size_t hits[10] = { 0 };
    uint64_t rng = 42;
    const size_t n = 2000, cap = 100, trials = 600;
    for (size_t t = 0; t < trials; t++) {
        reservoir_trial(&rng, n, cap, hits);
    }
    /* Each decile holds 10% of the stream: expected cap/10 per trial, binomial noise. */
    double expect = (double)trials * (double)cap / 10.0, chi2 = 0;
    for (int d = 0; d < 10; d++) {
        chi2 += ((double)hits[d] - expect) * ((double)hits[d] - expect) / expect;
    }
    if (chi2 > 27.9) { /* chi-square, 9 degrees of freedom, p = 0.001 */
        fail_msg("reservoir not uniform: chi2 = %.1f (first decile %zu, last %zu, expect %.0f)",
                 chi2, hits[0], hits[9], expect);
    }
}

static void test_spool_window_and_shrunk_reservoir(void **state)
{
    (void)state;
    fs_spool_rec recs[50];
    size_t keep[50];
    uint64_t rng = 3;
    for (size_t i = 0; i < 50; i++) {
        recs[i].seq = 100 + i;
    }
    assert_int_equal(fs_spool_select(recs, 50, 0, 10, FS_SPOOL_WINDOW, &rng, keep), 10);
    assert_int_equal(keep[0], 40);
    assert_int_equal(keep[9], 49);
    /* A reservoir larger than a new, smaller cap: a uniform subset, in seq order. */
    assert_int_equal(fs_spool_select(recs, 50, 1000, 20, FS_SPOOL_RESERVOIR, &rng, keep), 20);
    for (size_t i = 1; i < 20; i++) {
        assert_true(keep[i] > keep[i - 1]);
    }
    assert_int_equal(fs_spool_select(recs, 50, 0, 0, FS_SPOOL_RESERVOIR, &rng, keep), 0);
    assert_int_equal(fs_spool_select(recs, 5, 0, 10, FS_SPOOL_RESERVOIR, &rng, keep), 5);
}

static void test_spool_compaction_keeps_the_count_seen(void **state)
{
    (void)state;
    fs_spool_recovery rec;
    char err[320];
    uint64_t rng = 9, n, seen, bytes;
    fs_spool *s = open_ok("compact", &rec);
    append(s, 0, 150);
    assert_false(fs_spool_over(s, 100)); /* slack: 64 */
    append(s, 150, 300);
    assert_true(fs_spool_over(s, 100));
    /* A snapshot taken before the compaction keeps its view. */
    fs_spool_snapshot *before = NULL;
    assert_int_equal(fs_spool_snapshot_take(s, &before, err, sizeof err), 0);
    assert_int_equal(fs_spool_compact(s, 100, FS_SPOOL_RESERVOIR, &rng, err, sizeof err), 0);
    fs_spool_stats(s, &n, &seen, &bytes);
    assert_int_equal(n, 100);
    assert_int_equal(seen, 300);
    assert_int_equal(before->n, 300);
    fs_spool_snapshot_free(before);
    append(s, 300, 310);
    fs_spool_close(s);
    s = open_ok("compact", &rec);
    assert_int_equal(rec.scan.base_seen, 300);
    fs_spool_stats(s, &n, &seen, &bytes);
    assert_int_equal(n, 110);
    assert_int_equal(seen, 310);
    int nums[400];
    uint64_t seqs[400];
    assert_int_equal(numbers(s, nums, 400, seqs), 110);
    for (size_t i = 0; i < 110; i++) {
        assert_int_equal((uint64_t)nums[i], seqs[i]);
    }
    assert_int_equal(seqs[109], 309);
    /* Window: the most recent 50 the file holds (the last 10 appended among them). */
    uint64_t old_seqs[400];
    memcpy(old_seqs, seqs, sizeof seqs);
    assert_int_equal(fs_spool_compact(s, 50, FS_SPOOL_WINDOW, &rng, err, sizeof err), 0);
    assert_int_equal(numbers(s, nums, 400, seqs), 50);
    assert_int_equal(seqs[0], old_seqs[60]);
    assert_int_equal(seqs[40], 300);
    assert_int_equal(seqs[49], 309);
    fs_spool_close(s);
}

static void test_spool_atomic_write_and_mkdir(void **state)
{
    (void)state;
    char dir[128], path[160], err[320];
    snprintf(dir, sizeof dir, "%s/a/b/c", g_dir);
    assert_int_equal(fs_mkdir_p(dir, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/state.json", dir);
    assert_int_equal(fs_file_write_atomic(path, "{\"x\":1}", 7, err, sizeof err), 0);
    assert_int_equal(fs_file_write_atomic(path, "{}", 2, err, sizeof err), 0);
    size_t len;
    char *buf = slurp(path, &len);
    assert_int_equal(len, 2);
    free(buf);
    assert_int_equal(fs_file_write_atomic("/nonexistent/dir/x", "a", 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/dir/x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spool_frames_round_trip),
        cmocka_unit_test(test_spool_scan_survives_garbage),
        cmocka_unit_test(test_spool_torn_tail_trimmed_at_every_cut),
        cmocka_unit_test(test_spool_damaged_frame_skipped_and_rewritten),
        cmocka_unit_test(test_spool_reservoir_is_uniform_over_the_stream),
        cmocka_unit_test(test_spool_window_and_shrunk_reservoir),
        cmocka_unit_test(test_spool_compaction_keeps_the_count_seen),
        cmocka_unit_test(test_spool_atomic_write_and_mkdir),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
