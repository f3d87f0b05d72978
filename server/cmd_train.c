/*
 * cmd_train.c: `flowscore train` fits a model to the rows of a CSV file and writes it
 * atomically, showing progress and ending with a summary.
 */
#include "cmd.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_util.h"
#include "dataset.h"
#include "flowscore.h"
#include "log.h"

#define FS_TRAIN_SPEC_MAX_BYTES (1024 * 1024)
#define FS_TRAIN_DUP_WARN_SHARE 0.50 /* warn when this share of rows repeats an earlier one */
#define FS_TRAIN_TOP_WARN_SHARE 0.10 /* or when one record is this share of the rows */

static const char fs_train_usage[] =
    "usage: flowscore train --data FILE.csv --out MODEL.fsm [options]\n"
    "\n"
    "Fit a normalizing flow to the rows of a CSV file (the normal rows only, with --label-col\n"
    "and --normal-value) and write the model atomically: on any failure nothing is left at\n"
    "--out. Progress goes to stderr (a live line on a terminal, one line per epoch\n"
    "otherwise), the summary to stdout.\n"
    "\n"
    "data:\n"
    "  --data FILE.csv          training rows, with a header row unless --schema says otherwise\n"
    "  --schema FILE.json       fields and types ({\"header\": ..., \"fields\": [...]}); without\n"
    "                           it the schema is inferred from the header and the data\n"
    "  --label-col NAME         a label column (not a feature)\n"
    "  --normal-value V         train on the rows whose label is V\n"
    "  --ignore-cols a,b        columns that are not features (inferred schema only)\n"
    "  --max-rows N             use the first N usable rows\n"
    "  --skip-bad-rows          skip rows with a bad cell (counted and listed) instead of failing\n"
    "  --print-schema           print the schema as JSON (usable as --schema); without --out,\n"
    "                           stop there\n"
    "model:\n"
    "  --spec FILE.json         architecture ({\"layers\": [...]} or {\"preset\": ...})\n"
    "  --preset realnvp|default a named architecture (default)\n"
    "  --no-whiten              no fixed whitening map after standardisation\n"
    "  --dequantize             add uniform noise to integer fields while training\n"
    "  --threshold-quantile Q   anomaly threshold quantile of calibration scores (0.99)\n"
    "  --low-quantile Q         lower 'atypical' quantile, 0 disables (0)\n"
    "training:\n"
    "  --epochs N (5)  --batch N (256)  --lr X (0.0001)  --seed N (0)  --threads N (1)\n"
    "  --val-fraction F (0.1)  --patience N (5)  --optimizer adam|sgd (adam)\n"
    "  --momentum X (0.9)  --weight-decay X (0)  --clip-norm X (10, 0 disables)\n"
    "  --schedule constant|cosine|step (constant)\n"
    "  --quiet                  no progress lines\n"
    "  --out MODEL.fsm          the model file to write\n"
    "\n"
    "Inferred schema: a column is numeric when its first non-empty cell is a number, else\n"
    "categorical (levels: the sorted distinct values of the training rows); numeric columns\n"
    "of integers are 'integer'. log1p is applied to non-negative integer columns whose\n"
    "maximum exceeds 1 and to non-negative real columns with max > 1000 x (median + smallest\n"
    "positive value).\n"
    "Bad cells (text in a numeric field, NaN, Infinity, empty, 1e999, a wrong number of\n"
    "cells) stop training with the line and column, or are skipped with --skip-bad-rows.\n"
    "Sentinel values such as -1 are NOT bad cells: they pass through as ordinary numbers.\n"
    "A first row that looks like data (all numbers, one with a point, sign or exponent; or a\n"
    "number repeated) is refused: the file seems to have no header; add one, or give --schema\n"
    "a file with \"header\": false.\n"
    "\n"
    "Progress lines (\"epoch i/n train_nll=... val_nll=... rows_per_s=... eta_s=...\"):\n"
    "  train_nll   the mean NLL (nats/row) of this epoch's training batches over ALL their\n"
    "              rows: a few far-out rows can make it huge (the engine reports no trimmed\n"
    "              training figure), so it is not comparable with val_nll\n"
    "  val_nll     the trimmed validation NLL: the mean over all validation rows but the\n"
    "              worst 1%; early stopping and the choice of the saved model use it\n"
    "The summary's best validation NLL is this trimmed figure. The model saved is the one of\n"
    "the best epoch; epoch 0 is the untrained model (the whitened Gaussian, or the Gaussian\n"
    "of the standardised fields with --no-whiten), saved when training did not improve on it.\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

