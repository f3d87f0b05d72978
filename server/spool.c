/*
 * spool.c: a spool file on disk (spool.h): open with recovery, append, fdatasync, compact,
 * consistent snapshots for the trainer, and atomic small-file writes.
 */
#include "spool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FS_SPOOL_PATH_MAX (FS_CONFIG_PATH_MAX + 96)

struct fs_spool {
    char path[FS_SPOOL_PATH_MAX];
    char dir[FS_CONFIG_PATH_MAX];
    int fd;             /* writer; swapped under lock (readers dup it under lock) */
    uint64_t write_end; /* writer: bytes written, synced or not */
    uint64_t next_seq;  /* writer: seq of the next record appended */
    uint64_t pending;   /* writer: records written since the last sync */
    pthread_mutex_t lock;
    uint64_t committed_len; /* guarded by lock: bytes known to be on disk */
    uint64_t n_records;     /* guarded by lock */
    uint64_t records_seen;  /* guarded by lock */
    uint64_t base_seen;     /* guarded by lock */
};

static int sys_fail(char *err, size_t errlen, const char *what, const char *path)
{
    char eb[128];
    int e = errno;
    snprintf(err, errlen, "%s %.300s: %s", what, path,
             strerror_r(e, eb, sizeof eb) == 0 ? eb : "error");
    return -1;
}

int fs_mkdir_p(const char *path, char *err, size_t errlen)
{
    char tmp[FS_SPOOL_PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp) {
        snprintf(err, errlen, "bad directory path '%.300s'", path);
        return -1;
    }
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0') {
            continue;
        }
        char c = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0750) != 0 && errno != EEXIST) {
            return sys_fail(err, errlen, "cannot create directory", tmp);
        }
        tmp[i] = c;
    }
    return 0;
}

/* fsync a directory so that a rename or a new file in it is durable. */
static int sync_dir(const char *dir, char *err, size_t errlen)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return sys_fail(err, errlen, "cannot open directory", dir);
    }
    int rc = fsync(fd);
    if (rc != 0) {
        sys_fail(err, errlen, "cannot fsync directory", dir);
    }
    close(fd);
    return rc == 0 ? 0 : -1;
}

static void dir_of(const char *path, char *dir, size_t len)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        snprintf(dir, len, ".");
    } else if (slash == path) {
        snprintf(dir, len, "/");
    } else {
        snprintf(dir, len, "%.*s", (int)(slash - path), path);
    }
}

static int write_all(int fd, const void *data, size_t len, uint64_t off)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = pwrite(fd, p, len, (off_t)off);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            if (w == 0) {
                errno = EIO;
            }
            return -1;
        }
        p += w;
        len -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* len bytes from offset 0 into a malloc'd buffer (len + 1 bytes). NULL with errno set. */
