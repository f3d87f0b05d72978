/* registry.c: model entries, load jobs off the loop, the swap, and rounds over every name. */
#include "registry.h"

#include "log.h"
#include "records.h"

#include "registry_internal.h"
#include <cjson/cJSON.h>

#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

typedef struct load_job {
    uv_work_t req;
    fs_registry *reg;
    fs_entry *e;
    int force;
    int stream; /* a stream model: a missing directory means "no version yet" */
    char dir[FS_DIR_MAX];
    int64_t cur_version;
    fs_file_id cur_id;
    fs_file_id *refused; /* in: the entry's refused files; out: those still refused */
    size_t n_refused;
    char *cur_schema;          /* copy of e->schema_json, or NULL */
    fs_model *publish;         /* a model to write first, or NULL */
    fs_reload_waiter *waiters; /* answered when the job ends */
    /* Results (worker, then loop). */
    fs_model *model;
    int64_t version;
    fs_file_id id;
    char *schema; /* malloc'd */
    char *extra;  /* malloc'd: ,"created":..,"spec":..,"training":.. from the header */
    double seconds;
    int attempted; /* a file was loaded or refused */
    unsigned n_failures;
    char error[512];
    int64_t *versions;
    size_t n_versions;
} load_job;

static double wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int id_equal(const fs_file_id *a, const fs_file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns && a->ino != 0;
}

static int stat_id(const char *path, fs_file_id *id)
{
    struct stat st;
    memset(id, 0, sizeof *id);
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        return -1;
    }
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    id->size = st.st_size;
    id->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    return 0;
}

/* "<positive integer>.fsm" -> the integer, else 0. */
static int64_t version_of(const char *file)
{
    int64_t v = 0;
    size_t i = 0;
    if (file[0] < '1' || file[0] > '9') {
        return 0;
    }
    for (; file[i] >= '0' && file[i] <= '9'; i++) {
        if (i >= 18) {
            return 0;
        }
        v = v * 10 + (file[i] - '0');
    }
    return strcmp(file + i, ".fsm") == 0 ? v : 0;
}

static int cmp_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x < y) - (x > y);
}

/* Threadpool: the versions in dir, descending (malloc'd). -1 if dir cannot be read. */
static int list_versions(const char *dir, int64_t **out, size_t *n_out, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    int64_t *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    *out = NULL;
    *n_out = 0;
    if (d == NULL) {
        char eb[96];
        int e = errno;
        snprintf(err, errlen, "cannot read directory %.300s: %.96s", dir,
                 strerror_r(e, eb, sizeof eb) == 0 ? eb : "error");
        errno = e; /* the caller tells a missing directory from other faults */
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        int64_t ver = version_of(de->d_name);
        if (ver == 0) {
            continue;
        }
        if (n == cap) {
            size_t nc = cap == 0 ? 16 : cap * 2;
            int64_t *nv = realloc(v, nc * sizeof *nv);
            if (nv == NULL) {
                break;
            }
            v = nv;
            cap = nc;
        }
        v[n++] = ver;
    }
    closedir(d);
    if (n > 0) {
        qsort(v, n, sizeof *v, cmp_desc);
    }
    *out = v;
    *n_out = n;
    return 0;
}

static int was_refused(const load_job *j, const fs_file_id *id)
{
    for (size_t i = 0; i < j->n_refused; i++) {
        if (id_equal(&j->refused[i], id)) {
            return 1;
        }
    }
    return 0;
}

/* Threadpool: add id to the refused list (best effort: a full allocation failure only means
 * the file is tried, and counted, again). */
static void remember_refused(load_job *j, const fs_file_id *id)
{
    if (was_refused(j, id)) {
        return;
    }
    fs_file_id *r = realloc(j->refused, (j->n_refused + 1) * sizeof *r);
    if (r != NULL) {
        r[j->n_refused++] = *id;
        j->refused = r;
    }
}

/* Threadpool: keep only the refused files that are still in the listing, unchanged. */
static void prune_refused(load_job *j)
{
    char path[FS_DIR_MAX + 32];
    size_t kept = 0;
    for (size_t i = 0; i < j->n_refused; i++) {
        int present = 0;
        for (size_t v = 0; v < j->n_versions && !present; v++) {
            fs_file_id id;
            snprintf(path, sizeof path, "%s/%lld.fsm", j->dir, (long long)j->versions[v]);
            present = stat_id(path, &id) == 0 && id_equal(&id, &j->refused[i]);
        }
        if (present) {
            j->refused[kept++] = j->refused[i];
        }
    }
    j->n_refused = kept;
}

