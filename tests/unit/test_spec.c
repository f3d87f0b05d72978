/* labels: unit */
/*
 * test_spec.c: architectures and schemas as JSON: the realnvp preset is ref-realnvp of
 * bench/SPEC.md (its permutations are the test vectors of SPEC.md appendix A), parse errors
 * name the layer and key, and JSON forms round-trip.
 */
#include "fs_test.h"
#include "layer.h"
#include "model.h"

/* SPEC.md appendix A: numpy.random.default_rng(1000 + k).permutation(D). */
static const int32_t perm_d8[3][8] = {
    { 1, 6, 4, 2, 7, 3, 5, 0 },
    { 6, 4, 5, 0, 3, 2, 7, 1 },
    { 6, 2, 0, 7, 3, 5, 4, 1 },
};
static const int32_t perm_d32_k1[32] = { 30, 23, 5,  9,  8,  0,  1,  4,  22, 13, 27,
                                         21, 2,  31, 20, 7,  11, 19, 28, 17, 25, 14,
                                         26, 6,  10, 12, 18, 16, 3,  29, 15, 24 };
static const int32_t perm_d32_k7[32] = { 12, 15, 23, 13, 25, 31, 26, 20, 28, 4,  2,
                                         18, 27, 19, 5,  11, 17, 22, 29, 6,  10, 30,
                                         24, 21, 3,  14, 8,  7,  0,  1,  9,  16 };

static void test_realnvp_preset_is_ref_realnvp(void **state)
{
    (void)state;
    fs_spec *sp = NULL;
    fs__flow f;
    FS_ASSERT_OK(fs_spec_preset("realnvp", &sp, NULL));
    /* 8 blocks: coupling, then [permutation, coupling] x 7 */
    assert_int_equal(fs_spec_n_layers(sp), 15);
    FS_ASSERT_OK(fs__flow_init(&f, sp->layers, sp->n_layers, 32, 0, NULL));
    for (size_t i = 0; i < f.n_layers; i++) {
        const fs__layer *l = &f.layers[i];
        if (i % 2 == 0) {
            assert_int_equal(l->kind, FS__LAYER_AFFINE_COUPLING);
            assert_int_equal(l->d1, 16);
            assert_int_equal(l->n_hidden, 2);
            assert_int_equal(l->hidden[0], 128);
            assert_int_equal(l->hidden[1], 128);
            FS_ASSERT_NEAR(l->clamp, 2.0, 0.0);
        } else {
            assert_int_equal(l->kind, FS__LAYER_PERMUTATION);
        }
    }
    assert_memory_equal(f.layers[1].perm, perm_d32_k1, sizeof perm_d32_k1);
    assert_memory_equal(f.layers[13].perm, perm_d32_k7, sizeof perm_d32_k7);
    /* per block: d1*H + H + H*H + H + H*2*d2 + 2*d2 = 22,816 parameters (SPEC.md section 2) */
    assert_int_equal(f.n_params, 8 * 22816);
    fs__flow_deinit(&f);
    FS_ASSERT_OK(fs__flow_init(&f, sp->layers, sp->n_layers, 8, 0, NULL));
    for (int k = 1; k <= 3; k++) {
        assert_memory_equal(f.layers[2 * k - 1].perm, perm_d8[k - 1], sizeof perm_d8[0]);
    }
    fs__flow_deinit(&f);
    fs_spec_free(sp);
}

