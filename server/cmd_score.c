/*
 * cmd_score.c: `flowscore score` prints one line per row of a CSV file: score, log_prob,
 * percentile and flags, in input order, streaming the file in batches.
 */
#include "cmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "dataset.h"
#include "flowscore.h"
#include "fs_csv.h"

#define FS_SCORE_BATCH 1024

static const char fs_score_usage[] =
    "usage: flowscore score --model MODEL.fsm --data FILE.csv [options]\n"
    "\n"
    "Score every row of a CSV file, in input order. The file's columns are matched to the\n"
    "model's fields by name (header row); other columns are ignored. A headerless file needs\n"
    "--schema to name its columns.\n"
    "\n"
    "CSV output (default), one line per row after the header:\n"
    "  row,score,log_prob,percentile,anomaly,saturated[,LABEL]\n"
    "  row         0-based index of the data row in the file (bad rows count, see below)\n"
    "  score       -log p(x) in nats of the original feature space; log_prob = -score\n"
    "  percentile  share of calibration (training) scores <= score, in [0, 1]\n"
    "  anomaly     1 when score is above the model's threshold (its threshold quantile)\n"
    "  saturated   1 when an input was clamped to the finite range before the flow\n"
    "Numbers are printed with 17 significant digits; inf and nan are never printed.\n"
    "With --format ndjson each row is a JSON object with the same keys, plus \"line\" and\n"
    "\"atypical\" (score below the model's lower threshold, when it has one).\n"
    "\n"
    "options:\n"
    "  --model MODEL.fsm    the model\n"
    "  --data FILE.csv      the rows to score ('-' for standard input)\n"
    "  --schema FILE.json   the column layout of the file (needed when it has no header)\n"
    "  --format csv|ndjson  output format (csv)\n"
    "  --label-col NAME     copy this column into the output as its last column\n"
    "  --skip-bad-rows      skip rows with a bad cell (counted on stderr) instead of failing\n"
    "  --help               this text\n"
    "\n"
    "A bad cell (text in a numeric field, NaN, Infinity, an empty cell, 1e999, a wrong\n"
    "number of cells) stops the run with an error naming the line and the column; rows before\n"
    "it have been printed, the bad row is not. Sentinels such as -1 are ordinary numbers.\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

typedef struct score_run {
    const char *cmd;
    const fs_model *m;
    fs_workspace *ws;
    size_t n_fields;
    int ndjson;
    int with_label;
    const char *label_col;
    int header_done;
    size_t n;        /* rows in the batch */
    double *records; /* FS_SCORE_BATCH x n_fields */
    int64_t index[FS_SCORE_BATCH];
    int64_t line[FS_SCORE_BATCH];
    char *labels; /* the batch's label cells, back to back */
    size_t labels_len;
    size_t labels_cap;
    size_t label_off[FS_SCORE_BATCH];
    size_t label_len[FS_SCORE_BATCH];
    fs_score scores[FS_SCORE_BATCH];
    int failed; /* a message has been printed */
} score_run;

static int write_header(score_run *s)
{
    if (s->header_done || s->ndjson) {
        s->header_done = 1;
        return 0;
    }
    s->header_done = 1;
    if (fputs("row,score,log_prob,percentile,anomaly,saturated", stdout) == EOF) {
        return -1;
    }
    if (s->with_label) {
        if (fputc(',', stdout) == EOF ||
            fs_csv_write_cell(stdout, s->label_col, strlen(s->label_col)) != 0) {
            return -1;
        }
    }
    return fputc('\n', stdout) == EOF ? -1 : 0;
}

