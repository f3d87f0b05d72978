/* cmd_inspect.c: `flowscore inspect MODEL.fsm` prints a model file's header as JSON. */
#include "cmd.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "cli_util.h"
#include "flowscore.h"

static const char fs_inspect_usage[] =
    "usage: flowscore inspect MODEL.fsm\n"
    "\n"
    "Load a model file, checking every size, value and its CRC-32, and print its header as\n"
    "pretty-printed JSON: format, schema, spec, preprocessing, training metadata (constant\n"
    "fields, duplicate share, best validation NLL) and calibration.\n"
    "\n"
    "options:\n"
    "  --model MODEL.fsm   the model file (or give it as the only argument)\n"
    "  --help              this text\n"
    "\n"
    "Exit status: 0 success, 1 the file cannot be loaded (the engine's error is printed),\n"
    "2 usage error.\n";

/*
 * `flowscore inspect MODEL.fsm`: loads the model (every check of fs_model_load) and prints
 * its header JSON pretty-printed. Returns 0, 1 with the engine's error, 2 on a usage error.
 */
int fs_cmd_inspect(int argc, char **argv)
{
    static const char cmd[] = "inspect";
    const char *path = NULL;
    fs_model *m = NULL;
    fs_diag diag = { "" };
    cJSON *root = NULL;
    char *text = NULL;
    int status = FS_CLI_EXIT_FAILURE;
    fs_err err;
    const char *model = NULL;
    const char *positional[1];
    size_t n_positional = 0;
    const fs_cli_option opts[] = {
        { "--model", &model, NULL },
    };
    int rc = fs_cli_parse(cmd, argc, argv, opts, sizeof opts / sizeof opts[0], fs_inspect_usage,
                          positional, 1, &n_positional);
    if (rc != 0) {
        return rc == FS_CLI_HELP ? FS_CLI_EXIT_OK : rc;
    }
    if (model != NULL && n_positional > 0) {
        return fs_cli_usage_error(cmd, "one model file only ('%s' and '%s')", model, positional[0]);
    }
    path = model != NULL ? model : (n_positional > 0 ? positional[0] : NULL);
    if (path == NULL) {
        return fs_cli_usage_error(cmd, "which model file? (flowscore inspect MODEL.fsm)");
    }
    err = fs_model_load(path, &m, &diag);
    if (err != FS_OK) {
        return fs_cli_engine_error(cmd, path, err, &diag);
    }
    const char *header = fs_model_header_json(m);
    root = cJSON_Parse(header);
    if (root == NULL) {
        /* the loader validated it; print it unchanged rather than nothing */
        status = puts(header) >= 0 ? FS_CLI_EXIT_OK : FS_CLI_EXIT_FAILURE;
        goto out;
    }
    text = cJSON_Print(root);
    if (text == NULL) {
        fs_cli_error(cmd, "out of memory formatting the header");
        goto out;
    }
    if (puts(text) < 0 || fflush(stdout) != 0) {
        fs_cli_error(cmd, "cannot write the header to standard output");
        goto out;
    }
    status = FS_CLI_EXIT_OK;
out:
    cJSON_free(text);
    cJSON_Delete(root);
    fs_model_unref(m);
    return status;
}