/*
 * Threadpool: what the loop needs about a new model, computed here so that the loop never
 * parses a model header: the schema text (malloc'd) and the header members that
 * GET /v1/models/{name} shows. Returns 0, or -1 when out of memory.
 */
static int describe(const fs_model *m, char **schema_out, char **extra_out)
{
    static const char *const keys[] = { "created", "spec", "training" };
    char *eng = NULL;
    fs_strbuf b;
    *schema_out = *extra_out = NULL;
    if (fs_schema_format_json(fs_model_schema(m), &eng) != FS_OK) {
        return -1;
    }
    *schema_out = strdup(eng);
    fs_free(eng);
    cJSON *header = cJSON_Parse(fs_model_header_json(m));
    fs_strbuf_init(&b, 256);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(header, keys[i]);
        char *text = item != NULL ? cJSON_PrintUnformatted(item) : NULL;
        fs_strbuf_printf(&b, ",\"%s\":%s", keys[i], text != NULL ? text : "null");
        cJSON_free(text);
    }
    cJSON_Delete(header);
    *extra_out = fs_strbuf_take(&b, NULL);
    if (*schema_out == NULL || *extra_out == NULL) {
        free(*schema_out);
        free(*extra_out);
        *schema_out = *extra_out = NULL;
        return -1;
    }
    return 0;
}

/* Threadpool: load path; on success the model, its schema text and the time it took. */
static int try_load(load_job *j, const char *path, int64_t version, const fs_file_id *id)
{
    fs_diag diag = { "" };
    fs_model *m = NULL;
    char *schema = NULL;
    double t0 = mono_seconds();
    char *extra = NULL;
    fs_err err = fs_model_load(path, &m, &diag);
    j->attempted = 1;
    if (err == FS_OK) {
        if (describe(m, &schema, &extra) != 0) {
            err = FS_ERR_NOMEM;
        } else if (j->cur_schema != NULL && strcmp(schema, j->cur_schema) != 0) {
            /* Clients built for the served fields would break silently. */
            err = FS_ERR_INVALID;
            snprintf(diag.msg, sizeof diag.msg, "schema changed: use a new model name");
        }
    }
    if (err != FS_OK) {
        remember_refused(j, id);
        if (j->n_failures++ == 0) {
            snprintf(j->error, sizeof j->error, "%.256s: %.200s (%s)", path,
                     diag.msg[0] != '\0' ? diag.msg : fs_strerror(err), fs_err_name(err));
        }
        free(schema);
        free(extra);
        fs_model_unref(m);
        return -1;
    }
    j->model = m;
    j->version = version;
    j->id = *id;
    j->schema = schema;
    j->extra = extra;
    j->seconds = mono_seconds() - t0;
    return 0;
}

/* Threadpool: write the published model as the next version, then serve it. */
static void publish_work(load_job *j)
{
    fs_diag diag = { "" };
    char path[FS_DIR_MAX + 32];
    char *schema = NULL, *extra = NULL;
    int64_t next = j->cur_version + 1;
    j->attempted = 1;
    if (j->n_versions > 0 && j->versions[0] + 1 > next) {
        next = j->versions[0] + 1;
    }
    if (describe(j->publish, &schema, &extra) != 0 ||
        (j->cur_schema != NULL && strcmp(schema, j->cur_schema) != 0)) {
        j->n_failures++;
        snprintf(j->error, sizeof j->error,
                 "publish refused: schema changed: use a new model name");
        free(schema);
        free(extra);
        return;
    }
    snprintf(path, sizeof path, "%s/%lld.fsm", j->dir, (long long)next);
    fs_err err = fs_model_save(j->publish, path, &diag);
    if (err != FS_OK || stat_id(path, &j->id) != 0) {
        j->n_failures++;
        snprintf(j->error, sizeof j->error, "publish to %.256s failed: %.160s (%s)", path,
                 diag.msg[0] != '\0' ? diag.msg : fs_strerror(err), fs_err_name(err));
        free(schema);
        free(extra);
        return;
    }
    j->model = fs_model_ref(j->publish);
    j->version = next;
    j->schema = schema;
    j->extra = extra;
}

