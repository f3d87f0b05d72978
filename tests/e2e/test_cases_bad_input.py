#!/usr/bin/env python3
"""Shared failure cases, hostile bodies on every route that takes one (issue 7 §4): case-08
(every wrong-type value in every field type, position and record form, through score, encode,
decode, sample and v2 infer, each a 400 naming the field), case-10 (the five malformed bodies
and the extra ones to every route that parses JSON, with byte offsets and exact request
counts), case-12 (a chunked body over max_body_bytes gets a prompt 413 naming the limit on
every route, with bounded memory; the rows cap on every route). The NDJSON records route
comes with the background trainer. Skips (77) without ../shared/cases."""
# labels: e2e
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import casekit as ck  # noqa: E402
import fsharness as fh  # noqa: E402

MAX_ROWS = 100
LIMIT = 8388608  # case-12's max_body_bytes (the default)
WRONG = ['"1200"', '"tcp"', '""', '" 12"', '"0x10"', '"1e3"', "true", "false", "null", "{}",
         "[]"]
WRONG_LEVEL = ["6", "1.5", "true", "false", "null", "{}", "[]"]
VALID = {
    "score": '{"records":[{"bytes":1200,"pkts":10}]}',
    "encode": '{"records":[{"bytes":1200,"pkts":10}]}',
    "decode": '{"latents":[[0.1,-0.2]]}',
    "sample": '{"n":2,"seed":1}',
    "infer": '{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1200,10]}]}',
}


def route_path(route, model="num2"):
    if route == "infer":
        return "/v2/models/%s/infer" % model
    return "/v1/models/%s/%s" % (model, route)


def setup(ctx):
    ck.train(ctx.bin, ck.case("case-08", "train-numeric.csv"), ctx.model_file("num2"))
    schema = ck.write(ctx.path("proto-schema.json"), json.dumps({"fields": [
        {"name": "bytes", "type": "numeric"}, {"name": "pkts", "type": "numeric"},
        {"name": "proto", "type": "categorical"}]}))
    ck.train(ctx.bin, ck.case("case-08", "train-proto.csv"), ctx.model_file("proto3"),
             ["--schema", schema])


def expect_400(c, srv, path, body, field, what, code=None, has=None):
    r = srv.post(path, body)
    ecode, efield, msg = ck.error_of(r)
    v2 = path.startswith("/v2/")
    named = (field in msg) if v2 else (efield == field)
    ok = r.status == 400 and (field is None or named) and (code is None or v2 or ecode == code)
    ok = ok and (has is None or has in msg)
    c.ok(ok, "%s: 400 naming %s (got %d %s %s)" % (what, field, r.status, efield, msg[:160]))
    return ok


