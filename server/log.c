/* log.c: one line per event on stderr, text or JSON, with journald priority prefixes. */
#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FS_LOG_MSG_MAX  2048 /* formatted message, before escaping */
#define FS_LOG_LINE_MAX 8192 /* the written line (JSON escaping can grow the message) */

static atomic_int fs_log_level_cur = FS_LOG_INFO;         /* atomic */
static atomic_int fs_log_format_cur = FS_LOG_FORMAT_TEXT; /* atomic */
static atomic_int fs_log_journal = -1;                    /* atomic: -1 unknown, 0 no, 1 yes */

static const char *const fs_log_level_names[] = { "error", "warn", "info", "debug" };
static const int fs_log_syslog_prio[] = { 3, 4, 6, 7 };

const char *fs_log_level_name(fs_log_level level)
{
    if ((unsigned)level > FS_LOG_DEBUG) {
        return "debug";
    }
    return fs_log_level_names[level];
}

int fs_log_parse_level(const char *text, fs_log_level *out)
{
    for (int i = 0; i <= FS_LOG_DEBUG; i++) {
        if (strcmp(text, fs_log_level_names[i]) == 0) {
            *out = (fs_log_level)i;
            return 0;
        }
    }
    return -1;
}

int fs_log_parse_format(const char *text, fs_log_format *out)
{
    if (strcmp(text, "text") == 0) {
        *out = FS_LOG_FORMAT_TEXT;
        return 0;
    }
    if (strcmp(text, "json") == 0) {
        *out = FS_LOG_FORMAT_JSON;
        return 0;
    }
    return -1;
}

int fs_log_enabled(fs_log_level level)
{
    return (int)level <= atomic_load_explicit(&fs_log_level_cur, memory_order_relaxed);
}

void fs_log_set_level(fs_log_level level)
{
    atomic_store(&fs_log_level_cur, (int)level);
}

void fs_log_set_format(fs_log_format format)
{
    atomic_store(&fs_log_format_cur, (int)format);
}

void fs_log_detect_journal(void)
{
    /* systemd sets JOURNAL_STREAM=<dev>:<ino> of the stream it connected to stderr; a
     * child whose stderr was redirected elsewhere must not use the prefix. */
    const char *js = getenv("JOURNAL_STREAM");
    int yes = 0;
    if (js != NULL) {
        char *end = NULL;
        struct stat st;
        unsigned long long dev = strtoull(js, &end, 10);
        unsigned long long ino = (end != NULL && *end == ':') ? strtoull(end + 1, &end, 10) : 0;
        if (end != NULL && *end == '\0' && ino != 0 && fstat(STDERR_FILENO, &st) == 0 &&
            (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino) {
            yes = 1;
        }
    }
    atomic_store(&fs_log_journal, yes);
}

/* A growing output buffer that silently stops at its end, keeping room for "...\n". */
typedef struct fs_log_buf {
    char *p;
    size_t len;
    size_t cap;
    int cut;
} fs_log_buf;

static void buf_putc(fs_log_buf *b, char c)
{
    if (b->len + 5 >= b->cap) {
        b->cut = 1;
        return;
    }
    b->p[b->len++] = c;
}

static void buf_puts(fs_log_buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        buf_putc(b, s[i]);
    }
}

/* A JSON string body (no quotes): escapes quotes, backslashes and control bytes. */
static void buf_put_json(fs_log_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            buf_putc(b, '\\');
            buf_putc(b, (char)c);
        } else if (c == '\n') {
            buf_puts(b, "\\n", 2);
        } else if (c == '\t') {
            buf_puts(b, "\\t", 2);
        } else if (c < 0x20 || c == 0x7f) {
            char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            buf_puts(b, esc, sizeof esc);
        } else {
            buf_putc(b, (char)c);
        }
    }
}

static int is_key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.';
}

/* Length of a key=value token's key at s (0 if s does not start a key=value token). */
static size_t key_len_at(const char *s)
{
    size_t k = 0;
    while (is_key_char(s[k])) {
        k++;
    }
    return (k > 0 && s[k] == '=') ? k : 0;
}

/* Length of the value at s: up to the next space, or a double-quoted string. */
static size_t value_len_at(const char *s)
{
    size_t n = 0;
    if (s[0] == '"') {
        n = 1;
        while (s[n] != '\0' && s[n] != '"') {
            n += (s[n] == '\\' && s[n + 1] != '\0') ? 2 : 1;
        }
        return s[n] == '"' ? n + 1 : n;
    }
    while (s[n] != '\0' && s[n] != ' ') {
        n++;
    }
    return n;
}

