/* spec.c: architectures as JSON (a list of layers, or a preset with overrides). */
#include "model.h"

#include <cjson/cJSON.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#define FS__PRESET_MAX_BLOCKS 512

void fs__layer_cfg_deinit(fs__layer_cfg *c)
{
    fs__free(c->perm);
    c->perm = NULL;
    c->n_perm = 0;
}

void fs_spec_free(fs_spec *spec)
{
    if (spec == NULL) {
        return;
    }
    for (size_t i = 0; i < spec->n_layers; i++) {
        fs__layer_cfg_deinit(&spec->layers[i]);
    }
    fs__free(spec->layers);
    fs__free(spec);
}

size_t fs_spec_n_layers(const fs_spec *spec)
{
    return spec->n_layers;
}

static fs_err spec_alloc(size_t n, fs_spec **out)
{
    fs_spec *s = fs__calloc(1, sizeof *s);
    *out = NULL;
    if (s == NULL) {
        return FS_ERR_NOMEM;
    }
    s->layers = fs__calloc(n == 0 ? 1 : n, sizeof *s->layers);
    if (s->layers == NULL) {
        fs__free(s);
        return FS_ERR_NOMEM;
    }
    s->n_layers = n;
    *out = s;
    return FS_OK;
}

fs_err fs__spec_copy(const fs_spec *src, fs_spec **out)
{
    fs_spec *s = NULL;
    fs_err err = spec_alloc(src->n_layers, &s);
    *out = NULL;
    if (err != FS_OK) {
        return err;
    }
    for (size_t i = 0; i < src->n_layers; i++) {
        s->layers[i] = src->layers[i];
        s->layers[i].perm = NULL;
        if (src->layers[i].perm != NULL) {
            s->layers[i].perm = fs__calloc((size_t)src->layers[i].n_perm, sizeof(int32_t));
            if (s->layers[i].perm == NULL) {
                s->layers[i].n_perm = 0;
                fs_spec_free(s);
                return FS_ERR_NOMEM;
            }
            memcpy(s->layers[i].perm, src->layers[i].perm,
                   (size_t)src->layers[i].n_perm * sizeof(int32_t));
        }
    }
    *out = s;
    return FS_OK;
}

static void cfg_defaults(fs__layer_cfg *c, fs__layer_kind kind)
{
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->n_hidden = 2;
    c->hidden[0] = 128;
    c->hidden[1] = 128;
    c->clamp = 2.0;
    c->n_reflections = 4;
    c->momentum = 0.1;
    c->eps = 1e-5;
    c->alpha = 0.1;
}

/*
 * The ref-realnvp stack of bench/SPEC.md: blocks k = 0..K-1 of [numpy permutation
 * default_rng(1000 + k) when k >= 1, affine coupling with the given subnet and clamp].
 */
static fs_err preset_realnvp(int32_t blocks, const int32_t *hidden, int32_t n_hidden, double clamp,
                             fs_spec **out)
{
    size_t n = (size_t)(2 * blocks - 1);
    fs_spec *s = NULL;
    fs_err err = spec_alloc(n, &s);
    size_t j = 0;
    *out = NULL;
    if (err != FS_OK) {
        return err;
    }
    for (int32_t k = 0; k < blocks; k++) {
        if (k >= 1) {
            cfg_defaults(&s->layers[j], FS__LAYER_PERMUTATION);
            s->layers[j].perm_source = FS__PERM_NUMPY;
            s->layers[j].perm_seed = 1000u + (uint64_t)k;
            j++;
        }
        cfg_defaults(&s->layers[j], FS__LAYER_AFFINE_COUPLING);
        s->layers[j].n_hidden = n_hidden;
        for (int32_t h = 0; h < n_hidden; h++) {
            s->layers[j].hidden[h] = hidden[h];
        }
        s->layers[j].clamp = clamp;
        j++;
    }
    *out = s;
    return FS_OK;
}

