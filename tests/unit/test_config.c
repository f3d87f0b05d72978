/*
 * test_config.c: `flowscore serve` configuration (server/config.c): defaults equal
 * config/flowscore.json, every key kind from JSON and from flags, refusals with the key named,
 * listen addresses, cross-key rules, the TLS files and models_dir checked before start, and
 * the admin token sources.
 */
/* labels: unit */
#include "fs_test.h"

#include <fcntl.h>
#include <unistd.h>

#include "config.h"

static void expect_json_error(const char *json, const char *want)
{
    fs_config cfg;
    char err[512] = "";
    fs_config_defaults(&cfg);
    if (fs_config_parse_json(&cfg, json, strlen(json), err, sizeof err) != -1) {
        fail_msg("accepted: %s", json);
    }
    if (strstr(err, want) == NULL) {
        fail_msg("%s: error '%s' lacks '%s'", json, err, want);
    }
}

static void test_defaults_match_repo_file(void **state)
{
    (void)state;
    fs_config d, f;
    char err[512];
    fs_config_defaults(&d);
    fs_config_defaults(&f);
    assert_string_equal(d.listen, "127.0.0.1:8080");
    assert_int_equal(d.max_body_bytes, 8388608);
    assert_int_equal(d.workers, 0);
    assert_int_equal(d.watch, 1);
    /* Every key of the file parses, and a file of non-default values would differ. */
    memset(&f, 0x5a, sizeof f);
    fs_config_defaults(&f);
    f.max_batch_rows = 7;
    assert_int_equal(
        fs_config_load_file(&f, FS_SOURCE_DIR "/config/flowscore.json", err, sizeof err), 0);
    assert_int_equal(memcmp(&d, &f, sizeof d), 0);
    /* And it names every key: the formatted defaults parse back to the same. */
    char *json = fs_config_format_json(&d);
    assert_non_null(json);
    fs_config_defaults(&f);
    f.workers = 3;
    assert_int_equal(fs_config_parse_json(&f, json, strlen(json), err, sizeof err), 0);
    assert_int_equal(memcmp(&d, &f, sizeof d), 0);
    free(json);
}

static void test_json_values_and_refusals(void **state)
{
    (void)state;
    fs_config cfg;
    char err[512];
    const char *ok = "{\"listen\":\"0.0.0.0:9000\",\"workers\":3,\"max_body_bytes\":1048576,"
                     "\"watch\":false,\"log_level\":\"debug\",\"log_format\":\"json\"}";
    fs_config_defaults(&cfg);
    assert_int_equal(fs_config_parse_json(&cfg, ok, strlen(ok), err, sizeof err), 0);
    assert_int_equal(cfg.workers, 3);
    assert_int_equal(cfg.max_body_bytes, 1048576);
    assert_int_equal(cfg.watch, 0);
    assert_int_equal(cfg.log_level, FS_LOG_DEBUG);
    assert_int_equal(cfg.log_format, FS_LOG_FORMAT_JSON);
    expect_json_error("{\"bogus\":1}", "unknown config key 'bogus'");
    expect_json_error("{\"workers\":-1}", "workers");
    expect_json_error("{\"workers\":1.5}", "non-negative integer");
    expect_json_error("{\"workers\":\"2\"}", "workers");
    expect_json_error("{\"workers\":5000}", "out of range");
    expect_json_error("{\"max_body_bytes\":1}", "max_body_bytes");
    expect_json_error("{\"watch\":1}", "true or false");
    expect_json_error("{\"log_level\":\"loud\"}", "error, warn, info, debug");
    expect_json_error("{\"log_format\":\"xml\"}", "text, json");
    expect_json_error("{\"listen\":5}", "expected a string");
    expect_json_error("{\"workers\":1,\"workers\":2}", "appears twice");
    expect_json_error("{\"admin_token\":\"x\"}", "admin_token_file");
    expect_json_error("[1]", "JSON object");
    expect_json_error("{\"workers\":", "not valid JSON");
}

