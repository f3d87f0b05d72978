/*
 * spool_format.c: the spool's bytes (spool.h): header and frame encoding, the scanner that
 * finds valid frames in any byte string, and the size-cap policies (reservoir, window).
 * Pure functions: no file I/O, no globals.
 */
#include "spool.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static const unsigned char fs_spool_magic[8] = { 'F', 'S', 'S', 'P', 'O', 'O', 'L', '1' };
static const unsigned char fs_frame_marker[4] = { 'F', 'S', 'R', '1' };

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* zlib's CRC-32 over any length (its length argument is a uInt). */
static uint32_t crc_update(uint32_t crc, const unsigned char *p, size_t len)
{
    uLong c = crc;
    while (len > 0) {
        uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
        c = crc32(c, p, n);
        p += n;
        len -= n;
    }
    return (uint32_t)c;
}

static uint32_t frame_crc(const unsigned char *frame, size_t payload_len)
{
    uint32_t c = crc_update((uint32_t)crc32(0L, Z_NULL, 0), frame, 20);
    return crc_update(c, frame + FS_SPOOL_FRAME_BYTES, payload_len);
}

void fs_spool_header_encode(unsigned char *out, uint64_t base_seen)
{
    memset(out, 0, FS_SPOOL_HEADER_BYTES);
    memcpy(out, fs_spool_magic, sizeof fs_spool_magic);
    put_u32(out + 8, FS_SPOOL_FORMAT_VERSION);
    put_u64(out + 16, base_seen);
    put_u32(out + 28, crc_update((uint32_t)crc32(0L, Z_NULL, 0), out, 28));
}

/* Whether a valid frame starts at off; its payload length in *plen. */
static int frame_at(const unsigned char *b, size_t len, size_t off, uint32_t *plen)
{
    if (len - off < FS_SPOOL_FRAME_BYTES || memcmp(b + off, fs_frame_marker, 4) != 0) {
        return 0;
    }
    uint32_t n = get_u32(b + off + 4);
    if (n == 0 || n > FS_SPOOL_MAX_PAYLOAD || len - off - FS_SPOOL_FRAME_BYTES < n) {
        return 0;
    }
    if (frame_crc(b + off, n) != get_u32(b + off + 20)) {
        return 0;
    }
    *plen = n;
    return 1;
}

/* The next offset after off where a valid frame starts, or len. */
static size_t resync(const unsigned char *b, size_t len, size_t off)
{
    for (size_t p = off + 1; p + FS_SPOOL_FRAME_BYTES <= len; p++) {
        const unsigned char *hit = memchr(b + p, fs_frame_marker[0], len - p);
        uint32_t n;
        if (hit == NULL) {
            break;
        }
        p = (size_t)(hit - b);
        if (frame_at(b, len, p, &n)) {
            return p;
        }
    }
    return len;
}

int fs_spool_scan_buffer(const void *buf, size_t len, fs_spool_rec_fn fn, void *arg,
                         fs_spool_scan *out)
{
    const unsigned char *b = buf;
    size_t off = FS_SPOOL_HEADER_BYTES;
    int have_prev = 0;
    uint64_t prev_seq = 0, max_seq_next = 0;
    memset(out, 0, sizeof *out);
    if (len < FS_SPOOL_HEADER_BYTES) {
        out->is_spool = len >= sizeof fs_spool_magic && memcmp(b, fs_spool_magic, 8) == 0;
        out->torn_bytes = len;
        return 0;
    }
    out->is_spool = memcmp(b, fs_spool_magic, sizeof fs_spool_magic) == 0;
    out->version = get_u32(b + 8);
    out->header_ok = out->is_spool && out->version == FS_SPOOL_FORMAT_VERSION &&
                     get_u32(b + 28) == crc_update((uint32_t)crc32(0L, Z_NULL, 0), b, 28);
    out->base_seen = out->header_ok ? get_u64(b + 16) : 0;
    out->valid_end = FS_SPOOL_HEADER_BYTES;
    while (off < len) {
        uint32_t n;
        if (!frame_at(b, len, off, &n)) {
            size_t next = resync(b, len, off);
            if (next >= len) {
                break; /* nothing valid after: a torn tail */
            }
            out->corrupt_bytes += next - off;
            out->n_corrupt++;
            off = next;
            continue;
        }
        fs_spool_rec rec;
        rec.seq = get_u64(b + off + 8);
        rec.flags = get_u32(b + off + 16);
        rec.len = n;
        rec.payload = (const char *)b + off + FS_SPOOL_FRAME_BYTES;
        rec.offset = off;
        if (have_prev && rec.seq <= prev_seq) {
            out->out_of_order++;
        }
        have_prev = 1;
        prev_seq = rec.seq;
        if (rec.seq >= max_seq_next) {
            max_seq_next = rec.seq + 1;
        }
        out->n_records++;
        off += FS_SPOOL_FRAME_BYTES + n;
        out->valid_end = off;
        if (fn != NULL && fn(arg, &rec) != 0) {
            return -1;
        }
    }
    out->torn_bytes = len - out->valid_end; /* damaged regions lie before valid_end */
    out->records_seen = out->base_seen > max_seq_next ? out->base_seen : max_seq_next;
    return 0;
}

