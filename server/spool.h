/*
 * spool.h: a model's durable record spool under the state directory (issue 5):
 * <state_dir>/spool/<name>.spool, an append-only log of self-checking frames.
 *
 * File format (every integer little-endian):
 *
 *     header, 32 bytes:
 *       0  magic "FSSPOOL1" (8 bytes)
 *       8  u32 format version (1)
 *      12  u32 reserved (0)
 *      16  u64 base_seen: records accepted before the file was last rewritten
 *      24  u32 reserved (0)
 *      28  u32 CRC-32 (zlib) of bytes 0..27
 *     then frames, one per record, in increasing seq:
 *       0  u32 marker "FSR1"
 *       4  u32 payload length (1 .. FS_SPOOL_MAX_PAYLOAD)
 *       8  u64 seq: the record's position in the stream of accepted records, from 0
 *      16  u32 flags (FS_SPOOL_FLAG_*)
 *      20  u32 CRC-32 (zlib) of bytes 0..19 followed by the payload
 *      24  payload: the record as a JSON array in schema order ([1.5, 80, "tcp"])
 *
 * Records are acknowledged only after fdatasync, so an acknowledged frame is complete and its
 * CRC holds. On open, a torn tail (bytes after the last valid frame: a write cut short by a
 * crash) is truncated away; a damaged frame between valid ones is skipped by searching for the
 * next marker whose frame checks, and the file is rewritten without it. The number of records
 * ever accepted is max(base_seen, last seq + 1), so it survives rewrites that drop records.
 *
 * A size cap keeps a uniform reservoir sample of the whole stream (Algorithm R, Vitter 1985,
 * continued lazily: records with seq >= base_seen are fed to it in order at compaction time)
 * or the most recent records. Compaction rewrites the file atomically (temporary file, fsync,
 * rename, fsync of the directory).
 *
 * Threads: fs_spool_open, append, sync, compact and close belong to one writer thread (the
 * spool I/O thread); fs_spool_snapshot_take and fs_spool_stats may run on any thread at the
 * same time (the spool's mutex guards the committed length and the file descriptor). The
 * pure functions (scan, select, frame helpers) are reentrant.
 */
#ifndef FS_SPOOL_H
#define FS_SPOOL_H

#include "config.h"
#include "records.h"

#include <stddef.h>
#include <stdint.h>

#define FS_SPOOL_HEADER_BYTES   32
#define FS_SPOOL_FRAME_BYTES    24
#define FS_SPOOL_FORMAT_VERSION 1
#define FS_SPOOL_MAX_PAYLOAD    (1u << 20)
#define FS_SPOOL_FLAG_ANOMALY   0x1u /* scored above the served threshold when it was ingested */

/* One record of a scanned spool; payload points into the scanned buffer. */
typedef struct fs_spool_rec {
    uint64_t seq;
    uint32_t flags;
    uint32_t len;
    const char *payload;
    size_t offset; /* of its frame */
} fs_spool_rec;

/* What a scan found. */
typedef struct fs_spool_scan {
    int is_spool;          /* the magic is right */
    int header_ok;         /* magic, version and CRC are right */
    uint32_t version;      /* the header's format version */
    uint64_t base_seen;    /* from the header (0 when the header is damaged) */
    size_t n_records;      /* valid frames */
    uint64_t records_seen; /* max(base_seen, last seq + 1) */
    size_t valid_end;      /* just past the last valid frame (or the header) */
    size_t corrupt_bytes;  /* damaged bytes between valid frames (skipped) */
    size_t n_corrupt;      /* damaged regions between valid frames */
    size_t torn_bytes;     /* bytes after the last valid frame */
    size_t out_of_order;   /* valid frames whose seq is not above the previous one */
} fs_spool_scan;

/* Called for each valid frame in file order; a nonzero return stops the scan with -1. */
typedef int (*fs_spool_rec_fn)(void *arg, const fs_spool_rec *rec);

/*
 * Scan a spool file image (len bytes, borrowed). fn may be NULL. Never reads outside buf,
 * whatever it holds. Returns 0, or -1 when fn stopped it.
 */
int fs_spool_scan_buffer(const void *buf, size_t len, fs_spool_rec_fn fn, void *arg,
                         fs_spool_scan *out);

/* The 32-byte header for base_seen, into out. */
void fs_spool_header_encode(unsigned char *out, uint64_t base_seen);

/*
 * Append one frame for payload (len bytes, 1 .. FS_SPOOL_MAX_PAYLOAD) with flags to b, with
 * seq and CRC left zero: fs_spool_frames_seal fills them when the frames are written. Returns
 * 0, or -1 for a bad length (b->failed is set when out of memory).
 */
