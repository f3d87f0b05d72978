/* cli_util.c: option parsing, messages, number formatting and progress for the CLI. */
#include "cli_util.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dataset.h"

const char *fs_cli_errno_str(int errnum, char *buf, size_t len)
{
    /* The XSI strerror_r (with _DEFAULT_SOURCE and no _GNU_SOURCE) returns an int. */
    if (strerror_r(errnum, buf, len) != 0) {
        snprintf(buf, len, "errno %d", errnum);
    }
    return buf;
}

int fs_cli_take(const char *cmd, int argc, char **argv, int *i, const char *name,
                const char **value)
{
    const char *arg = argv[*i];
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0) {
        return 0;
    }
    if (arg[n] == '=') {
        *value = arg + n + 1;
        return 1;
    }
    if (arg[n] != '\0') {
        return 0;
    }
    if (*i + 1 >= argc) {
        fs_cli_usage_error(cmd, "option %s needs a value", name);
        return -1;
    }
    *i += 1;
    *value = argv[*i];
    return 1;
}

int fs_cli_parse(const char *cmd, int argc, char **argv, const fs_cli_option *opts, size_t n_opts,
                 const char *usage, const char **positional, size_t max_positional,
                 size_t *n_positional)
{
    size_t n_pos = 0;
    int only_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int matched = 0;
        if (!only_positional && (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)) {
            fputs(usage, stdout);
            return FS_CLI_HELP;
        }
        if (!only_positional && strcmp(arg, "--") == 0) {
            only_positional = 1;
            continue;
        }
        if (only_positional || arg[0] != '-' || arg[1] == '\0') {
            if (n_pos == max_positional) {
                return fs_cli_usage_error(cmd, "unexpected argument '%s'", arg);
            }
            positional[n_pos++] = arg;
            continue;
        }
        for (size_t k = 0; k < n_opts && !matched; k++) {
            const fs_cli_option *o = &opts[k];
            if (o->value != NULL) {
                int took = fs_cli_take(cmd, argc, argv, &i, o->name, o->value);
                if (took < 0) {
                    return FS_CLI_EXIT_USAGE;
                }
                matched = took;
            } else if (strcmp(arg, o->name) == 0) {
                *o->flag = 1;
                matched = 1;
            } else if (strncmp(arg, o->name, strlen(o->name)) == 0 && arg[strlen(o->name)] == '=') {
                return fs_cli_usage_error(cmd, "option %s takes no value", o->name);
            }
        }
        if (!matched) {
            return fs_cli_usage_error(cmd, "unknown option '%s'", arg);
        }
    }
    if (n_positional != NULL) {
        *n_positional = n_pos;
    }
    return 0;
}

static void vmessage(const char *cmd, const char *prefix, const char *fmt, va_list ap)
    FS_CLI_PRINTF(3, 0);

static void vmessage(const char *cmd, const char *prefix, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    fprintf(stderr, "flowscore %s: %s%s\n", cmd, prefix, msg);
}

int fs_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(cmd, "", fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try 'flowscore %s --help'.\n", cmd);
    return FS_CLI_EXIT_USAGE;
}

int fs_cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(cmd, "", fmt, ap);
    va_end(ap);
    return FS_CLI_EXIT_FAILURE;
}

void fs_cli_note(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(cmd, "note: ", fmt, ap);
    va_end(ap);
}

int fs_cli_engine_error(const char *cmd, const char *what, fs_err err, const fs_diag *diag)
{
    const char *detail = diag != NULL && diag->msg[0] != '\0' ? diag->msg : fs_strerror(err);
    if (what != NULL) {
        fprintf(stderr, "flowscore %s: %s: %s (%s)\n", cmd, what, detail, fs_err_name(err));
    } else {
        fprintf(stderr, "flowscore %s: %s (%s)\n", cmd, detail, fs_err_name(err));
    }
    return FS_CLI_EXIT_FAILURE;
}

int fs_cli_parse_i64(const char *cmd, const char *opt, const char *text, int64_t min, int64_t max,
                     int64_t *out)
{
    char *end = NULL;
    long long v;
    errno = 0;
    /* strtoll skips leading whitespace and takes a sign; demand a digit up front instead */
    if ((text[0] < '0' || text[0] > '9') && text[0] != '-' && text[0] != '+') {
        goto bad;
    }
    v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
        goto bad;
    }
    *out = (int64_t)v;
    return 0;
