/* api_models.c: the model listings and metadata (v1 and v2), answered on the loop thread. */
#include "server.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static void put_time(fs_strbuf *b, double unix_s)
{
    char when[40];
    struct tm tm;
    time_t t = (time_t)unix_s;
    gmtime_r(&t, &tm);
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03dZ", (int)((unix_s - (double)t) * 1000.0));
    fs_strbuf_printf(b, "\"%s\"", when);
}

static void put_error_or_null(fs_strbuf *b, const char *err)
{
    if (err[0] == '\0') {
        fs_strbuf_puts(b, "null");
    } else {
        fs_strbuf_put_json_string(b, err, strlen(err));
    }
}

int fs_api_models_list(fs_server *srv, fs_strbuf *b)
{
    int first = 1;
    fs_strbuf_puts(b, "{\"models\":[");
    for (fs_entry *e = fs_registry_first(srv->reg); e != NULL; e = e->next) {
        fs_strbuf_puts(b, first ? "{\"name\":" : ",{\"name\":");
        first = 0;
        fs_strbuf_put_json_string(b, e->name, strlen(e->name));
        if (e->current != NULL) {
            fs_strbuf_printf(b, ",\"version\":%lld,\"ready\":true", (long long)e->version);
        } else {
            fs_strbuf_puts(b, ",\"version\":null,\"ready\":false");
        }
        fs_strbuf_puts(b, ",\"last_reload_error\":");
        put_error_or_null(b, e->last_error);
        fs_strbuf_puts(b, "}");
    }
    fs_strbuf_puts(b, "]}\n");
    return 200;
}

int fs_api_model_detail(fs_server *srv, fs_entry *e, fs_strbuf *b)
{
    (void)srv;
    fs_strbuf_puts(b, "{\"name\":");
    fs_strbuf_put_json_string(b, e->name, strlen(e->name));
    fs_strbuf_puts(b, ",\"versions\":[");
    for (size_t i = 0; i < e->n_versions; i++) {
        fs_strbuf_printf(b, "%s%lld", i > 0 ? "," : "", (long long)e->versions[i]);
    }
    fs_strbuf_puts(b, "],\"last_reload_error\":");
    put_error_or_null(b, e->last_error);
    if (e->current == NULL) {
        fs_strbuf_puts(b, ",\"version\":null,\"ready\":false}\n");
        return 200;
    }
    const fs_model *m = e->current;
    double thr = fs_model_threshold(m);
    fs_strbuf_printf(b, ",\"version\":%lld,\"ready\":true,\"loaded_at\":", (long long)e->version);
    put_time(b, e->loaded_at);
    fs_strbuf_puts(b, ",\"load_seconds\":");
    fs_strbuf_put_double(b, e->load_seconds);
    fs_strbuf_printf(b, ",\"n_fields\":%zu,\"n_dims\":%zu,\"n_layers\":%zu,\"n_params\":%zu",
                     fs_model_n_fields(m), fs_model_n_dims(m), fs_model_n_layers(m),
                     fs_model_n_params(m));
    fs_strbuf_puts(b, ",\"schema\":");
    fs_strbuf_puts(b, e->schema_json != NULL ? e->schema_json : "null");
    fs_strbuf_puts(b, ",\"calibration\":{\"threshold_quantile\":");
    fs_strbuf_put_double(b, fs_model_threshold_quantile(m));
    fs_strbuf_puts(b, ",\"threshold\":");
    if (isfinite(thr)) {
        fs_strbuf_put_double(b, thr);
    } else {
        fs_strbuf_puts(b, "null"); /* uncalibrated: never an anomaly */
    }
    fs_strbuf_puts(b, "}");
    fs_strbuf_puts(b, e->header_extra != NULL ? e->header_extra : "");
    fs_strbuf_puts(b, "}\n");
    return 200;
}

int fs_api_v2_server(fs_server *srv, fs_strbuf *b)
{
    (void)srv;
    fs_strbuf_printf(b, "{\"name\":\"flowscore\",\"version\":\"%s\",\"extensions\":[]}\n",
                     FS_VERSION);
    return 200;
}

