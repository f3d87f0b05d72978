/*
 * test_records.c: request bodies (server/records.c) and answer bodies (records_out.c): the
 * pre-scan caps, parse errors with byte offsets, duplicate keys, every kind of bad value in
 * every field type, position and record form, latents, name validation, and the
 * finite-only number formatter.
 */
/* labels: unit */
#include "fs_test.h"

#include "records.h"

static const fs_json_limits lim = { 64, 4096, 100 };

/* bytes (numeric), pkts (integer), proto (categorical tcp/udp), flag (integer 0/1). */
static fs_schema *make_schema(void)
{
    fs_schema *s = NULL;
    const char *levels[] = { "tcp", "udp" };
    FS_ASSERT_OK(fs_schema_create(&s));
    FS_ASSERT_OK(fs_schema_add_numeric(s, "bytes", FS_FIELD_NUMERIC, FS_TRANSFORM_NONE, 0));
    FS_ASSERT_OK(fs_schema_add_numeric(s, "pkts", FS_FIELD_INTEGER, FS_TRANSFORM_NONE, 0));
    FS_ASSERT_OK(fs_schema_add_categorical(s, "proto", levels, 2));
    FS_ASSERT_OK(fs_schema_add_numeric(s, "flag", FS_FIELD_INTEGER, FS_TRANSFORM_NONE, 0));
    return s;
}

/* Parse text, read its records; returns 0 or -1 with err filled. */
static int read_text(const fs_schema *s, const char *text, double **rows, size_t *n,
                     fs_req_error *err)
{
    cJSON *root = fs_json_parse_object(text, strlen(text), &lim, err);
    int rc = -1;
    *rows = NULL;
    if (root != NULL) {
        rc = fs_records_read(cJSON_GetObjectItemCaseSensitive(root, "records"), s, &lim, rows, n,
                             err);
        cJSON_Delete(root);
    }
    return rc;
}

static void expect_error(const fs_schema *s, const char *text, int status, const char *code,
                         const char *field)
{
    fs_req_error err;
    double *rows = NULL;
    size_t n = 0;
    if (read_text(s, text, &rows, &n, &err) == 0) {
        free(rows);
        fail_msg("accepted: %s", text);
    }
    assert_null(rows);
    if (err.status != status || strcmp(err.code, code) != 0 ||
        (field != NULL && strcmp(err.field, field) != 0)) {
        fail_msg("%s: got %d %s field '%s' (%s), want %d %s field '%s'", text, err.status, err.code,
                 err.field, err.message, status, code, field != NULL ? field : "");
    }
}

static void test_prescan_limits(void **state)
{
    (void)state;
    fs_req_error err;
    char deep[70 * 2 + 8];
    assert_int_equal(fs_json_prescan("", 0, &lim, &err), -1);
    assert_int_equal(err.offset, 0);
    assert_int_equal(fs_json_prescan("{\"a\":\"x\0y\"}", 11, &lim, &err), -1);
    assert_int_equal(err.offset, 7);
    assert_int_equal(fs_json_prescan("{\"a\":\"x\x01y\"}", 11, &lim, &err), -1);
    assert_int_equal(fs_json_prescan("{\"a\":\"x\\u0000\"}", 15, &lim, &err), -1);
    assert_int_equal(fs_json_prescan("{\"a\":\"x\\u0001\"}", 15, &lim, &err), 0);
    /* Brackets inside strings do not nest. */
    assert_int_equal(fs_json_prescan("{\"a\":\"[[[[[[[[[[[[\"}", 20, &lim, &err), 0);
    for (int depth = 63; depth <= 66; depth++) {
        size_t n = 0;
        for (int i = 0; i < depth; i++) {
            deep[n++] = '[';
        }
        for (int i = 0; i < depth; i++) {
            deep[n++] = ']';
        }
        int rc = fs_json_prescan(deep, n, &lim, &err);
        assert_int_equal(rc, depth <= 64 ? 0 : -1);
        if (rc != 0) {
            assert_non_null(strstr(err.message, "too deep"));
            assert_non_null(strstr(err.message, "64"));
            assert_int_equal(err.offset, 64);
        }
    }
    char *big = malloc(100000);
    assert_non_null(big);
    memset(big, '[', 100000);
    assert_int_equal(fs_json_prescan(big, 100000, &lim, &err), -1);
    assert_int_equal(err.status, 400);
    free(big);
    char longstr[4200];
    memset(longstr, 'a', sizeof longstr);
    longstr[0] = '"';
    longstr[4098] = '"';
    assert_int_equal(fs_json_prescan(longstr, 4099, &lim, &err), -1); /* 4097 bytes: over */
    longstr[4097] = '"';
    assert_int_equal(fs_json_prescan(longstr, 4098, &lim, &err), 0); /* 4096: at the cap */
    memset(longstr, 'a', sizeof longstr);
    longstr[0] = '"';
    longstr[4100] = '"';
    assert_int_equal(fs_json_prescan(longstr, 4101, &lim, &err), -1);
    assert_non_null(strstr(err.message, "max_string_bytes=4096"));
}

