#!/usr/bin/env python3
"""Ingest into the background trainer's spool (issue 5): POST /v1/models/{name}/records in
both body forms, per-record rejections by index (case-09's ingest.ndjson: accepted 2,
rejected exactly 0, 2, 4, 5, entry 0 naming flow_bytes_s), empty bodies, whole-body faults,
GET/POST .../training and its admin token, the ingest metrics, the spool surviving a restart
with its counts and last run, a torn tail trimmed on start with a warn line, the reservoir
cap, `flowscore spool inspect`, and a disabled trainer."""
# labels: e2e
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsharness as fh  # noqa: E402
import trainer_helpers as th  # noqa: E402

TOKEN = "ingest-test-token"


def case09(c, srv):
    d = th.case_dir("case-09")
    before = th.training(srv, "cic")["spooled_records"]
    with open(os.path.join(d, "ingest.ndjson"), "rb") as f:
        body = f.read()
    r = srv.post("/v1/models/cic/records", body, headers={"Content-Type": "application/x-ndjson"})
    c.eq(r.status, 202, "case-09 ingest.ndjson status")
    js = r.json()
    c.eq(js["accepted"], 2, "case-09 accepted")
    c.eq([e["index"] for e in js["rejected"]], [0, 2, 4, 5], "case-09 rejected indices")
    c.ok(all(e.get("error") for e in js["rejected"]), "case-09 every rejection has a reason")
    c.ok("flow_bytes_s" in js["rejected"][0].get("field", "") + js["rejected"][0]["error"],
         "case-09 entry 0 names flow_bytes_s: %r" % js["rejected"][0])
    c.eq(th.training(srv, "cic")["spooled_records"], before + 2, "case-09 spooled_records +2")
    # Same kind: null in every field, in both record forms, in a JSON (non-NDJSON) body.
    fields = th.csv_records(os.path.join(d, "train.csv"), limit=400)[-1]
    names = [k for k in fields]
    good = dict(fields)
    recs = []
    for k in names:
        bad = dict(good)
        bad[k] = None
        recs.append(bad)
    recs.append(good)
    recs.append([good[k] for k in names])
    arr_null = [good[k] for k in names]
    arr_null[-1] = None
    recs.append(arr_null)
    r = th.post_records(srv, "cic", recs)
    c.eq(r.status, 202, "JSON ingest with nulls status")
    js = r.json()
    c.eq(js["accepted"], 2, "JSON ingest: the two good records (object and array form)")
    rej = js["rejected"]
    c.eq([e["index"] for e in rej], list(range(len(names))) + [len(names) + 2],
         "JSON ingest: every null refused by index")
    c.ok(all(names[i] in rej[i]["field"] for i in range(len(names))),
         "JSON ingest: each rejection names its field")


def body_faults(c, srv):
    empty = {"accepted": 0, "rejected": []}
    r = srv.post("/v1/models/cic/records", b"", headers={"Content-Type": "application/x-ndjson"})
    c.eq((r.status, r.json()), (202, empty), "empty NDJSON body")
    r = srv.post("/v1/models/cic/records", b"")
    c.eq((r.status, r.json()), (202, empty), "empty JSON body")
    r = th.post_records(srv, "cic", [])
    c.eq((r.status, r.json()), (202, empty), "records: []")
    r = srv.post("/v1/models/cic/records", '{"records": [1,')
    c.eq(r.status, 400, "truncated JSON body")
    c.ok("offset" in r.json()["error"], "truncated JSON names the byte offset")
    r = srv.post("/v1/models/cic/records", {"records": [], "extra": 1})
    c.eq(r.status, 400, "unknown top-level key")
    r = srv.post("/v1/models/cic/records", {"records": {"a": 1}})
    c.eq(r.status, 400, "records not an array")
    r = srv.get("/v1/models/cic/records")
    c.eq((r.status, r.header("Allow")), (405, "POST"), "GET records: 405 with Allow")
    r = srv.post("/v1/models/nope/records", {"records": []})
    c.eq(r.status, 404, "unknown model")
    r = srv.request("PUT", "/v1/models/cic/training", "")
    c.eq((r.status, r.header("Allow")), (405, "GET, HEAD, POST"), "PUT training: 405")


def control(c, srv):
    st = th.training(srv, "cic")
    for k in ("state", "spooled_records", "records_seen", "new_records", "excluded_records",
              "last_run", "burst", "settings"):
        c.ok(k in st, "GET training has " + k)
    r = th.trigger(srv, "cic")
    c.eq(r.status, 401, "POST training without the token")
    r = th.trigger(srv, "cic", "wrong")
    c.eq(r.status, 403, "POST training with a wrong token")
    runs = st["refits"]
    r = th.trigger(srv, "cic", TOKEN)
    c.eq(r.status, 202, "POST training with the token")
    again = th.trigger(srv, "cic", TOKEN)
    c.ok(again.status in (202, 409), "a second trigger: 202 (first done) or 409 (running)")
    if again.status == 409:
        c.eq(again.json()["error"]["code"], "conflict", "409 code")
    last = th.wait_run(srv, "cic", runs)
    c.ok(last["decision"] in ("accepted", "rejected", "failed"), "a decision: %r" % last)
    c.ok(last["started"].endswith("Z") and last["ended"] >= last["started"],
         "RFC 3339 UTC times")
    m = srv.metrics()
    acc = m.get(("flowscore_ingest_records_total",
                 frozenset({("model", "cic"), ("result", "accepted")})))
    rej = m.get(("flowscore_ingest_records_total",
                 frozenset({("model", "cic"), ("result", "rejected")})))
    c.ok(acc is not None and acc >= 4 and rej is not None and rej >= 4,
         "ingest counters: accepted=%r rejected=%r" % (acc, rej))
    for name in ("flowscore_spool_records", "flowscore_spool_bytes",
                 "flowscore_train_skipped_nonfinite_steps_total",
                 "flowscore_ingest_anomalies_total", "flowscore_refit_excluded_records_total"):
        c.ok((name, frozenset({("model", "cic")})) in m, "metric " + name)
    c.ok(any(k[0] == "flowscore_refits_total" and v >= 1 for k, v in m.items()),
         "flowscore_refits_total counts the refit")
    c.ok(any(k[0] == "flowscore_refit_duration_seconds_count" for k in m),
         "flowscore_refit_duration_seconds histogram")
    return th.training(srv, "cic")


