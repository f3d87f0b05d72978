#!/usr/bin/env python3
"""Background refits (issue 5): drift, rejection, failure, and scoring latency meanwhile.

- drift: version 1 is trained with `flowscore train` on N(0, I); the stream's mean moves by
  four standard deviations; a refit (warm start from the served model) is accepted, version 2
  is served with a better holdout NLL than version 1 on the new data, and shifted records
  score lower (more likely) than before. The contamination guard is off for this model: a
  drift this sudden is exactly what it would keep out (see the burst report it raises).
- a refit that cannot meet its acceptance margin is rejected, one with fewer records than
  min_refit_records (default 1000) fails naming the key, one with an absurd learning rate
  (9, SGD) does not publish; the version never changes. The streams of "rej" and "sgd" are
  1,000 records: the default minimums (1000 records, a 200-row holdout) exactly.
- scoring latency (p50/p99 of /score) idle and while a refit runs is printed, not asserted.
"""
# labels: e2e concurrency
import os
import shutil
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsharness as fh  # noqa: E402
import trainer_helpers as th  # noqa: E402

SHIFT = 4.0
CONFIG = {
    "trainer": {"min_new_records": 0, "epochs": 30, "lr": 0.002, "batch_size": 128,
                "max_train_seconds": 60},
    "models": {
        "drift": {"trainer": {"exclude_anomalies": False, "burst_window": 200, "epochs": 150,
                              "patience": 1000}},
        "rej": {"trainer": {"accept_margin_nats": -100, "exclude_anomalies": False,
                            "epochs": 2}},
        "few": {},
        "sgd": {"trainer": {"lr": 9, "optimizer": "sgd", "exclude_anomalies": False,
                            "epochs": 3}},
    },
}


def latency_run(srv, stop, out, record):
    conn = srv.conn()
    while not stop.is_set():
        t0 = time.time()
        r = srv.post("/v1/models/drift/score", {"records": [record]}, conn=conn)
        out.append((t0, time.time() - t0, r.status))
    conn.close()


def measure(srv, seconds=None, until=None, threads=2):
    stop = threading.Event()
    outs = [[] for _ in range(threads)]
    ts = [threading.Thread(target=latency_run, args=(srv, stop, outs[i], [0.1, -0.2, 0.3]))
          for i in range(threads)]
    for t in ts:
        t.start()
    if seconds is not None:
        time.sleep(seconds)
    else:
        until()
    stop.set()
    for t in ts:
        t.join()
    return [x for o in outs for x in o]


def summary(samples):
    lat = [s[1] * 1000 for s in samples]
    return len(lat), th.percentile(lat, 0.5), th.percentile(lat, 0.99)


def drift(c, srv):
    probes = th.gaussian_records(300, shift=SHIFT, seed=77)
    v, before, _ = th.scores(srv, "drift", probes)
    c.eq(v, 1, "version 1 before the drift")
    th.stream(srv, "drift", th.gaussian_records(3000, shift=SHIFT, seed=5))
    st = th.training(srv, "drift")
    c.ok(st["burst"]["active"], "the sudden drift is reported as an anomaly burst")
    c.ok(srv.wait_log(r"warn trainer: anomaly burst name=drift", 5) is not None,
         "a warn line for the burst")
    idle = measure(srv, seconds=3)
    runs = st["refits"]
    r = th.trigger(srv, "drift")
    c.eq(r.status, 202, "trigger the drift refit")
    during = measure(srv, until=lambda: th.wait_run(srv, "drift", runs))
    last = th.training(srv, "drift")["last_run"]
    window = [s for s in during if last["started_unix"] <= s[0] <= last["ended_unix"]]
    n0, p50_0, p99_0 = summary(idle)
    n1, p50_1, p99_1 = summary(window)
    print("LATENCY /score 1 record, 2 clients: idle n=%d p50=%.3f ms p99=%.3f ms; "
          "during refit (%.1f s) n=%d p50=%.3f ms p99=%.3f ms" %
          (n0, p50_0, p99_0, last["ended_unix"] - last["started_unix"], n1, p50_1, p99_1),
          flush=True)
    c.ok(all(s[2] == 200 for s in idle + during), "every score during the refit answered 200")
    c.eq(last["decision"], "accepted", "drift refit accepted (%s)" % last["reason"])
    c.ok(th.finite(last["candidate_val_nll"]) and th.finite(last["current_val_nll"]) and
         last["candidate_val_nll"] < last["current_val_nll"],
         "better holdout NLL: candidate %r < served %r" % (last["candidate_val_nll"],
                                                         last["current_val_nll"]))
    c.ok(last["warm_start"], "warm start from the served model")
    c.eq(last["version"], 2, "version 2 published")
    c.eq(th.version(srv, "drift"), 2, "version 2 served")
    v, after, _ = th.scores(srv, "drift", probes)
    c.eq(v, 2, "scored by version 2")
    print("DRIFT mean score of shifted records: v1 %.3f, v2 %.3f; holdout NLL %.3f -> %.3f" %
          (statistics.mean(before), statistics.mean(after), last["current_val_nll"],
           last["candidate_val_nll"]), flush=True)
    c.ok(statistics.mean(after) < statistics.mean(before) - 1.0,
         "shifted records score lower after the refit")
    c.ok(os.path.exists(os.path.join(srv.models_dir, "drift", "2.fsm")), "2.fsm written")


