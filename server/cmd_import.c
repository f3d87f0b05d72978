/*
 * cmd_import.c: `flowscore import --peer-json FILE --out MODEL.fsm` turns the JSON export of
 * a PyTorch ref-realnvp model (bench/SPEC.md section 5) into a model file.
 */
#include "cmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "flowscore.h"

#define FS_IMPORT_MAX_BYTES ((size_t)1 << 30)

static const char fs_import_usage[] =
    "usage: flowscore import --peer-json FILE.json --out MODEL.fsm\n"
    "\n"
    "Import a ref-realnvp model exported by the PyTorch peer (bench/SPEC.md, section 5). The\n"
    "model's fields are numeric and named x0 .. x{D-1}; its preprocessing is the identity and\n"
    "it is uncalibrated (percentile 0, never flagged) until recalibrated. The file is written\n"
    "atomically: on any error nothing is left at --out.\n"
    "\n"
    "options:\n"
    "  --peer-json FILE  the JSON export (at most 1 GiB)\n"
    "  --out MODEL.fsm   the model file to write\n"
    "  --help            this text\n";

/*
 * `flowscore import`: reads a peer JSON export, builds the model with
 * fs_model_import_peer_json and saves it atomically. Returns 0, 1 on failure, 2 on a usage
 * error.
 */
int fs_cmd_import(int argc, char **argv)
{
    static const char cmd[] = "import";
    const char *peer = NULL, *out = NULL;
    char *json = NULL;
    size_t len = 0;
    fs_model *m = NULL;
    fs_diag diag = { "" };
    fs_err err;
    int status = FS_CLI_EXIT_FAILURE;
    const fs_cli_option opts[] = {
        { "--peer-json", &peer, NULL },
        { "--out", &out, NULL },
    };
    int rc = fs_cli_parse(cmd, argc, argv, opts, sizeof opts / sizeof opts[0], fs_import_usage,
                          NULL, 0, NULL);
    if (rc != 0) {
        return rc == FS_CLI_HELP ? FS_CLI_EXIT_OK : rc;
    }
    if (peer == NULL || out == NULL) {
        return fs_cli_usage_error(cmd, "--peer-json and --out are required");
    }
    err = fs_cli_read_file(peer, FS_IMPORT_MAX_BYTES, &json, &len, &diag);
    if (err != FS_OK) {
        fs_cli_error(cmd, "%s", diag.msg);
        goto done;
    }
    err = fs_model_import_peer_json(json, len, &m, &diag);
    if (err != FS_OK) {
        fs_cli_engine_error(cmd, peer, err, &diag);
        goto done;
    }
    err = fs_model_save(m, out, &diag);
    if (err != FS_OK) {
        fs_cli_engine_error(cmd, out, err, &diag);
        goto done;
    }
    printf("imported %s: %zu fields, %zu layers, %zu parameters -> %s\n", peer,
           fs_model_n_fields(m), fs_model_n_layers(m), fs_model_n_params(m), out);
    status = FS_CLI_EXIT_OK;
done:
    fs_model_unref(m);
    free(json);
    return status;
}
