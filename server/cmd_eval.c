/*
 * cmd_eval.c: `flowscore eval` scores a labelled CSV file and prints one JSON line with
 * AUROC, average precision and the mean log-likelihood of the normal rows.
 */
#include "cmd.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "dataset.h"
#include "flowscore.h"

#define FS_EVAL_BATCH 1024

static const char fs_eval_usage[] =
    "usage: flowscore eval --model MODEL.fsm --data FILE.csv --label-col NAME\n"
    "                      --normal-value V [options]\n"
    "\n"
    "Score a labelled CSV file and print one JSON line:\n"
    "  rows, n_normal, n_anomalous   rows scored; a row is normal when its label is V\n"
    "  auroc    area under the ROC curve, anomaly = positive, ties at their average rank\n"
    "  auprc    average precision (anomaly = positive)\n"
    "  mean_log_prob   mean log p(x) of the normal rows, nats\n"
    "  threshold, threshold_quantile   the model's anomaly threshold (score, nats)\n"
    "  flagged_normal_share      share of normal rows above the threshold (false alarms)\n"
    "  flagged_anomalous_share   share of anomalous rows above it (recall)\n"
    "  skipped_bad_rows          rows skipped by --skip-bad-rows\n"
    "A figure that is undefined (no normal or no anomalous rows) is null, never NaN.\n"
    "\n"
    "options:\n"
    "  --model MODEL.fsm    the model\n"
    "  --data FILE.csv      labelled rows ('-' for standard input)\n"
    "  --schema FILE.json   the column layout of the file (needed when it has no header)\n"
    "  --label-col NAME     the label column\n"
    "  --normal-value V     the label of normal rows; any other value is an anomaly\n"
    "  --skip-bad-rows      skip rows with a bad cell (counted) instead of failing\n"
    "  --help               this text\n"
    "\n"
    "Exit status: 0 success, 1 failure (a bad cell names its line and column), 2 usage.\n";

typedef struct eval_run {
    const char *cmd;
    const fs_model *m;
    fs_workspace *ws;
    size_t n_fields;
    double *batch; /* FS_EVAL_BATCH x n_fields */
    uint8_t batch_normal[FS_EVAL_BATCH];
    fs_score batch_scores[FS_EVAL_BATCH];
    size_t n_batch;
    double *scores; /* every row */
    uint8_t *anomalous;
    uint8_t *flagged;
    size_t n;
    size_t cap;
    double sum_log_prob_normal;
    int failed;
} eval_run;

static int eval_flush(eval_run *e)
{
    fs_diag diag = { "" };
    fs_err err;
    if (e->n_batch == 0) {
        return 0;
    }
    if (e->n + e->n_batch > e->cap) {
        size_t cap = e->cap == 0 ? 65536 : e->cap * 2;
        double *scores = realloc(e->scores, cap * sizeof *scores);
        if (scores != NULL) {
            e->scores = scores;
        }
        uint8_t *anomalous = realloc(e->anomalous, cap);
        if (anomalous != NULL) {
            e->anomalous = anomalous;
        }
        uint8_t *flagged = realloc(e->flagged, cap);
        if (flagged != NULL) {
            e->flagged = flagged;
        }
        if (scores == NULL || anomalous == NULL || flagged == NULL) {
            e->failed = 1;
            fs_cli_error(e->cmd, "out of memory");
            return -1;
        }
        e->cap = cap;
    }
    err = fs_model_score(e->m, e->ws, e->batch, e->n_batch, e->batch_scores);
    if (err != FS_OK) {
        e->failed = 1;
        fs_cli_engine_error(e->cmd, "score", err, &diag);
        return -1;
    }
    for (size_t i = 0; i < e->n_batch; i++) {
        const fs_score *r = &e->batch_scores[i];
        e->scores[e->n] = r->score;
        e->anomalous[e->n] = !e->batch_normal[i];
        e->flagged[e->n] = (r->flags & FS_SCORE_ANOMALY) != 0;
        if (e->batch_normal[i]) {
            /* the engine never returns a non-finite log_prob; count one as -inf if it did */
            e->sum_log_prob_normal += isfinite(r->log_prob) ? r->log_prob : -HUGE_VAL;
        }
        e->n++;
    }
    e->n_batch = 0;
    return 0;
}

static int eval_on_row(void *user, const fs_dataset_row *row)
{
    eval_run *e = user;
    memcpy(e->batch + e->n_batch * e->n_fields, row->record, e->n_fields * sizeof(double));
    e->batch_normal[e->n_batch] = row->is_normal != 0;
    e->n_batch++;
    if (e->n_batch == FS_EVAL_BATCH) {
        return eval_flush(e) != 0;
    }
    return 0;
}

/* Add a number, or null when it is not finite. */
static void add_figure(cJSON *o, const char *key, double v)
{
    if (isfinite(v)) {
        cJSON_AddNumberToObject(o, key, v);
    } else {
        cJSON_AddNullToObject(o, key);
    }
}