static volatile sig_atomic_t fs_train_interrupted;

static void on_signal(int sig)
{
    (void)sig;
    fs_train_interrupted = 1;
}

typedef struct train_ui {
    fs_cli_progress progress;
    double last_val;     /* last epoch's validation NLL, NAN before the first */
    int nonfinite_epoch; /* an epoch ended with a non-finite NLL: the run fails */
    double bad_train, bad_val;
} train_ui;

static int on_progress(void *user, const fs_train_progress *p)
{
    train_ui *ui = user;
    char line[256], val[48] = "", train[48] = "";
    int32_t done = p->epoch; /* epochs completed */
    double frac, eta;
    if (fs_train_interrupted) {
        return 1;
    }
    if (p->end_of_epoch) {
        if (!isfinite(p->train_nll) || !isfinite(p->val_nll)) {
            ui->nonfinite_epoch = p->epoch;
            ui->bad_train = p->train_nll;
            ui->bad_val = p->val_nll;
            return 1;
        }
        ui->last_val = p->val_nll;
    }
    frac = p->epochs > 0 && p->rows_per_epoch > 0
               ? ((double)done +
                  (p->end_of_epoch ? 0.0 : (double)p->rows_done / (double)p->rows_per_epoch)) /
                     (double)p->epochs
               : 0.0;
    eta = frac > 0.0 ? p->elapsed_s * (1.0 - frac) / frac : 0.0;
    if (isfinite(p->train_nll)) {
        snprintf(train, sizeof train, " train_nll=%.4f", p->train_nll);
    }
    if (isfinite(ui->last_val)) {
        snprintf(val, sizeof val, " val_nll=%.4f", ui->last_val);
    }
    if (p->end_of_epoch) {
        snprintf(line, sizeof line, "epoch %d/%d%s%s rows_per_s=%.0f eta_s=%.0f", p->epoch,
                 p->epochs, train, val, isfinite(p->rows_per_s) ? p->rows_per_s : 0.0, eta);
    } else {
        snprintf(line, sizeof line, "epoch %d/%d %3.0f%%%s%s rows_per_s=%.0f eta_s=%.0f", done + 1,
                 p->epochs, 100.0 * (double)p->rows_done / (double)p->rows_per_epoch, train, val,
                 isfinite(p->rows_per_s) ? p->rows_per_s : 0.0, eta);
    }
    fs_cli_progress_show(&ui->progress, line, p->end_of_epoch);
    return 0;
}

/* Fail early, before hours of training, when --out cannot be written. */
static int check_out_path(const char *cmd, const char *out)
{
    char dir[4096];
    const char *slash = strrchr(out, '/');
    struct stat st;
    char ebuf[128];
    if (slash == NULL) {
        snprintf(dir, sizeof dir, ".");
    } else if (slash == out) {
        snprintf(dir, sizeof dir, "/");
    } else {
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - out), out);
    }
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) {
        return fs_cli_error(cmd, "--out %s is a directory", out);
    }
    if (access(dir, W_OK) != 0) {
        return fs_cli_error(cmd, "cannot write to the directory of --out %s: %s", out,
                            fs_cli_errno_str(errno, ebuf, sizeof ebuf));
    }
    return 0;
}

typedef struct train_opts {
    const char *data, *schema, *spec, *preset, *label_col, *normal, *ignore, *out;
    const char *epochs, *batch, *lr, *seed, *threads, *val_fraction, *patience, *optimizer;
    const char *momentum, *weight_decay, *clip_norm, *schedule, *threshold_q, *low_q;
    const char *max_rows;
    int no_whiten, dequantize, skip_bad, quiet, print_schema;
} train_opts;

