/* error.c: error names and sentences, diagnostics, and the engine's log hook. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

static const char *const fs_err_names[FS_ERR__COUNT] = {
    "FS_OK",        "FS_ERR_NOMEM",     "FS_ERR_INVALID",  "FS_ERR_SHAPE",
    "FS_ERR_IO",    "FS_ERR_FORMAT",    "FS_ERR_VERSION",  "FS_ERR_NUMERIC",
    "FS_ERR_MAGIC", "FS_ERR_TRUNCATED", "FS_ERR_CHECKSUM", "FS_ERR_CANCELLED",
};

static const char *const fs_err_texts[FS_ERR__COUNT] = {
    "success",
    "out of memory",
    "invalid argument",
    "sizes or shapes do not match",
    "input/output error",
    "malformed model file or document",
    "unsupported model file format version",
    "non-finite number",
    "not a flowscore model file",
    "model file is truncated",
    "model file checksum mismatch",
    "cancelled",
};

const char *fs_strerror(fs_err err)
{
    if ((unsigned)err >= FS_ERR__COUNT) {
        return "unknown error";
    }
    return fs_err_texts[err];
}

const char *fs_err_name(fs_err err)
{
    if ((unsigned)err >= FS_ERR__COUNT) {
        return "FS_ERR_UNKNOWN";
    }
    return fs_err_names[err];
}

fs_err fs__diag(fs_diag *diag, fs_err err, const char *fmt, ...)
{
    if (diag != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(diag->msg, sizeof diag->msg, fmt, ap);
        va_end(ap);
    }
    return err;
}

const char *fs__errno_str(int errnum, char *buf, size_t len)
{
    /* The XSI strerror_r (with _DEFAULT_SOURCE and no _GNU_SOURCE) returns an int. */
    if (strerror_r(errnum, buf, len) != 0) {
        snprintf(buf, len, "errno %d", errnum);
    }
    return buf;
}

static fs_log_fn fs_log_hook;
static void *fs_log_user;

void fs_set_log(fs_log_fn fn, void *user)
{
    fs_log_hook = fn;
    fs_log_user = user;
}

bool fs__log_enabled(fs_log_level level)
{
    (void)level;
    return fs_log_hook != NULL;
}

void fs__log(fs_log_level level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    if (fs_log_hook == NULL) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fs_log_hook(fs_log_user, level, msg);
}
