/*
 * modelfile.c: the .fsm model file. Layout (little-endian):
 *
 *   offset 0   magic "FSMODEL\0"                          8 bytes
 *          8   format version (FS_MODEL_FORMAT_VERSION)     u32
 *         12   header length H                              u32
 *         16   blob length B                                u64
 *         24   header: JSON text (schema, spec, preprocessing, calibration, training
 *              metadata, tensor table)                      H bytes, zero-padded to 8
 *              blob: the tensors of the tensor table, each padded to 8 bytes
 *   end - 4    CRC-32 (zlib) of every byte before it        u32
 *
 * Loading checks, in order: magic, version, sizes (truncation), CRC, then the header and
 * every count, shape and value, so that no byte string can crash it or make it read out of
 * bounds; each failure has its own fs_err. Saving is atomic (temp file, fsync, rename,
 * fsync of the directory).
 */
#include "model.h"

#include <cjson/cJSON.h>
#include <zlib.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the model file reader assumes a little-endian machine"
#endif

#define FS__MAGIC        "FSMODEL"
#define FS__FIXED_HEADER 24u
#define FS__MAX_HEADER   (64u << 20)
#define FS__MAX_BLOB     ((uint64_t)16 << 30)

typedef struct blob_entry {
    const char *name;
    int is_f64;
    size_t count;
    void *data;
} blob_entry;

static size_t pad8(size_t n)
{
    return (n + 7u) & ~(size_t)7u;
}

/* The model's tensors in file order. */
static size_t blob_entries(const fs_model *m, blob_entry *e)
{
    size_t n = 0, d = m->prep.n_dims;
    e[n++] = (blob_entry){ "flow.params", 0, m->flow.n_params, m->params };
    e[n++] = (blob_entry){ "flow.buffers", 0, m->flow.n_buffers, m->buffers };
    e[n++] = (blob_entry){ "prep.mean", 1, m->prep.n_cols, m->prep.mean };
    e[n++] = (blob_entry){ "prep.std", 1, m->prep.n_cols, m->prep.std };
    if (m->prep.whiten) {
        e[n++] = (blob_entry){ "prep.chol", 1, d * d, m->prep.chol };
    }
    e[n++] = (blob_entry){ "calib.points", 1, m->calib.n_points, m->calib.points };
    return n;
}

static size_t entry_bytes(const blob_entry *e)
{
    return pad8(e->count * (e->is_f64 ? sizeof(double) : sizeof(float)));
}

/* ---- header ---- */

static bool add_number(cJSON *o, const char *k, double v)
{
    return cJSON_AddNumberToObject(o, k, v) != NULL;
}

/* A threshold as a number, or null when it is infinite (uncalibrated or disabled). */
static bool add_threshold(cJSON *o, const char *k, double v)
{
    return isfinite(v) ? add_number(o, k, v) : cJSON_AddNullToObject(o, k) != NULL;
}

