#!/usr/bin/env python3
"""Shared failure cases, latents, sampling and batches over HTTP (issue 7 §4): case-03
(decode(encode(x)) == x to 1e-6 in float64 for all three records, determinism, 17
significant digits, wrong latent lengths and values naming the index), case-04 (sample
statistics, seeds, temperatures, bad n and temperature naming the field, models with integer
and categorical fields), case-11 (every empty form, one record == its row of a batch of 64
== the CLI, under 16 concurrent clients mixed by dynamic batching). Skips (77) without
../shared/cases."""
# labels: e2e
import json
import math
import os
import statistics
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import casekit as ck  # noqa: E402

MAX_ROWS = 20000  # sample-10000.json fits; 20001 is over the cap


def setup(ctx):
    ctx.data["wide"] = ck.gen("case-01", ctx.path("wide.csv"))
    ck.train(ctx.bin, ctx.data["wide"], ctx.model_file("wide"))
    ctx.data["s2d"] = ck.gen("case-04", ctx.path("s2d.csv"))
    ck.train(ctx.bin, ctx.data["s2d"], ctx.model_file("sample2d"))
    schema = ck.write(ctx.path("proto-schema.json"), json.dumps({"fields": [
        {"name": "bytes", "type": "integer"}, {"name": "pkts", "type": "integer"},
        {"name": "proto", "type": "categorical"}]}))
    ck.train(ctx.bin, ck.case("case-08", "train-proto.csv"), ctx.model_file("proto3"),
             ["--schema", schema])


def test_case03_encode_decode_round_trip(c, ctx):
    srv = ctx.srv
    d = ck.strict(srv.get("/v1/models/wide").body)["n_dims"]
    fields = [f["name"] for f in ck.strict(srv.get("/v1/models/wide").body)["schema"]["fields"]]
    body = ck.read(ck.case("case-03", "encode.json"))
    recs = json.loads(body)["records"]
    e1 = srv.post("/v1/models/wide/encode", body)
    e2 = srv.post("/v1/models/wide/encode", body)
    c.eq(e1.status, 200, "case-03 encode")
    lat = ck.strict(e1.body)["latents"]
    c.eq([len(z) for z in lat], [d] * 3, "case-03 three latents of length D=%d" % d)
    c.ok(ck.finite_tree(lat), "case-03 latents finite")
    c.eq(e1.body, e2.body, "case-03 encoding twice gives identical latents")
    # Printed to round-trip: float64 values need up to 17 significant digits; "%g" would give
    # 6. Most latents of real data need 16 or 17, none may be cut short.
    digits = [ck.significant_digits(t) for t in ck.NUMBER.findall(e1.body)]
    long_ones = sum(1 for n in digits if n >= 16)
    c.ok(max(digits) == 17 and long_ones >= 0.8 * len(digits),
         "case-03 latents printed with 17 significant digits (%d of %d have >= 16)" % (
             long_ones, len(digits)))
    dec1 = srv.post("/v1/models/wide/decode", {"latents": lat})
    dec2 = srv.post("/v1/models/wide/decode", {"latents": lat})
    c.eq(dec1.status, 200, "case-03 decode")
    c.eq(dec1.body, dec2.body, "case-03 decoding twice gives identical records")
    back = ck.strict(dec1.body)["records"] if dec1.status == 200 else []
    c.eq(len(back), 3, "case-03 three decoded records")
    for i, (x, y) in enumerate(zip(recs, back)):
        c.eq(sorted(y), sorted(fields), "case-03 record %d carries every schema field" % i)
        c.ok(ck.finite_tree(y), "case-03 record %d finite" % i)
        worst = max(abs(x[k] - y[k]) / (1 + abs(x[k])) for k in x)
        c.ok(worst <= 1e-6, "case-03 record %d round trip in float64: %.3g <= 1e-6" % (i, worst))
    # The wrong length names latents[0], the expected D and the length received.
    r = srv.post("/v1/models/wide/decode", '{"latents":[[0.1,0.2]]}')
    code, field, msg = ck.error_of(r)
    c.ok(r.status == 400 and field == "latents[0]" and ("expected %d " % d) in msg and
         "got 2" in msg, "case-03 short latent: %d %s" % (r.status, r.body.strip()))
    c.eq(srv.post("/v1/models/wide/decode", {"latents": lat}).status, 200,
         "case-03 the next valid decode")
    # Same kind: every row is checked, and every bad value names its index.
    good = lat[0]
    bad = [
        ({"latents": [good, good, [0.1, 0.2]]}, "latents[2]", "got 2"),
        ({"latents": [good, good, good + [0.5]]}, "latents[2]", "got %d" % (d + 1)),
        ({"latents": [good, []]}, "latents[1]", "got 0"),
        ({"latents": [[]]}, "latents[0]", "got 0"),
        ({"latents": [good, None]}, "latents[1]", "null"),
        ({"latents": [good, "x"]}, "latents[1]", "string"),
        ({"latents": [good, good[:3] + [None] + good[4:]]}, "latents[1][3]", "null"),
        ({"latents": [good, good[:3] + ["0.5"] + good[4:]]}, "latents[1][3]", "string"),
        ('{"latents":[' + json.dumps(good) + ",[" + ",".join(["1e309"] + ["0"] * (d - 1)) +
         "]]}", "latents[1][0]", "overflow"),
        ('{"latents":[[' + ",".join(["0"] * (d - 1) + ["-1e309"]) + "]]}",
         "latents[0][%d]" % (d - 1), "overflow"),
    ]
    for b, want, has in bad:
        r = srv.post("/v1/models/wide/decode", b)
        code, field, msg = ck.error_of(r)
        c.ok(r.status == 400 and field == want and has in msg,
             "case-03 bad latents naming %s: %d %s %s" % (want, r.status, field, msg))
    c.eq(srv.post("/v1/models/wide/decode", {"latents": lat}).status, 200,
         "case-03 valid decode after the errors")