/* The first categorical field of m, or -1: v2 infer takes numeric tensors only (api_v2.c). */
static long first_categorical(const fs_model *m)
{
    const fs_schema *s = fs_model_schema(m);
    for (size_t f = 0; f < fs_schema_n_fields(s); f++) {
        if (fs_schema_field_type(s, f) == FS_FIELD_CATEGORICAL) {
            return (long)f;
        }
    }
    return -1;
}

/*
 * GET /v2/models/{name}: the tensor metadata of the Open Inference Protocol. A model with a
 * categorical field takes no v2 tensor, so it advertises no inputs and says why in
 * "parameters" (it used to claim an FP32 [-1, D] input that infer then refused); its outputs
 * are still the four v2 infer would give, and /ready still answers 200.
 */
int fs_api_v2_model(fs_server *srv, fs_entry *e, fs_strbuf *b)
{
    long cat;
    (void)srv;
    fs_strbuf_puts(b, "{\"name\":");
    fs_strbuf_put_json_string(b, e->name, strlen(e->name));
    if (e->current == NULL) {
        fs_strbuf_puts(b, ",\"versions\":[],\"platform\":\"flowscore_realnvp\",\"inputs\":[],"
                          "\"outputs\":[]}\n");
        return 200;
    }
    fs_strbuf_printf(b, ",\"versions\":[\"%lld\"],\"platform\":\"flowscore_realnvp\",",
                     (long long)e->version);
    cat = first_categorical(e->current);
    if (cat < 0) {
        fs_strbuf_printf(b,
                         "\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[-1,%zu]}],",
                         fs_model_n_fields(e->current));
    } else {
        fs_strbuf_puts(b, "\"inputs\":[],");
    }
    fs_strbuf_puts(b, "\"outputs\":[{\"name\":\"score\",\"datatype\":\"FP64\",\"shape\":[-1]},"
                      "{\"name\":\"log_prob\",\"datatype\":\"FP64\",\"shape\":[-1]},"
                      "{\"name\":\"percentile\",\"datatype\":\"FP64\",\"shape\":[-1]},"
                      "{\"name\":\"anomaly\",\"datatype\":\"BOOL\",\"shape\":[-1]}],");
    if (cat < 0) {
        fs_strbuf_puts(b, "\"parameters\":{\"v2_infer\":true}}\n");
        return 200;
    }
    char note[384];
    snprintf(note, sizeof note,
             "v2 infer is not available for this model: field %s is categorical and v2 infer "
             "takes numeric tensors only; score it with POST /v1/models/%s/score",
             fs_schema_field_name(fs_model_schema(e->current), (size_t)cat), e->name);
    fs_strbuf_puts(b, "\"parameters\":{\"v2_infer\":false,\"v2_infer_note\":");
    fs_strbuf_put_json_string(b, note, strlen(note));
    fs_strbuf_puts(b, "}}\n");
    return 200;
}

int fs_api_reload_answer(fs_entry *e, int ok, fs_strbuf *b, fs_req_error *err)
{
    if (!ok) {
        if (e->current != NULL) {
            fs_req_error_set(err, 422, FS_EC_RELOAD_FAILED, NULL,
                             "reload failed: %.300s; still serving version %lld",
                             e->last_error[0] != '\0' ? e->last_error : "unknown error",
                             (long long)e->version);
            return 422;
        }
        fs_req_error_set(err, 503, FS_EC_RELOAD_FAILED, NULL,
                         "reload failed: %.300s; no version is served",
                         e->last_error[0] != '\0' ? e->last_error : "unknown error");
        return 503;
    }
    fs_strbuf_puts(b, "{\"model\":");
    fs_strbuf_put_json_string(b, e->name, strlen(e->name));
    fs_strbuf_printf(b,
                     ",\"version\":%lld,\"reloaded\":true,\"loaded_at\":", (long long)e->version);
    put_time(b, e->loaded_at);
    fs_strbuf_puts(b, "}\n");
    return 200;
}
