/*
 * fuzz_config.c: the configuration loader (server/config.h) on arbitrary text (issue 7 §1).
 *
 * Input: JSON text for fs_config_parse_json, or, when it starts with "--", one flag
 * "--name=value" for fs_config_set_flag. Promises checked, beyond ASan/UBSan/LSan:
 * - a refusal leaves a non-empty, NUL-terminated sentence in the error buffer;
 * - an accepted configuration that fs_config_finish accepts prints (fs_config_format_json)
 *   as JSON that loads back into exactly the same configuration, and that JSON never
 *   holds the admin token.
 * The admin token file is an operator's path, trusted: it is cleared before fs_config_finish
 * so that the fuzzer never opens files (or a FIFO) of its own choosing.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_config: %s: %s\n", what, detail != NULL ? detail : "");
    abort();
}

static void check_refusal(const char *err, size_t errlen)
{
    if (memchr(err, '\0', errlen) == NULL || err[0] == '\0') {
        die("a refusal without a sentence", NULL);
    }
}

/* fs_config_set_flag on "--name=value" (copied so that both are NUL-terminated). */
static void fuzz_flag(const uint8_t *data, size_t size)
{
    static fs_config cfg;
    char err[512];
    char *text = malloc(size + 1);
    if (text == NULL) {
        return;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    char *eq = strchr(text + 2, '=');
    if (eq != NULL) {
        *eq = '\0';
        fs_config_defaults(&cfg);
        memset(err, 'x', sizeof err);
        if (fs_config_set_flag(&cfg, text + 2, eq + 1, err, sizeof err) != 0) {
            check_refusal(err, sizeof err);
        }
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Large (4 paths of 4 KiB each): static, not on the fuzzer's stack. */
    static fs_config cfg, again;
    char err[512];
    if (size >= 2 && data[0] == '-' && data[1] == '-') {
        fuzz_flag(data, size);
        return 0;
    }
    fs_config_defaults(&cfg);
    memset(err, 'x', sizeof err);
    if (fs_config_parse_json(&cfg, (const char *)data, size, err, sizeof err) != 0) {
        check_refusal(err, sizeof err);
        return 0;
    }
    memset(cfg.admin_token_file, 0, sizeof cfg.admin_token_file);
    if (fs_config_finish(&cfg, err, sizeof err) != 0) {
        check_refusal(err, sizeof err);
        return 0;
    }
    char *json = fs_config_format_json(&cfg);
    if (json == NULL) {
        return 0; /* out of memory */
    }
    if (cfg.admin_token_len > 0 && strstr(json, cfg.admin_token) != NULL) {
        die("the formatted configuration holds the admin token", json);
    }
    fs_config_defaults(&again);
    if (fs_config_parse_json(&again, json, strlen(json), err, sizeof err) != 0) {
        die("the formatted configuration does not load back", err);
    }
    if (fs_config_finish(&again, err, sizeof err) != 0) {
        die("the formatted configuration does not finish", err);
    }
    if (memcmp(&cfg, &again, sizeof cfg) != 0) {
        die("the formatted configuration loads back different", json);
    }
    free(json);
    return 0;
}