static cJSON *prep_json(const fs_model *m)
{
    const fs__prep *p = &m->prep;
    cJSON *o = cJSON_CreateObject();
    cJSON *cc = cJSON_AddArrayToObject(o, "constant_columns");
    cJSON *cf = cJSON_AddArrayToObject(o, "constant_fields");
    bool ok = o != NULL && cc != NULL && cf != NULL &&
              add_number(o, "n_columns", (double)p->n_cols) &&
              cJSON_AddBoolToObject(o, "whiten", p->whiten) != NULL &&
              add_number(o, "ridge", p->ridge) && add_number(o, "log_det", p->log_det) &&
              (p->const_novelty == 0 || add_number(o, "constant_novelty", p->const_novelty));
    for (size_t c = 0; ok && c < p->n_cols; c++) {
        if (p->is_const[c]) {
            cJSON *v = cJSON_CreateNumber((double)c);
            ok = v != NULL && cJSON_AddItemToArray(cc, v);
        }
    }
    for (size_t f = 0; ok && f < m->schema->n_fields; f++) {
        bool all = true;
        for (size_t c = p->col_start[f]; c < p->col_start[f + 1]; c++) {
            all = all && p->is_const[c];
        }
        if (all) {
            cJSON *v = cJSON_CreateString(m->schema->fields[f].name);
            ok = v != NULL && cJSON_AddItemToArray(cf, v);
        }
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *calib_json(const fs__calib *c)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL && add_number(o, "rows", (double)c->n_rows) &&
              add_number(o, "points", (double)c->n_points) &&
              add_number(o, "upper_quantile", c->upper_quantile) &&
              add_number(o, "lower_quantile", c->lower_quantile) &&
              add_threshold(o, "upper_threshold", c->upper_threshold) &&
              add_threshold(o, "lower_threshold", c->lower_threshold);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *tensors_json(const fs_model *m)
{
    blob_entry e[8];
    size_t n = blob_entries(m, e), off = 0;
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a != NULL && i < n; i++) {
        cJSON *t = cJSON_CreateObject();
        if (t == NULL || !cJSON_AddItemToArray(a, t)) {
            cJSON_Delete(t);
            cJSON_Delete(a);
            return NULL;
        }
        if (cJSON_AddStringToObject(t, "name", e[i].name) == NULL ||
            cJSON_AddStringToObject(t, "dtype", e[i].is_f64 ? "f64" : "f32") == NULL ||
            !add_number(t, "count", (double)e[i].count) || !add_number(t, "offset", (double)off)) {
            cJSON_Delete(a);
            return NULL;
        }
        off += entry_bytes(&e[i]);
    }
    return a;
}

fs_err fs__model_build_header(fs_model *m, fs_diag *diag)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *training = NULL;
    char created[32];
    time_t now = time(NULL);
    struct tm tm;
    bool ok;
    if (gmtime_r(&now, &tm) == NULL ||
        strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        snprintf(created, sizeof created, "unknown");
    }
    if (m->training_json != NULL) {
        training = cJSON_Parse(m->training_json);
        if (training == NULL) {
            cJSON_Delete(root);
            return fs__diag(diag, FS_ERR_FORMAT, "training metadata is not valid JSON");
        }
    } else {
        training = cJSON_CreateNull();
    }
    ok = root != NULL && training != NULL &&
         cJSON_AddStringToObject(root, "format", "flowscore-model") != NULL &&
         add_number(root, "format_version", FS_MODEL_FORMAT_VERSION) &&
         cJSON_AddStringToObject(root, "engine_version", FS_VERSION_STRING) != NULL &&
         cJSON_AddStringToObject(root, "created", created) != NULL &&
         cJSON_AddItemToObject(root, "schema", fs__schema_json(m->schema)) &&
         cJSON_AddItemToObject(root, "spec", fs__spec_json(m->spec, &m->flow)) &&
         add_number(root, "flow_seed", (double)m->flow_seed) &&
         add_number(root, "n_dims", (double)m->prep.n_dims) &&
         add_number(root, "n_layers", (double)m->flow.n_layers) &&
         add_number(root, "n_params", (double)m->flow.n_params) &&
         add_number(root, "n_buffers", (double)m->flow.n_buffers) &&
         cJSON_AddItemToObject(root, "preprocessing", prep_json(m)) &&
         cJSON_AddItemToObject(root, "calibration", calib_json(&m->calib));
    if (ok) {
        ok = cJSON_AddItemToObject(root, "training", training);
        training = NULL;
    }
    ok = ok && cJSON_AddItemToObject(root, "tensors", tensors_json(m));
    cJSON_Delete(training);
    if (!ok) {
        cJSON_Delete(root);
        return FS_ERR_NOMEM;
    }
    return fs__json_take_text(root, &m->header_json);
}

/* ---- writing ---- */

/* A model with a non-finite parameter is never written (issue 3). */
static fs_err check_finite_params(const fs_model *m, fs_diag *diag)
{
    for (size_t i = 0; i < m->flow.n_params; i++) {
        if (!isfinite(m->params[i])) {
            return fs__diag(diag, FS_ERR_NUMERIC, "parameter %zu is not finite: not written", i);
        }
    }
    for (size_t i = 0; i < m->flow.n_buffers; i++) {
        if (!isfinite(m->buffers[i])) {
            return fs__diag(diag, FS_ERR_NUMERIC, "buffer %zu is not finite: not written", i);
        }
    }
    return FS_OK;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    memcpy(p, &v, sizeof v);
}

static void put_u64(unsigned char *p, uint64_t v)
{
    memcpy(p, &v, sizeof v);
}

