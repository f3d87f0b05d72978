/*
 * trainer_state.c: the trainer's documents: GET /v1/models/{name}/training, and the state
 * file <state_dir>/trainer/<name>.json that keeps the last run and the counters across
 * restarts. Times are RFC 3339 UTC strings, with the unix seconds beside them.
 */
#include "trainer_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const fs_tstate_names[] = { "idle", "training", "publishing" };

static void put_time(fs_strbuf *b, const char *key, double unix_s)
{
    char when[48];
    struct tm tm;
    time_t t = (time_t)floor(unix_s);
    gmtime_r(&t, &tm);
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    int ms = (int)((unix_s - (double)t) * 1000.0);
    snprintf(when + n, sizeof when - n, ".%03dZ", ms < 0 ? 0 : (ms > 999 ? 999 : ms));
    fs_strbuf_printf(b, ",\"%s\":\"%s\",\"%s_unix\":", key, when, key);
    fs_strbuf_put_double(b, unix_s);
}

/* A number, or null for NaN (no value) and infinities (which JSON cannot hold). */
static void put_num(fs_strbuf *b, const char *key, double v)
{
    fs_strbuf_printf(b, ",\"%s\":", key);
    if (isfinite(v)) {
        fs_strbuf_put_double(b, v);
    } else {
        fs_strbuf_puts(b, "null");
    }
}

static void put_record(fs_strbuf *b, const fs_refit_record *r)
{
    if (!r->present) {
        fs_strbuf_puts(b, "null");
        return;
    }
    fs_strbuf_puts(b, "{\"trigger\":");
    fs_strbuf_put_json_string(b, r->trigger, strlen(r->trigger));
    put_time(b, "started", r->started);
    put_time(b, "ended", r->ended);
    put_num(b, "seconds", r->ended - r->started);
    fs_strbuf_printf(b,
                     ",\"snapshot_records\":%llu,\"rows\":%llu,\"train_rows\":%llu,"
                     "\"holdout_rows\":%llu,\"excluded\":%llu",
                     (unsigned long long)r->snapshot_records, (unsigned long long)r->rows,
                     (unsigned long long)r->train_rows, (unsigned long long)r->holdout_rows,
                     (unsigned long long)r->excluded);
    put_num(b, "candidate_val_nll", r->candidate_nll);
    put_num(b, "current_val_nll", r->current_nll);
    put_num(b, "noise_nats", r->noise_nats);
    fs_strbuf_printf(b, ",\"calibration_rows\":%llu", (unsigned long long)r->calibration_rows);
    fs_strbuf_printf(b, ",\"decision\":\"%s\",\"reason\":", fs_refit_decision_name(r->decision));
    fs_strbuf_put_json_string(b, r->reason, strlen(r->reason));
    fs_strbuf_printf(b, ",\"version\":");
    if (r->version > 0) {
        fs_strbuf_printf(b, "%lld", (long long)r->version);
    } else {
        fs_strbuf_puts(b, "null");
    }
    fs_strbuf_printf(b, ",\"from_version\":");
    if (r->from_version > 0) {
        fs_strbuf_printf(b, "%lld", (long long)r->from_version);
    } else {
        fs_strbuf_puts(b, "null");
    }
    fs_strbuf_printf(b,
                     ",\"warm_start\":%s,\"skipped_nonfinite_steps\":%lld,\"epochs_run\":%d,"
                     "\"best_epoch\":%d}",
                     r->warm ? "true" : "false", (long long)r->skipped_steps, (int)r->epochs_run,
                     (int)r->best_epoch);
}

void fs__refit_put_status(fs_strbuf *b, fs_tmodel *tm)
{
    uint64_t n_records = 0, seen = tm->saved.last_refit_seen, bytes = 0;
    const fs_trainer_config *c = &tm->cfg;
    const char *state = tm->open_failed                    ? "unavailable"
                        : tm->spool == NULL && tm->opening ? "opening"
                        : (tm->state == FS_TSTATE_TRAINING && tm->running != NULL &&
                           !atomic_load(&tm->running->picked))
                            ? "queued"
                            : fs_tstate_names[tm->state];
    if (tm->spool != NULL) {
        fs_spool_stats(tm->spool, &n_records, &seen, &bytes);
    }
    uint64_t fresh = seen > tm->saved.last_refit_seen ? seen - tm->saved.last_refit_seen : 0;
    fs_strbuf_puts(b, "{\"model\":");
    fs_strbuf_put_json_string(b, tm->name, strlen(tm->name));
    fs_strbuf_printf(b,
                     ",\"enabled\":true,\"state\":\"%s\",\"spooled_records\":%llu,"
                     "\"spool_bytes\":%llu,\"records_seen\":%llu,\"new_records\":%llu,"
                     "\"excluded_records\":%llu,\"anomalous_records\":%llu,\"refits\":%llu",
                     state, (unsigned long long)n_records, (unsigned long long)bytes,
                     (unsigned long long)seen, (unsigned long long)fresh,
                     (unsigned long long)(tm->saved.last.present ? tm->saved.last.excluded : 0),
                     (unsigned long long)tm->anomalous_total, (unsigned long long)tm->saved.runs);
    if (tm->open_failed) {
        fs_strbuf_puts(b, ",\"error\":");
        fs_strbuf_put_json_string(b, tm->open_error, strlen(tm->open_error));
    }
    fs_strbuf_printf(b,
                     ",\"settings\":{\"min_new_records\":%llu,\"min_refit_records\":%llu,"
                     "\"min_holdout_rows\":%u,\"refit_interval_s\":%u,"
                     "\"warm_start\":%s,\"exclude_anomalies\":%s,\"spool_policy\":\"%s\","
                     "\"spool_max_records\":%llu",
                     (unsigned long long)c->min_new_records,
                     (unsigned long long)c->min_refit_records, c->min_holdout_rows,
                     c->refit_interval_s, c->warm_start ? "true" : "false",
                     c->exclude_anomalies ? "true" : "false", fs_spool_policy_name(c->spool_policy),
                     (unsigned long long)c->spool_max_records);
    put_num(b, "holdout_fraction", c->holdout_fraction);
    put_num(b, "accept_margin_nats", c->accept_margin_nats);
    double share = tm->ring_fill > 0 ? (double)tm->ring_count / (double)tm->ring_fill : 0.0;
    fs_strbuf_printf(b, "},\"burst\":{\"active\":%s,\"window\":%u,\"window_records\":%u",
                     tm->burst_active ? "true" : "false", c->burst_window, tm->ring_fill);
    put_num(b, "share", share);
    put_num(b, "threshold_share", c->burst_share);
    fs_strbuf_printf(b, ",\"bursts\":%llu", (unsigned long long)tm->saved.bursts);
    if (tm->burst_active) {
        put_time(b, "since", tm->burst_since);
    }
    fs_strbuf_puts(b, "},\"last_run\":");
    put_record(b, &tm->saved.last);
    fs_strbuf_puts(b, "}\n");
}

