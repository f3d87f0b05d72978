#!/usr/bin/env python3
"""case-14: swapping a large model and publishing a refit under open-loop load (issue 5).

Open loop (requests sent on a fixed schedule, not after the previous answer):
  - FS_SWAP_RATE (200) req/s of POST /v1/models/wide/score with case-11's batch64.json,
  - FS_SWAP_RATE2 (20) req/s of 1-record requests to a second model,
  - GET /healthz every 100 ms,
for FS_SWAP_LOAD_SECONDS (15 in CI; 60 reproduces the case exactly). At 1/3 of the time a
version 2 with about ten times the parameters is put in place atomically and reloaded; from
t = 0 case-01's rows are streamed to the trainer, and a refit is triggered so that it is
published as version 3 at about 2/3 of the time (a dry run of the same refit on another name,
before the load, gives its duration).

Checked: no 5xx, no failed connection, /healthz always 200; every score finite; every wide
response names one version and all 64 of its scores match that version's reference
(`flowscore score`) within 1e-6 max(1, |s|); versions 1, 2 and 3 all seen; the refit was
accepted; no reload failure. The p99 within +-2.5 s (scaled with the duration) of each swap
and the steady-state p99 are printed; the ratio is asserted only loosely (<= 4x) because the
machine is shared. Rates are divided by 4 under sanitizers."""
# labels: e2e concurrency
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsharness as fh  # noqa: E402
import trainer_helpers as th  # noqa: E402

DURATION = float(os.environ.get("FS_SWAP_LOAD_SECONDS", "15"))
SCALE = 4.0 if fh.sanitized() else 1.0
RATE = float(os.environ.get("FS_SWAP_RATE", "200")) / SCALE
RATE2 = float(os.environ.get("FS_SWAP_RATE2", "20")) / SCALE
SENDERS = 24
V1_SPEC = {"preset": "realnvp", "blocks": 2, "hidden": [32, 32]}
V2_SPEC = {"preset": "realnvp", "blocks": 20, "hidden": [32, 32]}


def references(binp, fsm, csv):
    r = fh.run([binp, "score", "--model", fsm, "--data", csv])
    if r.returncode != 0:
        raise RuntimeError("flowscore score: " + r.stderr)
    lines = r.stdout.strip().splitlines()[1:]
    return [float(line.split(",")[1]) for line in lines]


class Load:
    """Open-loop senders: each task has a scheduled time; a pool of threads sends it then."""

    def __init__(self, srv, batch64, one):
        self.srv = srv
        self.batch64 = json.dumps(batch64).encode()
        self.one = json.dumps(one).encode()
        self.tasks = queue.Queue()
        self.results = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.sender) for _ in range(SENDERS)]
        self.stop_at = float("inf")  # tasks scheduled later are dropped

    def sender(self):
        conn = self.srv.conn(timeout=60)
        while True:
            task = self.tasks.get()
            if task is None:
                break
            when, kind = task
            if when > self.stop_at:
                continue
            delay = when - time.time()
            if delay > 0:
                time.sleep(delay)
            t0 = time.time()
            status, body, err = 0, None, None
            try:
                if kind == "wide":
                    r = self.srv.request("POST", "/v1/models/wide/score", self.batch64, conn=conn)
                elif kind == "two":
                    r = self.srv.request("POST", "/v1/models/two/score", self.one, conn=conn)
                else:
                    r = self.srv.request("GET", "/healthz", conn=conn)
                status, body = r.status, r.body
            except Exception as e:  # a reset or a failed connect: counted, then reconnect
                err = repr(e)
                conn.close()
                conn = self.srv.conn(timeout=60)
            with self.lock:
                self.results.append((kind, when, t0, time.time() - t0, status, body, err))
        conn.close()

    def run(self, t_start):
        for t in self.threads:
            t.start()
        events = []
        # Scheduled for up to ten times the duration: a slow machine (sanitizers) may publish
        # the refit late, and the load goes on until version 3 has been served a while.
        for kind, rate in (("wide", RATE), ("two", RATE2), ("health", 10.0)):
            n = int(10 * DURATION * rate)
            events += [(t_start + i / rate, kind) for i in range(n)]
        for e in sorted(events):
            self.tasks.put(e)

    def finish(self):
        for _ in self.threads:
            self.tasks.put(None)
        for t in self.threads:
            t.join()


def p99(samples):
    return th.percentile([s[3] * 1000 for s in samples], 0.99)