fs_err fs_spec_preset(const char *name, fs_spec **out, fs_diag *diag)
{
    static const int32_t h128[2] = { 128, 128 };
    *out = NULL;
    if (strcmp(name, "realnvp") == 0) {
        return preset_realnvp(8, h128, 2, 2.0, out);
    }
    if (strcmp(name, "default") == 0) {
        /* chosen by measurement across ../shared/data (README, "Defaults") */
        return preset_realnvp(8, h128, 2, 2.0, out);
    }
    return fs__diag(diag, FS_ERR_INVALID, "unknown preset \"%s\" (realnvp, default)", name);
}

/* ---- JSON ---- */

static const char *const kind_keys[FS__LAYER__COUNT][6] = {
    [FS__LAYER_AFFINE_COUPLING] = { "hidden", "clamp", "split", NULL },
    [FS__LAYER_ADDITIVE_COUPLING] = { "hidden", "split", NULL },
    [FS__LAYER_PERMUTATION] = { "seed", "numpy_seed", "reverse", "perm", NULL },
    [FS__LAYER_HOUSEHOLDER] = { "reflections", NULL },
    [FS__LAYER_ACTNORM] = { NULL },
    [FS__LAYER_BATCHNORM] = { "momentum", "eps", NULL },
    [FS__LAYER_LEAKY_RELU] = { "alpha", NULL },
};

static bool kind_from_name(const char *name, fs__layer_kind *kind)
{
    for (int k = 0; k < FS__LAYER__COUNT; k++) {
        if (strcmp(name, fs__layer_kind_name((fs__layer_kind)k)) == 0) {
            *kind = (fs__layer_kind)k;
            return true;
        }
    }
    return false;
}

/* A JSON number that is an integer in [lo, hi]. */
static bool json_int(const cJSON *v, double lo, double hi, int64_t *out)
{
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
        v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi) {
        return false;
    }
    *out = (int64_t)v->valuedouble;
    return true;
}

static fs_err parse_hidden(const cJSON *v, fs__layer_cfg *c, const char *where, fs_diag *diag)
{
    int n = cJSON_GetArraySize(v);
    if (!cJSON_IsArray(v) || n > FS__MAX_HIDDEN) {
        return fs__diag(diag, FS_ERR_FORMAT,
                        "spec: %s: \"hidden\" must be an array of at most %d widths", where,
                        FS__MAX_HIDDEN);
    }
    c->n_hidden = 0;
    for (const cJSON *w = v->child; w != NULL; w = w->next) {
        int64_t width;
        if (!json_int(w, 1, FS__MAX_WIDTH, &width)) {
            return fs__diag(diag, FS_ERR_FORMAT,
                            "spec: %s: hidden widths must be integers in 1..%d", where,
                            FS__MAX_WIDTH);
        }
        c->hidden[c->n_hidden++] = (int32_t)width;
    }
    return FS_OK;
}