/* Turn the option texts into params; 2 after a usage error. */
static int parse_params(const char *cmd, const train_opts *t, fs_train_params *p, int64_t *max_rows)
{
    static const char *const optimizers[] = { "adam", "sgd" };
    static const char *const schedules[] = { "constant", "cosine", "step" };
    static const char *const presets[] = { "realnvp", "default" }; /* fs_spec_preset's names */
    int64_t v = 0;
    int choice = 0;
#define FS_INT_OPT(text, name, lo, hi, field)                                                      \
    if ((text) != NULL) {                                                                          \
        if (fs_cli_parse_i64(cmd, name, text, lo, hi, &v) != 0) {                                  \
            return FS_CLI_EXIT_USAGE;                                                              \
        }                                                                                          \
        field = (int32_t)v;                                                                        \
    }
#define FS_F64_OPT(text, name, lo, hi, lo_open, field)                                             \
    if ((text) != NULL && fs_cli_parse_f64(cmd, name, text, lo, hi, lo_open, &(field)) != 0) {     \
        return FS_CLI_EXIT_USAGE;                                                                  \
    }
    FS_INT_OPT(t->epochs, "--epochs", 0, 1000000, p->epochs) /* 0: the Gaussian baseline */
    FS_INT_OPT(t->batch, "--batch", 1, 1 << 20, p->batch_size)
    FS_INT_OPT(t->threads, "--threads", 1, 256, p->threads)
    FS_INT_OPT(t->patience, "--patience", 1, 1000000, p->patience)
    FS_F64_OPT(t->lr, "--lr", 0.0, 10.0, 1, p->lr)
    FS_F64_OPT(t->val_fraction, "--val-fraction", 0.0, 0.9, 0, p->val_fraction)
    FS_F64_OPT(t->momentum, "--momentum", 0.0, 1.0, 0, p->momentum)
    FS_F64_OPT(t->weight_decay, "--weight-decay", 0.0, 1.0, 0, p->weight_decay)
    FS_F64_OPT(t->clip_norm, "--clip-norm", 0.0, 1e9, 0, p->clip_norm)
    FS_F64_OPT(t->threshold_q, "--threshold-quantile", 0.0, 1.0, 1, p->threshold_quantile)
    FS_F64_OPT(t->low_q, "--low-quantile", 0.0, 0.5, 0, p->low_quantile)
#undef FS_INT_OPT
#undef FS_F64_OPT
    if (t->seed != NULL && fs_cli_parse_u64(cmd, "--seed", t->seed, &p->seed) != 0) {
        return FS_CLI_EXIT_USAGE;
    }
    if (t->optimizer != NULL) {
        if (fs_cli_parse_choice(cmd, "--optimizer", t->optimizer, optimizers, 2, &choice) != 0) {
            return FS_CLI_EXIT_USAGE;
        }
        p->optimizer = choice == 0 ? FS_OPT_ADAM : FS_OPT_SGD;
    }
    if (t->schedule != NULL) {
        if (fs_cli_parse_choice(cmd, "--schedule", t->schedule, schedules, 3, &choice) != 0) {
            return FS_CLI_EXIT_USAGE;
        }
        p->schedule = (fs_lr_schedule)choice;
    }
    /* an unknown name is the user's slip, exit 2 like --optimizer's, not an engine failure */
    if (t->preset != NULL &&
        fs_cli_parse_choice(cmd, "--preset", t->preset, presets, 2, &choice) != 0) {
        return FS_CLI_EXIT_USAGE;
    }
    if (t->no_whiten) {
        p->whiten = 0;
    }
    if (p->low_quantile > 0.0 && p->low_quantile >= p->threshold_quantile) {
        return fs_cli_usage_error(cmd, "--low-quantile must be below --threshold-quantile");
    }
    *max_rows = 0;
    if (t->max_rows != NULL &&
        fs_cli_parse_i64(cmd, "--max-rows", t->max_rows, 1, INT64_MAX, max_rows) != 0) {
        return FS_CLI_EXIT_USAGE;
    }
    return 0;
}