def no_publish(c, srv):
    th.stream(srv, "rej", th.gaussian_records(1000, shift=SHIFT, seed=6))
    last = th.refit(srv, "rej")
    c.eq(last["decision"], "rejected", "a negative margin rejects (%s)" % last["reason"])
    c.ok(th.finite(last["candidate_val_nll"]), "a rejected candidate still has a finite NLL")
    c.eq((last["version"], th.version(srv, "rej")), (1, 1), "rejected: version unchanged")
    th.stream(srv, "few", th.gaussian_records(2))
    last = th.refit(srv, "few")
    c.eq(last["decision"], "failed", "two records: failed")
    c.ok("min_refit_records is 1000" in last["reason"] and "2 usable rows" in last["reason"],
         "the reason names the key and the counts: %s" % last["reason"])
    c.eq(th.version(srv, "few"), 1, "failed: version unchanged")
    th.stream(srv, "sgd", th.gaussian_records(1000, shift=1.0, seed=8))
    last = th.refit(srv, "sgd")
    print("SGD lr=9: decision=%s reason=%s skipped_steps=%s" %
          (last["decision"], last["reason"], last["skipped_nonfinite_steps"]), flush=True)
    c.ok(last["decision"] in ("rejected", "failed"), "lr 9 + SGD does not publish")
    c.eq(th.version(srv, "sgd"), 1, "lr 9: version unchanged")
    c.ok(sorted(os.listdir(os.path.join(srv.models_dir, "sgd"))) == ["1.fsm"],
         "no file written for a refit that was not accepted")
    m = srv.metrics()
    for name, result in (("rej", "rejected"), ("few", "failed"), ("drift", "accepted")):
        v = m.get(("flowscore_refits_total", frozenset({("model", name), ("result", result)})))
        c.eq(v, 1.0, "flowscore_refits_total{model=%s,result=%s}" % (name, result))


def main():
    binp = fh.binary()
    c = fh.Check()
    with fh.tempdir() as tmp:
        models = os.path.join(tmp, "models")
        csv = th.gaussian_csv(os.path.join(tmp, "normal.csv"), 2000)
        v1 = th.train(binp, csv, os.path.join(models, "drift", "1.fsm"), th.SMALL_SPEC,
                      epochs=3, tmp=tmp)
        for name in ("rej", "few", "sgd"):
            os.makedirs(os.path.join(models, name))
            shutil.copyfile(v1, os.path.join(models, name, "1.fsm"))
        srv = th.server(binp, models, os.path.join(tmp, "state"), config=CONFIG, tmp=tmp)
        srv.models_dir = models
        try:
            drift(c, srv)
            no_publish(c, srv)
        finally:
            fh.check_clean_exit(c, srv)
    c.done()


if __name__ == "__main__":
    main()