def sample(srv, body, model="sample2d"):
    return srv.post("/v1/models/%s/sample" % model, body)


def test_case04_sample_finite(c, ctx):
    srv = ctx.srv
    body = ck.read(ck.case("case-04", "sample-10000.json"))
    r1, r2 = sample(srv, body), sample(srv, body)
    c.eq(r1.status, 200, "case-04 sample-10000")
    recs = ck.strict(r1.body)["records"] if r1.status == 200 else []
    c.eq(len(recs), 10000, "case-04 10000 records")
    c.ok(all(sorted(x) == ["a", "b"] for x in recs), "case-04 records carry a and b")
    a = [x["a"] for x in recs]
    b = [x["b"] for x in recs]
    c.ok(all(math.isfinite(v) for v in a + b), "case-04 every value finite")
    if recs:
        for name, vals, lo_m, hi_m, lo_s, hi_s in (("a", a, 97.44, 102.43, 22.45, 27.44),
                                                   ("b", b, -42.82, -37.83, 22.43, 27.42)):
            m, s = statistics.mean(vals), statistics.stdev(vals)
            c.ok(lo_m <= m <= hi_m, "case-04 mean of %s %.3f in [%g, %g]" % (name, m, lo_m, hi_m))
            c.ok(lo_s <= s <= hi_s, "case-04 std of %s %.3f in [%g, %g]" % (name, s, lo_s, hi_s))
    c.eq(r1.body, r2.body, "case-04 the same seed twice gives identical records")
    r = sample(srv, ck.read(ck.case("case-04", "sample-hot.json")))
    c.ok(r.status == 200 and len(ck.strict(r.body)["records"]) == 10 and
         ck.finite_tree(ck.strict(r.body)), "case-04 sample-hot: 200 with 10 finite records")
    # Temperature 0 draws the mode (z = 0) every time; small temperatures stay finite.
    r = sample(srv, {"n": 5, "temperature": 0, "seed": 3})
    recs0 = ck.strict(r.body).get("records", []) if r.status == 200 else []
    c.ok(r.status == 200 and len(recs0) == 5 and all(x == recs0[0] for x in recs0) and
         ck.finite_tree(recs0), "case-04 temperature 0: five identical finite records")
    for t in (0.01, 1e-300):
        r = sample(srv, {"n": 50, "temperature": t, "seed": 3})
        c.ok(r.status == 200 and ck.finite_tree(ck.strict(r.body)),
             "case-04 temperature %g: finite" % t)
    # Bad parameters: 4xx naming the field.
    for bad, field in (({"n": 10, "temperature": -1}, "temperature"),
                       ({"n": 10, "temperature": -0.01}, "temperature"),
                       ({"n": 1.5}, "n"), ({"n": -1}, "n"), ({"n": 1e20}, "n"),
                       ({"n": MAX_ROWS + 1}, "n"), ({"n": 2.0e9}, "n"),
                       ({"n": 10, "seed": 1.5}, "seed"), ({"n": 10, "seed": -2}, "seed")):
        r = sample(srv, bad)
        code, efield, msg = ck.error_of(r)
        c.ok(r.status in (400, 422) and efield == field,
             "case-04 %s: 4xx naming %s (%d %s)" % (json.dumps(bad), field, r.status, r.body))
    r = sample(srv, {"n": MAX_ROWS + 1})
    c.ok("max_rows_per_request=%d" % MAX_ROWS in ck.error_of(r)[2],
         "case-04 n over the cap names the cap: %s" % r.body)
    c.eq(sample(srv, {"n": 3, "seed": 1}).status, 200, "case-04 valid sample after errors")
    # A model with integer and categorical fields: levels from the training data, integers.
    r = sample(srv, {"n": 500, "seed": 4}, model="proto3")
    recs = ck.strict(r.body).get("records", []) if r.status == 200 else []
    c.ok(r.status == 200 and len(recs) == 500 and ck.finite_tree(recs),
         "case-04 sample of integer and categorical fields: %d" % r.status)
    c.ok(all(x.get("proto") in ("tcp", "udp", "icmp") for x in recs),
         "case-04 sampled levels are the model's")
    for t in (0, 3.0, 10.0):
        r = sample(srv, {"n": 50, "temperature": t, "seed": 5}, model="proto3")
        c.ok(r.status in (200, 422) and ck.finite_tree(ck.strict(r.body)),
             "case-04 proto3 at temperature %g: %d, strict JSON" % (t, r.status))
    # Every other output path: decode of far-out latents is finite or refused, never inf.
    d = ck.strict(srv.get("/v1/models/sample2d").body)["n_dims"]
    for z in (1e300, -1e300, 1e5):
        r = srv.post("/v1/models/sample2d/decode", {"latents": [[z] * d]})
        c.ok(r.status in (200, 422) and ck.finite_tree(ck.strict(r.body)),
             "case-04 decode of %g latents: %d %s" % (z, r.status, r.body[:160]))


