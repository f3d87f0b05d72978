#!/usr/bin/env python3
"""The HTTP parts of the shared failure cases (../shared/cases), with their own input files
and generators, when that folder exists: case-03 (encode/decode round trip), case-04
(sampling), case-05 (tails, saturation, overflow), case-08 (strings, unknown fields, unseen
levels), case-09 (null), case-10 (malformed JSON and exact counts), case-11 (empty batches,
batch independence under concurrency). Models are trained here with `flowscore train`.
Skips (exit 77) when ../shared/cases or a working `flowscore train` is missing."""
# labels: e2e
import json
import math
import os
import statistics
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsharness as fh  # noqa: E402

CASES = os.path.join(fh.SHARED_DIR, "cases")


def case(name, *parts):
    for d in os.listdir(CASES):
        if d.startswith(name):
            return os.path.join(CASES, d, *parts)
    fh.skip("case folder %s missing" % name)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def gen(script, out):
    with open(out, "w") as f:
        subprocess.run([sys.executable, script], stdout=f, check=True)


def train(binp, csv, out, extra=()):
    os.makedirs(os.path.dirname(out), exist_ok=True)
    r = fh.run([binp, "train", "--data", csv, "--seed", "1", "--out", out, "--quiet"]
               + list(extra))
    if r.returncode != 0:
        fh.skip("flowscore train failed on %s: %s" % (csv, r.stderr.strip()[:300]))