int fs_spool_frame_put(fs_strbuf *b, const char *payload, size_t len, uint32_t flags)
{
    unsigned char h[FS_SPOOL_FRAME_BYTES];
    if (len == 0 || len > FS_SPOOL_MAX_PAYLOAD) {
        return -1;
    }
    memset(h, 0, sizeof h);
    memcpy(h, fs_frame_marker, 4);
    put_u32(h + 4, (uint32_t)len);
    put_u32(h + 16, flags);
    fs_strbuf_put(b, (const char *)h, sizeof h);
    fs_strbuf_put(b, payload, len);
    return 0;
}

int fs_spool_frames_seal(unsigned char *buf, size_t len, uint64_t first_seq, size_t *n_out)
{
    size_t off = 0, n = 0;
    *n_out = 0;
    while (off < len) {
        if (len - off < FS_SPOOL_FRAME_BYTES || memcmp(buf + off, fs_frame_marker, 4) != 0) {
            return -1;
        }
        uint32_t plen = get_u32(buf + off + 4);
        if (plen == 0 || plen > FS_SPOOL_MAX_PAYLOAD || len - off - FS_SPOOL_FRAME_BYTES < plen) {
            return -1;
        }
        put_u64(buf + off + 8, first_seq + n);
        put_u32(buf + off + 20, frame_crc(buf + off, plen));
        off += FS_SPOOL_FRAME_BYTES + plen;
        n++;
    }
    *n_out = n;
    return 0;
}

/* splitmix64 (Steele, Lea and Flood 2014): one 64-bit state, good equidistribution. */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

uint64_t fs_spool_rand_below(uint64_t *rng, uint64_t bound)
{
    /* Reject the low values that would make some residues one more likely than others. */
    uint64_t threshold = (0 - bound) % bound, r;
    do {
        r = next_u64(rng);
    } while (r < threshold);
    return r % bound;
}

uint64_t fs_spool_slack(uint64_t cap)
{
    uint64_t s = cap / 4;
    return s < 64 ? 64 : s;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

size_t fs_spool_select(const fs_spool_rec *recs, size_t n, uint64_t base_seen, size_t cap,
                       fs_spool_policy policy, uint64_t *rng, size_t *keep)
{
    size_t k = 0, first_new = 0;
    if (cap == 0 || n == 0) {
        return 0;
    }
    if (policy == FS_SPOOL_WINDOW) {
        size_t start = n > cap ? n - cap : 0;
        for (size_t i = start; i < n; i++) {
            keep[k++] = i;
        }
        return k;
    }
    while (first_new < n && recs[first_new].seq < base_seen) {
        first_new++;
    }
    /* The last compaction's reservoir. If cap shrank since, a uniform subset of it is still a
     * uniform sample of the stream: a partial Fisher-Yates shuffle picks one. */
    for (size_t i = 0; i < first_new; i++) {
        keep[i] = i;
    }
    k = first_new;
    if (k > cap) {
        for (size_t i = 0; i < cap; i++) {
            size_t j = i + (size_t)fs_spool_rand_below(rng, (uint64_t)(k - i));
            size_t t = keep[i];
            keep[i] = keep[j];
            keep[j] = t;
        }
        k = cap;
    }
    /* Algorithm R over the records that came after it: the record at stream position seq
     * (the seq+1-th accepted) replaces a random slot with probability cap / (seq + 1). */
    for (size_t i = first_new; i < n; i++) {
        if (k < cap) {
            keep[k++] = i;
            continue;
        }
        uint64_t j = fs_spool_rand_below(rng, recs[i].seq + 1);
        if (j < cap) {
            keep[j] = i;
        }
    }
    qsort(keep, k, sizeof *keep, cmp_size);
    return k;
}