def test_case11_empty_and_batches(c, ctx):
    srv = ctx.srv
    p = "/v1/models/wide/score"
    d = ck.strict(srv.get("/v1/models/wide").body)["n_dims"]
    n_fields = ck.strict(srv.get("/v1/models/wide").body)["n_fields"]
    for path, body, want in (
            (p, ck.read(ck.case("case-11", "empty.json")),
             '{"model":"wide","version":1,"results":[]}'),
            ("/v1/models/wide/sample", ck.read(ck.case("case-11", "sample0.json")),
             '{"records":[]}'),
            ("/v1/models/wide/encode", '{"records":[]}', '{"latents":[]}'),
            ("/v1/models/wide/decode", '{"latents":[]}', '{"records":[]}')):
        r = srv.post(path, body)
        c.eq((r.status, r.body.strip()), (200, want), "case-11 empty form of " + path)
    r = srv.post("/v2/models/wide/infer", {"inputs": [{"name": "x", "shape": [0, n_fields],
                                                       "datatype": "FP32", "data": []}]})
    outs = ck.strict(r.body).get("outputs", []) if r.status == 200 else []
    c.ok(r.status == 200 and outs and all(o["data"] == [] and o["shape"] == [0] for o in outs),
         "case-11 v2 infer of shape [0, %d]: %d %s" % (n_fields, r.status, r.body[:200]))
    r = srv.post(p, ck.read(ck.case("case-11", "wrong-type.json")))
    code, field, msg = ck.error_of(r)
    c.ok(r.status == 400 and field == "records" and "array" in msg,
         "case-11 wrong-type.json: 400 naming records (%s)" % r.body.strip())
    c.eq(srv.post(p, ck.read(ck.case("case-11", "one.json"))).status, 200,
         "case-11 the next valid request")
    one = ck.read(ck.case("case-11", "one.json"))
    batch = ck.read(ck.case("case-11", "batch64.json"))
    o = ck.strict(srv.post(p, one).body)["results"][0]
    b = ck.strict(srv.post(p, batch).body)["results"]
    c.eq(len(b), 64, "case-11 64 results")

    def same(x, y):
        return (ck.rel(x["score"], y["score"]) and ck.rel(x["log_prob"], y["log_prob"]) and
                x["percentile"] == y["percentile"] and x["anomaly"] == y["anomaly"])
    c.ok(same(o, b[17]), "case-11 one.json == batch64 results[17]: %r vs %r" % (o, b[17]))
    cli = ck.cli_scores(ctx.bin, ctx.model_file("wide"), ck.case("case-11", "batch64.csv"))
    c.ok(len(cli) == 64 and all(ck.rel(x["score"], y["score"]) and
                                ck.rel(x["log_prob"], y["log_prob"]) for x, y in zip(cli, b)),
         "case-11 the batch's 64 scores == flowscore score on batch64.csv")
    # 16 clients send one.json while batch64.json requests are in flight: dynamic batching
    # mixes them, and every answer still matches.
    bad = []
    lock = threading.Lock()

    def one_client():
        conn = srv.conn()
        try:
            for _ in range(25):
                x = ck.strict(srv.post(p, one, conn=conn).body)["results"][0]
                if not same(x, o):
                    with lock:
                        bad.append(("one", x))
        finally:
            conn.close()

    def batch_client():
        conn = srv.conn()
        try:
            for _ in range(10):
                xs = ck.strict(srv.post(p, batch, conn=conn).body)["results"]
                if len(xs) != 64 or not all(same(u, v) for u, v in zip(xs, b)):
                    with lock:
                        bad.append(("batch", xs[:1]))
        finally:
            conn.close()
    m0 = srv.metrics()
    threads = [threading.Thread(target=one_client) for _ in range(16)]
    threads += [threading.Thread(target=batch_client) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c.eq(bad, [], "case-11 identical answers under 16 concurrent clients with batch64 in flight")
    m1 = srv.metrics()
    key = ("flowscore_inference_executions_total", frozenset({("model", "wide")}))
    rows = ("flowscore_inference_rows_total", frozenset({("model", "wide"), ("op", "score")}))
    calls = m1.get(key, 0) - m0.get(key, 0)
    n_rows = m1.get(rows, 0) - m0.get(rows, 0)
    print("   case-11: %d rows in %d engine calls (%.1f rows per call)" % (
        n_rows, calls, n_rows / max(calls, 1)))
    c.ok(calls < 16 * 25 + 3 * 10, "case-11 requests were coalesced (%d calls for %d "
         "requests)" % (calls, 16 * 25 + 3 * 10))
    assert d > 0


if __name__ == "__main__":
    ck.run_tests([test_case03_encode_decode_round_trip, test_case04_sample_finite,
                  test_case11_empty_and_batches], setup,
                 ["--workers", "2", "--max-rows-per-request", str(MAX_ROWS)])
