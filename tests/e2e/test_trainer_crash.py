#!/usr/bin/env python3
"""kill -9 while clients stream records (issue 5): several threads post NDJSON and JSON
batches and remember every batch the daemon acknowledged (202); the daemon is killed with
SIGKILL mid-stream, restarted on the same state directory, and every acknowledged record is
found in the spool (`flowscore spool inspect --records`) and counted in spooled_records.
Three rounds, each killing a daemon that recovered the previous round's spool."""
# labels: e2e concurrency
import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsharness as fh  # noqa: E402
import trainer_helpers as th  # noqa: E402

CLIENTS = 4
BATCH = 25


def client(srv, k, rnd, acked, lock, stop):
    conn = srv.conn(timeout=10)
    i = 0
    while not stop.is_set():
        ids = [rnd * 10**8 + k * 10**6 + i + j for j in range(BATCH)]
        recs = [[float(x), 0.5, -0.25, 1.0] for x in ids]
        try:
            if i % 2 == 0:
                r = th.post_ndjson(srv, "c", recs, conn=conn)
            else:
                r = th.post_records(srv, "c", recs, conn=conn)
        except (OSError, ValueError, http.client.HTTPException):
            break  # the daemon is gone
        if r.status == 202 and r.json()["accepted"] == BATCH:
            with lock:
                acked.update(ids)
        i += BATCH
    conn.close()


def round_trip(c, binp, models, state, rnd, acked_all):
    srv = th.server(binp, models, state, ["--trainer-min-new-records", "0",
                                          "--trainer-spool-max-records", "100000000"])
    before = th.training(srv, "c")
    c.ok(before["spooled_records"] >= len(acked_all),
         "round %d: after the restart the spool holds every acknowledged record so far "
         "(%d >= %d)" % (rnd, before["spooled_records"], len(acked_all)))
    acked, lock, stop = set(), threading.Lock(), threading.Event()
    ts = [threading.Thread(target=client, args=(srv, k, rnd, acked, lock, stop))
          for k in range(CLIENTS)]
    for t in ts:
        t.start()
    time.sleep(1.5 if not fh.sanitized() else 4.0)
    srv.proc.kill()  # SIGKILL: no drain, no flush
    srv.proc.wait()
    stop.set()
    for t in ts:
        t.join(30)
    c.ok(len(acked) > 0, "round %d: the clients got acknowledgements (%d records)"
         % (rnd, len(acked)))
    acked_all |= acked
    return len(acked)


def main():
    binp = fh.binary()
    c = fh.Check()
    with fh.tempdir() as tmp:
        models = os.path.join(tmp, "models")
        state = os.path.join(tmp, "state")
        th.train(binp, th.gaussian_csv(os.path.join(tmp, "g.csv"), 500, dims=4),
                 os.path.join(models, "c", "1.fsm"), th.SMALL_SPEC, epochs=1, tmp=tmp)
        acked_all = set()
        for rnd in range(1, 4):
            n = round_trip(c, binp, models, state, rnd, acked_all)
            found = th.spool_records(binp, state, "c")
            ids = {int(r["record"][0]) for r in found}
            missing = acked_all - ids
            c.ok(not missing, "round %d: every acknowledged record is in the spool (%d acked "
                 "this round, %d in all, %d missing)" % (rnd, n, len(acked_all), len(missing)))
            seqs = [r["seq"] for r in found]
            c.ok(seqs == sorted(set(seqs)), "round %d: seqs are unique and increasing" % rnd)
        srv = th.server(binp, models, state, ["--trainer-spool-max-records", "100000000"])
        try:
            st = th.training(srv, "c")
            c.ok(st["spooled_records"] >= len(acked_all), "final spooled_records %d >= %d"
                 % (st["spooled_records"], len(acked_all)))
            print("CRASH acknowledged=%d spooled=%d seen=%d" %
                  (len(acked_all), st["spooled_records"], st["records_seen"]), flush=True)
        finally:
            fh.check_clean_exit(c, srv)
        summ = th.spool_summary(binp, state, "c")
        c.eq((summ["torn_bytes"], summ["damaged_regions"]), (0, 0), "a clean spool at the end")
        print(json.dumps(summ))
    c.done()


if __name__ == "__main__":
    main()
