/*
 * fuzz_models.h: what the request-body fuzz targets share (fuzz_request.c, fuzz_ndjson.c):
 * two small models built in the first call, and the checks of an answer body (valid UTF-8,
 * strict JSON with finite numbers). Static functions: each target includes it once.
 */
#ifndef FS_FUZZ_MODELS_H
#define FS_FUZZ_MODELS_H

#include "flowscore.h"
#include "records.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fuzz_models {
    fs_model *numeric;
    fs_model *mixed;
    fs_workspace *ws;
} fuzz_models;

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz: %s: %s\n", what, detail != NULL ? detail : "");
    abort();
}

/* A deterministic weight in [-scale, scale] (xorshift64*). */
static double next_weight(uint64_t *s, double scale)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    uint64_t r = *s * 0x2545f4914f6cdd1du;
    return ((double)(r >> 11) / 9007199254740992.0 * 2.0 - 1.0) * scale;
}

static void put_linear(fs_strbuf *b, uint64_t *s, int n_out, int n_in)
{
    double scale = 0.5 / sqrt((double)n_in);
    fs_strbuf_puts(b, "{\"W\":[");
    for (int i = 0; i < n_out; i++) {
        fs_strbuf_puts(b, i > 0 ? ",[" : "[");
        for (int j = 0; j < n_in; j++) {
            fs_strbuf_printf(b, "%s%.6f", j > 0 ? "," : "", next_weight(s, scale));
        }
        fs_strbuf_puts(b, "]");
    }
    fs_strbuf_puts(b, "],\"b\":[");
    for (int i = 0; i < n_out; i++) {
        fs_strbuf_printf(b, "%s%.6f", i > 0 ? "," : "", next_weight(s, scale));
    }
    fs_strbuf_puts(b, "]}");
}

/* A ref-realnvp export (bench/SPEC.md §5) with D = 4, H = 8, K = 3 and random weights,
 * recalibrated on a few rows so that percentile, anomaly and atypical are all live. */
static fs_model *make_numeric(void)
{
    enum { D = 4, H = 8, K = 3, N_CAL = 200 };
    static const int perms[K][D] = { { 0, 1, 2, 3 }, { 3, 1, 0, 2 }, { 2, 3, 1, 0 } };
    uint64_t s = 0x9e3779b97f4a7c15u;
    fs_strbuf b;
    fs_model *m = NULL, *cal = NULL;
    double rows[N_CAL * D];
    fs_diag dg = { { 0 } };
    fs_strbuf_init(&b, 16384);
    fs_strbuf_printf(&b,
                     "{\"model\":\"ref-realnvp\",\"D\":%d,\"H\":%d,\"K\":%d,\"d1\":%d,\"d2\":%d,"
                     "\"clamp\":2.0,\"blocks\":[",
                     D, H, K, D / 2, D - D / 2);
    for (int k = 0; k < K; k++) {
        fs_strbuf_puts(&b, k > 0 ? ",{\"perm\":" : "{\"perm\":");
        if (k == 0) {
            fs_strbuf_puts(&b, "null");
        } else {
            fs_strbuf_printf(&b, "[%d,%d,%d,%d]", perms[k][0], perms[k][1], perms[k][2],
                             perms[k][3]);
        }
        fs_strbuf_puts(&b, ",\"layers\":[");
        put_linear(&b, &s, H, D / 2);
        fs_strbuf_puts(&b, ",");
        put_linear(&b, &s, H, H);
        fs_strbuf_puts(&b, ",");
        put_linear(&b, &s, 2 * (D - D / 2), H);
        fs_strbuf_puts(&b, "]}");
    }
    fs_strbuf_puts(&b, "]}");
    if (b.failed || fs_model_import_peer_json(b.p, b.len, &m, &dg) != FS_OK) {
        die("import of the built-in ref-realnvp model failed", dg.msg);
    }
    fs_strbuf_free(&b);
    for (size_t i = 0; i < N_CAL * D; i++) {
        rows[i] = next_weight(&s, 3.0);
    }
    if (fs_model_recalibrate(m, rows, N_CAL, 0.99, 0.01, &cal, &dg) != FS_OK) {
        die("recalibration failed", dg.msg);
    }
    fs_model_unref(m);
    return cal;
}

