/*
 * cmd_spool.c: `flowscore spool inspect STATE_DIR NAME` reads a model's record spool
 * (<STATE_DIR>/trainer/<NAME>.spool, format in spool.h) without changing it, and prints what
 * it holds: a summary as JSON, or with --records one JSON line per record.
 */
#include "cmd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "records.h"
#include "spool.h"

static const char fs_spool_usage[] =
    "usage: flowscore spool inspect [--records] STATE_DIR NAME\n"
    "       flowscore spool inspect [--records] --file FILE.spool\n"
    "\n"
    "Read the record spool of model NAME under the daemon's state directory\n"
    "(STATE_DIR/trainer/NAME.spool) without changing it, and print a JSON summary: records,\n"
    "records ever accepted, first and last seq, and any torn tail or damaged frames that the\n"
    "daemon would trim or skip on its next start.\n"
    "\n"
    "options:\n"
    "  --records           print each record instead, one JSON line per record:\n"
    "                      {\"seq\": N, \"anomaly\": false, \"record\": [values in schema order]}\n"
    "  --file FILE.spool   a spool file given by its path\n"
    "  --help              this text\n"
    "\n"
    "Exit status: 0 success, 1 the file cannot be read or is not a spool, 2 usage error.\n";

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0;
    *len = 0;
    if (f == NULL) {
        return NULL;
    }
    for (;;) {
        if (*len == cap) {
            size_t nc = cap == 0 ? 65536 : cap * 2;
            char *nb = realloc(buf, nc);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = nb;
            cap = nc;
        }
        size_t n = fread(buf + *len, 1, cap - *len, f);
        *len += n;
        if (n == 0) {
            break;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    return buf;
}

typedef struct summary {
    int print;
    uint64_t first_seq, last_seq, anomalous;
    size_t n;
} summary;

static int on_record(void *arg, const fs_spool_rec *rec)
{
    summary *s = arg;
    if (s->n == 0) {
        s->first_seq = rec->seq;
    }
    s->last_seq = rec->seq;
    s->anomalous += (rec->flags & FS_SPOOL_FLAG_ANOMALY) != 0;
    s->n++;
    if (s->print) {
        printf("{\"seq\":%llu,\"anomaly\":%s,\"record\":%.*s}\n", (unsigned long long)rec->seq,
               (rec->flags & FS_SPOOL_FLAG_ANOMALY) ? "true" : "false", (int)rec->len,
               rec->payload);
    }
    return 0;
}

/*
 * `flowscore spool inspect`: read-only view of a spool file. Returns 0, 1 when the file
 * cannot be read or is not a spool, 2 on a usage error.
 */
int fs_cmd_spool(int argc, char **argv)
{
    static const char cmd[] = "spool";
    const char *file = NULL;
    const char *positional[3];
    size_t n_positional = 0;
    int records = 0;
    char path[FS_CONFIG_PATH_MAX + 96];
    const fs_cli_option opts[] = {
        { "--file", &file, NULL },
        { "--records", NULL, &records },
    };
    int rc = fs_cli_parse(cmd, argc, argv, opts, sizeof opts / sizeof opts[0], fs_spool_usage,
                          positional, 3, &n_positional);
    if (rc != 0) {
        return rc == FS_CLI_HELP ? FS_CLI_EXIT_OK : rc;
    }
    if (n_positional == 0 || strcmp(positional[0], "inspect") != 0) {
        return fs_cli_usage_error(cmd, "expected 'inspect' (flowscore spool inspect ...)");
    }
    if (file != NULL && n_positional == 1) {
        snprintf(path, sizeof path, "%s", file);
    } else if (file == NULL && n_positional == 3 &&
               fs_model_name_valid(positional[2], strlen(positional[2]))) {
        snprintf(path, sizeof path, "%s/trainer/%s.spool", positional[1], positional[2]);
    } else {
        return fs_cli_usage_error(cmd, "give STATE_DIR and a model NAME, or --file FILE.spool");
    }
    size_t len = 0;
    char *buf = read_file(path, &len);
    if (buf == NULL) {
        char eb[128];
        int e = errno;
        return fs_cli_error(cmd, "cannot read %s: %s", path,
                            strerror_r(e, eb, sizeof eb) == 0 ? eb : "error");
    }
    summary s;
    fs_spool_scan sc;
    memset(&s, 0, sizeof s);
    s.print = records;
    fs_spool_scan_buffer(buf, len, on_record, &s, &sc);
    free(buf);
    if (!sc.is_spool && len > 0) {
        return fs_cli_error(cmd, "%s is not a flowscore spool file (bad magic)", path);
    }
    if (!records) {
        fs_strbuf q;
        fs_strbuf_init(&q, 64);
        fs_strbuf_put_json_string(&q, path, strlen(path));
        printf("{\"path\":%s,\"bytes\":%zu,\"header_ok\":%s,\"format_version\":%u,"
               "\"records\":%zu,\"records_seen\":%llu,\"base_seen\":%llu,",
               q.p != NULL ? q.p : "null", len, sc.header_ok ? "true" : "false", sc.version,
               sc.n_records, (unsigned long long)sc.records_seen, (unsigned long long)sc.base_seen);
        if (s.n > 0) {
            printf("\"first_seq\":%llu,\"last_seq\":%llu,", (unsigned long long)s.first_seq,
                   (unsigned long long)s.last_seq);
        } else {
            printf("\"first_seq\":null,\"last_seq\":null,");
        }
        printf("\"anomalous\":%llu,\"valid_end\":%zu,\"torn_bytes\":%zu,"
               "\"damaged_regions\":%zu,\"damaged_bytes\":%zu,\"out_of_order\":%zu}\n",
               (unsigned long long)s.anomalous, sc.valid_end, sc.torn_bytes, sc.n_corrupt,
               sc.corrupt_bytes, sc.out_of_order);
        fs_strbuf_free(&q);
    }
    if (fflush(stdout) != 0) {
        return fs_cli_error(cmd, "cannot write to standard output");
    }
    return FS_CLI_EXIT_OK;
}