static fs_err load_spec(const char *cmd, const train_opts *t, fs_spec **out)
{
    fs_diag diag = { "" };
    fs_err err;
    if (t->spec != NULL) {
        char *json = NULL;
        size_t len = 0;
        err = fs_cli_read_file(t->spec, FS_TRAIN_SPEC_MAX_BYTES, &json, &len, &diag);
        if (err != FS_OK) {
            fs_cli_error(cmd, "%s", diag.msg);
            return err;
        }
        err = fs_spec_parse_json(json, len, out, &diag);
        free(json);
        if (err != FS_OK) {
            fs_cli_engine_error(cmd, t->spec, err, &diag);
        }
        return err;
    }
    err = fs_spec_preset(t->preset != NULL ? t->preset : "default", out, &diag);
    if (err != FS_OK) {
        fs_cli_engine_error(cmd, "--preset", err, &diag);
    }
    return err;
}

/*
 * The best-epoch lines. The figure is the trimmed validation mean, not train_nll's kind, and
 * epoch 0 is the untrained start: a new user read "best ... at epoch 0" as a bug and could not
 * tell which model was saved.
 */
static void print_best(const fs_train_params *p, const fs_train_report *r)
{
    char trim[64];
    const char *gaussian =
        p->whiten ? "the whitened Gaussian" : "the Gaussian of the standardised fields";
    if (!isfinite(r->best_val_nll)) {
        return;
    }
    if (r->val_rows > 0) {
        snprintf(trim, sizeof trim, "trimmed: the worst %g%% of validation rows left out",
                 100.0 * p->val_trim);
    } else {
        snprintf(trim, sizeof trim, "no validation rows: the training mean");
    }
    printf("  best validation NLL: %.6f nats/row at epoch %d (%s)\n", r->best_val_nll,
           r->best_epoch, trim);
    if (r->best_epoch > 0) {
        printf("  saved model: epoch %d (the best validation NLL of %d epoch%s run%s)\n",
               r->best_epoch, r->epochs_run, r->epochs_run == 1 ? "" : "s",
               r->stopped_early ? ", stopped early" : "");
    } else if (r->epochs_run > 0) {
        printf("  saved model: epoch 0 (the untrained model: %s; training did not improve on "
               "it in %d epoch%s%s)\n",
               gaussian, r->epochs_run, r->epochs_run == 1 ? "" : "s",
               r->stopped_early ? ", stopped early" : "");
    } else {
        printf("  saved model: epoch 0 (the untrained model: %s; no epochs run)\n", gaussian);
    }
}

static void print_summary(const train_opts *t, const fs_train_params *p, const fs_dataset *d,
                          const fs_train_report *r, const fs_model *m)
{
    char bad[600];
    printf("summary:\n");
    printf("  rows: %lld train, %lld validation (%zu usable of %lld data rows)\n",
           (long long)r->train_rows, (long long)r->val_rows, d->n_rows,
           (long long)d->stats.records);
    if (t->label_col != NULL) {
        printf("  label: %s = %s in %lld rows used; %lld rows with another label left out\n",
               t->label_col, t->normal, (long long)d->stats.used, (long long)d->stats.other_label);
    }
    if (d->stats.truncated) {
        printf("  max rows: stopped reading at --max-rows %lld\n", (long long)d->stats.used);
    }
    fs_dataset_format_bad_detail(&d->stats, bad, sizeof bad);
    printf("  skipped bad rows: %s\n", d->stats.bad > 0 ? bad : "0");
    print_best(p, r);
    printf("  constant fields: %s\n", r->n_constant_fields > 0 ? r->constant_fields : "none");
    printf("  duplicate share: %.4f of rows repeat an earlier row; top duplicate share %.4f\n",
           r->duplicate_share, r->top_duplicate_share);
    if (r->duplicate_share >= FS_TRAIN_DUP_WARN_SHARE ||
        r->top_duplicate_share >= FS_TRAIN_TOP_WARN_SHARE) {
        printf("  warning: %.0f%% of the training rows are duplicates (%.0f%% are one record); "
               "the density may pile up on them\n",
               100.0 * r->duplicate_share, 100.0 * r->top_duplicate_share);
    }
    printf("  skipped non-finite steps: %lld\n", (long long)r->skipped_steps);
    printf("  model: %s (%zu fields, %zu dims, %zu parameters; threshold quantile %g)\n", t->out,
           fs_model_n_fields(m), fs_model_n_dims(m), fs_model_n_params(m),
           fs_model_threshold_quantile(m));
}