bad:
    return fs_cli_usage_error(cmd,
                              "%s: expected an integer in [%" PRId64 ", %" PRId64 "], got '%s'",
                              opt, min, max, text);
}

int fs_cli_parse_u64(const char *cmd, const char *opt, const char *text, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v;
    errno = 0;
    if (text[0] < '0' || text[0] > '9') {
        goto bad;
    }
    v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0') {
        goto bad;
    }
    *out = (uint64_t)v;
    return 0;
bad:
    return fs_cli_usage_error(cmd, "%s: expected an unsigned integer, got '%s'", opt, text);
}

int fs_cli_parse_f64(const char *cmd, const char *opt, const char *text, double lo, double hi,
                     int lo_open, double *out)
{
    double v = 0.0;
    if (fs_dataset_parse_number(text, strlen(text), &v) != FS_CELL_OK || v < lo || v > hi ||
        (lo_open && v == lo)) {
        return fs_cli_usage_error(cmd, "%s: expected a number in %s%g, %g], got '%s'", opt,
                                  lo_open ? "(" : "[", lo, hi, text);
    }
    *out = v;
    return 0;
}

int fs_cli_parse_choice(const char *cmd, const char *opt, const char *text,
                        const char *const *choices, size_t n, int *out)
{
    char list[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(text, choices[i]) == 0) {
            *out = (int)i;
            return 0;
        }
    }
    for (size_t i = 0; i < n && used < sizeof list; i++) {
        int k = snprintf(list + used, sizeof list - used, "%s%s", i > 0 ? " | " : "", choices[i]);
        if (k < 0) {
            break;
        }
        used += (size_t)k;
    }
    return fs_cli_usage_error(cmd, "%s: expected %s, got '%s'", opt, list, text);
}

int fs_cli_format_double(double x, char *buf, size_t len)
{
    if (!isfinite(x)) {
        if (len > 0) {
            buf[0] = '\0';
        }
        return -1;
    }
    snprintf(buf, len, "%.17g", x);
    return 0;
}

fs_err fs_cli_read_file(const char *path, size_t max_bytes, char **out, size_t *len, fs_diag *diag)
{
    fs_err err = FS_OK;
    FILE *f = NULL;
    char *buf = NULL;
    size_t cap = 0, used = 0;
    char ebuf[128];
    *out = NULL;
    f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(diag->msg, sizeof diag->msg, "cannot open %s: %s", path,
                 fs_cli_errno_str(errno, ebuf, sizeof ebuf));
        return FS_ERR_IO;
    }
    for (;;) {
        if (used + 1 >= cap) {
            size_t next = cap == 0 ? 65536 : cap * 2;
            char *grown;
            if (cap > max_bytes) {
                snprintf(diag->msg, sizeof diag->msg, "%s is larger than %zu bytes", path,
                         max_bytes);
                err = FS_ERR_IO;
                goto out;
            }
            grown = realloc(buf, next);
            if (grown == NULL) {
                snprintf(diag->msg, sizeof diag->msg, "out of memory reading %s", path);
                err = FS_ERR_NOMEM;
                goto out;
            }
            buf = grown;
            cap = next;
        }
        size_t n = fread(buf + used, 1, cap - used - 1, f);
        used += n;
        if (n == 0) {
            if (ferror(f)) {
                snprintf(diag->msg, sizeof diag->msg, "cannot read %s: %s", path,
                         fs_cli_errno_str(errno, ebuf, sizeof ebuf));
                err = FS_ERR_IO;
                goto out;
            }
            break;
        }
    }
    if (used > max_bytes) {
        snprintf(diag->msg, sizeof diag->msg, "%s is larger than %zu bytes", path, max_bytes);
        err = FS_ERR_IO;
        goto out;
    }
    buf[used] = '\0';
    *out = buf;
    *len = used;
    buf = NULL;
out:
    free(buf);
    fclose(f);
    return err;
}

double fs_cli_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void fs_cli_progress_init(fs_cli_progress *p, FILE *out, int quiet)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    p->quiet = quiet;
    p->live = isatty(fileno(out));
    p->interval_s = 0.5;
    p->last_s = -1.0;
}