static fs_err parse_layer(const cJSON *o, size_t index, fs__layer_cfg *c, fs_diag *diag)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
    fs__layer_kind kind;
    char where[48];
    int64_t iv;
    fs_err err;
    snprintf(where, sizeof where, "layers[%zu]", index);
    if (!cJSON_IsObject(o) || !cJSON_IsString(type)) {
        return fs__diag(diag, FS_ERR_FORMAT, "spec: %s needs a string \"type\"", where);
    }
    if (!kind_from_name(type->valuestring, &kind)) {
        return fs__diag(diag, FS_ERR_FORMAT,
                        "spec: %s: unknown type \"%s\" (affine_coupling, additive_coupling, "
                        "permutation, householder, actnorm, batchnorm, leaky_relu)",
                        where, type->valuestring);
    }
    cfg_defaults(c, kind);
    if (kind == FS__LAYER_PERMUTATION) {
        c->perm_source = FS__PERM_SEED;
        c->perm_seed = index;
    }
    for (const cJSON *k = o->child; k != NULL; k = k->next) {
        bool ok = strcmp(k->string, "type") == 0;
        for (size_t i = 0; !ok && kind_keys[kind][i] != NULL; i++) {
            ok = strcmp(k->string, kind_keys[kind][i]) == 0;
        }
        if (!ok) {
            return fs__diag(diag, FS_ERR_FORMAT, "spec: %s (%s): unknown key \"%s\"", where,
                            type->valuestring, k->string);
        }
        if (strcmp(k->string, "hidden") == 0) {
            err = parse_hidden(k, c, where, diag);
            if (err != FS_OK) {
                return err;
            }
        } else if (strcmp(k->string, "clamp") == 0) {
            if (!cJSON_IsNumber(k) || !(k->valuedouble > 0.0) || k->valuedouble > 50.0) {
                return fs__diag(diag, FS_ERR_FORMAT, "spec: %s: \"clamp\" must be in (0, 50]",
                                where);
            }
            c->clamp = k->valuedouble;
        } else if (strcmp(k->string, "split") == 0) {
            if (!json_int(k, 0, FS__MAX_DIMS, &iv)) {
                return fs__diag(diag, FS_ERR_FORMAT, "spec: %s: \"split\" must be an integer",
                                where);
            }
            c->split = (int32_t)iv;
        } else if (strcmp(k->string, "seed") == 0 || strcmp(k->string, "numpy_seed") == 0) {
            if (!json_int(k, 0, 9007199254740992.0, &iv)) {
                return fs__diag(diag, FS_ERR_FORMAT,
                                "spec: %s: \"%s\" must be a non-negative integer", where,
                                k->string);
            }
            c->perm_seed = (uint64_t)iv;
            c->perm_source = strcmp(k->string, "seed") == 0 ? FS__PERM_SEED : FS__PERM_NUMPY;
        } else if (strcmp(k->string, "reverse") == 0) {
            if (!cJSON_IsBool(k)) {
                return fs__diag(diag, FS_ERR_FORMAT, "spec: %s: \"reverse\" must be a boolean",
                                where);
            }
            if (cJSON_IsTrue(k)) {
                c->perm_source = FS__PERM_REVERSE;
            }
        } else if (strcmp(k->string, "perm") == 0) {
            int n = cJSON_GetArraySize(k);
            if (!cJSON_IsArray(k) || n < 1 || n > FS__MAX_DIMS) {
                return fs__diag(diag, FS_ERR_FORMAT,
                                "spec: %s: \"perm\" must be an array of 1..%d indices", where,
                                FS__MAX_DIMS);
            }
            c->perm = fs__calloc((size_t)n, sizeof *c->perm);
            if (c->perm == NULL) {
                return FS_ERR_NOMEM;
            }
            c->n_perm = n;
            int j = 0;
            for (const cJSON *e = k->child; e != NULL; e = e->next, j++) {
                if (!json_int(e, 0, n - 1, &iv)) {
                    return fs__diag(diag, FS_ERR_FORMAT,
                                    "spec: %s: perm[%d] must be an integer in 0..%d", where, j,
                                    n - 1);
                }
                c->perm[j] = (int32_t)iv;
            }
            c->perm_source = FS__PERM_EXPLICIT;
        } else if (strcmp(k->string, "reflections") == 0) {
            if (!json_int(k, 1, FS__MAX_REFLECTIONS, &iv)) {
                return fs__diag(diag, FS_ERR_FORMAT,
                                "spec: %s: \"reflections\" must be an integer in 1..%d", where,
                                FS__MAX_REFLECTIONS);
            }
            c->n_reflections = (int32_t)iv;
        } else if (strcmp(k->string, "momentum") == 0) {
            if (!cJSON_IsNumber(k) || !(k->valuedouble > 0.0 && k->valuedouble <= 1.0)) {
                return fs__diag(diag, FS_ERR_FORMAT, "spec: %s: \"momentum\" must be in (0, 1]",
                                where);
            }
            c->momentum = k->valuedouble;
        } else if (strcmp(k->string, "eps") == 0) {
            if (!cJSON_IsNumber(k) || !(k->valuedouble > 0.0 && k->valuedouble < 1.0)) {
                return fs__diag(diag, FS_ERR_FORMAT, "spec: %s: \"eps\" must be in (0, 1)", where);
            }
            c->eps = k->valuedouble;
        } else if (strcmp(k->string, "alpha") == 0) {
            if (!cJSON_IsNumber(k) || !(k->valuedouble > 0.0 && k->valuedouble <= 1.0)) {
                return fs__diag(diag, FS_ERR_FORMAT, "spec: %s: \"alpha\" must be in (0, 1]",
                                where);
            }
            c->alpha = k->valuedouble;
        }
    }
    return FS_OK;
}

