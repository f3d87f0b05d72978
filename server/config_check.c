/*
 * config_check.c: the files and directories a configuration names, checked before the daemon
 * starts so that `--check-config` fails where the daemon would (a user's report: TLS files
 * that do not exist passed the check, then the daemon exited with "cannot open TLS file").
 */
#include "config.h"

#include "config_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define fail fs__config_fail

static const char *errno_text(int e, char *buf, size_t len)
{
    return strerror_r(e, buf, len) == 0 ? buf : "error";
}

/*
 * path is a regular, non-empty file that this process can open for reading; key names it in
 * the message. stat() comes first so that nothing but a regular file is ever opened (a FIFO
 * would block, a device may act on open), and nothing is read.
 */
static int check_readable(const char *key, const char *path, char *err, size_t errlen)
{
    char ebuf[128];
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        return fail(err, errlen, "%s: cannot open %s: %s", key, path,
                    errno_text(e, ebuf, sizeof ebuf));
    }
    if (!S_ISREG(st.st_mode)) {
        return fail(err, errlen, "%s: %s is not a regular file", key, path);
    }
    if (st.st_size == 0) {
        return fail(err, errlen, "%s: %s is empty", key, path);
    }
    int fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return fail(err, errlen, "%s: cannot open %s: %s", key, path,
                    errno_text(e, ebuf, sizeof ebuf));
    }
    close(fd);
    return 0;
}

int fs__config_check_tls(const fs_config *cfg, char *err, size_t errlen)
{
    if (cfg->tls_cert_file[0] == '\0') {
        return 0; /* fs_config_finish has checked that both or neither are set */
    }
    if (check_readable("tls_cert_file", cfg->tls_cert_file, err, errlen) != 0) {
        return -1;
    }
    return check_readable("tls_key_file", cfg->tls_key_file, err, errlen);
}

int fs_config_check_models_dir(const fs_config *cfg, char *err, size_t errlen)
{
    char ebuf[128];
    DIR *d = opendir(cfg->models_dir);
    if (d == NULL) {
        int e = errno;
        return fail(err, errlen, "models_dir: cannot open the directory %s: %s", cfg->models_dir,
                    errno_text(e, ebuf, sizeof ebuf));
    }
    closedir(d);
    return 0;
}
