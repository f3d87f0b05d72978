/*
 * trainer_thread.c: the trainer thread (uv_thread_create) below the scoring workers in
 * priority, its job queue, and the mailbox that hands finished refits to the loop
 * (mutex + uv_async_send; STYLE.md, "Threads").
 */
#include "trainer_internal.h"

#include "log.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SCHED_IDLE
#define SCHED_IDLE 5 /* Linux: <sched.h> shows it only with _GNU_SOURCE */
#endif

struct fs_refit_thread {
    uv_async_t async; /* loop: mailbox wake-up; memory freed in its close callback */
    uv_thread_t thread;
    int started;
    int priority;
    fs_refit_done_fn done;
    void *done_arg;
    fs_refit_cancel cancel;
    pthread_mutex_t lock; /* guards the queue and stopping */
    pthread_cond_t cond;
    fs_refit_job *queue; /* guarded by lock */
    int stopping;        /* guarded by lock */
    pthread_mutex_t mailbox_lock;
    fs_refit_job *mailbox; /* guarded by mailbox_lock: finished jobs for the loop */
};

/* Lower this thread below the scoring workers; Linux applies both per thread. */
static void lower_priority(int priority)
{
    if (priority == FS_TRAINER_PRIO_IDLE) {
        struct sched_param sp;
        memset(&sp, 0, sizeof sp);
        int rc = pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
        if (rc != 0) {
            fs_log(FS_LOG_WARN, "trainer", "cannot set SCHED_IDLE err=%d; using nice 19", rc);
            priority = FS_TRAINER_PRIO_LOW;
        }
    }
    if (priority == FS_TRAINER_PRIO_LOW) {
        id_t tid = (id_t)syscall(SYS_gettid);
        if (setpriority(PRIO_PROCESS, tid, 19) != 0) {
            fs_log(FS_LOG_WARN, "trainer", "cannot lower the trainer thread's priority errno=%d",
                   errno);
        }
    }
}

static void post(fs_refit_thread *t, fs_refit_job *job)
{
    pthread_mutex_lock(&t->mailbox_lock);
    job->next = t->mailbox;
    t->mailbox = job;
    pthread_mutex_unlock(&t->mailbox_lock);
    uv_async_send(&t->async);
}

static void thread_main(void *arg)
{
    fs_refit_thread *t = arg;
    lower_priority(t->priority);
    pthread_mutex_lock(&t->lock);
    for (;;) {
        while (t->queue == NULL && !t->stopping) {
            pthread_cond_wait(&t->cond, &t->lock);
        }
        if (t->stopping) {
            break;
        }
        fs_refit_job *job = t->queue;
        t->queue = job->next;
        job->next = NULL;
        pthread_mutex_unlock(&t->lock);
        atomic_store(&job->picked, 1);
        fs__refit_run(job, &t->cancel);
        post(t, job);
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
}

/* Loop: hand every finished job to the trainer service, oldest first. */
static void deliver(fs_refit_thread *t)
{
    pthread_mutex_lock(&t->mailbox_lock);
    fs_refit_job *list = t->mailbox, *rev = NULL;
    t->mailbox = NULL;
    pthread_mutex_unlock(&t->mailbox_lock);
    while (list != NULL) {
        fs_refit_job *next = list->next;
        list->next = rev;
        rev = list;
        list = next;
    }
    while (rev != NULL) {
        fs_refit_job *next = rev->next;
        rev->next = NULL;
        t->done(t->done_arg, rev);
        rev = next;
    }
}

static void on_async(uv_async_t *h)
{
    deliver(h->data);
}

fs_refit_thread *fs__refit_thread_start(uv_loop_t *loop, int priority, fs_refit_done_fn done,
                                        void *arg)
{
    fs_refit_thread *t = calloc(1, sizeof *t);
    if (t == NULL) {
        return NULL;
    }
    t->priority = priority;
    t->done = done;
    t->done_arg = arg;
    fs__refit_cancel_init(&t->cancel);
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    pthread_mutex_init(&t->mailbox_lock, NULL);
    if (uv_async_init(loop, &t->async, on_async) != 0) {
        fs__refit_cancel_deinit(&t->cancel);
        pthread_mutex_destroy(&t->lock);
        pthread_cond_destroy(&t->cond);
        pthread_mutex_destroy(&t->mailbox_lock);
        free(t);
        return NULL;
    }
    t->async.data = t;
    if (uv_thread_create(&t->thread, thread_main, t) != 0) {
        fs_log(FS_LOG_ERROR, "trainer", "cannot start the trainer thread");
        fs__refit_thread_stop(t);
        return NULL;
    }
    t->started = 1;
    return t;
}

void fs__refit_thread_submit(fs_refit_thread *t, fs_refit_job *job)
{
    pthread_mutex_lock(&t->lock);
    fs_refit_job **tail = &t->queue;
    while (*tail != NULL) {
        tail = &(*tail)->next;
    }
    job->next = NULL;
    *tail = job;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

void fs__refit_thread_cancel(fs_refit_thread *t)
{
    if (t != NULL) {
        fs__refit_cancel(&t->cancel);
    }
}

static void on_closed(uv_handle_t *h)
{
    fs_refit_thread *t = h->data;
    fs__refit_cancel_deinit(&t->cancel);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->mailbox_lock);
    free(t);
}

void fs__refit_thread_stop(fs_refit_thread *t)
{
    if (t == NULL) {
        return;
    }
    fs__refit_cancel(&t->cancel);
    pthread_mutex_lock(&t->lock);
    t->stopping = 1;
    fs_refit_job *left = t->queue;
    t->queue = NULL;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
    if (t->started) {
        uv_thread_join(&t->thread);
        t->started = 0;
    }
    while (left != NULL) {
        fs_refit_job *next = left->next;
        left->decision = FS_REFIT_FAILED;
        snprintf(left->reason, sizeof left->reason, "cancelled: the server is shutting down");
        post(t, left);
        left = next;
    }
    deliver(t);
    uv_close((uv_handle_t *)&t->async, on_closed);
}
