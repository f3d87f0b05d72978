/*
 * cli_util.h: helpers shared by the offline subcommands (cmd_train.c, cmd_eval.c, ...):
 * option scanning, value parsing with exit status 2 on a bad value, error lines, number
 * formatting that never prints inf or nan, whole-file reads and the training progress line.
 *
 * Every message goes to stderr as one line "flowscore <cmd>: <text>". Exit statuses follow
 * cmd.h: 0 success, 1 failure, 2 usage error.
 */
#ifndef FS_CLI_UTIL_H
#define FS_CLI_UTIL_H

#include "flowscore.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define FS_CLI_EXIT_OK      0
#define FS_CLI_EXIT_FAILURE 1
#define FS_CLI_EXIT_USAGE   2

#if defined(__GNUC__)
#define FS_CLI_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#else
#define FS_CLI_PRINTF(fmt_idx, arg_idx)
#endif

/* errno's text in buf (len bytes) through the XSI strerror_r; returns buf. Thread-safe. */
const char *fs_cli_errno_str(int errnum, char *buf, size_t len);

/*
 * Whether argv[*i] is the option name taking a value, as "--name VALUE" or "--name=VALUE".
 * Returns 1 and sets *value (advancing *i past a separate value), 0 if argv[*i] is another
 * argument, or -1 after printing a usage error when the value is missing.
 */
int fs_cli_take(const char *cmd, int argc, char **argv, int *i, const char *name,
                const char **value);

/* One option of a subcommand for fs_cli_parse. */
typedef struct fs_cli_option {
    const char *name;   /* "--epochs", or a short "-n" */
    const char **value; /* takes a value: where it goes ("--x V" or "--x=V"); NULL: a flag */
    int *flag;          /* a flag: set to 1 when given */
} fs_cli_option;

#define FS_CLI_HELP (-1) /* fs_cli_parse printed the usage text: exit 0 */

/*
 * Scan argv[1..] against opts (n_opts of them). --help or -h prints usage on stdout and
 * returns FS_CLI_HELP. Arguments that are not options go to positional (at most
 * max_positional; *n_positional counts them). Returns 0, FS_CLI_HELP, or 2 after printing a
 * usage error (an unknown option, a missing value, a flag given a value, too many arguments).
 * A repeated option keeps its last value.
 */
int fs_cli_parse(const char *cmd, int argc, char **argv, const fs_cli_option *opts, size_t n_opts,
                 const char *usage, const char **positional, size_t max_positional,
                 size_t *n_positional);

/* Print "flowscore <cmd>: <message>" and a pointer to --help on stderr. Returns 2. */
int fs_cli_usage_error(const char *cmd, const char *fmt, ...) FS_CLI_PRINTF(2, 3);

/* Print "flowscore <cmd>: <message>" on stderr. Returns 1. */
int fs_cli_error(const char *cmd, const char *fmt, ...) FS_CLI_PRINTF(2, 3);

/* Print "flowscore <cmd>: note: <message>" on stderr. */
void fs_cli_note(const char *cmd, const char *fmt, ...) FS_CLI_PRINTF(2, 3);

/*
 * Print an engine error as "flowscore <cmd>: <diag> (<FS_ERR_NAME>)", with fs_strerror's
 * sentence when diag is NULL or empty; what, when not NULL, prefixes the diag ("load m.fsm").
 * Returns 1.
 */
int fs_cli_engine_error(const char *cmd, const char *what, fs_err err, const fs_diag *diag);

/*
 * Parse an option value; on a bad one print a usage error naming the option and the accepted
 * range and return 2, else store it and return 0. Numbers must fill the whole text: "10x",
 * "0x10", "nan" and "1e999" are refused.
 */
int fs_cli_parse_i64(const char *cmd, const char *opt, const char *text, int64_t min, int64_t max,
                     int64_t *out);
int fs_cli_parse_u64(const char *cmd, const char *opt, const char *text, uint64_t *out);
/* lo_open: the lower bound itself is refused (e.g. a learning rate must be > 0). */
int fs_cli_parse_f64(const char *cmd, const char *opt, const char *text, double lo, double hi,
                     int lo_open, double *out);
/* One of n choices; *out is its index. */
int fs_cli_parse_choice(const char *cmd, const char *opt, const char *text,
                        const char *const *choices, size_t n, int *out);

/*
 * x as "%.17g" (round-trips a double) in buf (at least 32 bytes). Returns 0, or -1 without
 * writing a number when x is NaN or infinite: no output path may print "inf" or "nan".
 */
int fs_cli_format_double(double x, char *buf, size_t len);

/* Write s (len bytes) as a JSON string with quotes and escapes. Returns 0, or -1. */
int fs_cli_write_json_string(FILE *f, const char *s, size_t len);

/*
 * Area under the ROC curve of scores for telling positive[i] != 0 rows from the others,
 * with tied scores given their average rank (Mann-Whitney U / (n_pos n_neg)). A non-finite
 * score counts as the largest. Returns NaN when either class is empty. n rows.
 * Errors: -1.0 when out of memory.
 */
double fs_cli_auroc(const double *scores, const uint8_t *positive, size_t n);

/*
 * Average precision with positive rows as the class to find, ranking by descending score:
 * sum over distinct score thresholds of (recall step) x precision, as scikit-learn's
 * average_precision_score. NaN when there is no positive row; -1.0 when out of memory.
 */
double fs_cli_average_precision(const double *scores, const uint8_t *positive, size_t n);

/*
 * Read a whole file (at most max_bytes) into a NUL-terminated malloc'd buffer (*out, free
 * with free()). Errors: FS_ERR_IO (open, read, too large), FS_ERR_NOMEM; diag names the path.
 */
fs_err fs_cli_read_file(const char *path, size_t max_bytes, char **out, size_t *len, fs_diag *diag);

/* Seconds on the monotonic clock. */
double fs_cli_now_s(void);

/*
 * The progress line of a long run. On a terminal (live) the line is redrawn in place with
 * '\r' at most every interval_s seconds; elsewhere only final lines are written, one per line.
 */
typedef struct fs_cli_progress {
    FILE *out;
    int live;          /* out is a terminal */
    int quiet;         /* write nothing */
    double interval_s; /* minimum time between live redraws (0.5) */
    double last_s;     /* time of the last redraw */
    size_t last_len;   /* length of the line on screen, to blank what a shorter one leaves */
} fs_cli_progress;

void fs_cli_progress_init(fs_cli_progress *p, FILE *out, int quiet);

/*
 * Show line (no newline in it). final: the line closes a unit of work (an epoch) and stays
 * on screen; other lines appear only live and only when the interval has passed.
 */
void fs_cli_progress_show(fs_cli_progress *p, const char *line, int final);

#endif /* FS_CLI_UTIL_H */
