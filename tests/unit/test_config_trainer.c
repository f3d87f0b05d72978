/*
 * test_config_trainer.c: the trainer's configuration (server/config.c, config_models.c):
 * the "trainer" object and its --trainer-* flags (numbers, booleans, choices, ranges), the
 * "models" object (schema and spec files or an inline spec, per-model overrides that win over
 * global flags, refusals naming the key), the refit minimums (min_refit_records,
 * min_holdout_rows: defaults, floors, overrides), and --check-config's JSON reading back.
 */
/* labels: unit */
#include "fs_test.h"

#include <unistd.h>

#include "config.h"

static fs_config g_cfg; /* large: not on the stack */

static void expect_error(const char *json, const char *want)
{
    char err[512] = "";
    fs_config_defaults(&g_cfg);
    if (fs_config_parse_json(&g_cfg, json, strlen(json), err, sizeof err) == 0) {
        err[0] = '\0';
        if (fs_config_finish(&g_cfg, err, sizeof err) == 0) {
            fail_msg("accepted: %s", json);
        }
    }
    if (strstr(err, want) == NULL) {
        fail_msg("%s: error '%s' lacks '%s'", json, err, want);
    }
}

static void test_trainer_keys_and_flags(void **state)
{
    (void)state;
    char err[512];
    const char *ok = "{\"trainer\":{\"min_new_records\":500,\"holdout_fraction\":0.25,"
                     "\"accept_margin_nats\":-0.5,\"spool_policy\":\"window\","
                     "\"optimizer\":\"sgd\",\"warm_start\":false,\"priority\":\"low\"}}";
    fs_config_defaults(&g_cfg);
    assert_int_equal(g_cfg.trainer.enabled, 1);
    assert_int_equal(g_cfg.trainer.spool_policy, FS_SPOOL_RESERVOIR);
    assert_int_equal(fs_config_parse_json(&g_cfg, ok, strlen(ok), err, sizeof err), 0);
    assert_int_equal(g_cfg.trainer.min_new_records, 500);
    FS_ASSERT_NEAR(g_cfg.trainer.holdout_fraction, 0.25, 0);
    FS_ASSERT_NEAR(g_cfg.trainer.accept_margin_nats, -0.5, 0);
    assert_int_equal(g_cfg.trainer.spool_policy, FS_SPOOL_WINDOW);
    assert_int_equal(g_cfg.trainer.optimizer, 1);
    assert_int_equal(g_cfg.trainer.warm_start, 0);
    assert_int_equal(g_cfg.trainer.priority, FS_TRAINER_PRIO_LOW);
    assert_int_equal(fs_config_set_flag(&g_cfg, "trainer-lr", "2.5e-3", err, sizeof err), 0);
    FS_ASSERT_NEAR(g_cfg.trainer.lr, 2.5e-3, 0);
    assert_int_equal(fs_config_set_flag(&g_cfg, "trainer-lr", "nan", err, sizeof err), -1);
    assert_non_null(strstr(err, "--trainer-lr"));
    assert_int_equal(fs_config_set_flag(&g_cfg, "trainer-lr", "0", err, sizeof err), -1);
    assert_non_null(strstr(err, "out of range"));
    assert_int_equal(fs_config_set_flag(&g_cfg, "trainer-spool-policy", "fifo", err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "reservoir, window"));
    assert_int_equal(fs_config_set_flag(&g_cfg, "trainer-enabled", "false", err, sizeof err), 0);
    assert_int_equal(g_cfg.trainer.enabled, 0);
    int is_bool = 0;
    assert_true(fs_config_is_flag("trainer-exclude-anomalies", &is_bool));
    assert_true(is_bool);
    assert_false(fs_config_is_flag("trainer.lr", &is_bool));
    expect_error("{\"trainer\":{\"bogus\":1}}", "unknown config key 'trainer.bogus'");
    expect_error("{\"trainer\":{\"holdout_fraction\":0}}", "trainer.holdout_fraction");
    expect_error("{\"trainer\":{\"holdout_fraction\":\"x\"}}", "expected a number");
    expect_error("{\"trainer\":{\"epochs\":0}}", "out of range");
    expect_error("{\"trainer\":{\"epochs\":1,\"epochs\":2}}", "appears twice");
    expect_error("{\"trainer\":5}", "expected an object");
    expect_error("{\"trainer.epochs\":5}", "unknown config key");
    expect_error("{\"trainer\":{},\"state_dir\":\"\"}", "state_dir");
}

