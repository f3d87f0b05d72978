/*
 * fuzz_model.c: the model file loader must refuse any byte string with an error, never crash
 * or read out of bounds (issue 2 §5). A loaded model is also scored once, so that whatever
 * the loader accepts is safe to use.
 */
#include "flowscore.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fs_model *m = NULL;
    fs_workspace *ws = NULL;
    if (fs_model_load_buffer(data, size, &m, NULL) != FS_OK) {
        return 0;
    }
    if (fs_workspace_create(&ws) == FS_OK && fs_workspace_reserve(ws, m) == FS_OK &&
        fs_model_n_fields(m) <= 64) {
        double rec[64] = { 0 };
        fs_score s;
        (void)fs_model_score(m, ws, rec, 1, &s);
    }
    fs_workspace_free(ws);
    fs_model_unref(m);
    return 0;
}