fs_err fs_model_save_buffer(const fs_model *m, void **out_buf, size_t *out_len, fs_diag *diag)
{
    blob_entry e[8];
    size_t n = blob_entries(m, e);
    size_t hlen = strlen(m->header_json), blob = 0, total, off;
    unsigned char *buf;
    fs_err err;
    *out_buf = NULL;
    *out_len = 0;
    err = check_finite_params(m, diag);
    if (err != FS_OK) {
        return err;
    }
    if (hlen > FS__MAX_HEADER) {
        return fs__diag(diag, FS_ERR_SHAPE, "model header too large (%zu bytes)", hlen);
    }
    for (size_t i = 0; i < n; i++) {
        blob += entry_bytes(&e[i]);
    }
    total = FS__FIXED_HEADER + pad8(hlen) + blob + 4;
    buf = fs__calloc(1, total);
    if (buf == NULL) {
        return FS_ERR_NOMEM;
    }
    memcpy(buf, FS__MAGIC, 8);
    put_u32(buf + 8, FS_MODEL_FORMAT_VERSION);
    put_u32(buf + 12, (uint32_t)hlen);
    put_u64(buf + 16, (uint64_t)blob);
    memcpy(buf + FS__FIXED_HEADER, m->header_json, hlen);
    off = FS__FIXED_HEADER + pad8(hlen);
    for (size_t i = 0; i < n; i++) {
        size_t bytes = e[i].count * (e[i].is_f64 ? sizeof(double) : sizeof(float));
        if (bytes > 0) {
            memcpy(buf + off, e[i].data, bytes);
        }
        off += entry_bytes(&e[i]);
    }
    put_u32(buf + off, (uint32_t)crc32_z(0L, buf, off));
    *out_buf = buf;
    *out_len = total;
    return FS_OK;
}

static fs_err write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return FS_ERR_IO;
        }
        p += w;
        n -= (size_t)w;
    }
    return FS_OK;
}

/* fsync the directory holding path, so that a rename into it is durable. */
static fs_err fsync_dir_of(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    int fd;
    if (slash == NULL) {
        snprintf(dir, sizeof dir, ".");
    } else if (slash == path) {
        snprintf(dir, sizeof dir, "/");
    } else {
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return FS_ERR_IO;
    }
    if (fsync(fd) != 0 && errno != EINVAL) {
        close(fd);
        return FS_ERR_IO;
    }
    close(fd);
    return FS_OK;
}

fs_err fs_model_save(const fs_model *m, const char *path, fs_diag *diag)
{
    static _Atomic unsigned long counter;
    char tmp[4096], ebuf[128];
    void *image = NULL;
    size_t len = 0;
    int fd = -1;
    fs_err err;
    err = fs_model_save_buffer(m, &image, &len, diag);
    if (err != FS_OK) {
        return err;
    }
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%lu", path, (long)getpid(),
                         atomic_fetch_add(&counter, 1)) >= sizeof tmp) {
        fs__free(image);
        return fs__diag(diag, FS_ERR_INVALID, "path too long: %s", path);
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        err = fs__diag(diag, FS_ERR_IO, "create %s: %s", tmp,
                       fs__errno_str(errno, ebuf, sizeof ebuf));
        fs__free(image);
        return err;
    }
    err = write_all(fd, image, len);
    if (err == FS_OK && fsync(fd) != 0) {
        err = FS_ERR_IO;
    }
    if (err != FS_OK) {
        fs__diag(diag, err, "write %s: %s", tmp, fs__errno_str(errno, ebuf, sizeof ebuf));
    }
    if (close(fd) != 0 && err == FS_OK) {
        err =
            fs__diag(diag, FS_ERR_IO, "close %s: %s", tmp, fs__errno_str(errno, ebuf, sizeof ebuf));
    }
    if (err == FS_OK && rename(tmp, path) != 0) {
        err = fs__diag(diag, FS_ERR_IO, "rename %s to %s: %s", tmp, path,
                       fs__errno_str(errno, ebuf, sizeof ebuf));
    }
    if (err != FS_OK) {
        unlink(tmp);
    } else if (fsync_dir_of(path) != FS_OK) {
        err = fs__diag(diag, FS_ERR_IO, "fsync the directory of %s: %s", path,
                       fs__errno_str(errno, ebuf, sizeof ebuf));
    }
    fs__free(image);
    return err;
}

/* ---- reading ---- */