def main():
    binp = fh.binary()
    c = fh.Check()
    d11 = th.case_dir("case-11")
    with fh.tempdir() as tmp:
        models = os.path.join(tmp, "models")
        c01 = os.path.join(tmp, "c01.csv")
        with open(c01, "w") as f:
            subprocess.run([sys.executable, os.path.join(th.case_dir("case-01"), "gen.py")],
                           stdout=f, check=True)
        th.train(binp, c01, os.path.join(models, "wide", "1.fsm"), V1_SPEC, epochs=2, tmp=tmp)
        v2 = th.train(binp, c01, os.path.join(tmp, "v2", "v2.fsm"), V2_SPEC, epochs=1, tmp=tmp)
        th.train(binp, th.gaussian_csv(os.path.join(tmp, "two.csv"), 1000, dims=2),
                 os.path.join(models, "two", "1.fsm"), V1_SPEC, epochs=1, tmp=tmp)
        os.makedirs(os.path.join(models, "dry"))
        shutil.copyfile(v2, os.path.join(models, "dry", "1.fsm"))
        with open(os.path.join(d11, "batch64.json")) as f:
            batch64 = json.load(f)
        rows = th.csv_records(c01)
        refit_budget = max(2, int(DURATION / 3))
        config = {"trainer": {"min_new_records": 0, "epochs": 50, "lr": 0.001,
                              "batch_size": 256, "max_train_seconds": refit_budget,
                              "accept_margin_nats": 1000, "spool_max_records": 100000}}
        srv = th.server(binp, models, os.path.join(tmp, "state"), config=config, tmp=tmp)
        try:
            # A dry run gives the refit's duration (the case's step 4): the same rows, warm
            # from the same large model, under another name.
            th.stream(srv, "dry", rows, batch=1000)
            dry = th.refit(srv, "dry", timeout=DURATION * 4 + 120)
            dry_s = dry["ended_unix"] - dry["started_unix"]
            print("dry-run refit: %.2f s, %s" % (dry_s, dry["decision"]), flush=True)
            failures0 = th.metric(srv, "flowscore_model_reload_failures_total", model="wide")
            load = Load(srv, batch64, {"records": [[0.3, -0.1]]})
            t0 = time.time() + 0.5
            load.run(t0)
            # Stream the rows from t = 0 (a few batches), as the case asks.
            time.sleep(max(0.0, t0 - time.time()))
            for i in range(0, len(rows), 1000):
                th.post_ndjson(srv, "wide", rows[i:i + 1000])
                time.sleep(0.3)
            # t = 1/3: version 2 appears atomically and is reloaded.
            time.sleep(max(0.0, t0 + DURATION / 3 - time.time()))
            t_reload = time.time()
            shutil.copyfile(v2, os.path.join(models, "wide", ".tmp.part"))
            os.rename(os.path.join(models, "wide", ".tmp.part"),
                      os.path.join(models, "wide", "2.fsm"))
            r = srv.post("/v1/models/wide/reload", "")
            c.eq((r.status, r.json().get("version")), (200, 2), "reload to version 2")
            # The refit: warm from version 2, triggered so that it ends near 2/3 of the run.
            time.sleep(max(1.0, t0 + 2 * DURATION / 3 - dry_s - time.time()))
            runs = th.training(srv, "wide")["refits"]
            c.eq(th.trigger(srv, "wide").status, 202, "refit triggered")
            if fh.sanitized():
                print("sanitized build: latency is printed, not compared", flush=True)
            last = th.wait_run(srv, "wide", runs, timeout=DURATION * 4 + 120)
            t_publish = last["ended_unix"]
            load.stop_at = max(t0 + DURATION, t_publish + DURATION / 6 + 1.0)
            time.sleep(max(0.0, load.stop_at + 0.5 - time.time()))
            load.finish()
            print("SWAP refit: %s" % json.dumps(last), flush=True)
            c.eq(last["decision"], "accepted", "the refit is accepted (%s)" % last["reason"])
            failures1 = th.metric(srv, "flowscore_model_reload_failures_total", model="wide")
            c.eq(failures1, failures0, "flowscore_model_reload_failures_total unchanged")
        finally:
            fh.check_clean_exit(c, srv)
        refs = {}
        for v in (1, 2, 3):
            path = os.path.join(models, "wide", "%d.fsm" % v)
            if os.path.exists(path):
                refs[v] = references(binp, path, os.path.join(d11, "batch64.csv"))
        res = load.results
        c.ok(not [x for x in res if x[6] is not None],
             "no failed connection or reset: %r" % [x[6] for x in res if x[6]][:3])
        c.ok(not [x for x in res if x[4] >= 500], "no 5xx: %r" %
             [(x[0], x[4], (x[5] or "")[:120]) for x in res if x[4] >= 500][:3])
        c.ok(all(x[4] == 200 for x in res if x[0] == "health"), "/healthz answered 200")
        seen, bad = set(), []
        for x in res:
            if x[0] != "wide" or x[4] != 200:
                continue
            js = json.loads(x[5])
            v = js["version"]
            seen.add(v)
            scores = [r["score"] for r in js["results"]]
            ref = refs.get(v)
            if ref is None or len(scores) != 64 or any(
                    abs(s - r) > 1e-6 * max(1.0, abs(s)) for s, r in zip(scores, ref)):
                bad.append(v)
        c.ok(not bad, "every wide response matches one version's reference (%d bad, versions "
             "%r)" % (len(bad), sorted(set(bad))))
        c.eq(sorted(seen), [1, 2, 3], "versions 1, 2 and 3 all seen")
        scale = DURATION / 60.0
        steady = [x for x in res if x[0] == "wide" and t0 + 5 * scale <= x[1] <= t0 + 15 * scale]
        near = [x for x in res if x[0] == "wide" and (abs(x[1] - t_reload) <= 2.5 * scale + 0.5 or
                                                      abs(x[1] - t_publish) <= 2.5 * scale + 0.5)]
        two_steady = [x for x in res if x[0] == "two" and t0 + 5 * scale <= x[1] <= t0 + 15 * scale]
        two_near = [x for x in res if x[0] == "two" and (abs(x[1] - t_reload) <= 2.5 * scale + 0.5
                                                         or abs(x[1] - t_publish)
                                                         <= 2.5 * scale + 0.5)]
        print("CASE-14 duration=%.0fs rate=%.0f+%.0f req/s requests=%d wide steady p99=%.2f ms "
              "(n=%d) swap-window p99=%.2f ms (n=%d); second model steady p99=%.2f ms swap p99="
              "%.2f ms; reload at t=%.1fs, publish at t=%.1fs" %
              (DURATION, RATE, RATE2, len(res), p99(steady), len(steady), p99(near), len(near),
               p99(two_steady), p99(two_near), t_reload - t0, t_publish - t0), flush=True)
        if len(steady) >= 20 and len(near) >= 20 and not fh.sanitized():
            c.ok(p99(near) <= 4 * max(p99(steady), 5.0),
                 "swap-window p99 within 4x of steady state (loose: shared machine)")
    c.done()


if __name__ == "__main__":
    main()