static void test_parse_object_offsets(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        long offset;
    } cases[] = {
        { "{\"records\":[{\"bytes\":1200,\"pkts\":", 33 },
        { "{\"records\":[{\"bytes\":1200,}]}", 26 },
        { "{\"records\":[{\"bytes\":NaN,\"pkts\":1}]}", 21 },
        { "bytes=1200&pkts=10", 0 },
        { "{\"records\":[]} x", 15 },
        { "{\"a\":Infinity}", 5 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fs_req_error err;
        cJSON *root = fs_json_parse_object(cases[i].body, strlen(cases[i].body), &lim, &err);
        assert_null(root);
        assert_int_equal(err.status, 400);
        assert_string_equal(err.code, FS_EC_INVALID_JSON);
        if (labs(err.offset - cases[i].offset) > 1) {
            fail_msg("%s: offset %ld, want %ld", cases[i].body, err.offset, cases[i].offset);
        }
        char want[32];
        snprintf(want, sizeof want, "byte %ld", err.offset);
        assert_non_null(strstr(err.message, want));
    }
}

static void test_parse_object_types_and_duplicates(void **state)
{
    (void)state;
    fs_req_error err;
    const char *not_objects[] = { "[]", "\"x\"", "1", "null", "true" };
    for (size_t i = 0; i < 5; i++) {
        assert_null(fs_json_parse_object(not_objects[i], strlen(not_objects[i]), &lim, &err));
        assert_string_equal(err.code, FS_EC_INVALID_INPUT);
        assert_non_null(strstr(err.message, "JSON object"));
    }
    const char *dup = "{\"records\":[],\"records\":[]}";
    assert_null(fs_json_parse_object(dup, strlen(dup), &lim, &err));
    assert_non_null(strstr(err.message, "duplicate key \"records\""));
    const char *inner = "{\"records\":[{\"a\":1,\"b\":2,\"a\":3}]}";
    assert_null(fs_json_parse_object(inner, strlen(inner), &lim, &err));
    /* A large object takes the sorting path. */
    char big[4096];
    size_t n = (size_t)snprintf(big, sizeof big, "{");
    for (int i = 0; i < 100; i++) {
        n += (size_t)snprintf(big + n, sizeof big - n, "\"k%d\":%d,", i, i);
    }
    snprintf(big + n, sizeof big - n, "\"k57\":0}");
    assert_null(fs_json_parse_object(big, strlen(big), &lim, &err));
    assert_non_null(strstr(err.message, "k57"));
    big[n - 1] = '}';
    big[n] = '\0';
    cJSON *ok = fs_json_parse_object(big, strlen(big), &lim, &err);
    assert_non_null(ok);
    cJSON_Delete(ok);
}