static char *read_all(int fd, size_t len)
{
    char *buf = malloc(len + 1);
    size_t got = 0;
    if (buf == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    while (got < len) {
        ssize_t r = pread(fd, buf + got, len - got, (off_t)got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            if (r == 0) {
                errno = EIO; /* shorter than fstat said: someone else truncated it */
            }
            free(buf);
            return NULL;
        }
        got += (size_t)r;
    }
    return buf;
}

int fs_file_write_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen)
{
    char tmp[FS_SPOOL_PATH_MAX + 8], dir[FS_SPOOL_PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        snprintf(err, errlen, "path too long: %.300s", path);
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        return sys_fail(err, errlen, "cannot create", tmp);
    }
    if (write_all(fd, data, len, 0) != 0 || fsync(fd) != 0) {
        sys_fail(err, errlen, "cannot write", tmp);
        close(fd);
        unlink(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        sys_fail(err, errlen, "cannot rename into place", path);
        unlink(tmp);
        return -1;
    }
    dir_of(path, dir, sizeof dir);
    return sync_dir(dir, err, errlen);
}

/* Write a spool of the given records (raw frames copied from buf) to s->path atomically. */
static int rewrite(fs_spool *s, const char *buf, const fs_spool_rec *recs, const size_t *idx,
                   size_t n, uint64_t base_seen, char *err, size_t errlen)
{
    fs_strbuf b;
    unsigned char header[FS_SPOOL_HEADER_BYTES];
    size_t total = FS_SPOOL_HEADER_BYTES;
    for (size_t i = 0; i < n; i++) {
        total += FS_SPOOL_FRAME_BYTES + recs[idx != NULL ? idx[i] : i].len;
    }
    fs_strbuf_init(&b, total + 1);
    fs_spool_header_encode(header, base_seen);
    fs_strbuf_put(&b, (const char *)header, sizeof header);
    for (size_t i = 0; i < n; i++) {
        const fs_spool_rec *r = &recs[idx != NULL ? idx[i] : i];
        fs_strbuf_put(&b, buf + r->offset, FS_SPOOL_FRAME_BYTES + r->len);
    }
    if (b.failed) {
        snprintf(err, errlen, "out of memory rewriting %.300s", s->path);
        fs_strbuf_free(&b);
        return -1;
    }
    int rc = fs_file_write_atomic(s->path, b.p, b.len, err, errlen);
    fs_strbuf_free(&b);
    return rc;
}

static int reopen(fs_spool *s, char *err, size_t errlen)
{
    int fd = open(s->path, O_RDWR | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        sys_fail(err, errlen, "cannot open", s->path);
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    pthread_mutex_lock(&s->lock);
    int old = s->fd;
    s->fd = fd;
    s->committed_len = (uint64_t)st.st_size;
    pthread_mutex_unlock(&s->lock);
    s->write_end = (uint64_t)st.st_size;
    if (old >= 0) {
        close(old);
    }
    return 0;
}

/* Collect the records of a scan into an array (scan callback). */
typedef struct rec_list {
    fs_spool_rec *recs;
    size_t n, cap;
} rec_list;

static int collect(void *arg, const fs_spool_rec *rec)
{
    rec_list *l = arg;
    if (l->n == l->cap) {
        size_t nc = l->cap == 0 ? 256 : l->cap * 2;
        fs_spool_rec *r = realloc(l->recs, nc * sizeof *r);
        if (r == NULL) {
            return -1;
        }
        l->recs = r;
        l->cap = nc;
    }
    l->recs[l->n++] = *rec;
    return 0;
}

/* Recover an existing file: fd is open, buf its image (len bytes). */
static int recover(fs_spool *s, const char *buf, size_t len, fs_spool_recovery *rec, char *err,
                   size_t errlen)
{
    rec_list l = { NULL, 0, 0 };
    fs_spool_scan *sc = &rec->scan;
    int rc = -1;
    if (fs_spool_scan_buffer(buf, len, collect, &l, sc) != 0) {
        snprintf(err, errlen, "out of memory reading %.300s", s->path);
        goto out;
    }
    if (!sc->is_spool && len >= 8) {
        snprintf(err, errlen, "%.300s is not a flowscore spool file (bad magic): move it away",
                 s->path);
        goto out;
    }
    if (sc->is_spool && sc->version > FS_SPOOL_FORMAT_VERSION) {
        snprintf(err, errlen, "%.300s has spool format version %u; this build reads %d", s->path,
                 sc->version, FS_SPOOL_FORMAT_VERSION);
        goto out;
    }
    s->base_seen = sc->base_seen;
    s->records_seen = sc->records_seen;
    s->n_records = sc->n_records;
    if (!sc->header_ok || sc->n_corrupt > 0 || sc->out_of_order > 0) {
        /* Keep every frame that checks; a damaged header loses only the count of records
         * that the reservoir dropped before it. */
        if (rewrite(s, buf, l.recs, NULL, l.n, sc->base_seen, err, errlen) != 0 ||
            reopen(s, err, errlen) != 0) {
            goto out;
        }
        rec->rewritten = 1;
    } else if (sc->torn_bytes > 0) {
        if (ftruncate(s->fd, (off_t)sc->valid_end) != 0 || fsync(s->fd) != 0) {
            sys_fail(err, errlen, "cannot trim the torn tail of", s->path);
            goto out;
        }
        s->committed_len = s->write_end = sc->valid_end;
        rec->truncated = 1;
    }
    rc = 0;
out:
    free(l.recs);
    return rc;
}

int fs_spool_open(const char *dir, const char *name, fs_spool **out, fs_spool_recovery *rec,
                  char *err, size_t errlen)
{
    fs_spool *s = calloc(1, sizeof *s);
    char *buf = NULL;
    struct stat st;
    int rc = -1;
    *out = NULL;
    memset(rec, 0, sizeof *rec);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->fd = -1;
    pthread_mutex_init(&s->lock, NULL);
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    if (snprintf(s->path, sizeof s->path, "%s/%s.spool", dir, name) >= (int)sizeof s->path) {
        snprintf(err, errlen, "spool path too long under %.300s", dir);
        goto out;
    }
    if (fs_mkdir_p(dir, err, errlen) != 0) {
        goto out;
    }
    if (access(s->path, F_OK) != 0) {
        unsigned char header[FS_SPOOL_HEADER_BYTES];
        fs_spool_header_encode(header, 0);
        if (fs_file_write_atomic(s->path, header, sizeof header, err, errlen) != 0) {
            goto out;
        }
        rec->created = 1;
    }
    if (reopen(s, err, errlen) != 0) {
        goto out;
    }
    if (fstat(s->fd, &st) != 0) {
        sys_fail(err, errlen, "cannot stat", s->path);
        goto out;
    }
    rec->file_bytes = (uint64_t)st.st_size;
    buf = read_all(s->fd, (size_t)st.st_size);
    if (buf == NULL) {
        sys_fail(err, errlen, "cannot read", s->path);
        goto out;
    }
    if (recover(s, buf, (size_t)st.st_size, rec, err, errlen) != 0) {
        goto out;
    }
    s->next_seq = s->records_seen;
    *out = s;
    s = NULL;
    rc = 0;
out:
    free(buf);
    fs_spool_close(s);
    return rc;
}

int fs_spool_append(fs_spool *s, unsigned char *frames, size_t len, char *err, size_t errlen)
{
    size_t n = 0;
    if (fs_spool_frames_seal(frames, len, s->next_seq, &n) != 0) {
        snprintf(err, errlen, "malformed frames for %.300s", s->path);
        return -1;
    }
    if (write_all(s->fd, frames, len, s->write_end) != 0) {
        sys_fail(err, errlen, "cannot append to", s->path);
        /* Cut a partial write off now: the next append must not follow garbage. */
        if (ftruncate(s->fd, (off_t)s->write_end) != 0) {
            /* The tail is trimmed at the next open anyway. */
        }
        return -1;
    }
    s->write_end += len;
    s->next_seq += n;
    s->pending += n;
    return 0;
}

int fs_spool_sync(fs_spool *s, char *err, size_t errlen)
{
    if (s->pending == 0) {
        return 0;
    }
    if (fdatasync(s->fd) != 0) {
        sys_fail(err, errlen, "cannot fdatasync", s->path);
        /* After a failed fsync the page cache may not match the disk: drop what was not
         * acknowledged and report it as not stored. */
        pthread_mutex_lock(&s->lock);
        uint64_t keep = s->committed_len, seen = s->records_seen;
        pthread_mutex_unlock(&s->lock);
        if (ftruncate(s->fd, (off_t)keep) == 0) {
            s->write_end = keep;
            s->next_seq = seen;
        }
        s->pending = 0;
        return -1;
    }
    pthread_mutex_lock(&s->lock);
    s->committed_len = s->write_end;
    s->n_records += s->pending;
    s->records_seen = s->next_seq;
    pthread_mutex_unlock(&s->lock);
    s->pending = 0;
    return 0;
}

int fs_spool_over(const fs_spool *s, uint64_t cap)
{
    /* The writer is the only thread that changes n_records: no lock needed to read it here. */
    return s->n_records > cap + fs_spool_slack(cap);
}

int fs_spool_compact(fs_spool *s, uint64_t cap, fs_spool_policy policy, uint64_t *rng, char *err,
                     size_t errlen)
{
    fs_spool_snapshot *snap = NULL;
    size_t *keep = NULL;
    int rc = -1;
    if (s->pending > 0) {
        snprintf(err, errlen, "compaction of %.300s with unsynced appends", s->path);
        return -1;
    }
    if (fs_spool_snapshot_take(s, &snap, err, errlen) != 0) {
        return -1;
    }
    keep = malloc((snap->n > 0 ? snap->n : 1) * sizeof *keep);
    if (keep == NULL) {
        snprintf(err, errlen, "out of memory compacting %.300s", s->path);
        goto out;
    }
    size_t k =
        fs_spool_select(snap->recs, snap->n, snap->base_seen, (size_t)cap, policy, rng, keep);
    /* Every record kept is now the reservoir (or window) of the whole stream seen so far. */
    if (rewrite(s, snap->buf, snap->recs, keep, k, snap->records_seen, err, errlen) != 0 ||
        reopen(s, err, errlen) != 0) {
        goto out;
    }
    pthread_mutex_lock(&s->lock);
    s->n_records = k;
    s->base_seen = snap->records_seen;
    pthread_mutex_unlock(&s->lock);
    rc = 0;
out:
    free(keep);
    fs_spool_snapshot_free(snap);
    return rc;
}

void fs_spool_stats(fs_spool *s, uint64_t *n_records, uint64_t *records_seen, uint64_t *bytes)
{
    pthread_mutex_lock(&s->lock);
    *n_records = s->n_records;
    *records_seen = s->records_seen;
    *bytes = s->committed_len;
    pthread_mutex_unlock(&s->lock);
}

int fs_spool_snapshot_take(fs_spool *s, fs_spool_snapshot **out, char *err, size_t errlen)
{
    fs_spool_snapshot *snap = calloc(1, sizeof *snap);
    rec_list l = { NULL, 0, 0 };
    fs_spool_scan sc;
    *out = NULL;
    if (snap == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_lock(&s->lock);
    int fd = dup(s->fd); /* our own handle on this inode: a compaction may replace the file */
    uint64_t len = s->committed_len;
    snap->records_seen = s->records_seen;
    pthread_mutex_unlock(&s->lock);
    if (fd < 0) {
        free(snap);
        return sys_fail(err, errlen, "cannot dup the descriptor of", s->path);
    }
    snap->buf = read_all(fd, (size_t)len);
    close(fd);
    if (snap->buf == NULL) {
        sys_fail(err, errlen, "cannot read", s->path);
        fs_spool_snapshot_free(snap);
        return -1;
    }
    snap->len = (size_t)len;
    if (fs_spool_scan_buffer(snap->buf, snap->len, collect, &l, &sc) != 0) {
        free(l.recs);
        fs_spool_snapshot_free(snap);
        snprintf(err, errlen, "out of memory reading %.300s", s->path);
        return -1;
    }
    snap->recs = l.recs;
    snap->n = l.n;
    snap->base_seen = sc.base_seen;
    *out = snap;
    return 0;
}

void fs_spool_snapshot_free(fs_spool_snapshot *snap)
{
    if (snap == NULL) {
        return;
    }
    free(snap->buf);
    free(snap->recs);
    free(snap);
}

void fs_spool_close(fs_spool *s)
{
    if (s == NULL) {
        return;
    }
    if (s->fd >= 0) {
        close(s->fd);
    }
    pthread_mutex_destroy(&s->lock);
    free(s);
}