/* Start of the first " key=" token in msg, or the end of msg. */
static const char *first_pair(const char *msg)
{
    if (key_len_at(msg) > 0) {
        return msg;
    }
    for (const char *p = msg; *p != '\0'; p++) {
        if (*p == ' ' && key_len_at(p + 1) > 0) {
            return p;
        }
    }
    return msg + strlen(msg);
}

static void format_json(fs_log_buf *b, int with_ts, fs_log_level level, const char *component,
                        const char *msg)
{
    buf_putc(b, '{');
    if (with_ts) {
        struct timespec ts;
        struct tm tm;
        char when[40];
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(when + n, sizeof when - n, ".%03ldZ", ts.tv_nsec / 1000000L);
        buf_puts(b, "\"ts\":\"", 6);
        buf_puts(b, when, strlen(when));
        buf_puts(b, "\",", 2);
    }
    buf_puts(b, "\"level\":\"", 9);
    buf_puts(b, fs_log_level_name(level), strlen(fs_log_level_name(level)));
    buf_puts(b, "\",\"component\":\"", 15);
    buf_put_json(b, component, strlen(component));
    buf_puts(b, "\",\"msg\":\"", 9);
    const char *pairs = first_pair(msg);
    buf_put_json(b, msg, (size_t)(pairs - msg));
    buf_putc(b, '"');
    const char *p = pairs;
    while (*p != '\0') {
        while (*p == ' ') {
            p++;
        }
        size_t kl = key_len_at(p);
        if (kl == 0) {
            /* Free text after the pairs: keep it under "extra" rather than lose it. */
            buf_puts(b, ",\"extra\":\"", 10);
            buf_put_json(b, p, strlen(p));
            buf_putc(b, '"');
            break;
        }
        const char *v = p + kl + 1;
        size_t vl = value_len_at(v);
        buf_puts(b, ",\"", 2);
        buf_put_json(b, p, kl);
        buf_puts(b, "\":\"", 3);
        if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
            /* A quoted value: drop the quotes and the backslashes that escaped inner quotes. */
            for (size_t i = 1; i + 1 < vl; i++) {
                if (v[i] == '\\' && i + 2 < vl) {
                    i++;
                }
                buf_put_json(b, v + i, 1);
            }
        } else {
            buf_put_json(b, v, vl);
        }
        buf_putc(b, '"');
        p = v + vl;
    }
    buf_putc(b, '}');
}

static void format_text(fs_log_buf *b, fs_log_level level, const char *component, const char *msg)
{
    const char *name = fs_log_level_name(level);
    buf_puts(b, name, strlen(name));
    buf_putc(b, ' ');
    buf_puts(b, component, strlen(component));
    buf_puts(b, ": ", 2);
    for (const char *p = msg; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        /* One event, one line: control bytes (a newline in an engine message) become spaces. */
        buf_putc(b, (c < 0x20 || c == 0x7f) ? ' ' : (char)c);
    }
}

size_t fs_log_format_line(char *buf, size_t len, fs_log_format format, int with_ts,
                          fs_log_level level, const char *component, const char *msg)
{
    fs_log_buf b = { buf, 0, len, 0 };
    if (len < 8) {
        if (len > 0) {
            buf[0] = '\0';
        }
        return 0;
    }
    if (format == FS_LOG_FORMAT_JSON) {
        format_json(&b, with_ts, level, component, msg);
    } else {
        format_text(&b, level, component, msg);
    }
    if (b.cut) {
        /* buf_putc keeps 5 bytes free for this. */
        memcpy(b.p + b.len, "...", 3);
        b.len += 3;
    }
    b.p[b.len++] = '\n';
    b.p[b.len] = '\0';
    return b.len;
}

void fs_vlog(fs_log_level level, const char *component, const char *fmt, va_list ap)
{
    char msg[FS_LOG_MSG_MAX];
    char line[FS_LOG_LINE_MAX];
    size_t off = 0;
    if (!fs_log_enabled(level)) {
        return;
    }
    if (atomic_load(&fs_log_journal) < 0) {
        fs_log_detect_journal();
    }
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (atomic_load(&fs_log_journal) == 1) {
        int n = snprintf(line, sizeof line, "<%d>",
                         fs_log_syslog_prio[level <= FS_LOG_DEBUG ? level : FS_LOG_DEBUG]);
        off = (size_t)n;
    }
    off += fs_log_format_line(line + off, sizeof line - off,
                              (fs_log_format)atomic_load(&fs_log_format_cur), 1, level, component,
                              msg);
    /* One write per line, so that lines from several threads never interleave. */
    ssize_t w = write(STDERR_FILENO, line, off);
    (void)w;
}

void fs_log(fs_log_level level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fs_vlog(level, component, fmt, ap);
    va_end(ap);
}

void fs_log_engine(void *user, fs_log_level level, const char *msg)
{
    (void)user;
    fs_log(level, "engine", "%s", msg);
}
