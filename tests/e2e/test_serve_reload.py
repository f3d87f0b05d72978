#!/usr/bin/env python3
"""Model repository and reloads: the highest valid version is served; reloads come from
POST /v1/models/{name}/reload, SIGHUP and the file watcher; a truncated, corrupt, wrong-version
or schema-changed file is refused (the served model stays, the error shows in the metadata
and in flowscore_model_reload_failures_total) and the next good file loads; memory stays flat
across 1,000 reloads and 100 swaps (case-13)."""
# labels: e2e
import os
import shutil
import signal
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsharness as fh  # noqa: E402

REC = {"records": [[0.5, -1.0, 2.0, 0.25]]}


def publish(src, dst):
    """Copy then rename: the way a model appears atomically in the repository."""
    tmp = os.path.join(os.path.dirname(dst), ".tmp.part")
    shutil.copyfile(src, tmp)
    os.rename(tmp, dst)


def write_bytes(path, data):
    tmp = os.path.join(os.path.dirname(path), ".tmp.part")
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def failures(srv, name):
    return srv.metrics().get(("flowscore_model_reload_failures_total",
                              frozenset({("model", name)})), 0.0)


def wait_version(srv, name, want, timeout=10):
    deadline = time.time() + timeout
    v = None
    while time.time() < deadline:
        v = srv.get("/v1/models/" + name).json().get("version")
        if v == want:
            return v
        time.sleep(0.05)
    return v


def score(srv):
    r = srv.post("/v1/models/r/score", REC)
    return r.json()["version"], r.json()["results"][0]["score"]