/* Where the bytes come from: a file (read with pread) or memory. */
typedef struct src {
    int fd;
    const unsigned char *buf;
    uint64_t len;
} src;

static fs_err src_read(const src *s, uint64_t off, void *dst, size_t n)
{
    if (off > s->len || n > s->len - off) {
        return FS_ERR_TRUNCATED;
    }
    if (s->buf != NULL) {
        memcpy(dst, s->buf + off, n);
        return FS_OK;
    }
    unsigned char *p = dst;
    while (n > 0) {
        ssize_t r = pread(s->fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return r == 0 ? FS_ERR_TRUNCATED : FS_ERR_IO;
        }
        p += r;
        off += (uint64_t)r;
        n -= (size_t)r;
    }
    return FS_OK;
}

/* CRC-32 of bytes [0, end) of s, in pieces (a file is never held whole in memory). */
static fs_err src_crc(const src *s, uint64_t end, uint32_t *crc)
{
    unsigned char chunk[65536];
    uLong c = crc32(0L, Z_NULL, 0);
    if (s->buf != NULL) {
        *crc = (uint32_t)crc32_z(c, s->buf, (z_size_t)end);
        return FS_OK;
    }
    for (uint64_t off = 0; off < end;) {
        size_t n = end - off < sizeof chunk ? (size_t)(end - off) : sizeof chunk;
        fs_err err = src_read(s, off, chunk, n);
        if (err != FS_OK) {
            return err;
        }
        c = crc32_z(c, chunk, n);
        off += n;
    }
    *crc = (uint32_t)c;
    return FS_OK;
}

/* A JSON number that is an integer in [0, max]. */
static bool json_count(const cJSON *o, const char *key, double max, size_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble > max || v->valuedouble != floor(v->valuedouble)) {
        return false;
    }
    *out = (size_t)v->valuedouble;
    return true;
}

static bool json_real(const cJSON *o, const char *key, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
        return false;
    }
    *out = v->valuedouble;
    return true;
}

/* Preprocessing settings from the header; arrays are read from the blob later. */
static fs_err parse_prep(const cJSON *root, fs__model_parts *p, size_t n_dims, fs_diag *diag)
{
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "preprocessing");
    const cJSON *cc = cJSON_GetObjectItemCaseSensitive(o, "constant_columns");
    const cJSON *wh = cJSON_GetObjectItemCaseSensitive(o, "whiten");
    size_t n_cols, n_const = 0;
    double ridge;
    fs_err err;
    if (!cJSON_IsObject(o) || !cJSON_IsArray(cc) || !cJSON_IsBool(wh) ||
        !json_count(o, "n_columns", (double)FS__MAX_DIMS * 64, &n_cols) ||
        !json_real(o, "ridge", &ridge)) {
        return fs__diag(diag, FS_ERR_FORMAT, "model header: bad \"preprocessing\"");
    }
    err = fs__prep_alloc(&p->prep, p->schema);
    if (err != FS_OK) {
        return err;
    }
    p->prep.ridge = ridge;
    /* Absent in files written before it: a constant column is its narrow Gaussian alone. */
    if (cJSON_GetObjectItemCaseSensitive(o, "constant_novelty") != NULL &&
        (!json_real(o, "constant_novelty", &p->prep.const_novelty) ||
         !(p->prep.const_novelty > 0 && p->prep.const_novelty <= 0.5))) {
        return fs__diag(diag, FS_ERR_FORMAT,
                        "model header: \"constant_novelty\" must be a number in (0, 0.5]");
    }
    if (n_cols != p->prep.n_cols) {
        return fs__diag(diag, FS_ERR_SHAPE,
                        "model header: %zu preprocessing columns, the schema makes %zu", n_cols,
                        p->prep.n_cols);
    }
    for (const cJSON *c = cc->child; c != NULL; c = c->next) {
        if (!cJSON_IsNumber(c) || !(c->valuedouble >= 0) ||
            c->valuedouble >= (double)p->prep.n_cols || c->valuedouble != floor(c->valuedouble) ||
            p->prep.is_const[(size_t)c->valuedouble]) {
            return fs__diag(diag, FS_ERR_FORMAT, "model header: bad constant column index");
        }
        p->prep.is_const[(size_t)c->valuedouble] = 1;
        n_const++;
    }
    p->prep.n_dims = p->prep.n_cols - n_const;
    p->prep.whiten = cJSON_IsTrue(wh);
    if (p->prep.n_dims != n_dims) {
        return fs__diag(diag, FS_ERR_SHAPE,
                        "model header: n_dims %zu, but the schema and constant columns give %zu",
                        n_dims, p->prep.n_dims);
    }
    if (p->prep.whiten) {
        p->prep.chol = fs__calloc(fs__mul_size(n_dims, n_dims), sizeof(double));
        if (p->prep.chol == NULL) {
            return FS_ERR_NOMEM;
        }
    }
    return FS_OK;
}