static void load_work(uv_work_t *req)
{
    load_job *j = req->data;
    char path[FS_DIR_MAX + 32];
    /* Give back what the models freed since the last load (case-13: RSS stays flat). */
    malloc_trim(0);
    if (j->publish != NULL && mkdir(j->dir, 0755) != 0 && errno != EEXIST) {
        char eb[96];
        j->attempted = 1;
        j->n_failures++;
        snprintf(j->error, sizeof j->error, "publish: cannot create %.300s: %.96s", j->dir,
                 strerror_r(errno, eb, sizeof eb) == 0 ? eb : "error");
        return;
    }
    if (list_versions(j->dir, &j->versions, &j->n_versions, j->error, sizeof j->error) != 0) {
        if (j->stream && errno == ENOENT) {
            j->error[0] = '\0'; /* trained from the stream: no version yet */
            return;
        }
        j->attempted = j->force;
        return;
    }
    if (j->publish != NULL) {
        publish_work(j);
        return;
    }
    for (size_t i = 0; i < j->n_versions; i++) {
        fs_file_id id;
        snprintf(path, sizeof path, "%s/%lld.fsm", j->dir, (long long)j->versions[i]);
        if (stat_id(path, &id) != 0) {
            continue; /* removed since the listing, or not a regular file */
        }
        if (!j->force && j->versions[i] == j->cur_version && id_equal(&id, &j->cur_id)) {
            break; /* the served file is still the best one: nothing to do */
        }
        if (!j->force && was_refused(j, &id)) {
            continue; /* refused before and unchanged since: not counted twice */
        }
        if (try_load(j, path, j->versions[i], &id) == 0) {
            break;
        }
    }
    prune_refused(j);
    if (j->n_versions == 0 && j->force && !j->stream) {
        j->attempted = 1;
        snprintf(j->error, sizeof j->error, "no <version>.fsm file in %.400s", j->dir);
    }
}

static void answer(fs_reload_waiter *list, fs_entry *e, int ok)
{
    while (list != NULL) {
        fs_reload_waiter *next = list->next;
        list->next = NULL;
        fs_model_unref(list->published);
        list->published = NULL;
        list->done(list, e, ok);
        list = next;
    }
}

static void start_job(fs_registry *reg, fs_entry *e, int force, fs_reload_waiter *waiters,
                      fs_reload_waiter *publish);

/* Swap in the job's model and record what happened. Loop thread. */
static void apply_result(fs_entry *e, load_job *j)
{
    free(e->versions);
    e->versions = j->versions;
    e->n_versions = j->n_versions;
    j->versions = NULL;
    if (j->model != NULL) {
        fs_model *old = e->current;
        int64_t old_version = e->version;
        e->current = j->model; /* the swap: requests dispatched from now on get this one */
        e->version = j->version;
        e->file_id = j->id;
        free(e->schema_json);
        e->schema_json = j->schema;
        free(e->header_extra);
        e->header_extra = j->extra;
        j->extra = NULL;
        e->loaded_at = wall_seconds();
        e->load_seconds = j->seconds;
        j->model = NULL;
        j->schema = NULL;
        fs_model_unref(old); /* in-flight jobs keep their own reference */
        atomic_store(&e->mm->version, e->version);
        atomic_fetch_add(&e->mm->reloads, 1);
        fs_log(old_version == e->version ? FS_LOG_DEBUG : FS_LOG_INFO, "registry",
               "model loaded name=%s version=%lld previous=%lld seconds=%.3f", e->name,
               (long long)e->version, (long long)old_version, e->load_seconds);
    }
    if (j->n_failures > 0) {
        atomic_fetch_add(&e->mm->reload_failures, j->n_failures);
        fs_log(FS_LOG_WARN, "registry", "model file refused name=%s serving=%lld error=\"%s\"",
               e->name, (long long)e->version, j->error);
    } else if (j->attempted && j->error[0] != '\0') {
        fs_log(FS_LOG_WARN, "registry", "reload found nothing to load name=%s error=\"%s\"",
               e->name, j->error);
    }
    if (j->attempted) {
        snprintf(e->last_error, sizeof e->last_error, "%s", j->error);
    }
    if (j->refused != NULL || j->n_refused == 0) {
        free(e->refused);
        e->refused = j->refused;
        e->n_refused = j->n_refused;
        j->refused = NULL;
    }
}