def strict(body):
    return json.loads(body, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


def rel(a, b):
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def case03(c, srv):
    body = read(case("case-03", "encode.json"))
    r1 = srv.post("/v1/models/wide/encode", body)
    r2 = srv.post("/v1/models/wide/encode", body)
    c.eq(r1.status, 200, "case-03 encode")
    d = srv.get("/v1/models/wide").json()["n_dims"]
    lat = strict(r1.body)["latents"]
    c.eq([len(z) for z in lat], [d] * 3, "case-03 latent lengths")
    c.eq(r1.body, r2.body, "case-03 encode deterministic")
    dec1 = srv.post("/v1/models/wide/decode", {"latents": lat})
    dec2 = srv.post("/v1/models/wide/decode", {"latents": lat})
    c.eq(dec1.status, 200, "case-03 decode")
    c.eq(dec1.body, dec2.body, "case-03 decode deterministic")
    recs = json.loads(body)["records"]
    back = strict(dec1.body)["records"]
    for i, (x, y) in enumerate(zip(recs, back)):
        worst = max(abs(x[k] - y[k]) / (1 + abs(x[k])) for k in x)
        c.ok(worst <= 1e-6, "case-03 record %d round trip: %.3g" % (i, worst))
    r = srv.post("/v1/models/wide/decode", '{"latents":[[0.1,0.2]]}')
    e = r.json()["error"]
    c.ok(r.status == 400 and e["field"] == "latents[0]" and str(d) in e["message"] and
         "2" in e["message"], "case-03 short latent: %s" % r.body)
    c.eq(srv.post("/v1/models/wide/decode", {"latents": lat}).status, 200, "case-03 after")


def case04(c, srv):
    r1 = srv.post("/v1/models/sample2d/sample", read(case("case-04", "sample-10000.json")))
    r2 = srv.post("/v1/models/sample2d/sample", read(case("case-04", "sample-10000.json")))
    c.eq(r1.status, 200, "case-04 sample")
    recs = strict(r1.body)["records"]
    c.eq(len(recs), 10000, "case-04 10000 records")
    a = [x["a"] for x in recs]
    b = [x["b"] for x in recs]
    c.ok(all(math.isfinite(v) for v in a + b), "case-04 finite")
    c.ok(97.44 <= statistics.mean(a) <= 102.43, "case-04 mean a %.2f" % statistics.mean(a))
    c.ok(-42.82 <= statistics.mean(b) <= -37.83, "case-04 mean b %.2f" % statistics.mean(b))
    c.ok(22.45 <= statistics.stdev(a) <= 27.44, "case-04 std a %.2f" % statistics.stdev(a))
    c.ok(22.43 <= statistics.stdev(b) <= 27.42, "case-04 std b %.2f" % statistics.stdev(b))
    c.eq(r1.body, r2.body, "case-04 same seed, same records")
    r = srv.post("/v1/models/sample2d/sample", read(case("case-04", "sample-hot.json")))
    c.ok(r.status in (200, 422), "case-04 hot sample status %d" % r.status)
    if r.status == 200:
        c.ok(len(strict(r.body)["records"]) == 10, "case-04 hot sample finite")


def case05(c, srv, p99):
    r = srv.post("/v1/models/banana/score", read(case("case-05", "query.json")))
    c.eq(r.status, 200, "case-05 query")
    res = strict(r.body)["results"]
    c.eq(len(res), 5, "case-05 five results")
    for i, x in enumerate(res):
        c.ok(math.isfinite(x["score"]) and rel(x["score"], -x["log_prob"]), "case-05 row %d" % i)
    for i in (1, 2, 3, 4):
        c.ok(res[i]["score"] >= p99 and res[i]["anomaly"] is True, "case-05 row %d anomalous" % i)
    c.ok(res[3]["score"] >= res[2]["score"], "case-05 farther scores higher")
    c.ok(res[4].get("saturated") is True, "case-05 row 4 flagged saturated")
    c.ok("saturated" not in res[0], "case-05 row 0 not saturated")
    r = srv.post("/v1/models/banana/score", read(case("case-05", "overflow.json")))
    c.ok(r.status == 400 and r.json()["error"]["field"] == "records[0].u", "case-05 overflow")
    for body, field in (('{"records":[{"u":-1e309,"v":0}]}', "records[0].u"),
                        ('{"records":[{"u":0,"v":1e309}]}', "records[0].v"),
                        ('{"records":[[0,0],[0,0],[0,0],{"u":0,"v":1e309}]}', "records[3].v"),
                        ('{"records":[[1e309,0]]}', "records[0][0]")):
        r = srv.post("/v1/models/banana/score", body)
        c.ok(r.status == 400 and r.json()["error"]["field"] == field, "case-05 " + body)
    c.eq(srv.post("/v1/models/banana/score", '{"records":[{"u":0,"v":0}]}').status, 200,
         "case-05 valid after")


def case08(c, srv):
    valid = '{"records":[{"bytes":1200,"pkts":10}]}'
    for name, field in (("unknown-field", "records[0].proto"),
                        ("string-number", "records[0].bytes"),
                        ("string-word", "records[0].bytes")):
        r = srv.post("/v1/models/num2/score", read(case("case-08", name + ".json")))
        c.ok(r.status == 400 and r.json()["error"]["field"] == field, "case-08 %s" % name)
        c.eq(srv.post("/v1/models/num2/score", valid).status, 200, "case-08 valid after " + name)
    r = srv.post("/v1/models/proto3/score", read(case("case-08", "unseen-level.json")))
    c.eq(r.status, 200, "case-08 unseen levels")
    s = [x["score"] for x in strict(r.body)["results"]]
    c.ok(rel(s[0], s[1]), "case-08 sctp == foo")
    c.ok(s[0] >= s[2] and s[1] >= s[2], "case-08 unknown levels score at least tcp's")
    r = srv.post("/v1/models/proto3/score", read(case("case-08", "level-not-string.json")))
    c.ok(r.status == 400 and r.json()["error"]["field"] == "records[0].proto", "case-08 level 6")
    r = srv.post("/v1/models/num2/score", '{"records":[["1200",10]]}')
    c.ok(r.status == 400 and r.json()["error"]["field"] == "records[0][0]", "case-08 array")


def case09(c, srv):
    r = srv.post("/v1/models/cic/score", read(case("case-09", "score-null.json")))
    c.ok(r.status == 400 and r.json()["error"]["field"] == "records[0].flow_bytes_s",
         "case-09 null: %s" % r.body[:200])


def case10(c, srv, tmp):
    def counts():
        m = srv.metrics()
        return [m.get(("flowscore_http_requests_total",
                       frozenset({("handler", "/v1/models/{name}/score"), ("method", "POST"),
                                  ("code", code)})), 0.0) for code in ("200", "400")]
    deep = os.path.join(tmp, "body4-deep.json")
    gen(case("case-10", "gen-deep.py"), deep)
    valid = read(case("case-10", "valid.json"))
    before = counts()
    for name, off in (("body1-truncated.json", 33), ("body2-trailing-comma.json", 26),
                      ("body3-bare-nan.json", 21), (deep, None)):
        r = srv.post("/v1/models/num2/score", read(case("case-10", name) if off is not None
                                                  else deep))
        e = strict(r.body)["error"]
        c.eq(r.status, 400, "case-10 " + os.path.basename(name))
        if off is not None:
            c.ok(abs(e.get("offset", -99) - off) <= 1 and str(e.get("offset")) in e["message"],
                 "case-10 %s offset %s ~ %d" % (name, e.get("offset"), off))
        else:
            c.ok("too deep" in e["message"] and "64" in e["message"], "case-10 deep: " + r.body)
        r = srv.post("/v1/models/num2/score", valid)
        c.ok(r.status == 200 and len(strict(r.body)["results"]) == 1, "case-10 valid after")
    r = srv.post("/v1/models/num2/score", read(case("case-10", "body5-form.txt")),
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    c.ok(r.status == 400 and r.json()["error"].get("offset") == 0, "case-10 form body")
    c.eq(srv.post("/v1/models/num2/score", valid).status, 200, "case-10 valid after form")
    after = counts()
    c.eq(after[1] - before[1], 5.0, "case-10 400 count")
    c.eq(after[0] - before[0], 5.0, "case-10 200 count")


def case11(c, srv, binp):
    p = "/v1/models/wide/score"
    r = srv.post(p, read(case("case-11", "empty.json")))
    c.eq((r.status, r.body.strip()), (200, '{"model":"wide","version":1,"results":[]}'),
         "case-11 empty")
    r = srv.post("/v1/models/wide/sample", read(case("case-11", "sample0.json")))
    c.eq((r.status, r.body.strip()), (200, '{"records":[]}'), "case-11 n=0")
    r = srv.post(p, read(case("case-11", "wrong-type.json")))
    c.ok(r.status == 400 and r.json()["error"]["field"] == "records", "case-11 wrong type")
    one = read(case("case-11", "one.json"))
    batch = read(case("case-11", "batch64.json"))
    o = strict(srv.post(p, one).body)["results"][0]
    b = strict(srv.post(p, batch).body)["results"]
    c.ok(rel(o["score"], b[17]["score"]) and rel(o["log_prob"], b[17]["log_prob"]) and
         o["percentile"] == b[17]["percentile"] and o["anomaly"] == b[17]["anomaly"],
         "case-11 one == batch[17]")
    r = fh.run([binp, "score", "--model", os.path.join(srv.models_dir, "wide", "1.fsm"),
                "--data", case("case-11", "batch64.csv")])
    if r.returncode == 0:
        import csv
        import io
        cli = [float(x["score"]) for x in csv.DictReader(io.StringIO(r.stdout))]
        c.ok(len(cli) == 64 and all(rel(x, y["score"]) for x, y in zip(cli, b)),
             "case-11 HTTP == flowscore score")
    bad = []

    def one_client():
        for _ in range(10):
            x = strict(srv.post(p, one).body)["results"][0]
            if not rel(x["score"], b[17]["score"]):
                bad.append(x["score"])

    def batch_client():
        for _ in range(5):
            x = strict(srv.post(p, batch).body)["results"]
            if not all(rel(u["score"], v["score"]) for u, v in zip(x, b)):
                bad.append("batch")
    ts = [threading.Thread(target=one_client) for _ in range(16)]
    ts += [threading.Thread(target=batch_client) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    c.eq(bad, [], "case-11 scores under 16 concurrent clients with batching")


def main():
    binp = fh.binary()
    if not os.path.isdir(CASES):
        fh.skip("%s not found (../shared is absent)" % CASES)
    c = fh.Check()
    quick = ["--epochs", "4"] if fh.sanitized() else []
    with fh.tempdir() as tmp:
        models = os.path.join(tmp, "models")
        wide = os.path.join(tmp, "wide.csv")
        gen(case("case-01", "gen.py"), wide)
        banana = os.path.join(tmp, "banana.csv")
        gen(case("case-05", "gen.py"), banana)
        s2d = os.path.join(tmp, "s2d.csv")
        gen(case("case-04", "gen.py"), s2d)
        train(binp, wide, os.path.join(models, "wide", "1.fsm"), quick)
        train(binp, banana, os.path.join(models, "banana", "1.fsm"), quick)
        train(binp, s2d, os.path.join(models, "sample2d", "1.fsm"), quick)
        train(binp, case("case-08", "train-numeric.csv"), os.path.join(models, "num2", "1.fsm"))
        train(binp, case("case-08", "train-proto.csv"), os.path.join(models, "proto3", "1.fsm"))
        train(binp, case("case-09", "train.csv"), os.path.join(models, "cic", "1.fsm"),
              ["--skip-bad-rows"])
        r = fh.run([binp, "score", "--model", os.path.join(models, "banana", "1.fsm"), "--data",
                    banana])
        scores = sorted(float(line.split(",")[1]) for line in r.stdout.splitlines()[1:])
        p99 = scores[int(0.99 * len(scores))] if scores else 0.0
        srv = fh.Server(binp, models, ["--workers", "2"])
        srv.models_dir = models
        try:
            case03(c, srv)
            if not fh.sanitized():  # a 4-epoch model need not meet the statistics
                case04(c, srv)
                case05(c, srv, p99)
            case08(c, srv)
            case09(c, srv)
            case10(c, srv, tmp)
            case11(c, srv, binp)
        finally:
            fh.check_clean_exit(c, srv)
    c.done()


if __name__ == "__main__":
    main()