char *fs__refit_state_format(const fs_tmodel *tm, size_t *len)
{
    fs_strbuf b;
    fs_strbuf_init(&b, 1024);
    fs_strbuf_printf(&b,
                     "{\"format\":\"flowscore-trainer-state\",\"version\":1,\"model\":\"%s\","
                     "\"last_refit_seen\":%llu,\"runs\":%llu,\"bursts\":%llu",
                     tm->name, (unsigned long long)tm->saved.last_refit_seen,
                     (unsigned long long)tm->saved.runs, (unsigned long long)tm->saved.bursts);
    put_num(&b, "last_refit_at", tm->saved.last_refit_at);
    fs_strbuf_puts(&b, ",\"last_run\":");
    put_record(&b, &tm->saved.last);
    fs_strbuf_puts(&b, "}\n");
    return fs_strbuf_take(&b, len);
}

static double num(const cJSON *o, const char *key, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static uint64_t count(const cJSON *o, const char *key)
{
    double v = num(o, key, 0.0);
    return v > 0 && v < 1.8e19 ? (uint64_t)v : 0;
}

static void str(const cJSON *o, const char *key, char *out, size_t len)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    snprintf(out, len, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

int fs__refit_state_parse(const char *text, fs_refit_saved *out)
{
    cJSON *root = cJSON_Parse(text);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "flowscore-trainer-state") != 0) {
        cJSON_Delete(root);
        return -1;
    }
    memset(out, 0, sizeof *out);
    out->last_refit_seen = count(root, "last_refit_seen");
    out->runs = count(root, "runs");
    out->bursts = count(root, "bursts");
    out->last_refit_at = num(root, "last_refit_at", 0.0);
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "last_run");
    fs_refit_record *rec = &out->last;
    if (cJSON_IsObject(r)) {
        char decision[16];
        rec->present = 1;
        str(r, "trigger", rec->trigger, sizeof rec->trigger);
        rec->started = num(r, "started_unix", 0.0);
        rec->ended = num(r, "ended_unix", 0.0);
        rec->snapshot_records = count(r, "snapshot_records");
        rec->rows = count(r, "rows");
        rec->train_rows = count(r, "train_rows");
        rec->holdout_rows = count(r, "holdout_rows");
        rec->excluded = count(r, "excluded");
        rec->candidate_nll = num(r, "candidate_val_nll", (double)NAN);
        rec->current_nll = num(r, "current_val_nll", (double)NAN);
        rec->noise_nats = num(r, "noise_nats", (double)NAN);
        rec->calibration_rows = count(r, "calibration_rows");
        str(r, "decision", decision, sizeof decision);
        rec->decision = FS_REFIT_FAILED;
        for (int d = 0; d < FS_REFIT__COUNT; d++) {
            if (strcmp(decision, fs_refit_decision_name(d)) == 0) {
                rec->decision = d;
            }
        }
        str(r, "reason", rec->reason, sizeof rec->reason);
        rec->version = (int64_t)count(r, "version");
        rec->from_version = (int64_t)count(r, "from_version");
        rec->warm = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "warm_start"));
        rec->skipped_steps = (int64_t)count(r, "skipped_nonfinite_steps");
        rec->epochs_run = (int32_t)count(r, "epochs_run");
        rec->best_epoch = (int32_t)count(r, "best_epoch");
    }
    cJSON_Delete(root);
    return 0;
}

void fs__refit_record_set(fs_refit_record *rec, const fs_refit_job *job, int64_t version)
{
    memset(rec, 0, sizeof *rec);
    rec->present = 1;
    snprintf(rec->trigger, sizeof rec->trigger, "%s", job->trigger);
    rec->started = job->started;
    rec->ended = job->ended;
    rec->snapshot_records = job->snapshot_records;
    rec->rows = job->rows;
    rec->train_rows = job->train_rows;
    rec->holdout_rows = job->holdout_rows;
    rec->excluded = job->excluded;
    rec->candidate_nll = job->candidate_nll;
    rec->current_nll = job->current_nll;
    rec->noise_nats = job->noise_nats;
    rec->calibration_rows = job->calibration_rows;
    rec->decision = job->decision;
    snprintf(rec->reason, sizeof rec->reason, "%s", job->reason);
    rec->version = version;
    rec->from_version = job->version;
    rec->warm = job->warm;
    rec->skipped_steps = job->skipped_steps;
    rec->epochs_run = job->epochs_run;
    rec->best_epoch = job->best_epoch;
}
