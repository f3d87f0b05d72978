/*
 * cmd_sample.c: `flowscore sample` draws records from a model and prints them as CSV with
 * the field names as header.
 */
#include "cmd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "flowscore.h"
#include "fs_csv.h"

#define FS_SAMPLE_CLI_MAX_ROWS  10000000
#define FS_SAMPLE_CLI_MAX_BYTES ((size_t)1 << 31)

static const char fs_sample_usage[] =
    "usage: flowscore sample --model MODEL.fsm -n N [--temperature T] [--seed S]\n"
    "\n"
    "Draw N records from the model: z ~ N(0, T^2 I), decoded to the original feature space.\n"
    "Prints CSV with the field names as header; categorical fields by level name (an empty\n"
    "cell for the unknown bucket), numbers with 17 significant digits. A draw that decodes to\n"
    "a non-finite value is redrawn by the engine; inf and nan are never printed. Row i depends\n"
    "only on (seed, i), so the same seed gives the same records.\n"
    "\n"
    "options:\n"
    "  --model MODEL.fsm   the model\n"
    "  -n, --n N           records to draw, 0 .. 10000000 (0 prints the header only)\n"
    "  --temperature T     latent scale, 0 .. 10 (1)\n"
    "  --seed S            random seed, an unsigned 64-bit integer (0)\n"
    "  --help              this text\n";

static int write_record(const fs_schema *schema, const double *x, size_t n_fields)
{
    for (size_t f = 0; f < n_fields; f++) {
        if (f > 0 && fputc(',', stdout) == EOF) {
            return -1;
        }
        if (fs_schema_field_type(schema, f) == FS_FIELD_CATEGORICAL) {
            double v = x[f];
            size_t n_levels = fs_schema_n_levels(schema, f);
            if (v >= 0.0 && v < (double)n_levels) {
                const char *name = fs_schema_level_name(schema, f, (size_t)v);
                if (fs_csv_write_cell(stdout, name, strlen(name)) != 0) {
                    return -1;
                }
            }
        } else {
            char num[32];
            if (fs_cli_format_double(x[f], num, sizeof num) != 0 || fputs(num, stdout) == EOF) {
                return -1;
            }
        }
    }
    return fputc('\n', stdout) == EOF ? -1 : 0;
}

/*
 * `flowscore sample`: argv[0] is "sample". Draws -n records in one engine call and prints
 * them as CSV after checking that every value is finite. Returns 0, 1 on failure, 2 on a
 * usage error.
 */
int fs_cmd_sample(int argc, char **argv)
{
    static const char cmd[] = "sample";
    const char *model_path = NULL, *n_text = NULL, *n_long = NULL, *temp_text = NULL;
    const char *seed_text = NULL;
    const fs_cli_option opts[] = {
        { "--model", &model_path, NULL }, { "-n", &n_text, NULL },
        { "--n", &n_long, NULL },         { "--temperature", &temp_text, NULL },
        { "--seed", &seed_text, NULL },
    };
    int rc = fs_cli_parse(cmd, argc, argv, opts, sizeof opts / sizeof opts[0], fs_sample_usage,
                          NULL, 0, NULL);
    int64_t n = 0;
    double temperature = 1.0;
    uint64_t seed = 0;
    fs_model *m = NULL;
    fs_workspace *ws = NULL;
    double *records = NULL;
    fs_diag diag = { "" };
    fs_err err;
    int status = FS_CLI_EXIT_FAILURE;
    if (rc != 0) {
        return rc == FS_CLI_HELP ? FS_CLI_EXIT_OK : rc;
    }
    if (n_text == NULL) {
        n_text = n_long;
    }
    if (model_path == NULL || n_text == NULL) {
        return fs_cli_usage_error(cmd, "--model and -n are required");
    }
    if (fs_cli_parse_i64(cmd, "-n", n_text, 0, FS_SAMPLE_CLI_MAX_ROWS, &n) != 0 ||
        (temp_text != NULL && fs_cli_parse_f64(cmd, "--temperature", temp_text, 0.0,
                                               FS_SAMPLE_MAX_TEMPERATURE, 0, &temperature) != 0) ||
        (seed_text != NULL && fs_cli_parse_u64(cmd, "--seed", seed_text, &seed) != 0)) {
        return FS_CLI_EXIT_USAGE;
    }
    err = fs_model_load(model_path, &m, &diag);
    if (err != FS_OK) {
        fs_cli_engine_error(cmd, model_path, err, &diag);
        goto out;
    }
    const fs_schema *schema = fs_model_schema(m);
    size_t n_fields = fs_model_n_fields(m);
    if (n > 0) {
        /* one engine call: row i's stream is derived from (seed, i), so splitting the draw
         * would repeat rows (issue 02 section 4) */
        if ((size_t)n > FS_SAMPLE_CLI_MAX_BYTES / sizeof(double) / n_fields) {
            fs_cli_error(cmd, "-n %lld x %zu fields is more than this command holds at once",
                         (long long)n, n_fields);
            goto out;
        }
        records = malloc((size_t)n * n_fields * sizeof(double));
        if (records == NULL) {
            fs_cli_error(cmd, "out of memory for %lld records", (long long)n);
            goto out;
        }
        err = fs_workspace_create(&ws);
        if (err == FS_OK) {
            err = fs_workspace_reserve(ws, m);
        }
        if (err == FS_OK) {
            err = fs_model_sample(m, ws, (size_t)n, temperature, seed, records);
        }
        if (err != FS_OK) {
            fs_cli_engine_error(cmd, "sample", err, NULL);
            goto out;
        }
        /* check everything before printing anything: never a partial table */
        for (size_t k = 0; k < (size_t)n * n_fields; k++) {
            if (!isfinite(records[k])) {
                fs_cli_error(cmd, "the engine returned a non-finite value in record %zu",
                             k / n_fields);
                goto out;
            }
        }
    }
    for (size_t f = 0; f < n_fields; f++) {
        const char *name = fs_schema_field_name(schema, f);
        if ((f > 0 && fputc(',', stdout) == EOF) ||
            fs_csv_write_cell(stdout, name, strlen(name)) != 0) {
            fs_cli_error(cmd, "cannot write to standard output");
            goto out;
        }
    }
    if (fputc('\n', stdout) == EOF) {
        fs_cli_error(cmd, "cannot write to standard output");
        goto out;
    }
    for (int64_t i = 0; i < n; i++) {
        rc = write_record(schema, records + (size_t)i * n_fields, n_fields);
        if (rc != 0) {
            fs_cli_error(cmd, "cannot write to standard output");
            goto out;
        }
    }
    if (fflush(stdout) != 0) {
        fs_cli_error(cmd, "cannot write to standard output");
        goto out;
    }
    status = FS_CLI_EXIT_OK;
out:
    free(records);
    fs_workspace_free(ws);
    fs_model_unref(m);
    return status;
}