static fs_err parse_preset(const cJSON *root, fs_spec **out, fs_diag *diag)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "preset");
    fs__layer_cfg tmp;
    int64_t blocks = 8;
    fs_err err;
    cfg_defaults(&tmp, FS__LAYER_AFFINE_COUPLING);
    if (!cJSON_IsString(name) ||
        (strcmp(name->valuestring, "realnvp") != 0 && strcmp(name->valuestring, "default") != 0)) {
        return fs__diag(diag, FS_ERR_FORMAT, "spec: \"preset\" must be \"realnvp\" or \"default\"");
    }
    for (const cJSON *k = root->child; k != NULL; k = k->next) {
        if (strcmp(k->string, "preset") == 0) {
            continue;
        }
        if (strcmp(k->string, "blocks") == 0) {
            if (!json_int(k, 1, FS__PRESET_MAX_BLOCKS, &blocks)) {
                return fs__diag(diag, FS_ERR_FORMAT, "spec: \"blocks\" must be an integer in 1..%d",
                                FS__PRESET_MAX_BLOCKS);
            }
        } else if (strcmp(k->string, "hidden") == 0) {
            err = parse_hidden(k, &tmp, "preset", diag);
            if (err != FS_OK) {
                return err;
            }
        } else if (strcmp(k->string, "clamp") == 0) {
            if (!cJSON_IsNumber(k) || !(k->valuedouble > 0.0) || k->valuedouble > 50.0) {
                return fs__diag(diag, FS_ERR_FORMAT, "spec: \"clamp\" must be in (0, 50]");
            }
            tmp.clamp = k->valuedouble;
        } else {
            return fs__diag(diag, FS_ERR_FORMAT,
                            "spec: unknown key \"%s\" beside \"preset\" (blocks, hidden, clamp)",
                            k->string);
        }
    }
    return preset_realnvp((int32_t)blocks, tmp.hidden, tmp.n_hidden, tmp.clamp, out);
}

fs_err fs__spec_from_json(const struct cJSON *root, fs_spec **out, fs_diag *diag)
{
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
    fs_spec *s = NULL;
    fs_err err = FS_OK;
    size_t i = 0, n;
    *out = NULL;
    if (!cJSON_IsObject(root)) {
        return fs__diag(diag, FS_ERR_FORMAT, "spec: must be a JSON object");
    }
    if (cJSON_GetObjectItemCaseSensitive(root, "preset") != NULL) {
        if (layers != NULL) {
            return fs__diag(diag, FS_ERR_FORMAT, "spec: give \"preset\" or \"layers\", not both");
        }
        return parse_preset(root, out, diag);
    }
    for (const cJSON *k = root->child; k != NULL; k = k->next) {
        if (strcmp(k->string, "layers") != 0) {
            return fs__diag(diag, FS_ERR_FORMAT, "spec: unknown key \"%s\" (layers or preset)",
                            k->string);
        }
    }
    n = (size_t)cJSON_GetArraySize(layers);
    if (!cJSON_IsArray(layers) || n == 0 || n > FS__MAX_LAYERS) {
        return fs__diag(diag, FS_ERR_FORMAT, "spec: \"layers\" must be an array of 1..%d layers",
                        FS__MAX_LAYERS);
    }
    err = spec_alloc(n, &s);
    for (const cJSON *l = layers->child; err == FS_OK && l != NULL; l = l->next, i++) {
        err = parse_layer(l, i, &s->layers[i], diag);
    }
    if (err != FS_OK) {
        fs_spec_free(s);
        return err;
    }
    *out = s;
    return FS_OK;
}