static void test_spec_preset_overrides_and_errors(void **state)
{
    (void)state;
    static const struct {
        const char *json, *want;
    } bad[] = {
        { "", "not valid JSON" },
        { "[]", "object" },
        { "{\"layers\": []}", "layers" },
        { "{\"layers\": [{\"type\": \"spline\"}]}", "layers[0]" },
        { "{\"layers\": [{\"type\": \"affine_coupling\", \"hiden\": [8]}]}", "hiden" },
        { "{\"layers\": [{\"type\": \"affine_coupling\"}, {\"type\": \"actnorm\", \"x\": 1}]}",
          "layers[1]" },
        { "{\"layers\": [{\"type\": \"affine_coupling\", \"hidden\": [0]}]}", "hidden" },
        { "{\"layers\": [{\"type\": \"affine_coupling\", \"clamp\": -1}]}", "clamp" },
        { "{\"layers\": [{\"type\": \"leaky_relu\", \"alpha\": 2}]}", "alpha" },
        { "{\"layers\": [{\"type\": \"permutation\", \"perm\": [0, 5]}]}", "perm" },
        { "{\"preset\": \"glow\"}", "preset" },
        { "{\"preset\": \"realnvp\", \"blocks\": 0}", "blocks" },
        { "{\"preset\": \"realnvp\", \"layers\": []}", "not both" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fs_spec *sp = NULL;
        fs_diag dg = { { 0 } };
        FS_ASSERT_ERR(fs_spec_parse_json(bad[i].json, strlen(bad[i].json), &sp, &dg),
                      FS_ERR_FORMAT);
        assert_null(sp);
        if (strstr(dg.msg, bad[i].want) == NULL) {
            fail_msg("spec %s: message '%s' does not name '%s'", bad[i].json, dg.msg, bad[i].want);
        }
    }
    const char *ok = "{\"preset\": \"realnvp\", \"blocks\": 3, \"hidden\": [16], \"clamp\": 1.5}";
    fs_spec *sp = NULL;
    FS_ASSERT_OK(fs_spec_parse_json(ok, strlen(ok), &sp, NULL));
    assert_int_equal(fs_spec_n_layers(sp), 5);
    assert_int_equal(sp->layers[4].n_hidden, 1);
    FS_ASSERT_NEAR(sp->layers[4].clamp, 1.5, 0.0);
    fs_spec_free(sp);
}

static void test_spec_json_round_trip(void **state)
{
    (void)state;
    const char *json =
        "{\"layers\":[{\"type\":\"actnorm\"},{\"type\":\"affine_coupling\",\"hidden\":[8,4],"
        "\"clamp\":1.5,\"split\":2},{\"type\":\"permutation\",\"seed\":9},{\"type\":"
        "\"permutation\",\"reverse\":true},{\"type\":\"permutation\",\"perm\":[2,0,1,3]},"
        "{\"type\":\"householder\",\"reflections\":3},{\"type\":\"additive_coupling\","
        "\"hidden\":[5]},{\"type\":\"batchnorm\",\"momentum\":0.2,\"eps\":0.001},"
        "{\"type\":\"leaky_relu\",\"alpha\":0.3},{\"type\":\"permutation\",\"numpy_seed\":1001}]}";
    fs_spec *a = NULL, *b = NULL;
    char *text = NULL, *text2 = NULL;
    FS_ASSERT_OK(fs_spec_parse_json(json, strlen(json), &a, NULL));
    FS_ASSERT_OK(fs_spec_format_json(a, &text));
    assert_string_equal(text, json);
    FS_ASSERT_OK(fs_spec_parse_json(text, strlen(text), &b, NULL));
    FS_ASSERT_OK(fs_spec_format_json(b, &text2));
    assert_string_equal(text, text2);
    fs_free(text);
    fs_free(text2);
    fs_spec_free(a);
    fs_spec_free(b);
}

static void test_schema_json_round_trip_and_errors(void **state)
{
    (void)state;
    const char *json =
        "{\"header\": false, \"fields\": [{\"name\": \"bytes\", \"type\": \"integer\", "
        "\"transform\": \"log1p\", \"dequantize\": true}, {\"name\": \"rate\", \"type\": "
        "\"numeric\"}, {\"name\": \"proto\", \"type\": \"categorical\", \"levels\": [\"udp\", "
        "\"tcp\"]}, {\"name\": \"label\", \"type\": \"label\"}, {\"name\": \"id\", \"type\": "
        "\"ignore\"}]}";
    fs_schema *s = NULL, *s2 = NULL;
    char *text = NULL;
    FS_ASSERT_OK(fs_schema_parse_json(json, strlen(json), &s, NULL));
    assert_int_equal(fs_schema_n_fields(s), 3);
    assert_int_equal(fs_schema_field_type(s, 0), FS_FIELD_INTEGER);
    assert_int_equal(fs_schema_field_transform(s, 0), FS_TRANSFORM_LOG1P);
    FS_ASSERT_NEAR(fs_schema_level_index(s, 2, "tcp", 3), 1.0, 0.0);
    FS_ASSERT_NEAR(fs_schema_level_index(s, 2, "sctp", 4), FS_LEVEL_UNKNOWN, 0.0);
    FS_ASSERT_NEAR(fs_schema_level_index(s, 2, "tc", 2), FS_LEVEL_UNKNOWN, 0.0);
    FS_ASSERT_OK(fs_schema_format_json(s, &text));
    FS_ASSERT_OK(fs_schema_parse_json(text, strlen(text), &s2, NULL));
    assert_true(fs__schema_equal(s, s2));
    fs_free(text);
    fs_schema_free(s);
    fs_schema_free(s2);
    static const struct {
        const char *json, *want;
    } bad[] = {
        { "{}", "fields" },
        { "{\"fields\": []}", "no feature" },
        { "{\"fields\": [{\"name\": \"a\", \"type\": \"float\"}]}", "unknown type" },
        { "{\"fields\": [{\"name\": \"a\", \"type\": \"numeric\"}, {\"name\": \"a\", \"type\": "
          "\"numeric\"}]}",
          "duplicate" },
        { "{\"fields\": [{\"name\": \"a\", \"type\": \"numeric\", \"levels\": [\"x\"]}]}",
          "levels" },
        { "{\"fields\": [{\"name\": \"c\", \"type\": \"categorical\", \"levels\": [\"x\", "
          "\"x\"]}]}",
          "duplicate" },
        { "{\"fields\": [{\"name\": \"a\", \"type\": \"numeric\", \"transform\": \"log\"}]}",
          "transform" },
        { "{\"fields\": [{\"name\": \"a\", \"type\": \"numeric\", \"scale\": 2}]}", "scale" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fs_schema *b = NULL;
        fs_diag dg = { { 0 } };
        FS_ASSERT_ERR(fs_schema_parse_json(bad[i].json, strlen(bad[i].json), &b, &dg),
                      FS_ERR_FORMAT);
        assert_null(b);
        if (strstr(dg.msg, bad[i].want) == NULL) {
            fail_msg("schema %s: message '%s' does not name '%s'", bad[i].json, dg.msg,
                     bad[i].want);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_realnvp_preset_is_ref_realnvp),
        cmocka_unit_test(test_spec_preset_overrides_and_errors),
        cmocka_unit_test(test_spec_json_round_trip),
        cmocka_unit_test(test_schema_json_round_trip_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
