/*
 * records.h: request bodies in, response bodies out.
 *
 * In (records.c): a pre-scan that enforces the caps cJSON does not (nesting depth, string
 * length, raw control bytes and NUL), then cJSON_ParseWithLengthOpts with the byte offset of
 * any fault, a duplicate-key check, and the conversion of JSON records to rows of doubles in
 * the model's schema order, naming the exact field of any bad value (records[3].bytes,
 * records[0][1], latents[2]).
 *
 * Out (records_out.c): a growing string buffer and a number formatter that never prints a
 * non-finite value (the buffer remembers that one was refused, which is a 500, not output).
 *
 * Threads: every function is reentrant; the scoring workers call them on their own data.
 */
#ifndef FS_RECORDS_H
#define FS_RECORDS_H

#include "flowscore.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* An error answer: HTTP status, stable code, sentence, and the field it is about. */
typedef struct fs_req_error {
    int status;       /* 400, 404, 413, 422, 500, 503 ... */
    const char *code; /* static: "invalid_json", "invalid_input", "unknown_field", ... */
    char message[320];
    char field[160]; /* "" when the error is about no field */
    long offset;     /* byte offset of a JSON syntax fault, or -1 */
} fs_req_error;

/* The stable error codes (the `code` of an error body and the label of
 * flowscore_http_errors_total). */
#define FS_EC_INVALID_JSON      "invalid_json"
#define FS_EC_INVALID_INPUT     "invalid_input"
#define FS_EC_UNKNOWN_FIELD     "unknown_field"
#define FS_EC_MISSING_FIELD     "missing_field"
#define FS_EC_INVALID_PARAMETER "invalid_parameter"
#define FS_EC_TOO_MANY_ROWS     "too_many_rows"
#define FS_EC_BODY_TOO_LARGE    "body_too_large"
#define FS_EC_MODEL_NOT_FOUND   "model_not_found"
#define FS_EC_NOT_FOUND         "not_found"
#define FS_EC_METHOD            "method_not_allowed"
#define FS_EC_UNAUTHORIZED      "unauthorized"
#define FS_EC_FORBIDDEN         "forbidden"
#define FS_EC_UNAVAILABLE       "unavailable"
#define FS_EC_OVERLOADED        "overloaded"
#define FS_EC_RELOAD_FAILED     "reload_failed"
#define FS_EC_CONFLICT          "conflict"         /* a refit is already running */
#define FS_EC_TRAINER_DISABLED  "trainer_disabled" /* trainer.enabled is false */
#define FS_EC_INTERNAL          "internal"

/* Caps on what a request may hold (from the configuration). */
typedef struct fs_json_limits {
    uint32_t max_depth;        /* deepest [ or { nesting */
    uint32_t max_string_bytes; /* longest string, counted in raw bytes between the quotes */
    uint32_t max_rows;         /* records, latents, rows of a tensor, sample n */
} fs_json_limits;

/*
 * Fill e and return -1 (so that `return fs_req_error_set(...)` reads naturally). field may be
 * NULL; fmt is printf-checked.
 */
