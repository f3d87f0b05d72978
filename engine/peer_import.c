/*
 * peer_import.c: models trained elsewhere. Reads the JSON export of a ref-realnvp model
 * (bench/SPEC.md section 5: D, H, K, clamp and per block an optional permutation and three
 * linear layers [out][in]) into a flowscore model with numeric fields x0 .. x{D-1}, identity
 * preprocessing and no calibration.
 */
#include "model.h"

#include <cjson/cJSON.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static bool get_int(const cJSON *o, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
        v->valuedouble != floor(v->valuedouble) || v->valuedouble < (double)lo ||
        v->valuedouble > (double)hi) {
        return false;
    }
    *out = (int64_t)v->valuedouble;
    return true;
}

/* A float32 value from a JSON number: finite and within float range. */
static bool get_f32(const cJSON *v, float *out)
{
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > (double)FLT_MAX) {
        return false;
    }
    *out = (float)v->valuedouble;
    return true;
}

/* Copy a [rows][cols] nested array (cols 0: a flat vector of rows) into dst. */
static fs_err read_matrix(const cJSON *a, int32_t rows, int32_t cols, float *dst, const char *where,
                          fs_diag *diag)
{
    int32_t i = 0;
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != rows) {
        return fs__diag(diag, FS_ERR_SHAPE, "peer JSON: %s must have %d rows", where, rows);
    }
    for (const cJSON *r = a->child; r != NULL; r = r->next, i++) {
        if (cols == 0) {
            if (!get_f32(r, &dst[i])) {
                return fs__diag(diag, FS_ERR_NUMERIC, "peer JSON: %s[%d] is not a finite float32",
                                where, i);
            }
            continue;
        }
        int32_t j = 0;
        if (!cJSON_IsArray(r) || cJSON_GetArraySize(r) != cols) {
            return fs__diag(diag, FS_ERR_SHAPE, "peer JSON: %s[%d] must have %d values", where, i,
                            cols);
        }
        for (const cJSON *v = r->child; v != NULL; v = v->next, j++) {
            if (!get_f32(v, &dst[(size_t)i * (size_t)cols + (size_t)j])) {
                return fs__diag(diag, FS_ERR_NUMERIC,
                                "peer JSON: %s[%d][%d] is not a finite float32", where, i, j);
            }
        }
    }
    return FS_OK;
}

/* Build the spec: per block [explicit permutation if given] + affine coupling [H, H]. */
static fs_err build_spec(const cJSON *blocks, int64_t D, int64_t H, double clamp, fs_spec **out,
                         fs_diag *diag)
{
    size_t n = 0, j = 0;
    fs_spec *s;
    for (const cJSON *b = blocks->child; b != NULL; b = b->next) {
        const cJSON *perm = cJSON_GetObjectItemCaseSensitive(b, "perm");
        n += (perm != NULL && !cJSON_IsNull(perm)) ? 2 : 1;
    }
    s = fs__calloc(1, sizeof *s);
    if (s == NULL) {
        return FS_ERR_NOMEM;
    }
    s->layers = fs__calloc(n, sizeof *s->layers);
    if (s->layers == NULL) {
        fs__free(s);
        return FS_ERR_NOMEM;
    }
    s->n_layers = n;
    int k = 0;
    for (const cJSON *b = blocks->child; b != NULL; b = b->next, k++) {
        const cJSON *perm = cJSON_GetObjectItemCaseSensitive(b, "perm");
        if (perm != NULL && !cJSON_IsNull(perm)) {
            fs__layer_cfg *c = &s->layers[j++];
            int i = 0;
            c->kind = FS__LAYER_PERMUTATION;
            c->perm_source = FS__PERM_EXPLICIT;
            if (!cJSON_IsArray(perm) || cJSON_GetArraySize(perm) != D) {
                fs_spec_free(s);
                return fs__diag(diag, FS_ERR_SHAPE,
                                "peer JSON: blocks[%d].perm must list %lld indices", k,
                                (long long)D);
            }
            c->perm = fs__calloc((size_t)D, sizeof *c->perm);
            if (c->perm == NULL) {
                fs_spec_free(s);
                return FS_ERR_NOMEM;
            }
            c->n_perm = (int32_t)D;
            for (const cJSON *v = perm->child; v != NULL; v = v->next, i++) {
                if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
                    v->valuedouble < 0 || v->valuedouble >= (double)D) {
                    fs_spec_free(s);
                    return fs__diag(diag, FS_ERR_FORMAT, "peer JSON: blocks[%d].perm[%d] is bad", k,
                                    i);
                }
                c->perm[i] = (int32_t)v->valuedouble;
            }
        }
        fs__layer_cfg *c = &s->layers[j++];
        c->kind = FS__LAYER_AFFINE_COUPLING;
        c->n_hidden = 2;
        c->hidden[0] = (int32_t)H;
        c->hidden[1] = (int32_t)H;
        c->clamp = clamp;
    }
    *out = s;
    return FS_OK;
}