/* Train and save; every failure path prints its own message. */
static int train_and_save(const char *cmd, const train_opts *t, const fs_dataset *d,
                          const fs_spec *spec, const fs_train_params *p)
{
    fs_trainer *tr = NULL;
    fs_model *m = NULL;
    fs_diag diag = { "" };
    train_ui ui;
    int status = FS_CLI_EXIT_FAILURE;
    fs_err err;
    memset(&ui, 0, sizeof ui);
    ui.last_val = (double)NAN;
    fs_cli_progress_init(&ui.progress, stderr, t->quiet);
    if (t->dequantize) {
        /* uniform noise on every integer field while training (Theis et al. 2016) */
        for (size_t f = 0; f < fs_schema_n_fields(d->schema); f++) {
            if (fs_schema_field_type(d->schema, f) == FS_FIELD_INTEGER) {
                (void)fs_schema_set_dequantize(d->schema, f, 1);
            }
        }
    }
    err = fs_trainer_create(d->schema, spec, p, d->records, d->n_rows, &tr, &diag);
    if (err != FS_OK) {
        fs_cli_engine_error(cmd, NULL, err, &diag);
        goto out;
    }
    err = fs_trainer_fit(tr, on_progress, &ui, &diag);
    if (fs_train_interrupted) {
        fs_cli_error(cmd, "interrupted; nothing written to %s", t->out);
        goto out;
    }
    if (ui.nonfinite_epoch > 0) {
        fs_cli_error(cmd,
                     "epoch %d ended with a non-finite NLL (train %s, validation %s); nothing "
                     "written to %s",
                     ui.nonfinite_epoch, isfinite(ui.bad_train) ? "finite" : "non-finite",
                     isfinite(ui.bad_val) ? "finite" : "non-finite", t->out);
        goto out;
    }
    if (err != FS_OK) {
        fs_cli_engine_error(cmd, NULL, err, &diag);
        goto out;
    }
    err = fs_trainer_model(tr, &m, &diag);
    if (err != FS_OK) {
        fs_cli_engine_error(cmd, NULL, err, &diag);
        goto out;
    }
    err = fs_model_save(m, t->out, &diag);
    if (err != FS_OK) {
        fs_cli_engine_error(cmd, t->out, err, &diag);
        goto out;
    }
    print_summary(t, p, d, fs_trainer_report(tr), m);
    status = fflush(stdout) == 0 ? FS_CLI_EXIT_OK : FS_CLI_EXIT_FAILURE;
out:
    fs_model_unref(m);
    fs_trainer_free(tr);
    return status;
}

/*
 * `flowscore train`: argv[0] is "train", the options follow (see fs_train_usage). Reads the
 * CSV (fs_dataset_load), trains (fs_trainer_create / fit / model) and saves atomically.
 * Returns 0, 1 on any failure (nothing is then written at --out), 2 on a usage error.
 * Main thread only: installs SIGINT/SIGTERM handlers for the duration of training.
 */