int fs_req_error_set(fs_req_error *e, int status, const char *code, const char *field,
                     const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

/*
 * Check body (len bytes) before cJSON sees it: not empty, no NUL byte, no raw control byte or
 * \u0000 inside a string, no string longer than lim->max_string_bytes, nesting no deeper than
 * lim->max_depth (counted without recursion, so a body of 100000 '[' is refused at the cap).
 * Returns 0, or -1 with a 400 in err naming the byte offset.
 */
int fs_json_prescan(const char *body, size_t len, const fs_json_limits *lim, fs_req_error *err);

/*
 * Pre-scan, parse and check body as one JSON object: a syntax fault is a 400 naming its byte
 * offset, trailing bytes after the value are refused, and so are duplicate keys in any object
 * (RFC 8259 leaves them undefined; we refuse rather than guess which one wins).
 * Returns the root (caller deletes it with cJSON_Delete), or NULL with err set.
 */
cJSON *fs_json_parse_object(const char *body, size_t len, const fs_json_limits *lim,
                            fs_req_error *err);

/*
 * Convert a "records" member to rows of doubles in schema order. records: the member (NULL
 * when absent); each element an object with exactly the schema's fields or an array of
 * n_fields values in schema order. Numeric and integer fields take JSON numbers only (never a
 * string, bool or null; a number that overflows a double is refused); categorical fields take
 * strings only, an unseen level becoming FS_LEVEL_UNKNOWN. Every record is checked.
 * *rows_out: malloc'd n_rows x n_fields (caller frees; non-NULL even for 0 rows).
 * Errors: -1 with a 400 naming records[i].field or records[i][j], or 413 over lim->max_rows.
 */
int fs_records_read(const cJSON *records, const fs_schema *s, const fs_json_limits *lim,
                    double **rows_out, size_t *n_rows_out, fs_req_error *err);

/*
 * One record (an element of "records", or one NDJSON line) into row (n_fields doubles,
 * caller-allocated), by the rules of fs_records_read; index names it in errors
 * (records[index].field). seen: n_fields bytes of scratch. Errors: -1 with a 400 in err.
 */
int fs_record_read(const cJSON *rec, const fs_schema *s, size_t index, unsigned char *seen,
                   double *row, fs_req_error *err);

/*
 * Convert a "latents" member: an array of arrays of exactly n_dims finite numbers.
 * *out: malloc'd n_rows x n_dims (caller frees). Errors: -1 with a 400 naming latents[i]
 * (wrong length: expected and received) or latents[i][j] (not a finite number), 413 over the
 * rows cap.
 */
int fs_latents_read(const cJSON *latents, size_t n_dims, const fs_json_limits *lim, double **out,
                    size_t *n_rows_out, fs_req_error *err);

/* Whether name is a valid model name: [A-Za-z0-9._-]{1,64}, not "." or "..". */
int fs_model_name_valid(const char *name, size_t len);

/* ------------------------------------------------------------------------------ output */

/* A growing byte buffer; after an allocation failure it stays failed and empty. */
typedef struct fs_strbuf {
    char *p;
    size_t len;
    size_t cap;
    int failed;    /* an allocation failed */
    int nonfinite; /* a non-finite number was refused: the output is incomplete */
} fs_strbuf;

/* Start an empty buffer with room for cap_hint bytes (caller's storage; release with free). */
void fs_strbuf_init(fs_strbuf *b, size_t cap_hint);
/* Release the buffer's memory; b is left empty and may be initialised again. */
void fs_strbuf_free(fs_strbuf *b);
/* Append n bytes of s (any bytes). Out of memory: b->failed is set and stays set. */
void fs_strbuf_put(fs_strbuf *b, const char *s, size_t n);
/* Append the NUL-terminated s. */
void fs_strbuf_puts(fs_strbuf *b, const char *s);
/* Append printf-formatted text (never a double from the engine: use fs_strbuf_put_double). */
void fs_strbuf_printf(fs_strbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/*
 * A JSON string literal with its quotes; control bytes, quotes and backslashes escaped, and
 * every byte that is not part of well-formed UTF-8 replaced by \ufffd (the output is always
 * valid UTF-8, whatever s holds).
 */
void fs_strbuf_put_json_string(fs_strbuf *b, const char *s, size_t n);
/* A number as fs_format_double writes it; a non-finite v sets b->nonfinite and writes 0. */
void fs_strbuf_put_double(fs_strbuf *b, double v);
/* The NUL-terminated text, malloc'd, now owned by the caller (b is left empty); NULL if failed. */
char *fs_strbuf_take(fs_strbuf *b, size_t *len);

/*
 * Write v in at most 17 significant digits so that it reads back as exactly the same double
 * ("%.17g"-exact), in the C locale's format, into buf (len >= 32 bytes); a value with a
 * short decimal form prints short (0.1, 1200, 1e+300). Returns the length, or 0 when v is
 * NaN or infinite (nothing usable is written): callers must treat that as their own bug,
 * never print it. The CLI uses it for CSV output too.
 */
size_t fs_format_double(double v, char *buf, size_t len);

/* An error body {"error":{"code","message","field"?,"offset"?}}, malloc'd. */
char *fs_req_error_format(const fs_req_error *e, size_t *len);

/* The Open Inference Protocol form {"error":"message (field ...)"}, malloc'd. */
char *fs_req_error_format_v2(const fs_req_error *e, size_t *len);

/*
 * One record as a JSON object {"field": value, ...}: numbers for numeric and integer fields,
 * the level name for categorical ones. Returns -1 (nothing useful written) when a value is
 * non-finite or a level index is out of range: an engine bug, answered with 500.
 */
int fs_strbuf_put_record(fs_strbuf *b, const fs_schema *s, const double *row);

#endif /* FS_RECORDS_H */