static void test_records_both_forms(void **state)
{
    (void)state;
    fs_schema *s = make_schema();
    fs_req_error err;
    double *rows = NULL;
    size_t n = 0;
    const char *text = "{\"records\":[{\"flag\":1,\"proto\":\"udp\",\"pkts\":10,\"bytes\":1.5},"
                       "[2.5,3,\"tcp\",0],{\"bytes\":1e300,\"pkts\":0,\"proto\":\"sctp\","
                       "\"flag\":0}]}";
    assert_int_equal(read_text(s, text, &rows, &n, &err), 0);
    assert_int_equal(n, 3);
    double want[] = { 1.5, 10, 1, 1, 2.5, 3, 0, 0, 1e300, 0, FS_LEVEL_UNKNOWN, 0 };
    for (size_t i = 0; i < 12; i++) {
        if (rows[i] != want[i]) {
            fail_msg("rows[%zu] = %g, want %g", i, rows[i], want[i]);
        }
    }
    free(rows);
    assert_int_equal(read_text(s, "{\"records\":[]}", &rows, &n, &err), 0);
    assert_int_equal(n, 0);
    assert_non_null(rows);
    free(rows);
    fs_schema_free(s);
}

static void test_records_bad_values_every_field_and_position(void **state)
{
    (void)state;
    fs_schema *s = make_schema();
    static const char *const numeric_bad[] = { "\"1200\"", "\"tcp\"", "\"\"", "\" 12\"",
                                               "\"0x10\"", "\"1e3\"", "true", "false",
                                               "null",     "{}",      "[]",   "1e309",
                                               "-1e309" };
    static const char *const cat_bad[] = { "6", "true", "null", "{}", "[]", "1e309" };
    static const char *const names[] = { "bytes", "pkts", "proto", "flag" };
    static const char *const good[] = { "1200", "10", "\"tcp\"", "1" };
    char text[1024], field[64];
    for (size_t pos = 0; pos < 3; pos++) {
        for (size_t f = 0; f < 4; f++) {
            const char *const *bad = f == 2 ? cat_bad : numeric_bad;
            size_t n_bad = f == 2 ? 6 : 13;
            for (size_t b = 0; b < n_bad; b++) {
                for (int form = 0; form < 2; form++) {
                    size_t len = (size_t)snprintf(text, sizeof text, "{\"records\":[");
                    for (size_t r = 0; r < 3; r++) {
                        len += (size_t)snprintf(text + len, sizeof text - len, "%s%s",
                                                r > 0 ? "," : "", form == 0 ? "{" : "[");
                        for (size_t g = 0; g < 4; g++) {
                            const char *v = (r == pos && g == f) ? bad[b] : good[g];
                            if (form == 0) {
                                len +=
                                    (size_t)snprintf(text + len, sizeof text - len, "%s\"%s\":%s",
                                                     g > 0 ? "," : "", names[g], v);
                            } else {
                                len += (size_t)snprintf(text + len, sizeof text - len, "%s%s",
                                                        g > 0 ? "," : "", v);
                            }
                        }
                        len += (size_t)snprintf(text + len, sizeof text - len, "%s",
                                                form == 0 ? "}" : "]");
                    }
                    snprintf(text + len, sizeof text - len, "]}");
                    if (form == 0) {
                        snprintf(field, sizeof field, "records[%zu].%s", pos, names[f]);
                    } else {
                        snprintf(field, sizeof field, "records[%zu][%zu]", pos, f);
                    }
                    expect_error(s, text, 400, FS_EC_INVALID_INPUT, field);
                }
            }
        }
    }
    fs_schema_free(s);
}