static int write_row(score_run *s, size_t i)
{
    const fs_score *r = &s->scores[i];
    const char *label = s->labels + s->label_off[i];
    char score[32], log_prob[32], pct[32];
    int rc;
    if (fs_cli_format_double(r->score, score, sizeof score) != 0 ||
        fs_cli_format_double(r->log_prob, log_prob, sizeof log_prob) != 0 ||
        fs_cli_format_double(r->percentile, pct, sizeof pct) != 0) {
        s->failed = 1;
        fs_cli_error(s->cmd, "the engine returned a non-finite score for line %lld",
                     (long long)s->line[i]);
        return -1;
    }
    if (s->ndjson) {
        rc = printf("{\"row\":%lld,\"line\":%lld,\"score\":%s,\"log_prob\":%s,\"percentile\":%s,"
                    "\"anomaly\":%s,\"atypical\":%s,\"saturated\":%s",
                    (long long)s->index[i], (long long)s->line[i], score, log_prob, pct,
                    (r->flags & FS_SCORE_ANOMALY) != 0 ? "true" : "false",
                    (r->flags & FS_SCORE_ATYPICAL) != 0 ? "true" : "false",
                    (r->flags & FS_SCORE_SATURATED) != 0 ? "true" : "false");
        if (rc >= 0 && s->with_label) {
            rc = fputs(",\"label\":", stdout) == EOF
                     ? -1
                     : fs_cli_write_json_string(stdout, label, s->label_len[i]);
        }
        if (rc >= 0) {
            rc = fputs("}\n", stdout) == EOF ? -1 : 0;
        }
    } else {
        rc = printf("%lld,%s,%s,%s,%d,%d", (long long)s->index[i], score, log_prob, pct,
                    (r->flags & FS_SCORE_ANOMALY) != 0, (r->flags & FS_SCORE_SATURATED) != 0);
        if (rc >= 0 && s->with_label) {
            rc = fputc(',', stdout) == EOF ? -1 : fs_csv_write_cell(stdout, label, s->label_len[i]);
        }
        if (rc >= 0) {
            rc = fputc('\n', stdout) == EOF ? -1 : 0;
        }
    }
    if (rc < 0) {
        s->failed = 1;
        fs_cli_error(s->cmd, "cannot write to standard output");
        return -1;
    }
    return 0;
}

/* Score the batch and print it. */
static int flush_batch(score_run *s)
{
    fs_diag diag = { "" };
    fs_err err;
    if (write_header(s) != 0) {
        s->failed = 1;
        fs_cli_error(s->cmd, "cannot write to standard output");
        return -1;
    }
    if (s->n == 0) {
        return 0;
    }
    err = fs_model_score(s->m, s->ws, s->records, s->n, s->scores);
    if (err != FS_OK) {
        s->failed = 1;
        fs_cli_engine_error(s->cmd, "score", err, &diag);
        return -1;
    }
    for (size_t i = 0; i < s->n; i++) {
        if (write_row(s, i) != 0) {
            return -1;
        }
    }
    s->n = 0;
    s->labels_len = 0;
    return 0;
}

static int on_row(void *user, const fs_dataset_row *row)
{
    score_run *s = user;
    size_t i = s->n;
    memcpy(s->records + i * s->n_fields, row->record, s->n_fields * sizeof(double));
    s->index[i] = row->index;
    s->line[i] = row->line;
    s->label_off[i] = s->labels_len;
    s->label_len[i] = 0;
    if (s->with_label) {
        size_t need = s->labels_len + row->label_len + 1;
        if (need > s->labels_cap) {
            size_t cap = s->labels_cap == 0 ? 4096 : s->labels_cap;
            while (cap < need) {
                cap *= 2;
            }
            char *grown = realloc(s->labels, cap);
            if (grown == NULL) {
                s->failed = 1;
                fs_cli_error(s->cmd, "out of memory");
                return 1;
            }
            s->labels = grown;
            s->labels_cap = cap;
        }
        memcpy(s->labels + s->labels_len, row->label, row->label_len);
        s->labels[s->labels_len + row->label_len] = '\0';
        s->label_len[i] = row->label_len;
        s->labels_len = need;
    }
    s->n++;
    if (s->n == FS_SCORE_BATCH) {
        return flush_batch(s) != 0;
    }
    return 0;
}

