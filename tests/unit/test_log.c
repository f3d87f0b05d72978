/*
 * test_log.c: the process log (server/log.c): the text line, the JSON object with key=value
 * pairs split out (quoted values, trailing free text), escaping, one line per event even for
 * messages with newlines, truncation, and level parsing.
 */
/* labels: unit */
#include "fs_test.h"

#include <cjson/cJSON.h>

#include "log.h"

static void test_text_line(void **state)
{
    (void)state;
    char buf[256];
    size_t n = fs_log_format_line(buf, sizeof buf, FS_LOG_FORMAT_TEXT, 0, FS_LOG_WARN, "registry",
                                  "reload refused path=a/2.fsm err=FS_ERR_FORMAT");
    assert_string_equal(buf, "warn registry: reload refused path=a/2.fsm err=FS_ERR_FORMAT\n");
    assert_int_equal(n, strlen(buf));
    fs_log_format_line(buf, sizeof buf, FS_LOG_FORMAT_TEXT, 0, FS_LOG_ERROR, "engine",
                       "two\nlines\there");
    assert_string_equal(buf, "error engine: two lines here\n");
}

static void test_json_line(void **state)
{
    (void)state;
    char buf[512];
    fs_log_format_line(buf, sizeof buf, FS_LOG_FORMAT_JSON, 0, FS_LOG_INFO, "http",
                       "listening address=127.0.0.1 port=8080");
    assert_string_equal(buf, "{\"level\":\"info\",\"component\":\"http\",\"msg\":\"listening\","
                             "\"address\":\"127.0.0.1\",\"port\":\"8080\"}\n");
    fs_log_format_line(buf, sizeof buf, FS_LOG_FORMAT_JSON, 0, FS_LOG_WARN, "registry",
                       "model file refused name=w error=\"bad \\\"x\\\" file\" tail text");
    cJSON *o = cJSON_Parse(buf);
    assert_non_null(o);
    assert_string_equal(cJSON_GetObjectItem(o, "msg")->valuestring, "model file refused");
    assert_string_equal(cJSON_GetObjectItem(o, "name")->valuestring, "w");
    assert_string_equal(cJSON_GetObjectItem(o, "error")->valuestring, "bad \"x\" file");
    assert_string_equal(cJSON_GetObjectItem(o, "extra")->valuestring, "tail text");
    cJSON_Delete(o);
    fs_log_format_line(buf, sizeof buf, FS_LOG_FORMAT_JSON, 1, FS_LOG_DEBUG, "x",
                       "ctl \x01 \"q\" \\ end");
    o = cJSON_Parse(buf);
    assert_non_null(o);
    assert_string_equal(cJSON_GetObjectItem(o, "msg")->valuestring, "ctl \x01 \"q\" \\ end");
    assert_non_null(cJSON_GetObjectItem(o, "ts"));
    cJSON_Delete(o);
}

static void test_truncation(void **state)
{
    (void)state;
    char big[3000], buf[128];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int f = 0; f < 2; f++) {
        size_t n = fs_log_format_line(buf, sizeof buf, (fs_log_format)f, 0, FS_LOG_INFO, "t", big);
        assert_true(n < sizeof buf);
        assert_int_equal(buf[n - 1], '\n');
        assert_non_null(strstr(buf, "...\n"));
        assert_ptr_equal(strchr(buf, '\n'), buf + n - 1);
    }
}

static void test_levels(void **state)
{
    (void)state;
    fs_log_level lv = FS_LOG_INFO;
    fs_log_format f = FS_LOG_FORMAT_TEXT;
    assert_int_equal(fs_log_parse_level("debug", &lv), 0);
    assert_int_equal(lv, FS_LOG_DEBUG);
    assert_int_equal(fs_log_parse_level("verbose", &lv), -1);
    assert_int_equal(lv, FS_LOG_DEBUG);
    assert_int_equal(fs_log_parse_format("json", &f), 0);
    assert_int_equal(f, FS_LOG_FORMAT_JSON);
    assert_int_equal(fs_log_parse_format("xml", &f), -1);
    fs_log_set_level(FS_LOG_WARN);
    assert_true(fs_log_enabled(FS_LOG_ERROR));
    assert_true(fs_log_enabled(FS_LOG_WARN));
    assert_false(fs_log_enabled(FS_LOG_INFO));
    fs_log_set_level(FS_LOG_INFO);
    assert_string_equal(fs_log_level_name(FS_LOG_WARN), "warn");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_line),
        cmocka_unit_test(test_json_line),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_levels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