fs_err fs_spec_parse_json(const char *json, size_t len, fs_spec **out, fs_diag *diag)
{
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, NULL, 0);
    fs_err err;
    *out = NULL;
    if (root == NULL) {
        return fs__diag(diag, FS_ERR_FORMAT, "spec: not valid JSON");
    }
    err = fs__spec_from_json(root, out, diag);
    cJSON_Delete(root);
    return err;
}

static bool add_int_array(cJSON *o, const char *key, const int32_t *v, size_t n)
{
    cJSON *a = cJSON_AddArrayToObject(o, key);
    for (size_t i = 0; a != NULL && i < n; i++) {
        cJSON *e = cJSON_CreateNumber(v[i]);
        if (e == NULL || !cJSON_AddItemToArray(a, e)) {
            cJSON_Delete(e);
            return false;
        }
    }
    return a != NULL;
}

static bool layer_json(cJSON *o, const fs__layer_cfg *c, const fs__layer *resolved)
{
    bool ok = cJSON_AddStringToObject(o, "type", fs__layer_kind_name(c->kind)) != NULL;
    switch (c->kind) {
    case FS__LAYER_AFFINE_COUPLING:
    case FS__LAYER_ADDITIVE_COUPLING:
        ok = ok && add_int_array(o, "hidden", c->hidden, (size_t)c->n_hidden);
        if (c->kind == FS__LAYER_AFFINE_COUPLING) {
            ok = ok && cJSON_AddNumberToObject(o, "clamp", c->clamp) != NULL;
        }
        if (c->split != 0) {
            ok = ok && cJSON_AddNumberToObject(o, "split", c->split) != NULL;
        }
        break;
    case FS__LAYER_PERMUTATION:
        if (resolved != NULL) {
            ok = ok && add_int_array(o, "perm", resolved->perm, (size_t)resolved->n_dims);
        } else if (c->perm_source == FS__PERM_EXPLICIT) {
            ok = ok && add_int_array(o, "perm", c->perm, (size_t)c->n_perm);
        } else if (c->perm_source == FS__PERM_REVERSE) {
            ok = ok && cJSON_AddTrueToObject(o, "reverse") != NULL;
        } else {
            ok = ok && cJSON_AddNumberToObject(
                           o, c->perm_source == FS__PERM_NUMPY ? "numpy_seed" : "seed",
                           (double)c->perm_seed) != NULL;
        }
        break;
    case FS__LAYER_HOUSEHOLDER:
        ok = ok && cJSON_AddNumberToObject(o, "reflections", c->n_reflections) != NULL;
        break;
    case FS__LAYER_BATCHNORM:
        ok = ok && cJSON_AddNumberToObject(o, "momentum", c->momentum) != NULL &&
             cJSON_AddNumberToObject(o, "eps", c->eps) != NULL;
        break;
    case FS__LAYER_LEAKY_RELU:
        ok = ok && cJSON_AddNumberToObject(o, "alpha", c->alpha) != NULL;
        break;
    case FS__LAYER_ACTNORM:
    case FS__LAYER__COUNT:
        break;
    }
    return ok;
}

struct cJSON *fs__spec_json(const fs_spec *spec, const fs__flow *resolved)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *layers = cJSON_AddArrayToObject(root, "layers");
    if (root == NULL || layers == NULL) {
        cJSON_Delete(root);
        return NULL;
    }
    for (size_t i = 0; i < spec->n_layers; i++) {
        cJSON *o = cJSON_CreateObject();
        if (o == NULL || !cJSON_AddItemToArray(layers, o)) {
            cJSON_Delete(o);
            cJSON_Delete(root);
            return NULL;
        }
        if (!layer_json(o, &spec->layers[i], resolved != NULL ? &resolved->layers[i] : NULL)) {
            cJSON_Delete(root);
            return NULL;
        }
    }
    return root;
}

fs_err fs_spec_format_json(const fs_spec *spec, char **out)
{
    return fs__json_take_text(fs__spec_json(spec, NULL), out);
}