static int eval_report(const eval_run *e, const fs_dataset_stats *stats)
{
    size_t n_anom = 0, flagged_normal = 0, flagged_anom = 0;
    double auroc = fs_cli_auroc(e->scores, e->anomalous, e->n);
    double auprc = fs_cli_average_precision(e->scores, e->anomalous, e->n);
    cJSON *o = cJSON_CreateObject();
    char *text = NULL;
    int status = FS_CLI_EXIT_FAILURE;
    if (auroc == -1.0 || auprc == -1.0 || o == NULL) {
        cJSON_Delete(o);
        return fs_cli_error(e->cmd, "out of memory");
    }
    for (size_t i = 0; i < e->n; i++) {
        n_anom += e->anomalous[i];
        flagged_anom += e->anomalous[i] != 0 && e->flagged[i] != 0;
        flagged_normal += e->anomalous[i] == 0 && e->flagged[i] != 0;
    }
    size_t n_normal = e->n - n_anom;
    cJSON_AddNumberToObject(o, "rows", (double)e->n);
    cJSON_AddNumberToObject(o, "n_normal", (double)n_normal);
    cJSON_AddNumberToObject(o, "n_anomalous", (double)n_anom);
    add_figure(o, "auroc", auroc);
    add_figure(o, "auprc", auprc);
    add_figure(o, "mean_log_prob",
               n_normal > 0 ? e->sum_log_prob_normal / (double)n_normal : (double)NAN);
    add_figure(o, "threshold", fs_model_threshold(e->m));
    add_figure(o, "threshold_quantile", fs_model_threshold_quantile(e->m));
    add_figure(o, "flagged_normal_share",
               n_normal > 0 ? (double)flagged_normal / (double)n_normal : (double)NAN);
    add_figure(o, "flagged_anomalous_share",
               n_anom > 0 ? (double)flagged_anom / (double)n_anom : (double)NAN);
    cJSON_AddNumberToObject(o, "skipped_bad_rows", (double)stats->bad);
    text = cJSON_PrintUnformatted(o);
    if (text == NULL) {
        fs_cli_error(e->cmd, "out of memory");
    } else if (puts(text) < 0 || fflush(stdout) != 0) {
        fs_cli_error(e->cmd, "cannot write to standard output");
    } else {
        status = FS_CLI_EXIT_OK;
    }
    if (n_normal == 0 || n_anom == 0) {
        fs_cli_note(e->cmd, "%s: auroc and auprc need both normal and anomalous rows",
                    n_normal == 0 ? "no normal rows" : "no anomalous rows");
    }
    cJSON_free(text);
    cJSON_Delete(o);
    return status;
}

/*
 * `flowscore eval`: argv[0] is "eval". Streams the labelled CSV through the model in batches
 * and prints one JSON line of figures (fs_cli_auroc, fs_cli_average_precision). Returns 0,
 * 1 on failure (a bad cell names its line and column), 2 on a usage error.
 */
int fs_cmd_eval(int argc, char **argv)
{
    static const char cmd[] = "eval";
    const char *model_path = NULL, *data = NULL, *schema = NULL, *label_col = NULL;
    const char *normal = NULL;
    int skip_bad = 0;
    const fs_cli_option opts[] = {
        { "--model", &model_path, NULL },    { "--data", &data, NULL },
        { "--schema", &schema, NULL },       { "--label-col", &label_col, NULL },
        { "--normal-value", &normal, NULL }, { "--skip-bad-rows", NULL, &skip_bad },
    };
    int rc = fs_cli_parse(cmd, argc, argv, opts, sizeof opts / sizeof opts[0], fs_eval_usage, NULL,
                          0, NULL);
    fs_schema_file *sf = NULL;
    fs_model *m = NULL;
    eval_run *e = NULL;
    fs_dataset_stats stats;
    fs_diag diag = { "" };
    fs_err err;
    int status = FS_CLI_EXIT_FAILURE;
    if (rc != 0) {
        return rc == FS_CLI_HELP ? FS_CLI_EXIT_OK : rc;
    }
    if (model_path == NULL || data == NULL || label_col == NULL || normal == NULL) {
        return fs_cli_usage_error(cmd,
                                  "--model, --data, --label-col and --normal-value are required");
    }
    if (schema != NULL) {
        err = fs_schema_file_load(schema, &sf, &diag);
        if (err != FS_OK) {
            return fs_cli_error(cmd, "%s", diag.msg);
        }
    }
    err = fs_model_load(model_path, &m, &diag);
    if (err != FS_OK) {
        fs_cli_engine_error(cmd, model_path, err, &diag);
        goto out;
    }
    e = calloc(1, sizeof *e);
    if (e == NULL) {
        fs_cli_error(cmd, "out of memory");
        goto out;
    }
    e->cmd = cmd;
    e->m = m;
    e->n_fields = fs_model_n_fields(m);
    e->batch = malloc(FS_EVAL_BATCH * e->n_fields * sizeof(double));
    if (e->batch == NULL) {
        fs_cli_error(cmd, "out of memory");
        goto out;
    }
    err = fs_workspace_create(&e->ws);
    if (err == FS_OK) {
        err = fs_workspace_reserve(e->ws, m);
    }
    if (err != FS_OK) {
        fs_cli_engine_error(cmd, "workspace", err, NULL);
        goto out;
    }
    fs_dataset_opts o = { 0 };
    o.path = data;
    o.schema_file = sf;
    o.label_col = label_col;
    o.normal_value = normal;
    o.skip_bad_rows = skip_bad;
    err = fs_dataset_read(&o, fs_model_schema(m), eval_on_row, e, &stats, &diag);
    if (err == FS_ERR_CANCELLED && e->failed) {
        goto out;
    }
    if (err != FS_OK) {
        fs_cli_error(cmd, "%s", diag.msg);
        goto out;
    }
    if (eval_flush(e) != 0) {
        goto out;
    }
    if (stats.bad > 0) {
        char bad[512];
        fs_dataset_format_bad(&stats, bad, sizeof bad);
        fs_cli_note(cmd, "%s", bad);
    }
    status = eval_report(e, &stats);
out:
    if (e != NULL) {
        fs_workspace_free(e->ws);
        free(e->batch);
        free(e->scores);
        free(e->anomalous);
        free(e->flagged);
        free(e);
    }
    fs_model_unref(m);
    fs_schema_file_free(sf);
    return status;
}