static void test_records_structure_errors(void **state)
{
    (void)state;
    fs_schema *s = make_schema();
    expect_error(s, "{}", 400, FS_EC_MISSING_FIELD, "records");
    expect_error(s, "{\"records\":{}}", 400, FS_EC_INVALID_INPUT, "records");
    expect_error(s, "{\"records\":\"x\"}", 400, FS_EC_INVALID_INPUT, "records");
    expect_error(s, "{\"records\":null}", 400, FS_EC_INVALID_INPUT, "records");
    expect_error(s, "{\"records\":[1]}", 400, FS_EC_INVALID_INPUT, "records[0]");
    expect_error(s, "{\"records\":[[1,2,\"tcp\",0],null]}", 400, FS_EC_INVALID_INPUT, "records[1]");
    expect_error(s, "{\"records\":[[1,2,\"tcp\"]]}", 400, FS_EC_INVALID_INPUT, "records[0]");
    expect_error(s, "{\"records\":[[1,2,\"tcp\",0,5]]}", 400, FS_EC_INVALID_INPUT, "records[0]");
    expect_error(s,
                 "{\"records\":[[1,2,\"tcp\",0],{\"bytes\":1,\"pkts\":1,\"proto\":\"tcp\","
                 "\"flag\":0,\"zzz\":1}]}",
                 400, FS_EC_UNKNOWN_FIELD, "records[1].zzz");
    expect_error(s, "{\"records\":[{\"bytes\":1,\"proto\":\"tcp\",\"flag\":0}]}", 400,
                 FS_EC_MISSING_FIELD, "records[0].pkts");
    char text[4096];
    size_t len = (size_t)snprintf(text, sizeof text, "{\"records\":[");
    for (int i = 0; i < 101; i++) {
        len +=
            (size_t)snprintf(text + len, sizeof text - len, "%s[1,2,\"tcp\",0]", i > 0 ? "," : "");
    }
    snprintf(text + len, sizeof text - len, "]}");
    expect_error(s, text, 413, FS_EC_TOO_MANY_ROWS, "records");
    fs_schema_free(s);
}

static void test_latents_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text, *field, *msg;
    } cases[] = {
        { "{\"latents\":[[0.1,0.2]]}", "latents[0]", "expected 3 values (n_dims), got 2" },
        { "{\"latents\":[[1,2,3],[1,2,3],[1,2,3,4]]}", "latents[2]", "got 4" },
        { "{\"latents\":[[1,2,3],[]]}", "latents[1]", "got 0" },
        { "{\"latents\":[null]}", "latents[0]", "got null" },
        { "{\"latents\":[[1,null,3]]}", "latents[0][1]", "got null" },
        { "{\"latents\":[[1,\"2\",3]]}", "latents[0][1]", "got a string" },
        { "{\"latents\":[[1,2,1e309]]}", "latents[0][2]", "overflows" },
        { "{\"latents\":{}}", "latents", "array" },
        { "{}", "latents", "missing" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fs_req_error err;
        double *z = NULL;
        size_t n = 0;
        cJSON *root = fs_json_parse_object(cases[i].text, strlen(cases[i].text), &lim, &err);
        assert_non_null(root);
        assert_int_equal(fs_latents_read(cJSON_GetObjectItemCaseSensitive(root, "latents"), 3, &lim,
                                         &z, &n, &err),
                         -1);
        assert_null(z);
        assert_string_equal(err.field, cases[i].field);
        if (strstr(err.message, cases[i].msg) == NULL) {
            fail_msg("%s: message '%s' lacks '%s'", cases[i].text, err.message, cases[i].msg);
        }
        cJSON_Delete(root);
    }
}

static void test_model_name_valid(void **state)
{
    (void)state;
    char name65[66];
    memset(name65, 'a', 65);
    name65[65] = '\0';
    assert_true(fs_model_name_valid("wide", 4));
    assert_true(fs_model_name_valid("A-b_c.9", 7));
    assert_true(fs_model_name_valid(name65, 64));
    assert_false(fs_model_name_valid(name65, 65));
    assert_false(fs_model_name_valid("", 0));
    assert_false(fs_model_name_valid(".", 1));
    assert_false(fs_model_name_valid("..", 2));
    assert_true(fs_model_name_valid("...", 3));
    assert_false(fs_model_name_valid("a/b", 3));
    assert_false(fs_model_name_valid("a b", 3));
    assert_false(fs_model_name_valid("caf\xc3\xa9", 5));
    assert_false(fs_model_name_valid("a\0b", 3));
}