def test_case08_wrong_types_every_route(c, ctx):
    srv = ctx.srv
    # The case's own bodies, through score and encode.
    for route in ("score", "encode"):
        p = route_path(route)
        for name, field, has in (("unknown-field", "records[0].proto", "unknown field"),
                                 ("string-number", "records[0].bytes", "got a string"),
                                 ("string-word", "records[0].bytes", "got a string")):
            expect_400(c, srv, p, ck.read(ck.case("case-08", name + ".json")), field,
                       "case-08 %s %s" % (route, name), None, has)
            c.eq(srv.post(p, VALID[route]).status, 200, "case-08 valid after " + name)
        expect_400(c, srv, route_path(route, "proto3"),
                   ck.read(ck.case("case-08", "level-not-string.json")), "records[0].proto",
                   "case-08 %s level-not-string" % route, "invalid_input", "expected a string")
    r = srv.post("/v1/models/proto3/score", ck.read(ck.case("case-08", "unseen-level.json")))
    c.eq(r.status, 200, "case-08 unseen levels")
    s = [x["score"] for x in ck.strict(r.body)["results"]] if r.status == 200 else [0, 1, 2]
    c.ok(ck.rel(s[0], s[1]) and s[0] >= s[2] and s[1] >= s[2],
         "case-08 sctp and foo share the unknown bucket, at or above tcp: %r" % s)
    # Every wrong-type value, in every field (numeric and categorical), in the first, a
    # middle and the last record, in the object and the array form, through score and encode.
    n_checks = 0
    for model, fields, good in (("num2", ["bytes", "pkts"], ["1200", "10"]),
                                ("proto3", ["bytes", "pkts", "proto"], ["1200", "10", '"tcp"'])):
        for route in ("score", "encode"):
            p = route_path(route, model)
            for pos in (0, 1, 2):
                for j, f in enumerate(fields):
                    for v in (WRONG_LEVEL if f == "proto" else WRONG):
                        vals = list(good)
                        vals[j] = v
                        obj = ["{" + ",".join('"%s":%s' % (k, x) for k, x in zip(fields, good)) +
                               "}"] * 3
                        obj[pos] = "{" + ",".join('"%s":%s' % (k, x) for k, x in
                                                  zip(fields, vals)) + "}"
                        arr = ["[" + ",".join(good) + "]"] * 3
                        arr[pos] = "[" + ",".join(vals) + "]"
                        for form, recs, field in (("object", obj, "records[%d].%s" % (pos, f)),
                                                  ("array", arr, "records[%d][%d]" % (pos, j))):
                            expect_400(c, srv, p, '{"records":[' + ",".join(recs) + "]}", field,
                                       "case-08 %s %s %s %s=%s" % (model, route, form, field, v),
                                       "invalid_input")
                            n_checks += 1
                # A missing field names it.
                recs = ['{"bytes":1200,"pkts":10' + (',"proto":"tcp"' if model == "proto3"
                                                    else "") + "}"] * 3
                recs[pos] = '{"bytes":1200' + (',"proto":"tcp"' if model == "proto3" else "") + "}"
                expect_400(c, srv, p, '{"records":[' + ",".join(recs) + "]}",
                           "records[%d].pkts" % pos, "case-08 %s missing field" % route,
                           "missing_field")
            c.eq(srv.post(route_path(route, model), '{"records":[[' + ",".join(good) + "]]}")
                 .status, 200, "case-08 %s %s valid after the wrong types" % (model, route))
    print("   case-08: %d wrong-type records refused" % n_checks)
    # decode: every wrong type as a latent value and as a latent row.
    for v in WRONG:
        expect_400(c, srv, route_path("decode"), '{"latents":[[0,0],[0,%s]]}' % v,
                   "latents[1][1]", "case-08 decode value %s" % v, "invalid_input")
        if v != "[]":
            expect_400(c, srv, route_path("decode"), '{"latents":[[0,0],%s]}' % v, "latents[1]",
                       "case-08 decode row %s" % v, "invalid_input")
        if v != "[]":  # {"latents": []} is the empty batch (case-11)
            expect_400(c, srv, route_path("decode"), '{"latents":%s}' % v, "latents",
                       "case-08 decode latents=%s" % v)
    # sample: every wrong type for n, temperature and seed.
    for v in WRONG:
        for key, body in (("n", '{"n":%s}' % v), ("temperature", '{"n":1,"temperature":%s}' % v),
                          ("seed", '{"n":1,"seed":%s}' % v)):
            expect_400(c, srv, route_path("sample"), body, key, "case-08 sample %s=%s" % (key, v))
    # v2 infer: every wrong type in the tensor data (nested and flat), shape, datatype,
    # name, id, parameters and outputs.
    head = '{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":'
    for v in WRONG:
        expect_400(c, srv, route_path("infer"), head + "[[1,2],[3,%s]]}]}" % v,
                   "inputs[0].data[3]", "case-08 v2 nested data %s" % v)
        expect_400(c, srv, route_path("infer"), head + "[1,%s,3,4]}]}" % v, "inputs[0].data",
                   "case-08 v2 flat data %s" % v)
        expect_400(c, srv, route_path("infer"), '{"inputs":[{"name":"x","shape":[1,%s],'
                   '"datatype":"FP32","data":[1,2]}]}' % v, "inputs[0].shape",
                   "case-08 v2 shape %s" % v)
        for key, field in (("datatype", "inputs[0].datatype"), ("name", "inputs[0].name")):
            if key == "name" and v.startswith('"'):
                continue  # any string is a name
            doc = {"name": '"x"', "shape": "[1,2]", "datatype": '"FP32"', "data": "[1,2]"}
            doc[key] = v
            body = '{"inputs":[{' + ",".join('"%s":%s' % kv for kv in doc.items()) + "}]}"
            expect_400(c, srv, route_path("infer"), body, field, "case-08 v2 %s %s" % (key, v))
        if not v.startswith('"'):  # any string is an id
            expect_400(c, srv, route_path("infer"), '{"id":%s,' % v + VALID["infer"][1:], "id",
                       "case-08 v2 id %s" % v)
        if v != "{}":
            expect_400(c, srv, route_path("infer"), '{"parameters":%s,' % v + VALID["infer"][1:],
                       "parameters", "case-08 v2 parameters %s" % v)
        if v != "[]":
            expect_400(c, srv, route_path("infer"), '{"outputs":%s,' % v + VALID["infer"][1:],
                       "outputs", "case-08 v2 outputs %s" % v)
            expect_400(c, srv, route_path("infer"), '{"inputs":%s}' % v, "inputs",
                       "case-08 v2 inputs %s" % v)
    c.eq(srv.post(route_path("infer"), VALID["infer"]).status, 200, "case-08 v2 valid after")


