/*
 * log.h: flowscore's process log. One line per event on stderr, written with one write(2):
 *
 *     warn registry: reload refused path=models/a/2.fsm err=FS_ERR_FORMAT
 *
 * or, with the JSON format, one object per line:
 *
 *     {"ts":"2024-05-01T12:00:00.123Z","level":"warn","component":"registry",
 *      "msg":"reload refused","path":"models/a/2.fsm","err":"FS_ERR_FORMAT"}
 *
 * Messages are free text followed by key=value pairs; a value holding spaces is written in
 * double quotes (key="a b"). When stderr is the journal's stream ($JOURNAL_STREAM names it),
 * each line starts with a syslog priority prefix, <3> error .. <7> debug.
 * Threads: every function may be called from any thread. Per-request events are metrics,
 * not log lines (STYLE.md, "Logging").
 */
#ifndef FS_LOG_H
#define FS_LOG_H

#include "flowscore.h"

#include <stdarg.h>

typedef enum fs_log_format { FS_LOG_FORMAT_TEXT = 0, FS_LOG_FORMAT_JSON } fs_log_format;

#if defined(__GNUC__)
#define FS_LOG_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#else
#define FS_LOG_PRINTF(fmt_idx, arg_idx)
#endif

/*
 * Log one event if level is enabled. component names the module ("http", "registry");
 * fmt is printf-checked and yields "message key=value ...". Lines longer than 2 KiB are
 * cut and end in "...". Never fails; a failed write is ignored.
 */
void fs_log(fs_log_level level, const char *component, const char *fmt, ...) FS_LOG_PRINTF(3, 4);

/* The same with a va_list. */
void fs_vlog(fs_log_level level, const char *component, const char *fmt, va_list ap)
    FS_LOG_PRINTF(3, 0);

/* Whether level is enabled: check it before formatting something costly. */
int fs_log_enabled(fs_log_level level);

/* Set the most verbose level written (FS_LOG_INFO by default). */
void fs_log_set_level(fs_log_level level);

/* Set the line format (FS_LOG_FORMAT_TEXT by default). */
void fs_log_set_format(fs_log_format format);

/*
 * Parse "error" | "warn" | "info" | "debug" into *out. Returns 0 on success, -1 for any
 * other text (*out unchanged).
 */
int fs_log_parse_level(const char *text, fs_log_level *out);

/* Parse "text" | "json" into *out. Returns 0 on success, -1 otherwise. */
int fs_log_parse_format(const char *text, fs_log_format *out);

/* The level's name: "error", "warn", "info" or "debug". Static storage. */
const char *fs_log_level_name(fs_log_level level);

/*
 * An fs_log_fn for fs_set_log: writes the engine's messages under the component "engine".
 * user is ignored.
 */
void fs_log_engine(void *user, fs_log_level level, const char *msg);

/*
 * Re-read $JOURNAL_STREAM and compare it with stderr's device and inode, to decide on the
 * <N> priority prefix. Called once by the first fs_log; tests call it after setenv.
 */
void fs_log_detect_journal(void);

/*
 * Format one line into buf (len bytes, NUL-terminated, ends in '\n') as fs_log would write
 * it, without the priority prefix and, in JSON, without the timestamp when with_ts is 0.
 * Returns the line's length. For the unit tests.
 */
size_t fs_log_format_line(char *buf, size_t len, fs_log_format format, int with_ts,
                          fs_log_level level, const char *component, const char *msg);

#endif /* FS_LOG_H */