def restart_and_torn_tail(c, binp, models, state, before, env):
    srv = th.server(binp, models, state, env=env)
    try:
        st = th.training(srv, "cic")
        c.eq((st["spooled_records"], st["records_seen"]),
             (before["spooled_records"], before["records_seen"]), "counts survive a restart")
        c.eq(st["last_run"], before["last_run"], "the last run survives a restart")
    finally:
        fh.check_clean_exit(c, srv, "restarted daemon")
    path = os.path.join(state, "trainer", "cic.spool")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 5)  # mid-record: the last frame is torn
    summ = th.spool_summary(binp, state, "cic")
    c.ok(summ["torn_bytes"] > 0, "spool inspect sees the torn tail (read-only)")
    srv = th.server(binp, models, state, env=env)
    try:
        c.ok(srv.wait_log(r"warn spool: torn tail trimmed name=cic", 10) is not None,
             "a warn line for the trimmed tail")
        st = th.training(srv, "cic")
        c.eq(st["spooled_records"], before["spooled_records"] - 1, "the torn record is gone")
    finally:
        fh.check_clean_exit(c, srv, "daemon after the torn tail")
    summ = th.spool_summary(binp, state, "cic")
    c.eq((summ["torn_bytes"], summ["damaged_regions"], summ["records"]),
         (0, 0, before["spooled_records"] - 1), "the file was trimmed on disk")


def reservoir(c, binp, tmp):
    models = os.path.join(tmp, "models2")
    state = os.path.join(tmp, "state2")
    th.train(binp, th.gaussian_csv(os.path.join(tmp, "g.csv"), 400), os.path.join(models, "g",
             "1.fsm"), th.SMALL_SPEC, epochs=1, tmp=tmp)
    srv = th.server(binp, models, state, ["--trainer-spool-max-records", "50",
                                          "--trainer-min-new-records", "0"])
    try:
        recs = th.gaussian_records(600)
        th.stream(srv, "g", recs, batch=40)
        st = th.training(srv, "g")
        deadline = time.time() + 10
        while st["spooled_records"] > 50 + 64 and time.time() < deadline:
            time.sleep(0.05)  # the I/O thread compacts right after acknowledging a batch
            st = th.training(srv, "g")
        c.eq(st["records_seen"], 600, "reservoir: every record counted as seen")
        c.ok(st["spooled_records"] <= 50 + 64, "reservoir: the cap (+ slack) holds: %d"
             % st["spooled_records"])
        recs = th.spool_records(binp, state, "g")
        seqs = [r["seq"] for r in recs]
        c.ok(seqs == sorted(set(seqs)) and seqs[-1] < 600, "spool seqs increase")
        c.ok(min(seqs) < 300, "reservoir keeps old records too (first kept seq %d)" % min(seqs))
    finally:
        fh.check_clean_exit(c, srv, "reservoir daemon")


def disabled(c, binp, models, tmp):
    srv = th.server(binp, models, os.path.join(tmp, "state3"), ["--trainer-enabled", "false"])
    try:
        r = th.post_records(srv, "cic", [])
        c.eq((r.status, r.json()["error"]["code"]), (409, "trainer_disabled"),
             "records with the trainer disabled")
        c.eq(th.training(srv, "cic")["state"], "disabled", "GET training when disabled")
    finally:
        fh.check_clean_exit(c, srv, "disabled daemon")


def main():
    binp = fh.binary()
    c = fh.Check()
    d = th.case_dir("case-09")
    with fh.tempdir() as tmp:
        models = os.path.join(tmp, "models")
        state = os.path.join(tmp, "state")
        th.train(binp, os.path.join(d, "train.csv"), os.path.join(models, "cic", "1.fsm"),
                 th.SMALL_SPEC, epochs=2, extra=["--skip-bad-rows"], tmp=tmp)
        env = {"FLOWSCORE_ADMIN_TOKEN": TOKEN}
        srv = th.server(binp, models, state, ["--trainer-min-new-records", "0",
                                              "--trainer-epochs", "2"], env=env)
        try:
            r = th.post_records(srv, "cic", [])
            c.eq(r.status, 401, "ingest without the token (ingest is an admin endpoint)")
            r = srv.post("/v1/models/cic/records", b"", headers={
                "Authorization": "Bearer wrong", "Content-Type": "application/x-ndjson"})
            c.eq(r.status, 403, "ingest with a wrong token")
            srv.default_headers = {"Authorization": "bearer " + TOKEN}  # scheme: any case
            case09(c, srv)
            body_faults(c, srv)
            srv.default_headers = None
            before = control(c, srv)
            c.eq(th.version(srv, "cic"), before["last_run"]["version"] or 1,
                 "the served version is the last run's")
        finally:
            fh.check_clean_exit(c, srv)
        restart_and_torn_tail(c, binp, models, state, before, env)
        reservoir(c, binp, tmp)
        disabled(c, binp, models, tmp)
    c.done()


if __name__ == "__main__":
    main()
