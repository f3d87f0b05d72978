/* records_out.c: response bodies: a string buffer, finite-only numbers, error bodies. */
#include "records.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fs_strbuf_init(fs_strbuf *b, size_t cap_hint)
{
    memset(b, 0, sizeof *b);
    b->cap = cap_hint < 64 ? 64 : cap_hint;
    b->p = malloc(b->cap);
    if (b->p == NULL) {
        b->failed = 1;
        b->cap = 0;
    }
}

void fs_strbuf_free(fs_strbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* Room for n more bytes plus the terminating NUL. */
static int reserve(fs_strbuf *b, size_t n)
{
    if (b->failed) {
        return -1;
    }
    if (b->len + n + 1 <= b->cap) {
        return 0;
    }
    size_t cap = b->cap > 0 ? b->cap : 64;
    while (cap < b->len + n + 1) {
        if (cap > SIZE_MAX / 2) {
            goto fail;
        }
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        goto fail;
    }
    b->p = p;
    b->cap = cap;
    return 0;
fail:
    free(b->p);
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    b->failed = 1;
    return -1;
}

void fs_strbuf_put(fs_strbuf *b, const char *s, size_t n)
{
    if (reserve(b, n) != 0) {
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void fs_strbuf_puts(fs_strbuf *b, const char *s)
{
    fs_strbuf_put(b, s, strlen(s));
}

void fs_strbuf_printf(fs_strbuf *b, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n < sizeof small) {
        fs_strbuf_put(b, small, (size_t)n);
        return;
    }
    if (reserve(b, (size_t)n) != 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/*
 * Length of the well-formed UTF-8 sequence that starts at s (n bytes left), or 0 when there is
 * none: RFC 3629's table, so no overlong forms, no surrogates and nothing above U+10FFFF.
 */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xbf;
    size_t len;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (len > n || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t k = 2; k < len; k++) {
        if (s[k] < 0x80 || s[k] > 0xbf) {
            return 0;
        }
    }
    return len;
}

void fs_strbuf_put_json_string(fs_strbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (reserve(b, n + 2) != 0) {
        return;
    }
    b->p[b->len++] = '"';
    size_t run = 0; /* bytes copied verbatim in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            /* JSON text is UTF-8 (RFC 8259 §8.1). Bytes that are not (a client's key, a
             * Latin-1 level name, a message cut at a byte limit mid-character) become U+FFFD,
             * so that no answer is ever invalid JSON to a strict parser (issue 7). */
            size_t len = utf8_seq_len((const unsigned char *)s + i, n - i);
            if (len > 0) {
                i += len - 1;
                continue;
            }
            fs_strbuf_put(b, s + run, i - run);
            run = i + 1;
            fs_strbuf_put(b, "\\ufffd", 6);
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) {
            continue;
        }
        fs_strbuf_put(b, s + run, i - run);
        run = i + 1;
        if (c == '"' || c == '\\') {
            char esc[2] = { '\\', (char)c };
            fs_strbuf_put(b, esc, 2);
        } else if (c == '\n') {
            fs_strbuf_put(b, "\\n", 2);
        } else if (c == '\t') {
            fs_strbuf_put(b, "\\t", 2);
        } else if (c == '\r') {
            fs_strbuf_put(b, "\\r", 2);
        } else {
            char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            fs_strbuf_put(b, esc, sizeof esc);
        }
    }
    fs_strbuf_put(b, s + run, n - run);
    fs_strbuf_put(b, "\"", 1);
}

size_t fs_format_double(double v, char *buf, size_t len)
{
    if (!isfinite(v) || len < 32) {
        if (len > 0) {
            buf[0] = '\0';
        }
        return 0;
    }
    if (v == 0) {
        /* -0 prints as 0: a sign on zero only confuses JSON consumers. */
        memcpy(buf, "0", 2);
        return 1;
    }
    /* %.17g always reads back exactly. Most model outputs need all 17 digits; a value that
     * needs fewer shows a run of 0s or 9s in its 17-digit form (0.1 prints as
     * 0.10000000000000001), and only then are 15 and 16 digits tried. Fixed formats, not
     * "%.*g": glibc takes a much slower path for a '*' precision. */
    int n = snprintf(buf, len, "%.17g", v);
    if (n <= 0) {
        return 0;
    }
    if (strstr(buf, "000") == NULL && strstr(buf, "999") == NULL) {
        return (size_t)n;
    }
    char shorter[40];
    int m = snprintf(shorter, sizeof shorter, "%.15g", v);
    if (m <= 0 || strtod(shorter, NULL) != v) {
        m = snprintf(shorter, sizeof shorter, "%.16g", v);
        if (m <= 0 || strtod(shorter, NULL) != v) {
            return (size_t)n;
        }
    }
    memcpy(buf, shorter, (size_t)m + 1);
    return (size_t)m;
}

void fs_strbuf_put_double(fs_strbuf *b, double v)
{
    char tmp[40];
    size_t n = fs_format_double(v, tmp, sizeof tmp);
    if (n == 0) {
        b->nonfinite = 1;
        fs_strbuf_put(b, "0", 1);
        return;
    }
    fs_strbuf_put(b, tmp, n);
}

char *fs_strbuf_take(fs_strbuf *b, size_t *len)
{
    char *p = b->failed ? NULL : b->p;
    if (len != NULL) {
        *len = b->failed ? 0 : b->len;
    }
    if (b->failed) {
        free(b->p);
    }
    memset(b, 0, sizeof *b);
    return p;
}

char *fs_req_error_format(const fs_req_error *e, size_t *len)
{
    fs_strbuf b;
    fs_strbuf_init(&b, 256);
    fs_strbuf_puts(&b, "{\"error\":{\"code\":");
    fs_strbuf_put_json_string(&b, e->code, strlen(e->code));
    fs_strbuf_puts(&b, ",\"message\":");
    fs_strbuf_put_json_string(&b, e->message, strlen(e->message));
    if (e->field[0] != '\0') {
        fs_strbuf_puts(&b, ",\"field\":");
        fs_strbuf_put_json_string(&b, e->field, strlen(e->field));
    }
    if (e->offset >= 0) {
        fs_strbuf_printf(&b, ",\"offset\":%ld", e->offset);
    }
    fs_strbuf_puts(&b, "}}\n");
    return fs_strbuf_take(&b, len);
}

char *fs_req_error_format_v2(const fs_req_error *e, size_t *len)
{
    fs_strbuf b;
    char msg[512];
    if (e->field[0] != '\0') {
        snprintf(msg, sizeof msg, "%s (field %s)", e->message, e->field);
    } else {
        snprintf(msg, sizeof msg, "%s", e->message);
    }
    fs_strbuf_init(&b, 256);
    fs_strbuf_puts(&b, "{\"error\":");
    fs_strbuf_put_json_string(&b, msg, strlen(msg));
    fs_strbuf_puts(&b, "}\n");
    return fs_strbuf_take(&b, len);
}

int fs_strbuf_put_record(fs_strbuf *b, const fs_schema *s, const double *row)
{
    size_t n_fields = fs_schema_n_fields(s);
    fs_strbuf_put(b, "{", 1);
    for (size_t f = 0; f < n_fields; f++) {
        const char *name = fs_schema_field_name(s, f);
        if (f > 0) {
            fs_strbuf_put(b, ",", 1);
        }
        fs_strbuf_put_json_string(b, name, strlen(name));
        fs_strbuf_put(b, ":", 1);
        if (fs_schema_field_type(s, f) == FS_FIELD_CATEGORICAL) {
            double idx = row[f];
            size_t n_levels = fs_schema_n_levels(s, f);
            if (!isfinite(idx) || idx < 0 || idx >= (double)n_levels || floor(idx) != idx) {
                return -1;
            }
            const char *level = fs_schema_level_name(s, f, (size_t)idx);
            fs_strbuf_put_json_string(b, level, strlen(level));
        } else {
            if (!isfinite(row[f])) {
                return -1;
            }
            fs_strbuf_put_double(b, row[f]);
        }
    }
    fs_strbuf_put(b, "}", 1);
    return 0;
}