/*
 * `flowscore score`: argv[0] is "score". Streams the CSV through the model in batches of
 * FS_SCORE_BATCH rows and prints one line per row in input order, never inf or nan.
 * Returns 0, 1 on failure (rows before a bad one have been printed), 2 on a usage error.
 */
int fs_cmd_score(int argc, char **argv)
{
    static const char cmd[] = "score";
    const char *model_path = NULL, *data = NULL, *schema = NULL, *format = "csv";
    const char *label_col = NULL;
    int skip_bad = 0;
    const fs_cli_option opts[] = {
        { "--model", &model_path, NULL },    { "--data", &data, NULL },
        { "--schema", &schema, NULL },       { "--format", &format, NULL },
        { "--label-col", &label_col, NULL }, { "--skip-bad-rows", NULL, &skip_bad },
    };
    static const char *const formats[] = { "csv", "ndjson" };
    int rc = fs_cli_parse(cmd, argc, argv, opts, sizeof opts / sizeof opts[0], fs_score_usage, NULL,
                          0, NULL);
    int fmt = 0;
    fs_schema_file *sf = NULL;
    fs_model *m = NULL;
    score_run *s = NULL;
    fs_dataset_stats stats;
    fs_diag diag = { "" };
    fs_err err;
    int status = FS_CLI_EXIT_FAILURE;
    if (rc != 0) {
        return rc == FS_CLI_HELP ? FS_CLI_EXIT_OK : rc;
    }
    if (model_path == NULL || data == NULL) {
        return fs_cli_usage_error(cmd, "--model and --data are required");
    }
    if (fs_cli_parse_choice(cmd, "--format", format, formats, 2, &fmt) != 0) {
        return FS_CLI_EXIT_USAGE;
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
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        fs_cli_error(cmd, "out of memory");
        goto out;
    }
    s->cmd = cmd;
    s->m = m;
    s->n_fields = fs_model_n_fields(m);
    s->ndjson = fmt == 1;
    s->with_label = label_col != NULL;
    s->label_col = label_col;
    s->records = malloc(FS_SCORE_BATCH * s->n_fields * sizeof(double));
    if (s->records == NULL) {
        fs_cli_error(cmd, "out of memory");
        goto out;
    }
    err = fs_workspace_create(&s->ws);
    if (err == FS_OK) {
        err = fs_workspace_reserve(s->ws, m);
    }
    if (err != FS_OK) {
        fs_cli_engine_error(cmd, "workspace", err, NULL);
        goto out;
    }
    fs_dataset_opts o = { 0 };
    o.path = data;
    o.schema_file = sf;
    o.label_col = label_col;
    o.skip_bad_rows = skip_bad;
    err = fs_dataset_read(&o, fs_model_schema(m), on_row, s, &stats, &diag);
    if (err == FS_ERR_CANCELLED && s->failed) {
        goto out;
    }
    /* rows read before a bad one are good: print them, then the error */
    if ((err == FS_OK || s->n > 0) && flush_batch(s) != 0) {
        goto out;
    }
    if (fflush(stdout) != 0) {
        fs_cli_error(cmd, "cannot write to standard output");
        goto out;
    }
    if (err != FS_OK) {
        fs_cli_error(cmd, "%s", diag.msg);
        goto out;
    }
    if (stats.unused_columns[0] != '\0') {
        fs_cli_note(cmd, "ignored columns not in the model: %s", stats.unused_columns);
    }
    if (stats.bad > 0) {
        char bad[512];
        fs_dataset_format_bad(&stats, bad, sizeof bad);
        fs_cli_note(cmd, "%s", bad);
    }
    status = FS_CLI_EXIT_OK;
out:
    if (s != NULL) {
        fs_workspace_free(s->ws);
        free(s->records);
        free(s->labels);
        free(s);
    }
    fs_model_unref(m);
    fs_schema_file_free(sf);
    return status;
}