def requests_by_code(srv, handler):
    m = srv.metrics()
    out = {}
    for code in ("200", "400"):
        out[code] = m.get(("flowscore_http_requests_total",
                           frozenset({("handler", handler), ("method", "POST"),
                                      ("code", code)})), 0.0)
    return out


def test_case10_malformed_json_every_route(c, ctx):
    srv = ctx.srv
    deep = ck.gen("case-10", ctx.path("body4-deep.json"), script="gen-deep.py")
    bodies = [(ck.read(ck.case("case-10", "body1-truncated.json")), 33, "application/json"),
              (ck.read(ck.case("case-10", "body2-trailing-comma.json")), 26, "application/json"),
              (ck.read(ck.case("case-10", "body3-bare-nan.json")), 21, "application/json"),
              (ck.read(deep), None, "application/json"),
              (ck.read(ck.case("case-10", "body5-form.txt")), 0,
               "application/x-www-form-urlencoded")]
    handlers = {"score": "/v1/models/{name}/score", "encode": "/v1/models/{name}/encode",
                "decode": "/v1/models/{name}/decode", "sample": "/v1/models/{name}/sample",
                "infer": "/v2/models/{name}/infer"}
    for route in ("score", "sample", "encode", "decode", "infer"):
        p = route_path(route)
        before = requests_by_code(srv, handlers[route])
        for body, off, ctype in bodies:
            r = srv.post(p, body, headers={"Content-Type": ctype})
            try:
                err = ck.strict(r.body)["error"]
            except (ValueError, KeyError):
                err = None
            c.ok(r.status == 400 and err is not None,
                 "case-10 %s: 400 with a JSON error body (%d %s)" % (route, r.status, r.body[:120]))
            msg = err if isinstance(err, str) else (err or {}).get("message", "")
            if off is None:
                c.ok("too deep" in msg and "64" in msg,
                     "case-10 %s deep body: the message names the limit: %s" % (route, msg))
            elif route == "infer":  # {"error": "..."}: the offset is in the sentence
                c.ok(any("byte %d" % n in msg for n in (off - 1, off, off + 1)),
                     "case-10 %s offset %d in %r" % (route, off, msg))
            else:
                got = err.get("offset", -99)
                c.ok(abs(got - off) <= 1 and ("byte %d" % got) in msg,
                     "case-10 %s offset %r ~ %d (%s)" % (route, got, off, msg))
            r = srv.post(p, VALID[route])
            c.eq(r.status, 200, "case-10 %s: valid request after a bad body" % route)
        after = requests_by_code(srv, handlers[route])
        c.eq(after["400"] - before["400"], 5.0, "case-10 %s: 400 count rises by 5" % route)
        c.eq(after["200"] - before["200"], 5.0, "case-10 %s: 200 count rises by 5" % route)
        # Same kind: empty body, wrong top-level types, NUL, duplicate key, long string.
        extras = [(b"", "empty"), (b"[]", "top-level []"), (b'"x"', 'top-level "x"'),
                  (b"1", "top-level 1"), (b"null", "top-level null"),
                  (b'{"records":[{"bytes":"a\x00b"}]}', "NUL byte in a string"),
                  (b'{"records":[{"bytes":"a\\u0000b"}]}', "\\u0000 in a string"),
                  (b'{"records":[],"records":[]}', "duplicate key"),
                  (b'{"n":1,"n":2}', "duplicate key"),
                  (b'{"x":"' + b"a" * 5000 + b'"}', "string over max_string_bytes")]
        for body, what in extras:
            r = srv.post(p, body)
            ok = r.status == 400
            try:
                ck.strict(r.body)["error"]
            except (ValueError, KeyError):
                ok = False
            c.ok(ok, "case-10 %s %s: 400 with a JSON error (%d %s)" % (route, what, r.status,
                                                                       r.body[:120]))
            if what.startswith("duplicate"):
                c.ok("duplicate" in ck.error_of(r)[2], "case-10 %s duplicate named" % route)
            if what.startswith("string over"):
                c.ok("max_string_bytes=4096" in ck.error_of(r)[2],
                     "case-10 %s string cap named" % route)
        c.eq(srv.post(p, VALID[route]).status, 200, "case-10 %s: valid after the extras" % route)
    c.eq(srv.get("/healthz").status, 200, "case-10 the process stays up")