def repository_checks(c, binp, tmp):
    models = os.path.join(tmp, "models")
    src = os.path.join(tmp, "src")
    a = fh.make_model(binp, os.path.join(src, "a.fsm"), dims=4, seed=1)
    b = fh.make_model(binp, os.path.join(src, "b.fsm"), dims=4, seed=2)
    other = fh.make_model(binp, os.path.join(src, "d3.fsm"), dims=3, seed=3)
    os.makedirs(os.path.join(models, "r"))
    publish(a, os.path.join(models, "r", "1.fsm"))
    os.makedirs(os.path.join(models, "not a valid name!"))
    with open(os.path.join(models, "r", "notes.txt"), "w") as f:
        f.write("ignored: not <version>.fsm\n")
    publish(a, os.path.join(models, "r", "01.fsm"))  # not a version: leading zero
    srv = fh.Server(binp, models, ["--workers", "1", "--watch-debounce-ms", "50",
                                   "--rescan-interval-s", "0"])
    try:
        names = [m["name"] for m in srv.get("/v1/models").json()["models"]]
        c.eq(names, ["r"], "only valid names are models")
        v1, s1 = score(srv)
        c.eq(v1, 1, "version 1 served")
        r = srv.post("/v1/models/r/reload", "")
        c.eq((r.status, r.json()["version"]), (200, 1), "POST reload")
        publish(b, os.path.join(models, "r", "2.fsm"))
        c.eq(wait_version(srv, "r", 2), 2, "the watcher loads a new version")
        v2, s2 = score(srv)
        c.ok(v2 == 2 and abs(s2 - s1) > 1e-6, "version 2 scores differently")
        f0 = failures(srv, "r")
        with open(b, "rb") as f:
            good = f.read()
        bad_files = [
            ("3.fsm", good[: len(good) // 2], "truncated"),
            ("4.fsm", b"\x00garbage" * 100, "garbage"),
            ("5.fsm", good[:8] + struct.pack("<I", 99) + good[12:], "format version 99"),
            ("6.fsm", good[:-20] + bytes([good[-20] ^ 0xFF]) + good[-19:], "checksum"),
        ]
        n = 0
        for fname, data, what in bad_files:
            write_bytes(os.path.join(models, "r", fname), data)
            n += 1
            deadline = time.time() + 10
            while time.time() < deadline and failures(srv, "r") < f0 + n:
                time.sleep(0.05)
            c.eq(failures(srv, "r"), f0 + n, "refused and counted: " + what)
            d = srv.get("/v1/models/r").json()
            c.eq(d["version"], 2, "still serving version 2 after a %s file" % what)
            c.ok(d["last_reload_error"] is not None and fname in d["last_reload_error"],
                 "last_reload_error names %s: %r" % (fname, d["last_reload_error"]))
            c.eq(score(srv)[1], s2, "scores unchanged after a %s file" % what)
        publish(other, os.path.join(models, "r", "7.fsm"))
        deadline = time.time() + 10
        while time.time() < deadline and failures(srv, "r") < f0 + n + 1:
            time.sleep(0.05)
        d = srv.get("/v1/models/r").json()
        c.eq(d["version"], 2, "a schema change is refused")
        c.ok("schema changed" in (d["last_reload_error"] or ""), "schema change named: %r" %
             d["last_reload_error"])
        r = srv.post("/v1/models/r/reload", "")
        c.eq((r.status, r.json()["error"]["code"]), (422, "reload_failed"), "reload of bad files")
        c.ok("still serving version 2" in r.json()["error"]["message"], "reload error message")
        publish(a, os.path.join(models, "r", "8.fsm"))
        c.eq(wait_version(srv, "r", 8), 8, "the next good file loads")
        c.eq(score(srv)[1], s1, "version 8 (a copy of 1) scores as version 1")
        c.eq(srv.get("/v1/models/r").json()["last_reload_error"], None, "error cleared")
        c.eq(srv.get("/v1/models/r").json()["versions"], [8, 7, 6, 5, 4, 3, 2, 1],
             "versions on disk")
        n0 = srv.log_len()
        srv.signal(signal.SIGHUP)
        c.ok(srv.wait_log(r"reload finished", start=n0) is not None, "SIGHUP reloads")
        c.eq(srv.get("/v1/models/r").json()["version"], 8, "version after SIGHUP")
        os.unlink(os.path.join(models, "r", "8.fsm"))
        c.eq(wait_version(srv, "r", 2), 2, "removing the served file falls back to the best")
        os.makedirs(os.path.join(models, "late"))
        publish(b, os.path.join(models, "late", "1.fsm"))
        # The new directory can be listed (version null) before its file has loaded.
        c.eq(wait_version(srv, "late", 1), 1, "a new model name appears")
        m = srv.metrics()
        c.eq(m.get(("flowscore_model_info", frozenset({("model", "late"), ("version", "1")}))),
             1.0, "model_info of the new name")
    finally:
        fh.check_clean_exit(c, srv)


def memory_checks(c, binp, tmp):
    """case-13: 1,000 reloads then 100 swaps; RSS flat, peak within two models."""
    models = os.path.join(tmp, "mem")
    src = os.path.join(tmp, "memsrc")
    a = fh.make_model(binp, os.path.join(src, "A.fsm"), dims=19, hidden=128, blocks=8, seed=1)
    b = fh.make_model(binp, os.path.join(src, "B.fsm"), dims=19, hidden=128, blocks=8, seed=2)
    size = max(os.path.getsize(a), os.path.getsize(b))
    os.makedirs(os.path.join(models, "wide"))
    publish(a, os.path.join(models, "wide", "1.fsm"))
    n_reloads = 150 if fh.sanitized() else 1000
    n_swaps = 30 if fh.sanitized() else 100
    srv = fh.Server(binp, models, ["--workers", "2"])
    try:
        conn = srv.conn()
        c.eq(srv.post("/v1/models/wide/reload", "", conn=conn).status, 200, "first reload")
        rss0 = srv.rss_kib()
        with open("/proc/%d/clear_refs" % srv.proc.pid, "w") as f:
            f.write("5")
        f0 = failures(srv, "wide")
        bad = 0
        for _ in range(n_reloads):
            if srv.post("/v1/models/wide/reload", "", conn=conn).status != 200:
                bad += 1
        c.eq(bad, 0, "%d reloads all 200" % n_reloads)
        rss1 = srv.rss_kib()
        last = 1
        for i in range(2, 2 + n_swaps):
            publish(b if i % 2 == 0 else a, os.path.join(models, "wide", "%d.fsm" % i))
            if srv.post("/v1/models/wide/reload", "", conn=conn).status != 200:
                bad += 1
            os.unlink(os.path.join(models, "wide", "%d.fsm" % (i - 1)))
            last = i
        conn.close()
        c.eq(bad, 0, "swaps all 200")
        c.eq(wait_version(srv, "wide", last), last, "the last version is served")
        c.eq(failures(srv, "wide"), f0, "no reload failures")
        rss2 = srv.rss_kib()
        hwm = srv.hwm_kib()
        print("RSS after the first reload %d KiB, after %d reloads %d KiB, after %d swaps "
              "%d KiB; peak %d KiB; model file %d KiB" % (rss0, n_reloads, rss1, n_swaps, rss2,
                                                          hwm, size // 1024))
        if not fh.sanitized():  # ASan's quarantine holds freed memory on purpose
            c.ok(rss1 <= rss0 + max(2048, rss0 // 20), "RSS flat across reloads: %d -> %d KiB"
                 % (rss0, rss1))
            c.ok(rss2 <= rss0 + max(2048, rss0 // 20), "RSS flat across swaps: %d -> %d KiB"
                 % (rss0, rss2))
            c.ok(hwm <= rss0 + 2 * size // 1024 + 1024, "peak within two models: %d <= %d + 2x%d"
                 % (hwm, rss0, size // 1024))
    finally:
        fh.check_clean_exit(c, srv, "memory daemon")


def main():
    binp = fh.binary()
    c = fh.Check()
    with fh.tempdir() as tmp:
        repository_checks(c, binp, tmp)
        memory_checks(c, binp, tmp)
    c.done()


if __name__ == "__main__":
    main()
