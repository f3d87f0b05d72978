/* cmd_serve.c: `flowscore serve`: configuration from file and flags, then the daemon. */
#include "cmd.h"
#include "config.h"
#include "log.h"
#include "server.h"

#include <cblas.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Say which OpenBLAS kernels run: 0.3.21 takes some recent CPUs for a Prescott and uses its
 * SSE3 kernels, about 3x slower, which an operator can fix with OPENBLAS_CORETYPE.
 */
static void log_blas_kernels(void)
{
    const char *core = openblas_get_corename();
    __builtin_cpu_init();
    if (core != NULL && strcmp(core, "Prescott") == 0 && __builtin_cpu_supports("avx2") &&
        getenv("OPENBLAS_CORETYPE") == NULL) {
        fs_log(FS_LOG_WARN, "serve",
               "OpenBLAS runs its generic SSE3 kernels on this AVX2 CPU core=%s; setting "
               "OPENBLAS_CORETYPE (e.g. Haswell or SkylakeX) in the environment is about 3x "
               "faster",
               core);
    } else {
        fs_log(FS_LOG_INFO, "serve", "OpenBLAS kernels core=%s", core != NULL ? core : "unknown");
    }
}

/* Find --config FILE (or --config=FILE) first: the file applies before every other flag. */
static const char *find_config(int argc, char **argv, int *bad)
{
    const char *path = NULL;
    *bad = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                *bad = 1;
                return NULL;
            }
            path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
        }
    }
    return path;
}

/* Apply every flag but --config; *check set by --check-config. Returns 0, 1 help, -1 error. */
static int apply_flags(fs_config *cfg, int argc, char **argv, int *check)
{
    char err[512];
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        char name[64];
        const char *value = NULL;
        int is_bool = 0;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            return 1;
        }
        if (strcmp(arg, "--check-config") == 0) {
            *check = 1;
            continue;
        }
        if (strcmp(arg, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(arg, "--config=", 9) == 0) {
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "flowscore serve: unexpected argument '%s' (see --help)\n", arg);
            return -1;
        }
        const char *eq = strchr(arg, '=');
        size_t len = eq != NULL ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        if (len >= sizeof name) {
            fprintf(stderr, "flowscore serve: unknown option %s (see --help)\n", arg);
            return -1;
        }
        memcpy(name, arg + 2, len);
        name[len] = '\0';
        if (strcmp(name, "admin-token") == 0) {
            fprintf(stderr, "flowscore serve: the admin token is never taken from the command "
                            "line (process lists show it); use admin_token_file or "
                            "$FLOWSCORE_ADMIN_TOKEN\n");
            return -1;
        }
        if (eq == NULL && strncmp(name, "no-", 3) == 0 && fs_config_is_flag(name + 3, &is_bool) &&
            is_bool) {
            memmove(name, name + 3, strlen(name + 3) + 1);
            value = "false";
        } else if (eq != NULL) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fprintf(stderr, "flowscore serve: option --%s needs a value\n", name);
            return -1;
        }
        if (fs_config_set_flag(cfg, name, value, err, sizeof err) != 0) {
            fprintf(stderr, "flowscore serve: %s\n", err);
            return -1;
        }
    }
    return 0;
}

int fs_cmd_serve(int argc, char **argv)
{
    static fs_server srv; /* large (paths); zeroed; one per process */
    char err[512];
    int bad = 0, check = 0;
    fs_config_defaults(&srv.cfg);
    const char *path = find_config(argc, argv, &bad);
    if (bad) {
        fprintf(stderr, "flowscore serve: --config needs a file\n");
        return 2;
    }
    if (path != NULL && fs_config_load_file(&srv.cfg, path, err, sizeof err) != 0) {
        fprintf(stderr, "flowscore serve: %s\n", err);
        return 2;
    }
    int rc = apply_flags(&srv.cfg, argc, argv, &check);
    if (rc == 1) {
        fs_config_print_help(stdout);
        return 0;
    }
    if (rc != 0) {
        return 2;
    }
    if (fs_config_finish(&srv.cfg, err, sizeof err) != 0) {
        fprintf(stderr, "flowscore serve: %s\n", err);
        return 2;
    }
    /* A missing models_dir used to give a daemon that reported ready while every scan failed.
     * --check-config only warns: under systemd, StateDirectory= creates it at start. */
    int dir_ok = fs_config_check_models_dir(&srv.cfg, err, sizeof err) == 0;
    if (check) {
        char *json = fs_config_format_json(&srv.cfg);
        printf("%s\n", json != NULL ? json : "{}");
        free(json);
        if (!dir_ok) {
            fprintf(stderr,
                    "flowscore serve: warning: %s; the daemon will not start until it "
                    "exists\n",
                    err);
        }
        fprintf(stderr, "flowscore serve: configuration ok%s\n",
                srv.cfg.admin_token_len > 0 ? " (admin token set)" : "");
        return 0;
    }
    if (!dir_ok) {
        fprintf(stderr, "flowscore serve: %s\n", err);
        return 2;
    }
    fs_log_set_level(srv.cfg.log_level);
    fs_log_set_format(srv.cfg.log_format);
    fs_set_log(fs_log_engine, NULL);
    /* Few arenas: model loads and frees from many threads otherwise keep RSS high (case-13). */
    mallopt(M_ARENA_MAX, 4);
    log_blas_kernels();
    return fs_server_run(&srv);
}