def chunked_413(srv, path, limit):
    """POST a chunked body until the answer comes; returns (answer bytes, bytes sent)."""
    piece = b'{"records":[' + b'{"bytes":1200,"pkts":10},' * 40000
    return fh.post_chunked(srv.port, path, piece, 16 * limit)


def test_case12_oversized_every_route(c, ctx):
    srv = ctx.srv
    for route in ("score", "sample", "encode", "decode", "infer"):
        p = route_path(route)
        rss0 = srv.rss_kib()
        t0 = time.time()
        resp, sent = chunked_413(srv, p, LIMIT)
        dt = time.time() - t0
        c.ok(resp.startswith(b"HTTP/1.1 413"), "case-12 %s chunked: 413 (%r)" % (route,
                                                                                 resp[:60]))
        c.ok(b"max_body_bytes=%d" % LIMIT in resp, "case-12 %s: the 413 names the limit" % route)
        c.ok(sent < LIMIT + 8 * (1 << 20), "case-12 %s: answered soon after the limit (%d sent)"
             % (route, sent))
        if not fh.sanitized():  # ASan's quarantine keeps freed buffers resident on purpose
            c.ok(srv.rss_kib() - rss0 < 9 * 1024, "case-12 %s: RSS rose by less than 9 MiB "
                 "(%d KiB)" % (route, srv.rss_kib() - rss0))
        c.eq(srv.post(p, VALID[route]).status, 200, "case-12 %s: served after the 413 (%.2fs)" %
             (route, dt))
    # The rows cap and the depth cap on every route: a 4xx naming the cap.
    over = MAX_ROWS + 1
    for route, body, status, field in (
            ("score", {"records": [[1200, 10]] * over}, 413, "records"),
            ("encode", {"records": [[1200, 10]] * over}, 413, "records"),
            ("decode", {"latents": [[0.0, 0.0]] * over}, 413, "latents"),
            ("sample", {"n": over}, 422, "n"),
            ("infer", {"inputs": [{"name": "x", "shape": [over, 2], "datatype": "FP32",
                                   "data": [[1200, 10]] * over}]}, 413, "inputs[0].shape")):
        r = srv.post(route_path(route), body)
        code, efield, msg = ck.error_of(r)
        named = field in msg if route == "infer" else efield == field
        c.ok(r.status == status and named and "max_rows_per_request=%d" % MAX_ROWS in msg,
             "case-12 %s rows cap: %d naming the cap (%d %s)" % (route, status, r.status, msg))
        c.eq(srv.post(route_path(route), VALID[route]).status, 200,
             "case-12 %s: served after the rows cap" % route)


if __name__ == "__main__":
    ck.run_tests([test_case08_wrong_types_every_route, test_case10_malformed_json_every_route,
                  test_case12_oversized_every_route], setup,
                 ["--workers", "2", "--max-rows-per-request", str(MAX_ROWS)])