void fs_cli_progress_show(fs_cli_progress *p, const char *line, int final)
{
    size_t len = strlen(line);
    if (p->quiet) {
        return;
    }
    if (!p->live) {
        if (final) {
            fprintf(p->out, "%s\n", line);
            fflush(p->out);
        }
        return;
    }
    double now = fs_cli_now_s();
    if (!final && p->last_s >= 0.0 && now - p->last_s < p->interval_s) {
        return;
    }
    p->last_s = now;
    /* pad with spaces over what a longer previous line left on screen */
    fprintf(p->out, "\r%s%*s", line, p->last_len > len ? (int)(p->last_len - len) : 0, "");
    if (final) {
        fputc('\n', p->out);
        p->last_len = 0;
    } else {
        p->last_len = len;
    }
    fflush(p->out);
}

int fs_cli_write_json_string(FILE *f, const char *s, size_t len)
{
    if (fputc('"', f) == EOF) {
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int rc;
        if (c == '"' || c == '\\') {
            rc = fprintf(f, "\\%c", c);
        } else if (c < 0x20 || c == 0x7f) {
            rc = fprintf(f, "\\u%04x", c);
        } else {
            rc = fputc(c, f) == EOF ? -1 : 1;
        }
        if (rc < 0) {
            return -1;
        }
    }
    return fputc('"', f) == EOF ? -1 : 0;
}

/* Scores for ranking: NaN and infinities as the largest (the engine never returns them). */
static double rank_key(double x)
{
    return isfinite(x) ? x : HUGE_VAL;
}

typedef struct fs_ranked {
    double key;
    uint8_t positive;
} fs_ranked;

static int cmp_ranked(const void *a, const void *b)
{
    double x = ((const fs_ranked *)a)->key, y = ((const fs_ranked *)b)->key;
    return (x > y) - (x < y);
}

/* The rows sorted by ascending score key; NULL when out of memory. */
static fs_ranked *ranked_sort(const double *scores, const uint8_t *positive, size_t n)
{
    fs_ranked *r = malloc((n == 0 ? 1 : n) * sizeof *r);
    if (r == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        r[i].key = rank_key(scores[i]);
        r[i].positive = positive[i] != 0;
    }
    qsort(r, n, sizeof *r, cmp_ranked);
    return r;
}

double fs_cli_auroc(const double *scores, const uint8_t *positive, size_t n)
{
    double n_pos = 0.0, rank_sum = 0.0;
    fs_ranked *r = ranked_sort(scores, positive, n);
    if (r == NULL) {
        return -1.0;
    }
    for (size_t i = 0; i < n;) {
        size_t j = i;
        double pos_in_group = 0.0;
        while (j < n && r[j].key == r[i].key) {
            pos_in_group += r[j].positive;
            j++;
        }
        /* ranks i+1 .. j share their mean */
        rank_sum += pos_in_group * 0.5 * ((double)(i + 1) + (double)j);
        n_pos += pos_in_group;
        i = j;
    }
    free(r);
    double n_neg = (double)n - n_pos;
    if (n_pos == 0.0 || n_neg == 0.0) {
        return (double)NAN;
    }
    return (rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg);
}

double fs_cli_average_precision(const double *scores, const uint8_t *positive, size_t n)
{
    double n_pos = 0.0, tp = 0.0, fp = 0.0, recall_prev = 0.0, ap = 0.0;
    fs_ranked *r = ranked_sort(scores, positive, n);
    if (r == NULL) {
        return -1.0;
    }
    for (size_t i = 0; i < n; i++) {
        n_pos += r[i].positive;
    }
    if (n_pos == 0.0) {
        free(r);
        return (double)NAN;
    }
    /* descending score: every group of equal scores is one threshold */
    for (size_t j = n; j > 0;) {
        size_t i = j;
        while (i > 0 && r[i - 1].key == r[j - 1].key) {
            i--;
            tp += r[i].positive;
            fp += 1.0 - r[i].positive;
        }
        double recall = tp / n_pos;
        ap += (recall - recall_prev) * (tp / (tp + fp));
        recall_prev = recall;
        j = i;
    }
    free(r);
    return ap;
}