/* Fill params from each block's three linear layers. */
static fs_err fill_params(const cJSON *blocks, const fs__flow *f, float *params, fs_diag *diag)
{
    const cJSON *b = blocks->child;
    int k = 0;
    for (size_t li = 0; li < f->n_layers; li++) {
        const fs__layer *l = &f->layers[li];
        fs__tensor_desc desc[2 * (FS__MAX_HIDDEN + 1)];
        const cJSON *layers;
        size_t nt;
        if (l->kind != FS__LAYER_AFFINE_COUPLING) {
            continue;
        }
        layers = cJSON_GetObjectItemCaseSensitive(b, "layers");
        if (!cJSON_IsArray(layers) || cJSON_GetArraySize(layers) != 3) {
            return fs__diag(diag, FS_ERR_SHAPE, "peer JSON: blocks[%d].layers must hold 3 layers",
                            k);
        }
        nt = fs__layer_n_tensors(l);
        fs__layer_tensors(l, desc);
        const cJSON *lj = layers->child;
        for (size_t t = 0; t + 1 < nt && lj != NULL; t += 2, lj = lj->next) {
            char where[64];
            fs_err err;
            snprintf(where, sizeof where, "blocks[%d].layers[%zu].W", k, t / 2);
            err = read_matrix(cJSON_GetObjectItemCaseSensitive(lj, "W"), desc[t].rows, desc[t].cols,
                              params + l->param_offset + desc[t].offset, where, diag);
            if (err != FS_OK) {
                return err;
            }
            snprintf(where, sizeof where, "blocks[%d].layers[%zu].b", k, t / 2);
            err = read_matrix(cJSON_GetObjectItemCaseSensitive(lj, "b"), desc[t + 1].rows, 0,
                              params + l->param_offset + desc[t + 1].offset, where, diag);
            if (err != FS_OK) {
                return err;
            }
        }
        b = b->next;
        k++;
    }
    return FS_OK;
}

fs_err fs_model_import_peer_json(const char *json, size_t len, fs_model **out, fs_diag *diag)
{
    fs__model_parts p;
    cJSON *root = NULL;
    const cJSON *blocks, *clamp;
    int64_t D, H, K, d1;
    fs_err err = FS_OK;
    memset(&p, 0, sizeof p);
    fs__calib_deinit(&p.calib);
    *out = NULL;
    root = cJSON_ParseWithLengthOpts(json, len, NULL, 0);
    if (root == NULL) {
        return fs__diag(diag, FS_ERR_FORMAT, "peer JSON: not valid JSON");
    }
    blocks = cJSON_GetObjectItemCaseSensitive(root, "blocks");
    clamp = cJSON_GetObjectItemCaseSensitive(root, "clamp");
    if (!get_int(root, "D", 1, FS__MAX_DIMS, &D) || !get_int(root, "H", 1, FS__MAX_WIDTH, &H) ||
        !get_int(root, "K", 1, FS__MAX_LAYERS / 2, &K) || !get_int(root, "d1", 0, D, &d1) ||
        !cJSON_IsNumber(clamp) || !(clamp->valuedouble > 0) || !isfinite(clamp->valuedouble)) {
        err = fs__diag(diag, FS_ERR_FORMAT, "peer JSON: needs integers D, H, K, d1 and a clamp");
        goto out;
    }
    if (d1 != D / 2 || !cJSON_IsArray(blocks) || cJSON_GetArraySize(blocks) != K) {
        err = fs__diag(diag, FS_ERR_SHAPE, "peer JSON: needs d1 = floor(D/2) and K blocks");
        goto out;
    }
    err = fs_schema_create(&p.schema);
    for (int64_t j = 0; err == FS_OK && j < D; j++) {
        char name[24];
        snprintf(name, sizeof name, "x%lld", (long long)j);
        err = fs_schema_add_numeric(p.schema, name, FS_FIELD_NUMERIC, FS_TRANSFORM_NONE, 0);
    }
    if (err == FS_OK) {
        err = build_spec(blocks, D, H, clamp->valuedouble, &p.spec, diag);
    }
    if (err == FS_OK) {
        err = fs__prep_alloc(&p.prep, p.schema);
    }
    if (err == FS_OK) {
        for (size_t c = 0; c < p.prep.n_cols; c++) {
            p.prep.std[c] = 1.0; /* identity preprocessing */
        }
        p.prep.n_dims = (size_t)D;
        err = fs__prep_finish(&p.prep, diag);
    }
    if (err == FS_OK) {
        err = fs__flow_init(&p.flow, p.spec->layers, p.spec->n_layers, (int32_t)D, 0, diag);
    }
    if (err == FS_OK) {
        p.params = fs__calloc(p.flow.n_params == 0 ? 1 : p.flow.n_params, sizeof(float));
        p.buffers = fs__calloc(p.flow.n_buffers == 0 ? 1 : p.flow.n_buffers, sizeof(float));
        err = (p.params == NULL || p.buffers == NULL) ? FS_ERR_NOMEM : FS_OK;
    }
    if (err == FS_OK) {
        err = fill_params(blocks, &p.flow, p.params, diag);
    }
    if (err == FS_OK) {
        p.calib.upper_quantile = 0.99;
        p.calib.lower_quantile = 0.0;
        err = fs__calib_finish(&p.calib, diag);
    }
    if (err == FS_OK) {
        p.training_json = fs__strdup("{\"source\":\"imported ref-realnvp peer JSON\"}");
        err = p.training_json == NULL ? FS_ERR_NOMEM : FS_OK;
    }
    if (err == FS_OK) {
        err = fs__model_create(&p, out, diag);
    }
out:
    fs__model_parts_deinit(&p);
    cJSON_Delete(root);
    return err;
}