static fs_err parse_calib(const cJSON *root, fs__calib *c, fs_diag *diag)
{
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "calibration");
    size_t rows;
    if (!cJSON_IsObject(o) || !json_count(o, "points", FS__CALIB_MAX_POINTS, &c->n_points) ||
        !json_count(o, "rows", 9007199254740992.0, &rows) ||
        !json_real(o, "upper_quantile", &c->upper_quantile) ||
        !json_real(o, "lower_quantile", &c->lower_quantile)) {
        return fs__diag(diag, FS_ERR_FORMAT, "model header: bad \"calibration\"");
    }
    c->n_rows = (int64_t)rows;
    if (c->n_points > 0) {
        c->points = fs__calloc(c->n_points, sizeof *c->points);
        if (c->points == NULL) {
            return FS_ERR_NOMEM;
        }
    }
    return FS_OK;
}

/* Check the tensor table against the layout the header implies, then read the blob. */
static fs_err read_tensors(const cJSON *root, const src *s, uint64_t blob_off, uint64_t blob_len,
                           fs_model *view, fs_diag *diag)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "tensors");
    blob_entry e[8];
    size_t n = blob_entries(view, e), i = 0;
    uint64_t off = 0;
    if (!cJSON_IsArray(t) || (size_t)cJSON_GetArraySize(t) != n) {
        return fs__diag(diag, FS_ERR_SHAPE, "model header: expected %zu tensors", n);
    }
    for (const cJSON *o = t->child; o != NULL; o = o->next, i++) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
        const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(o, "dtype");
        size_t count, toff;
        if (!cJSON_IsString(name) || strcmp(name->valuestring, e[i].name) != 0 ||
            !cJSON_IsString(dtype) ||
            strcmp(dtype->valuestring, e[i].is_f64 ? "f64" : "f32") != 0 ||
            !json_count(o, "count", (double)FS__MAX_BLOB, &count) ||
            !json_count(o, "offset", (double)FS__MAX_BLOB, &toff)) {
            return fs__diag(diag, FS_ERR_FORMAT, "model header: tensor %zu should be %s (%s)", i,
                            e[i].name, e[i].is_f64 ? "f64" : "f32");
        }
        if (count != e[i].count || toff != off) {
            return fs__diag(diag, FS_ERR_SHAPE,
                            "model file: tensor %s has %zu values at offset %zu, the spec and "
                            "schema need %zu at %llu",
                            e[i].name, count, toff, e[i].count, (unsigned long long)off);
        }
        off += entry_bytes(&e[i]);
    }
    if (off != blob_len) {
        return fs__diag(diag, FS_ERR_SHAPE, "model file: blob is %llu bytes, tensors need %llu",
                        (unsigned long long)blob_len, (unsigned long long)off);
    }
    off = 0;
    for (i = 0; i < n; i++) {
        size_t bytes = e[i].count * (e[i].is_f64 ? sizeof(double) : sizeof(float));
        fs_err err = bytes == 0 ? FS_OK : src_read(s, blob_off + off, e[i].data, bytes);
        if (err != FS_OK) {
            return fs__diag(diag, err, "model file: reading tensor %s failed", e[i].name);
        }
        off += entry_bytes(&e[i]);
    }
    return FS_OK;
}