int fs_spool_frame_put(fs_strbuf *b, const char *payload, size_t len, uint32_t flags);

/*
 * Give the frames of buf (len bytes, made by fs_spool_frame_put) the seqs first_seq, +1, ...
 * and their CRCs. *n_out: frames sealed. Returns 0, or -1 when buf is not a run of frames.
 */
int fs_spool_frames_seal(unsigned char *buf, size_t len, uint64_t first_seq, size_t *n_out);

/*
 * The records to keep when at most cap may stay. recs: n records in increasing seq, those
 * with seq < base_seen being the reservoir of the last compaction. Reservoir: Algorithm R
 * continued over the later records, *rng a 64-bit generator state; window: the last cap.
 * keep (n entries, caller-allocated) receives indices into recs in increasing seq; returns
 * their number (min(n, cap)). Reentrant.
 */
size_t fs_spool_select(const fs_spool_rec *recs, size_t n, uint64_t base_seen, size_t cap,
                       fs_spool_policy policy, uint64_t *rng, size_t *keep);

/* A uniform integer in [0, bound) from *rng (splitmix64 with rejection), bound >= 1. */
uint64_t fs_spool_rand_below(uint64_t *rng, uint64_t bound);

/* Records a spool may hold beyond cap before it is compacted back to cap. */
uint64_t fs_spool_slack(uint64_t cap);

typedef struct fs_spool fs_spool;

/* What opening found and did, for the log. */
typedef struct fs_spool_recovery {
    fs_spool_scan scan;
    int created;         /* there was no file: an empty one was made */
    int truncated;       /* a torn tail was cut off */
    int rewritten;       /* damaged frames or header: rewritten without them */
    uint64_t file_bytes; /* size found on disk */
} fs_spool_recovery;

/*
 * Open (creating dir and an empty spool when missing) and recover <dir>/<name>.spool: trim a
 * torn tail, rewrite around damaged frames. Returns 0 with *out set, or -1 with a sentence in
 * err (cannot create or read, not a spool file, a newer format). Blocking file I/O.
 */
int fs_spool_open(const char *dir, const char *name, fs_spool **out, fs_spool_recovery *rec,
                  char *err, size_t errlen);

/*
 * Write sealed-to-be frames (len bytes, made by fs_spool_frame_put) at the end of the spool,
 * after giving them the next seqs. Not durable until fs_spool_sync. Returns 0, or -1 with err
 * (the file is cut back to its last synced length).
 */
int fs_spool_append(fs_spool *s, unsigned char *frames, size_t len, char *err, size_t errlen);

/*
 * fdatasync the appends since the last sync, then publish them to readers (stats,
 * snapshots). Returns 0, or -1 with err: the appends since the last sync are cut off again
 * and must be reported as not stored.
 */
int fs_spool_sync(fs_spool *s, char *err, size_t errlen);

/* Records in the file beyond cap + fs_spool_slack(cap): time to compact. Writer thread. */
int fs_spool_over(const fs_spool *s, uint64_t cap);

/*
 * Rewrite the spool with the records fs_spool_select keeps, atomically; readers keep their
 * view. Returns 0, or -1 with err (the old file stays). Writer thread.
 */
int fs_spool_compact(fs_spool *s, uint64_t cap, fs_spool_policy policy, uint64_t *rng, char *err,
                     size_t errlen);

/* Committed counts: records in the file, records ever accepted, file bytes. Any thread. */
void fs_spool_stats(fs_spool *s, uint64_t *n_records, uint64_t *records_seen, uint64_t *bytes);

/* A consistent copy of the committed records. */
typedef struct fs_spool_snapshot {
    char *buf; /* the file image */
    size_t len;
    fs_spool_rec *recs; /* n records in increasing seq, payloads in buf */
    size_t n;
    uint64_t base_seen;
    uint64_t records_seen;
} fs_spool_snapshot;

/*
 * Read the committed part of the spool (any thread; the writer carries on meanwhile).
 * Returns 0 with *out set (free with fs_spool_snapshot_free), or -1 with err.
 */
int fs_spool_snapshot_take(fs_spool *s, fs_spool_snapshot **out, char *err, size_t errlen);
void fs_spool_snapshot_free(fs_spool_snapshot *snap);

/* Close the file and free s. NULL is fine. After every reader is done. */
void fs_spool_close(fs_spool *s);

/*
 * Write data (len bytes) to path atomically: <path>.tmp, fsync, rename, fsync of the
 * directory. Returns 0, or -1 with err. Blocking file I/O.
 */
int fs_file_write_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen);

/* mkdir -p path (mode 0750). Returns 0, or -1 with err. */
int fs_mkdir_p(const char *path, char *err, size_t errlen);

#endif /* FS_SPOOL_H */