static void test_format_double_round_trips(void **state)
{
    (void)state;
    char buf[40];
    assert_int_equal(fs_format_double((double)NAN, buf, sizeof buf), 0);
    assert_int_equal(fs_format_double((double)INFINITY, buf, sizeof buf), 0);
    assert_int_equal(fs_format_double(-(double)INFINITY, buf, sizeof buf), 0);
    assert_int_equal(fs_format_double(0.1, buf, sizeof buf), 3);
    assert_string_equal(buf, "0.1");
    fs_format_double(-0.0, buf, sizeof buf);
    assert_string_equal(buf, "0");
    fs_format_double(1e300, buf, sizeof buf);
    assert_string_equal(buf, "1e+300");
    uint64_t x = 88172645463325252u;
    for (int i = 0; i < 20000; i++) {
        double v;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(&v, &x, sizeof v);
        size_t n = fs_format_double(v, buf, sizeof buf);
        if (!isfinite(v)) {
            assert_int_equal(n, 0);
            continue;
        }
        assert_true(n > 0 && n < 32);
        if (strtod(buf, NULL) != v) {
            fail_msg("%.17g printed as %s", v, buf);
        }
    }
    fs_strbuf b;
    fs_strbuf_init(&b, 8);
    fs_strbuf_put_double(&b, 1.5);
    assert_false(b.nonfinite);
    fs_strbuf_put_double(&b, (double)NAN);
    assert_true(b.nonfinite);
    fs_strbuf_free(&b);
}

static void test_strbuf_json_string_and_error_body(void **state)
{
    (void)state;
    fs_strbuf b;
    size_t len;
    fs_strbuf_init(&b, 4);
    fs_strbuf_put_json_string(&b, "a\"b\\c\n\x01\x7f", 8);
    char *s = fs_strbuf_take(&b, &len);
    assert_string_equal(s, "\"a\\\"b\\\\c\\n\\u0001\\u007f\"");
    free(s);
    fs_req_error e;
    fs_req_error_set(&e, 400, FS_EC_INVALID_INPUT, "records[3].bytes", "expected %s",
                     "a \"number\"");
    char *body = fs_req_error_format(&e, &len);
    cJSON *root = cJSON_Parse(body);
    assert_non_null(root);
    cJSON *err = cJSON_GetObjectItemCaseSensitive(root, "error");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(err, "code")->valuestring,
                        "invalid_input");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(err, "field")->valuestring,
                        "records[3].bytes");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(err, "message")->valuestring,
                        "expected a \"number\"");
    assert_null(cJSON_GetObjectItemCaseSensitive(err, "offset"));
    cJSON_Delete(root);
    free(body);
    body = fs_req_error_format_v2(&e, &len);
    root = cJSON_Parse(body);
    assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(root, "error")));
    cJSON_Delete(root);
    free(body);
}

/* Put s (n bytes) as a JSON string and compare with want (the literal with its quotes). */
static void expect_json_string(const char *s, size_t n, const char *want)
{
    fs_strbuf b;
    fs_strbuf_init(&b, 4);
    fs_strbuf_put_json_string(&b, s, n);
    char *got = fs_strbuf_take(&b, NULL);
    assert_non_null(got);
    if (strcmp(got, want) != 0) {
        fail_msg("json string of %zu bytes: got %s, want %s", n, got, want);
    }
    free(got);
}