/* A model over dur (numeric, log1p), bytes (integer), proto (categorical tcp/udp/icmp) and
 * flag (integer 0/1), trained for one epoch on 300 rows with a small spec. */
static fs_model *make_mixed(void)
{
    enum { N = 300, F = 4 };
    static const char *const levels[] = { "tcp", "udp", "icmp" };
    static const char spec_json[] = "{\"preset\":\"realnvp\",\"blocks\":2,\"hidden\":[8]}";
    uint64_t s = 0x243f6a8885a308d3u;
    fs_schema *schema = NULL;
    fs_spec *spec = NULL;
    fs_trainer *t = NULL;
    fs_model *m = NULL;
    fs_diag dg = { { 0 } };
    double *x = malloc(N * F * sizeof *x);
    fs_train_params p = fs_train_default_params();
    p.epochs = 1;
    p.batch_size = 64;
    p.seed = 1;
    if (x == NULL || fs_schema_create(&schema) != FS_OK ||
        fs_schema_add_numeric(schema, "dur", FS_FIELD_NUMERIC, FS_TRANSFORM_LOG1P, 0) != FS_OK ||
        fs_schema_add_numeric(schema, "bytes", FS_FIELD_INTEGER, FS_TRANSFORM_NONE, 0) != FS_OK ||
        fs_schema_add_categorical(schema, "proto", levels, 3) != FS_OK ||
        fs_schema_add_numeric(schema, "flag", FS_FIELD_INTEGER, FS_TRANSFORM_NONE, 0) != FS_OK ||
        fs_spec_parse_json(spec_json, sizeof spec_json - 1, &spec, &dg) != FS_OK) {
        die("building the mixed schema failed", dg.msg);
    }
    for (size_t i = 0; i < N; i++) {
        x[i * F + 0] = fabs(next_weight(&s, 3.0));
        x[i * F + 1] = floor(40.0 + fabs(next_weight(&s, 20000.0)));
        x[i * F + 2] = (double)(i % 3);
        x[i * F + 3] = (double)(i % 2);
    }
    if (fs_trainer_create(schema, spec, &p, x, N, &t, &dg) != FS_OK ||
        fs_trainer_fit(t, NULL, NULL, &dg) != FS_OK || fs_trainer_model(t, &m, &dg) != FS_OK) {
        die("training the mixed model failed", dg.msg);
    }
    fs_trainer_free(t);
    fs_spec_free(spec);
    fs_schema_free(schema);
    free(x);
    return m;
}

static fuzz_models *models(void)
{
    static fuzz_models fm;
    if (fm.ws == NULL) {
        fm.numeric = make_numeric();
        fm.mixed = make_mixed();
        if (fs_workspace_create(&fm.ws) != FS_OK) {
            die("workspace", NULL);
        }
    }
    return &fm;
}

/* Whether s (n bytes) is well-formed UTF-8 (RFC 3629: no overlongs, surrogates or > U+10FFFF). */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        unsigned lo = 0x80, hi = 0xbf;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            lo = c == 0xe0 ? 0xa0 : 0x80;
            hi = c == 0xed ? 0x9f : 0xbf;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            lo = c == 0xf0 ? 0x90 : 0x80;
            hi = c == 0xf4 ? 0x8f : 0xbf;
        } else {
            return 0;
        }
        if (i + len > n || s[i + 1] < lo || s[i + 1] > hi) {
            return 0;
        }
        for (size_t k = 2; k < len; k++) {
            if (s[i + k] < 0x80 || s[i + k] > 0xbf) {
                return 0;
            }
        }
        i += len;
    }
    return 1;
}

/* Every number in the tree is finite (cJSON reads 1e999 as inf; we must never print one). */
static int all_finite(const cJSON *v)
{
    if (cJSON_IsNumber(v) && !isfinite(v->valuedouble)) {
        return 0;
    }
    for (const cJSON *c = v->child; c != NULL; c = c->next) {
        if (!all_finite(c)) {
            return 0;
        }
    }
    return 1;
}

#endif /* FS_FUZZ_MODELS_H */