int fs_cmd_train(int argc, char **argv)
{
    static const char cmd[] = "train";
    train_opts t;
    memset(&t, 0, sizeof t);
    const fs_cli_option opts[] = {
        { "--data", &t.data, NULL },
        { "--schema", &t.schema, NULL },
        { "--spec", &t.spec, NULL },
        { "--preset", &t.preset, NULL },
        { "--label-col", &t.label_col, NULL },
        { "--normal-value", &t.normal, NULL },
        { "--ignore-cols", &t.ignore, NULL },
        { "--out", &t.out, NULL },
        { "--epochs", &t.epochs, NULL },
        { "--batch", &t.batch, NULL },
        { "--lr", &t.lr, NULL },
        { "--seed", &t.seed, NULL },
        { "--threads", &t.threads, NULL },
        { "--val-fraction", &t.val_fraction, NULL },
        { "--patience", &t.patience, NULL },
        { "--optimizer", &t.optimizer, NULL },
        { "--momentum", &t.momentum, NULL },
        { "--weight-decay", &t.weight_decay, NULL },
        { "--clip-norm", &t.clip_norm, NULL },
        { "--schedule", &t.schedule, NULL },
        { "--threshold-quantile", &t.threshold_q, NULL },
        { "--low-quantile", &t.low_q, NULL },
        { "--max-rows", &t.max_rows, NULL },
        { "--no-whiten", NULL, &t.no_whiten },
        { "--dequantize", NULL, &t.dequantize },
        { "--skip-bad-rows", NULL, &t.skip_bad },
        { "--quiet", NULL, &t.quiet },
        { "--print-schema", NULL, &t.print_schema },
    };
    int rc = fs_cli_parse(cmd, argc, argv, opts, sizeof opts / sizeof opts[0], fs_train_usage, NULL,
                          0, NULL);
    fs_train_params p = fs_train_default_params();
    int64_t max_rows = 0;
    fs_schema_file *sf = NULL;
    fs_dataset *d = NULL;
    fs_spec *spec = NULL;
    fs_diag diag = { "" };
    fs_err err;
    int status = FS_CLI_EXIT_FAILURE;
    if (rc != 0) {
        return rc == FS_CLI_HELP ? FS_CLI_EXIT_OK : rc;
    }
    if (t.data == NULL || (t.out == NULL && !t.print_schema)) {
        return fs_cli_usage_error(cmd, "--data and --out are required");
    }
    if ((t.label_col == NULL) != (t.normal == NULL)) {
        return fs_cli_usage_error(cmd, "--label-col and --normal-value go together");
    }
    if (t.spec != NULL && t.preset != NULL) {
        return fs_cli_usage_error(cmd, "give --spec or --preset, not both");
    }
    if (t.ignore != NULL && t.schema != NULL) {
        return fs_cli_usage_error(cmd, "--ignore-cols is for inferred schemas; with --schema, "
                                       "give those columns the type \"ignore\"");
    }
    rc = parse_params(cmd, &t, &p, &max_rows);
    if (rc != 0) {
        return rc;
    }
    if (t.out != NULL && check_out_path(cmd, t.out) != 0) {
        return FS_CLI_EXIT_FAILURE;
    }
    fs_set_log(fs_log_engine, NULL);
    if (load_spec(cmd, &t, &spec) != FS_OK) {
        goto out;
    }
    if (t.schema != NULL) {
        err = fs_schema_file_load(t.schema, &sf, &diag);
        if (err != FS_OK) {
            fs_cli_error(cmd, "%s", diag.msg);
            goto out;
        }
    }
    fs_dataset_opts o = { 0 };
    o.path = t.data;
    o.schema_file = sf;
    o.label_col = t.label_col;
    o.normal_value = t.normal;
    o.normal_only = t.label_col != NULL;
    o.ignore_cols = t.ignore;
    o.skip_bad_rows = t.skip_bad;
    o.max_rows = max_rows;
    err = fs_dataset_load(&o, &d, &diag);
    if (err != FS_OK) {
        fs_cli_error(cmd, "%s%s", diag.msg,
                     !t.skip_bad && (err == FS_ERR_NUMERIC || err == FS_ERR_FORMAT) &&
                             strstr(diag.msg, " line ") != NULL
                         ? " (--skip-bad-rows skips such rows)"
                         : "");
        goto out;
    }
    if (d->stats.unused_columns[0] != '\0') {
        fs_cli_note(cmd, "ignored columns not in the schema: %s", d->stats.unused_columns);
    }
    if (d->stats.numeric_header[0] != '\0') {
        fs_cli_note(cmd,
                    "every name in the header row %s is a number; if that row is data, the "
                    "file has no header: add one, or give --schema a file with \"header\": false",
                    d->stats.numeric_header);
    }
    if (t.print_schema && fs_dataset_print_schema(d, stdout) != FS_OK) {
        fs_cli_error(cmd, "cannot print the schema");
        goto out;
    }
    if (t.out == NULL) {
        status = FS_CLI_EXIT_OK;
        goto out;
    }
    if (d->n_rows < FS_TRAIN_MIN_ROWS) {
        fs_cli_error(cmd,
                     "too few rows to train: %zu usable row%s in %s, at least %d needed "
                     "(FS_TRAIN_MIN_ROWS); nothing written",
                     d->n_rows, d->n_rows == 1 ? "" : "s", t.data, FS_TRAIN_MIN_ROWS);
        goto out;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    status = train_and_save(cmd, &t, d, spec, &p);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
out:
    fs_dataset_free(d);
    fs_spec_free(spec);
    fs_schema_file_free(sf);
    return status;
}