/* Issue 7 (fuzz_request): a client's key of invalid UTF-8, or one cut at 64 bytes in the
 * middle of a character, was echoed into the error body, which strict parsers refuse. */
static void test_strbuf_json_string_always_utf8(void **state)
{
    (void)state;
    /* Well-formed UTF-8 passes verbatim: 2, 3 and 4 bytes, and the edges of the table. */
    expect_json_string("\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80", 9,
                       "\"\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\"");
    expect_json_string("\xc2\x80\xed\x9f\xbf\xf4\x8f\xbf\xbf", 9,
                       "\"\xc2\x80\xed\x9f\xbf\xf4\x8f\xbf\xbf\"");
    /* Each byte that is not part of a well-formed sequence becomes U+FFFD. */
    expect_json_string("a\xff\xfe", 3, "\"a\\ufffd\\ufffd\"");
    expect_json_string("\xc3", 1, "\"\\ufffd\"");                       /* cut short */
    expect_json_string("x\xe4\xb8", 3, "\"x\\ufffd\\ufffd\"");          /* cut short */
    expect_json_string("\xc0\xaf", 2, "\"\\ufffd\\ufffd\"");            /* overlong '/' */
    expect_json_string("\xe0\x80\xaf", 3, "\"\\ufffd\\ufffd\\ufffd\""); /* overlong */
    expect_json_string("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""); /* surrogate */
    expect_json_string("\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\""); /* > U+10FFFF */
    expect_json_string("\xc3\xa9\x80q", 4, "\"\xc3\xa9\\ufffdq\"");                /* stray byte */
    /* An error message cut mid-character by %.64s still gives a valid body. */
    char key[80];
    for (size_t i = 0; i < 39; i++) {
        key[2 * i] = (char)0xc3;
        key[2 * i + 1] = (char)0xa9;
    }
    key[78] = '\0';
    fs_req_error e;
    size_t len;
    fs_req_error_set(&e, 400, FS_EC_UNKNOWN_FIELD, NULL, "unknown field \"%.63s\"", key);
    char *body = fs_req_error_format(&e, &len);
    cJSON *root = cJSON_Parse(body);
    assert_non_null(root);
    const char *msg =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "error"), "message")
            ->valuestring;
    assert_non_null(strstr(msg, "\xc3\xa9\xef\xbf\xbd\"")); /* ...é then U+FFFD */
    cJSON_Delete(root);
    free(body);
}

static void test_put_record_refuses_bad_values(void **state)
{
    (void)state;
    fs_schema *s = make_schema();
    fs_strbuf b;
    double ok[] = { 1.5, 2, 1, 0 };
    double bad_level[] = { 1.5, 2, 2, 0 };
    double bad_num[] = { (double)NAN, 2, 1, 0 };
    fs_strbuf_init(&b, 16);
    assert_int_equal(fs_strbuf_put_record(&b, s, ok), 0);
    assert_string_equal(b.p, "{\"bytes\":1.5,\"pkts\":2,\"proto\":\"udp\",\"flag\":0}");
    assert_int_equal(fs_strbuf_put_record(&b, s, bad_level), -1);
    assert_int_equal(fs_strbuf_put_record(&b, s, bad_num), -1);
    fs_strbuf_free(&b);
    fs_schema_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prescan_limits),
        cmocka_unit_test(test_parse_object_offsets),
        cmocka_unit_test(test_parse_object_types_and_duplicates),
        cmocka_unit_test(test_records_both_forms),
        cmocka_unit_test(test_records_bad_values_every_field_and_position),
        cmocka_unit_test(test_records_structure_errors),
        cmocka_unit_test(test_latents_errors),
        cmocka_unit_test(test_model_name_valid),
        cmocka_unit_test(test_format_double_round_trips),
        cmocka_unit_test(test_strbuf_json_string_and_error_body),
        cmocka_unit_test(test_strbuf_json_string_always_utf8),
        cmocka_unit_test(test_put_record_refuses_bad_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