/* The refit minimums (a user's refit of 4 records published a threshold from 3 rows). */
static void test_refit_minimum_keys(void **state)
{
    (void)state;
    char err[512];
    const char *ok = "{\"trainer\":{\"min_refit_records\":2500,\"min_holdout_rows\":400},"
                     "\"models\":{\"m\":{\"trainer\":{\"min_refit_records\":100,"
                     "\"min_holdout_rows\":50}}}}";
    fs_config_defaults(&g_cfg);
    assert_int_equal(g_cfg.trainer.min_refit_records, 1000);
    assert_int_equal(g_cfg.trainer.min_holdout_rows, 200);
    assert_int_equal(fs_config_parse_json(&g_cfg, ok, strlen(ok), err, sizeof err), 0);
    assert_int_equal(fs_config_finish(&g_cfg, err, sizeof err), 0);
    assert_int_equal(g_cfg.trainer.min_refit_records, 2500);
    assert_int_equal(g_cfg.trainer.min_holdout_rows, 400);
    assert_int_equal(fs_config_trainer(&g_cfg, "m")->min_refit_records, 100);
    assert_int_equal(fs_config_trainer(&g_cfg, "m")->min_holdout_rows, 50);
    assert_int_equal(fs_config_trainer(&g_cfg, "other")->min_refit_records, 2500);
    assert_int_equal(
        fs_config_set_flag(&g_cfg, "trainer-min-refit-records", "5000", err, sizeof err), 0);
    assert_int_equal(g_cfg.trainer.min_refit_records, 5000);
    assert_int_equal(fs_config_set_flag(&g_cfg, "trainer-min-holdout-rows", "300", err, sizeof err),
                     0);
    assert_int_equal(g_cfg.trainer.min_holdout_rows, 300);
    /* Below the floors: a refit on a handful of rows is never configurable. */
    assert_int_equal(fs_config_set_flag(&g_cfg, "trainer-min-refit-records", "4", err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "--trainer-min-refit-records"));
    assert_non_null(strstr(err, "out of range [100,"));
    expect_error("{\"trainer\":{\"min_refit_records\":3}}", "trainer.min_refit_records");
    expect_error("{\"trainer\":{\"min_holdout_rows\":1}}", "trainer.min_holdout_rows");
    expect_error("{\"trainer\":{\"min_holdout_rows\":-1}}", "non-negative integer");
    expect_error("{\"models\":{\"m\":{\"trainer\":{\"min_refit_records\":10}}}}",
                 "models.m.trainer.min_refit_records");
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_models_object(void **state)
{
    (void)state;
    char dir[] = "/tmp/fs-cfgm-XXXXXX", schema[96], spec[96], json[1024], err[512];
    assert_non_null(mkdtemp(dir));
    snprintf(schema, sizeof schema, "%s/schema.json", dir);
    snprintf(spec, sizeof spec, "%s/spec.json", dir);
    write_text(schema, "{\"fields\":[{\"name\":\"a\",\"type\":\"numeric\"},"
                       "{\"name\":\"p\",\"type\":\"categorical\"}]}");
    write_text(spec, "{\"preset\":\"realnvp\",\"blocks\":2,\"hidden\":[8]}");
    snprintf(json, sizeof json,
             "{\"trainer\":{\"epochs\":7,\"min_new_records\":100},"
             "\"models\":{\"wide\":{\"schema\":\"%s\",\"spec\":\"%s\","
             "\"trainer\":{\"min_new_records\":1,\"lr\":0.01}},"
             "\"inline\":{\"schema\":\"%s\",\"spec\":{\"preset\":\"realnvp\",\"blocks\":2}},"
             "\"tuned\":{\"trainer\":{\"enabled\":false}}}}",
             schema, spec, schema);
    fs_config_defaults(&g_cfg);
    assert_int_equal(fs_config_parse_json(&g_cfg, json, strlen(json), err, sizeof err), 0);
    assert_int_equal(fs_config_set_flag(&g_cfg, "trainer-min-new-records", "50", err, sizeof err),
                     0);
    assert_int_equal(fs_config_set_flag(&g_cfg, "trainer-epochs", "9", err, sizeof err), 0);
    assert_int_equal(fs_config_finish(&g_cfg, err, sizeof err), 0);
    assert_int_equal(g_cfg.n_models, 3);
    const fs_trainer_config *w = fs_config_trainer(&g_cfg, "wide");
    assert_int_equal(w->min_new_records, 1); /* the model's own value beats the flag */
    assert_int_equal(w->epochs, 9);          /* not overridden: the global (flag) value */
    FS_ASSERT_NEAR(w->lr, 0.01, 0);
    assert_int_equal(fs_config_trainer(&g_cfg, "tuned")->enabled, 0);
    assert_int_equal(fs_config_trainer(&g_cfg, "other")->min_new_records, 50);
    assert_non_null(strstr(fs_config_model(&g_cfg, "inline")->spec_json, "realnvp"));
    fs_schema *s = NULL;
    fs_spec *p = NULL;
    assert_int_equal(fs_config_model_load(fs_config_model(&g_cfg, "wide"), &s, &p, err, sizeof err),
                     0);
    assert_int_equal(fs_schema_n_fields(s), 2);
    fs_schema_free(s);
    fs_spec_free(p);
    /* --check-config's JSON reads back to the same models. */
    char *text = fs_config_format_json(&g_cfg);
    assert_non_null(strstr(text, "\"models\""));
    static fs_config again;
    fs_config_defaults(&again);
    assert_int_equal(fs_config_parse_json(&again, text, strlen(text), err, sizeof err), 0);
    assert_int_equal(fs_config_finish(&again, err, sizeof err), 0);
    assert_int_equal(fs_config_trainer(&again, "wide")->min_new_records, 1);
    assert_int_equal(fs_config_trainer(&again, "wide")->epochs, 9);
    free(text);
    /* Refusals name the key. */
    expect_error("{\"models\":{\"a/b\":{}}}", "not a model name");
    expect_error("{\"models\":{\"m\":{\"schema\":\"x.json\"}}}", "schema and spec go together");
    expect_error("{\"models\":{\"m\":{\"schema\":\"/nonexistent.json\",\"spec\":{}}}}",
                 "models.m.schema");
    expect_error("{\"models\":{\"m\":{\"trainer\":{\"priority\":\"idle\"}}}}",
                 "global trainer object");
    expect_error("{\"models\":{\"m\":{\"trainer\":{\"nope\":1}}}}", "models.m.trainer.nope");
    expect_error("{\"models\":{\"m\":{\"color\":1}}}", "models.m.color");
    expect_error("{\"models\":[]}", "expected an object");
    snprintf(json, sizeof json, "{\"models\":{\"m\":{\"schema\":\"%s\",\"spec\":{\"layers\":5}}}}",
             schema);
    expect_error(json, "models.m.spec");
    unlink(schema);
    unlink(spec);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trainer_keys_and_flags),
        cmocka_unit_test(test_refit_minimum_keys),
        cmocka_unit_test(test_models_object),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