static void load_after(uv_work_t *req, int status)
{
    load_job *j = req->data;
    fs_registry *reg = j->reg;
    fs_entry *e = j->e;
    (void)status; /* jobs are never cancelled */
    reg->loads--;
    e->loading = 0;
    apply_result(e, j);
    int ok = e->current != NULL && j->n_failures == 0 && j->error[0] == '\0';
    fs_reload_waiter *waiters = j->waiters;
    fs_model_unref(j->model);
    fs_model_unref(j->publish);
    free(j->schema);
    free(j->extra);
    free(j->cur_schema);
    free(j->versions);
    free(j->refused);
    free(j);
    answer(waiters, e, ok);
    if (reg->closing) {
        fs_reload_waiter *w = e->waiting_next;
        e->waiting_next = NULL;
        answer(w, e, 0);
        answer(e->publishing, e, 0);
        e->publishing = NULL;
        return;
    }
    if (e->watch == NULL && reg->timers_open && reg->cfg->watch && e->current != NULL) {
        fs__registry_watch_entry(reg, e); /* a first version made the directory */
    }
    if (e->publishing != NULL) {
        fs_reload_waiter *p = e->publishing;
        e->publishing = NULL;
        start_job(reg, e, 0, NULL, p);
    } else if (e->again) {
        fs_reload_waiter *w = e->waiting_next;
        int force = e->again_force;
        e->waiting_next = NULL;
        e->again = e->again_force = 0;
        start_job(reg, e, force, w, NULL);
    }
}

static void start_job(fs_registry *reg, fs_entry *e, int force, fs_reload_waiter *waiters,
                      fs_reload_waiter *publish)
{
    load_job *j = calloc(1, sizeof *j);
    if (j != NULL && e->schema_json != NULL) {
        j->cur_schema = strdup(e->schema_json);
    }
    if (j == NULL || (e->schema_json != NULL && j->cur_schema == NULL)) {
        fs_log(FS_LOG_ERROR, "registry", "out of memory starting a load name=%s", e->name);
        free(j);
        answer(waiters, e, 0);
        answer(publish, e, 0);
        return;
    }
    j->req.data = j;
    j->reg = reg;
    j->e = e;
    j->force = force;
    j->stream = e->stream;
    snprintf(j->dir, sizeof j->dir, "%s/%s", reg->cfg->models_dir, e->name);
    j->cur_version = e->version;
    j->cur_id = e->file_id;
    if (e->n_refused > 0) {
        j->refused = malloc(e->n_refused * sizeof *j->refused);
        if (j->refused != NULL) {
            memcpy(j->refused, e->refused, e->n_refused * sizeof *j->refused);
            j->n_refused = e->n_refused;
        }
    }
    j->waiters = waiters;
    if (publish != NULL) {
        j->publish = publish->published;
        publish->published = NULL;
        publish->next = j->waiters;
        j->waiters = publish;
    }
    e->loading = 1;
    reg->loads++;
    if (uv_queue_work(reg->loop, &j->req, load_work, load_after) != 0) {
        e->loading = 0;
        reg->loads--;
        fs_model_unref(j->publish);
        free(j->cur_schema);
        free(j->refused);
        fs_reload_waiter *w = j->waiters;
        free(j);
        answer(w, e, 0);
    }
}

void fs__registry_request_load(fs_registry *reg, fs_entry *e, int force, fs_reload_waiter *w)
{
    if (e->loading || e->publishing != NULL) {
        e->again = 1;
        e->again_force |= force;
        if (w != NULL) {
            w->next = e->waiting_next;
            e->waiting_next = w;
        }
        return;
    }
    if (w != NULL) {
        w->next = NULL;
    }
    start_job(reg, e, force, w, NULL);
}

void fs_registry_reload(fs_registry *reg, fs_entry *e, fs_reload_waiter *w)
{
    if (reg->closing) {
        w->next = NULL;
        answer(w, e, 0);
        return;
    }
    fs__registry_request_load(reg, e, 1, w);
}

int fs_registry_publish(fs_registry *reg, fs_entry *e, fs_reload_waiter *w)
{
    if (reg->closing || e->publishing != NULL || w->published == NULL) {
        return -1;
    }
    w->next = NULL;
    if (e->loading) {
        e->publishing = w;
        return 0;
    }
    start_job(reg, e, 0, NULL, w);
    return 0;
}