static void test_flags(void **state)
{
    (void)state;
    fs_config cfg;
    char err[512];
    int is_bool = 0;
    fs_config_defaults(&cfg);
    assert_int_equal(fs_config_set_flag(&cfg, "max-body-bytes", "1024", err, sizeof err), 0);
    assert_int_equal(cfg.max_body_bytes, 1024);
    assert_int_equal(fs_config_set_flag(&cfg, "models-dir", "/srv/m", err, sizeof err), 0);
    assert_string_equal(cfg.models_dir, "/srv/m");
    assert_int_equal(fs_config_set_flag(&cfg, "watch", "false", err, sizeof err), 0);
    assert_int_equal(cfg.watch, 0);
    assert_int_equal(fs_config_set_flag(&cfg, "log-level", "warn", err, sizeof err), 0);
    assert_int_equal(fs_config_set_flag(&cfg, "workers", "x", err, sizeof err), -1);
    assert_non_null(strstr(err, "--workers"));
    assert_int_equal(fs_config_set_flag(&cfg, "workers", "-1", err, sizeof err), -1);
    assert_int_equal(fs_config_set_flag(&cfg, "workers", "+1", err, sizeof err), -1);
    assert_int_equal(
        fs_config_set_flag(&cfg, "workers", "99999999999999999999999", err, sizeof err), -1);
    assert_int_equal(fs_config_set_flag(&cfg, "watch", "maybe", err, sizeof err), -1);
    assert_int_equal(fs_config_set_flag(&cfg, "nope", "1", err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown option --nope"));
    assert_true(fs_config_is_flag("watch", &is_bool));
    assert_true(is_bool);
    assert_true(fs_config_is_flag("state-dir", &is_bool));
    assert_false(is_bool);
    assert_false(fs_config_is_flag("admin-token", &is_bool));
}

static void test_finish_listen_and_rules(void **state)
{
    (void)state;
    static const struct {
        const char *listen, *host;
        int port;
    } good[] = { { "127.0.0.1:0", "127.0.0.1", 0 },
                 { "0.0.0.0:8080", "0.0.0.0", 8080 },
                 { "[::1]:65535", "::1", 65535 },
                 { "localhost:1", "localhost", 1 } };
    static const char *const bad[] = { "nohost",    ":80",     "1.2.3.4:99999", "1.2.3.4:",
                                       "1.2.3.4:x", "[::1:80", "[::1]80" };
    fs_config cfg;
    char err[512];
    unsetenv("FLOWSCORE_ADMIN_TOKEN");
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        fs_config_defaults(&cfg);
        snprintf(cfg.listen, sizeof cfg.listen, "%s", good[i].listen);
        assert_int_equal(fs_config_finish(&cfg, err, sizeof err), 0);
        assert_string_equal(cfg.listen_host, good[i].host);
        assert_int_equal(cfg.listen_port, good[i].port);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fs_config_defaults(&cfg);
        snprintf(cfg.listen, sizeof cfg.listen, "%s", bad[i]);
        assert_int_equal(fs_config_finish(&cfg, err, sizeof err), -1);
        assert_non_null(strstr(err, "listen"));
    }
    fs_config_defaults(&cfg);
    snprintf(cfg.tls_cert_file, sizeof cfg.tls_cert_file, "%s", "cert.pem");
    assert_int_equal(fs_config_finish(&cfg, err, sizeof err), -1);
    assert_non_null(strstr(err, "tls_key_file"));
    fs_config_defaults(&cfg);
    cfg.per_ip_connection_limit = 10;
    cfg.connection_limit = 5;
    assert_int_equal(fs_config_finish(&cfg, err, sizeof err), -1);
    assert_non_null(strstr(err, "per_ip_connection_limit"));
}

/*
 * The files a configuration names are checked where --check-config sees them: TLS files that
 * did not exist passed the check, and the daemon then exited "cannot open TLS file" (a
 * user's report). A missing models_dir gave a daemon that reported ready and served nothing.
 */
static void test_finish_checks_tls_files_and_models_dir(void **state)
{
    (void)state;
    fs_config cfg;
    char err[512];
    char dir[] = "/tmp/fs-cfgtls-XXXXXX", cert[96], key[96], empty[96];
    unsetenv("FLOWSCORE_ADMIN_TOKEN");
    assert_non_null(mkdtemp(dir));
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(empty, sizeof empty, "%s/empty.pem", dir);
    FILE *f = fopen(cert, "w");
    fputs("-----BEGIN CERTIFICATE-----\n", f);
    fclose(f);
    f = fopen(key, "w");
    fputs("-----BEGIN PRIVATE KEY-----\n", f);
    fclose(f);
    f = fopen(empty, "w");
    fclose(f);
    static const struct {
        const char *cert, *key, *want;
    } bad[] = {
        { "/nonexistent.pem", "/nonexistent.key", "tls_cert_file: cannot open /nonexistent.pem" },
        { NULL, "/nonexistent.key", "tls_key_file: cannot open /nonexistent.key" },
        { NULL, "", "tls_key_file: " },  /* key = the empty file */
        { "", NULL, "tls_cert_file: " }, /* cert = the directory */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *c = bad[i].cert == NULL ? cert : (bad[i].cert[0] == '\0' ? dir : bad[i].cert);
        const char *k = bad[i].key == NULL ? key : (bad[i].key[0] == '\0' ? empty : bad[i].key);
        fs_config_defaults(&cfg);
        snprintf(cfg.tls_cert_file, sizeof cfg.tls_cert_file, "%s", c);
        snprintf(cfg.tls_key_file, sizeof cfg.tls_key_file, "%s", k);
        assert_int_equal(fs_config_finish(&cfg, err, sizeof err), -1);
        if (strstr(err, bad[i].want) == NULL) {
            fail_msg("case %zu: '%s' lacks '%s'", i, err, bad[i].want);
        }
    }
    assert_non_null(strstr(err, "not a regular file"));
    fs_config_defaults(&cfg);
    snprintf(cfg.tls_cert_file, sizeof cfg.tls_cert_file, "%s", cert);
    snprintf(cfg.tls_key_file, sizeof cfg.tls_key_file, "%s", empty);
    assert_int_equal(fs_config_finish(&cfg, err, sizeof err), -1);
    assert_non_null(strstr(err, "is empty"));
    snprintf(cfg.tls_key_file, sizeof cfg.tls_key_file, "%s", key);
    assert_int_equal(fs_config_finish(&cfg, err, sizeof err), 0);

    snprintf(cfg.models_dir, sizeof cfg.models_dir, "%s", "/nonexistent");
    assert_int_equal(fs_config_check_models_dir(&cfg, err, sizeof err), -1);
    assert_non_null(strstr(err, "models_dir: cannot open the directory /nonexistent"));
    snprintf(cfg.models_dir, sizeof cfg.models_dir, "%s", cert);
    assert_int_equal(fs_config_check_models_dir(&cfg, err, sizeof err), -1);
    snprintf(cfg.models_dir, sizeof cfg.models_dir, "%s", dir);
    assert_int_equal(fs_config_check_models_dir(&cfg, err, sizeof err), 0); /* empty is fine */
    unlink(cert);
    unlink(key);
    unlink(empty);
    rmdir(dir);
}

static void test_admin_token_sources(void **state)
{
    (void)state;
    fs_config cfg;
    char err[512];
    char path[] = "/tmp/fs-token-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "  s3cret\n", 9), 9);
    close(fd);
    unsetenv("FLOWSCORE_ADMIN_TOKEN");
    fs_config_defaults(&cfg);
    assert_int_equal(fs_config_finish(&cfg, err, sizeof err), 0);
    assert_int_equal(cfg.admin_token_len, 0);
    setenv("FLOWSCORE_ADMIN_TOKEN", "from-env", 1);
    fs_config_defaults(&cfg);
    assert_int_equal(fs_config_finish(&cfg, err, sizeof err), 0);
    assert_string_equal(cfg.admin_token, "from-env");
    fs_config_defaults(&cfg);
    snprintf(cfg.admin_token_file, sizeof cfg.admin_token_file, "%s", path);
    assert_int_equal(fs_config_finish(&cfg, err, sizeof err), -1); /* leading spaces */
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, "s3cret\r\n", 8), 8);
    close(fd);
    fs_config_defaults(&cfg);
    snprintf(cfg.admin_token_file, sizeof cfg.admin_token_file, "%s", path);
    assert_int_equal(fs_config_finish(&cfg, err, sizeof err), 0);
    assert_string_equal(cfg.admin_token, "s3cret"); /* the file wins over the environment */
    assert_int_equal(cfg.admin_token_len, 6);
    char *json = fs_config_format_json(&cfg);
    assert_null(strstr(json, "s3cret"));
    free(json);
    unlink(path);
    fs_config_defaults(&cfg);
    snprintf(cfg.admin_token_file, sizeof cfg.admin_token_file, "%s", path);
    assert_int_equal(fs_config_finish(&cfg, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot open"));
    unsetenv("FLOWSCORE_ADMIN_TOKEN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_match_repo_file),
        cmocka_unit_test(test_json_values_and_refusals),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_finish_listen_and_rules),
        cmocka_unit_test(test_finish_checks_tls_files_and_models_dir),
        cmocka_unit_test(test_admin_token_sources),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