/* Parse the header text and read the tensors: everything after the integrity checks. */
static fs_err load_parts(const char *header, size_t hlen, const src *s, uint64_t blob_off,
                         uint64_t blob_len, fs_model **out, fs_diag *diag)
{
    fs__model_parts p;
    cJSON *root = NULL;
    const cJSON *v;
    size_t n_dims, n_params, n_buffers, flow_seed;
    fs_model view;
    fs_err err;
    memset(&p, 0, sizeof p);
    fs__calib_deinit(&p.calib);
    root = cJSON_ParseWithLengthOpts(header, hlen, NULL, 0);
    if (root == NULL) {
        return fs__diag(diag, FS_ERR_FORMAT, "model header is not valid JSON");
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsString(v) || strcmp(v->valuestring, "flowscore-model") != 0) {
        err = fs__diag(diag, FS_ERR_FORMAT, "model header: \"format\" is not flowscore-model");
        goto out;
    }
    if (!json_count(root, "n_dims", FS__MAX_DIMS, &n_dims) ||
        !json_count(root, "n_params", (double)FS__MAX_BLOB, &n_params) ||
        !json_count(root, "n_buffers", (double)FS__MAX_BLOB, &n_buffers) ||
        !json_count(root, "flow_seed", 9007199254740992.0, &flow_seed)) {
        err = fs__diag(diag, FS_ERR_FORMAT,
                       "model header: bad n_dims, n_params, n_buffers or "
                       "flow_seed");
        goto out;
    }
    p.flow_seed = flow_seed;
    err = fs__schema_from_json(cJSON_GetObjectItemCaseSensitive(root, "schema"), &p.schema, diag);
    if (err == FS_OK) {
        err = fs__spec_from_json(cJSON_GetObjectItemCaseSensitive(root, "spec"), &p.spec, diag);
    }
    if (err == FS_OK) {
        err = parse_prep(root, &p, n_dims, diag);
    }
    if (err == FS_OK) {
        err = fs__flow_init(&p.flow, p.spec->layers, p.spec->n_layers, (int32_t)n_dims, p.flow_seed,
                            diag);
        if (err == FS_ERR_INVALID) {
            err = FS_ERR_SHAPE;
        }
    }
    if (err == FS_OK && (p.flow.n_params != n_params || p.flow.n_buffers != n_buffers)) {
        err = fs__diag(diag, FS_ERR_SHAPE,
                       "model header: %zu parameters and %zu buffers, the spec needs %zu and %zu",
                       n_params, n_buffers, p.flow.n_params, p.flow.n_buffers);
    }
    if (err == FS_OK) {
        err = parse_calib(root, &p.calib, diag);
    }
    if (err == FS_OK) {
        p.params = fs__calloc(n_params == 0 ? 1 : n_params, sizeof(float));
        p.buffers = fs__calloc(n_buffers == 0 ? 1 : n_buffers, sizeof(float));
        if (p.params == NULL || p.buffers == NULL) {
            err = FS_ERR_NOMEM;
        }
    }
    if (err == FS_OK) {
        memset(&view, 0, sizeof view);
        view.prep = p.prep;
        view.flow = p.flow;
        view.params = p.params;
        view.buffers = p.buffers;
        view.calib = p.calib;
        err = read_tensors(root, s, blob_off, blob_len, &view, diag);
    }
    if (err == FS_OK) {
        err = fs__prep_finish(&p.prep, diag);
    }
    if (err == FS_OK) {
        err = fs__calib_finish(&p.calib, diag);
        if (err == FS_ERR_INVALID) {
            err = FS_ERR_FORMAT;
        }
    }
    if (err == FS_OK) {
        v = cJSON_GetObjectItemCaseSensitive(root, "training");
        if (cJSON_IsObject(v)) {
            char *t = cJSON_PrintUnformatted(v);
            p.training_json = t != NULL ? fs__strdup(t) : NULL;
            cJSON_free(t);
            if (p.training_json == NULL) {
                err = FS_ERR_NOMEM;
            }
        }
    }
    if (err == FS_OK) {
        p.header_json = fs__strndup(header, hlen);
        err = p.header_json == NULL ? FS_ERR_NOMEM : FS_OK;
    }
    if (err == FS_OK) {
        err = fs__model_create(&p, out, diag); /* checks every parameter is finite */
    }
out:
    fs__model_parts_deinit(&p);
    cJSON_Delete(root);
    return err;
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static fs_err load_src(const src *s, fs_model **out, fs_diag *diag)
{
    unsigned char fixed[FS__FIXED_HEADER], tail[4];
    uint32_t version, hlen, crc_file, crc;
    uint64_t blob_len, total;
    char *header = NULL;
    fs_err err;
    *out = NULL;
    if (s->len < 8) {
        unsigned char head[8] = { 0 };
        (void)src_read(s, 0, head, (size_t)s->len);
        if (s->len > 0 && memcmp(head, FS__MAGIC, (size_t)s->len) == 0) {
            return fs__diag(diag, FS_ERR_TRUNCATED, "model file is truncated (%llu bytes)",
                            (unsigned long long)s->len);
        }
        return fs__diag(diag, FS_ERR_MAGIC, "not a flowscore model file (too short)");
    }
    err = src_read(s, 0, fixed, s->len < FS__FIXED_HEADER ? 8 : FS__FIXED_HEADER);
    if (err != FS_OK) {
        return fs__diag(diag, err, "model file: cannot read its header");
    }
    if (memcmp(fixed, FS__MAGIC, 8) != 0) {
        return fs__diag(diag, FS_ERR_MAGIC, "not a flowscore model file (bad magic bytes)");
    }
    if (s->len < FS__FIXED_HEADER) {
        return fs__diag(diag, FS_ERR_TRUNCATED, "model file is truncated (%llu bytes)",
                        (unsigned long long)s->len);
    }
    version = get_u32(fixed + 8);
    if (version != FS_MODEL_FORMAT_VERSION) {
        return fs__diag(diag, FS_ERR_VERSION,
                        "model file format version %u; this build reads version %u", version,
                        FS_MODEL_FORMAT_VERSION);
    }
    hlen = get_u32(fixed + 12);
    blob_len = get_u64(fixed + 16);
    if (hlen == 0 || hlen > FS__MAX_HEADER || blob_len > FS__MAX_BLOB || (blob_len & 7u) != 0) {
        return fs__diag(diag, FS_ERR_FORMAT, "model file: implausible sizes (header %u, blob %llu)",
                        hlen, (unsigned long long)blob_len);
    }
    total = FS__FIXED_HEADER + pad8(hlen) + blob_len + 4;
    if (s->len < total) {
        return fs__diag(diag, FS_ERR_TRUNCATED, "model file is truncated: %llu bytes of %llu",
                        (unsigned long long)s->len, (unsigned long long)total);
    }
    if (s->len > total) {
        return fs__diag(diag, FS_ERR_FORMAT, "model file has %llu bytes after its end",
                        (unsigned long long)(s->len - total));
    }
    err = src_crc(s, total - 4, &crc);
    if (err == FS_OK) {
        err = src_read(s, total - 4, tail, 4);
    }
    if (err != FS_OK) {
        return fs__diag(diag, err, "model file: read failed");
    }
    crc_file = get_u32(tail);
    if (crc != crc_file) {
        return fs__diag(diag, FS_ERR_CHECKSUM,
                        "model file checksum mismatch (stored %08x, computed %08x)", crc_file, crc);
    }
    header = fs__malloc((size_t)hlen + 1);
    if (header == NULL) {
        return FS_ERR_NOMEM;
    }
    err = src_read(s, FS__FIXED_HEADER, header, hlen);
    if (err == FS_OK) {
        header[hlen] = '\0';
        if (memchr(header, '\0', hlen) != NULL) {
            err = fs__diag(diag, FS_ERR_FORMAT, "model header contains a NUL byte");
        } else {
            err = load_parts(header, hlen, s, FS__FIXED_HEADER + pad8(hlen), blob_len, out, diag);
        }
    }
    fs__free(header);
    return err;
}

fs_err fs_model_load_buffer(const void *buf, size_t len, fs_model **out, fs_diag *diag)
{
    src s = { -1, buf, len };
    static const unsigned char empty[1] = { 0 };
    if (buf == NULL) {
        s.buf = empty;
        s.len = 0;
    }
    return load_src(&s, out, diag);
}

fs_err fs_model_load(const char *path, fs_model **out, fs_diag *diag)
{
    struct stat st;
    char ebuf[128];
    src s;
    fs_err err;
    int fd;
    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return fs__diag(diag, FS_ERR_IO, "open %s: %s", path,
                        fs__errno_str(errno, ebuf, sizeof ebuf));
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fs__diag(diag, FS_ERR_IO, "%s is not a regular file", path);
    }
    s.fd = fd;
    s.buf = NULL;
    s.len = (uint64_t)st.st_size;
    err = load_src(&s, out, diag);
    close(fd);
    return err;
}
