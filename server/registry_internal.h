/*
 * registry_internal.h: what registry.c (loads, swaps) and registry_scan.c (rounds, the
 * watcher, entries) share. Not for other modules.
 */
#ifndef FS_REGISTRY_INTERNAL_H
#define FS_REGISTRY_INTERNAL_H

#include "registry.h"

#define FS_DIR_MAX (FS_CONFIG_PATH_MAX + 80)

struct fs_registry {
    uv_loop_t *loop;
    const fs_config *cfg;
    fs_metrics *metrics;
    fs_round_done_fn round_done;
    void *round_arg;
    fs_entry *entries;               /* loop */
    int loads;                       /* loop: load jobs in flight */
    int closing;                     /* loop */
    int started;                     /* loop: the start-up round has ended */
    unsigned round_kinds;            /* loop: kinds of the round in flight, 0 = none */
    unsigned next_kinds;             /* loop: kinds asked for meanwhile */
    int scanning;                    /* loop: a round's directory scan is in flight */
    size_t round_left;               /* loop: entry loads the round waits for */
    fs_reload_waiter *round_waiters; /* loop: one per entry of the round */
    uv_fs_event_t *watch;            /* loop: inotify on models_dir */
    uv_timer_t debounce;             /* loop */
    uv_timer_t rescan;               /* loop */
    int timers_open;                 /* loop: timers initialised and not yet closed */
    int handles_open;                /* loop: handles waiting for their close callback */
};

/*
 * Load e now, or after the load in flight (forced: reload even an unchanged file); w (may be
 * NULL) is answered by that load. Loop thread.
 */
void fs__registry_request_load(fs_registry *reg, fs_entry *e, int force, fs_reload_waiter *w);

/* Watch e's directory (once; a stream model's only when its directory exists). Loop. */
void fs__registry_watch_entry(fs_registry *reg, fs_entry *e);

#endif /* FS_REGISTRY_INTERNAL_H */
