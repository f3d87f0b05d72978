#!/usr/bin/env python3
"""Concurrent scoring from many threads while the model is reloaded hundreds of times: zero
failed requests, and every response comes from exactly one version (all its scores match
that version's reference). A record scores the same alone and inside a coalesced batch, to
1e-6 relative (case-11 under 16 concurrent clients, dynamic batching on)."""
# labels: e2e concurrency
import os
import random
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsharness as fh  # noqa: E402

D = 8


def publish(src, dst):
    tmp = os.path.join(os.path.dirname(dst), ".tmp.part")
    shutil.copyfile(src, tmp)
    os.rename(tmp, dst)


def close(a, b):
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def main():
    binp = fh.binary()
    c = fh.Check()
    n_reloads = 60 if fh.sanitized() else 300
    n_clients = 16
    rng = random.Random(11)
    batch = [[round(rng.gauss(0, 1.5), 6) for _ in range(D)] for _ in range(64)]
    with fh.tempdir() as tmp:
        src = os.path.join(tmp, "src")
        a = fh.make_model(binp, os.path.join(src, "A.fsm"), dims=D, hidden=32, blocks=4, seed=1)
        b = fh.make_model(binp, os.path.join(src, "B.fsm"), dims=D, hidden=32, blocks=4, seed=2)
        models = os.path.join(tmp, "models")
        os.makedirs(os.path.join(models, "w"))
        publish(a, os.path.join(models, "w", "1.fsm"))
        srv = fh.Server(binp, models, ["--workers", "2", "--max-batch-rows", "256",
                                       "--max-queue-delay-us", "200", "--watch-debounce-ms",
                                       "20"])
        try:
            ref = {}
            r = srv.post("/v1/models/w/score", {"records": batch}).json()
            ref["A"] = [x["score"] for x in r["results"]]
            publish(b, os.path.join(models, "w", "2.fsm"))
            c.eq(srv.post("/v1/models/w/reload", "").json()["version"], 2, "version 2")
            r = srv.post("/v1/models/w/score", {"records": batch}).json()
            ref["B"] = [x["score"] for x in r["results"]]
            c.ok(all(abs(x - y) > 1e-6 for x, y in zip(ref["A"], ref["B"])),
                 "the two versions score differently")

            def expected(version):
                return ref["A"] if version % 2 == 1 else ref["B"]

            stop = threading.Event()
            stats = {"requests": 0, "failed": 0, "mixed": 0, "versions": set()}
            lock = threading.Lock()
            problems = []

            def client(k):
                conn = srv.conn()
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        if (i + k) % 4 == 0:
                            rows, idx = batch, list(range(64))
                        else:
                            j = (i * 7 + k) % 64
                            rows, idx = [batch[j]], [j]
                        r = srv.post("/v1/models/w/score", {"records": rows}, conn=conn)
                        if r.status != 200:
                            raise RuntimeError("status %d %s" % (r.status, r.body[:200]))
                        out = r.json()
                        want = expected(out["version"])
                        ok = all(close(res["score"], want[j])
                                 for res, j in zip(out["results"], idx))
                        with lock:
                            stats["requests"] += 1
                            stats["versions"].add(out["version"])
                            if not ok:
                                stats["mixed"] += 1
                                problems.append((out["version"], idx[:3]))
                    except Exception as e:  # noqa: BLE001 - every failure counts
                        with lock:
                            stats["failed"] += 1
                            problems.append(repr(e))
                        conn.close()
                        conn = srv.conn()
                conn.close()

            threads = [threading.Thread(target=client, args=(k,)) for k in range(n_clients)]
            for t in threads:
                t.start()
            t0 = time.time()
            reload_failed = 0
            conn = srv.conn()
            for v in range(3, 3 + n_reloads):
                publish(a if v % 2 == 1 else b, os.path.join(models, "w", "%d.fsm" % v))
                r = srv.post("/v1/models/w/reload", "", conn=conn)
                if r.status != 200:
                    reload_failed += 1
                os.unlink(os.path.join(models, "w", "%d.fsm" % (v - 1)))
            conn.close()
            time.sleep(0.3)
            stop.set()
            for t in threads:
                t.join()
            dt = time.time() - t0
            print("%d requests from %d clients during %d reloads in %.1fs; %d versions seen" %
                  (stats["requests"], n_clients, n_reloads, dt, len(stats["versions"])))
            c.eq(reload_failed, 0, "reloads answered 200")
            c.eq(stats["failed"], 0, "failed requests (%s)" % problems[:3])
            c.eq(stats["mixed"], 0, "responses mixing versions or off their reference (%s)" %
                 problems[:3])
            c.ok(len(stats["versions"]) > 10, "many versions served during the run (%d)" %
                 len(stats["versions"]))
            c.ok(stats["requests"] > n_clients * 5, "requests made")
            m = srv.metrics()
            ex = m.get(("flowscore_inference_executions_total", frozenset({("model", "w")})), 0)
            rows = m.get(("flowscore_inference_rows_total",
                          frozenset({("model", "w"), ("op", "score")})), 0)
            reqs = m.get(("flowscore_inference_requests_total",
                          frozenset({("model", "w"), ("op", "score")})), 0)
            cnt = m.get(("flowscore_batch_rows_count", frozenset({("model", "w")})), 0)
            print("engine calls %d for %d requests (%d rows): mean batch %.1f rows" %
                  (ex, reqs, rows, rows / max(ex, 1)))
            c.eq(cnt, ex, "batch histogram counts every engine call")
            c.ok(ex < reqs, "concurrent requests were coalesced (%d calls < %d requests)" %
                 (ex, reqs))
        finally:
            fh.check_clean_exit(c, srv)
    c.done()


if __name__ == "__main__":
    main()
