#!/usr/bin/env python3
"""Every endpoint of `flowscore serve` answers as documented: v1, Open Inference Protocol v2,
health, metrics, admin authorisation, configuration checks and the JSON log format."""
import json
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsharness as fh  # noqa: E402


def finite_numbers(obj):
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(finite_numbers(v) for v in obj.values())
    if isinstance(obj, list):
        return all(finite_numbers(v) for v in obj)
    return True


def rel_close(a, b, tol=1e-6):
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def check_metrics_format(c, text):
    """HELP and TYPE before each family's samples, histograms consistent."""
    families = {}
    seen_samples = set()
    for line in text.splitlines():
        m = re.match(r"^# (HELP|TYPE) (\S+) (.*)$", line)
        if m:
            name = m.group(2)
            c.ok(name not in seen_samples, "metrics: %s %s after its samples" % (m.group(1), name))
            families.setdefault(name, {})[m.group(1)] = m.group(3)
            continue
        c.ok(re.match(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})? \S+$',
                      line) is not None,
             "metrics line format: " + line)
        sample = re.match(r"^([a-zA-Z0-9_:]+)", line).group(1)
        base = re.sub(r"_(bucket|sum|count)$", "", sample)
        fam = sample if sample in families else base
        c.ok(fam in families, "metrics: sample %s has no HELP/TYPE" % sample)
        seen_samples.add(fam)
    for name, f in families.items():
        c.ok("HELP" in f and "TYPE" in f, "metrics: family %s has HELP and TYPE" % name)
    # Every histogram: buckets non-decreasing, +Inf == _count.
    buckets = {}
    counts = {}
    for line in text.splitlines():
        m = re.match(r'^(\w+)_bucket\{(.*)le="([^"]+)"\} (\S+)$', line)
        if m:
            buckets.setdefault((m.group(1), m.group(2)), []).append((m.group(3), float(m.group(4))))
        m = re.match(r'^(\w+)_count(\{(.*)\})? (\S+)$', line)
        if m:
            counts[(m.group(1), (m.group(3) + ",") if m.group(3) else "")] = float(m.group(4))
    c.ok(len(buckets) > 0, "metrics: histograms present")
    for key, bs in buckets.items():
        vals = [v for _, v in bs]
        c.ok(vals == sorted(vals), "metrics: %s buckets non-decreasing" % (key,))
        c.eq(bs[-1][0], "+Inf", "metrics: %s last bucket" % (key,))
        c.eq(bs[-1][1], counts.get(key), "metrics: %s +Inf == _count" % (key,))


def main():
    binp = fh.binary()
    c = fh.Check()
    with fh.tempdir() as tmp:
        models = os.path.join(tmp, "models")
        fh.make_model(binp, os.path.join(models, "m1", "1.fsm"), dims=4, seed=1)
        fh.make_model(binp, os.path.join(models, "m2", "3.fsm"), dims=3, seed=2)
        srv = fh.Server(binp, models, ["--workers", "2"])
        try:
            run_checks(c, srv)
        finally:
            fh.check_clean_exit(c, srv)
        admin_checks(c, binp, models)
        categorical_v2_checks(c, binp, tmp)
        config_checks(c, binp, tmp, models)
        tls_checks(c, binp, tmp, models)
    c.done()


def tls_checks(c, binp, tmp, models):
    """HTTPS through MHD_USE_TLS with a throw-away self-signed certificate."""
    import http.client
    import shutil
    import ssl
    openssl = shutil.which("openssl")
    if openssl is None:
        print("note: openssl not found; the TLS checks are skipped")
        return
    key, cert = os.path.join(tmp, "key.pem"), os.path.join(tmp, "cert.pem")
    r = fh.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                "-out", cert, "-days", "1", "-subj", "/CN=localhost"])
    if r.returncode != 0:
        print("note: openssl could not make a certificate; the TLS checks are skipped")
        return
    srv = fh.Server(binp, models, ["--workers", "1", "--tls-cert-file", cert, "--tls-key-file",
                                   key, "--max-body-bytes", "4096"], wait_ready=False)
    try:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

        def call(method, path, body=None, chunked=False):
            conn = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx, timeout=30)
            try:
                if chunked:
                    conn.request(method, path, body=iter([b"x" * 3000] * 4),
                                 headers={"Content-Type": "application/json"},
                                 encode_chunked=True)
                else:
                    conn.request(method, path, body=body,
                                 headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                return resp.status, resp.read().decode()
            finally:
                conn.close()
        status = None
        for _ in range(100):
            try:
                status, _ = call("GET", "/readyz")
                if status == 200:
                    break
            except OSError:
                pass
            import time
            time.sleep(0.05)
        c.eq(status, 200, "HTTPS /readyz")
        st, body = call("POST", "/v1/models/m1/score", json.dumps({"records": [[1, 2, 3, 4]]}))
        c.eq(st, 200, "HTTPS score")
        st, body = call("POST", "/v1/models/m1/score", chunked=True)
        c.ok(st == 413 and "max_body_bytes=4096" in body, "HTTPS chunked body over the limit")
        c.eq(call("GET", "/healthz")[0], 200, "HTTPS after a 413")
    finally:
        fh.check_clean_exit(c, srv, "TLS daemon")


def run_checks(c, srv):
    r = srv.get("/healthz")
    c.eq((r.status, r.json()), (200, {"status": "ok"}), "GET /healthz")
    r = srv.request("HEAD", "/healthz")
    c.eq((r.status, r.body), (200, ""), "HEAD /healthz")
    c.eq(srv.get("/readyz").status, 200, "GET /readyz")
    r = srv.get("/v2")
    c.eq((r.status, r.json().get("name")), (200, "flowscore"), "GET /v2")
    c.eq(srv.get("/v2/health/live").json(), {"live": True}, "GET /v2/health/live")
    r = srv.get("/v2/health/ready")
    c.eq((r.status, r.json()), (200, {"ready": True}), "GET /v2/health/ready")

    r = srv.get("/v1/models")
    names = sorted(m["name"] for m in r.json()["models"])
    c.eq(names, ["m1", "m2"], "GET /v1/models names")
    d = srv.get("/v1/models/m1").json()
    c.eq((d["version"], d["n_dims"], d["n_fields"]), (1, 4, 4), "GET /v1/models/m1")
    c.eq([f["name"] for f in d["schema"]["fields"]], ["x0", "x1", "x2", "x3"], "m1 schema")
    c.eq(d["last_reload_error"], None, "m1 last_reload_error")
    c.ok(d["n_params"] > 0 and d["n_layers"] > 0, "m1 n_params and n_layers")
    c.ok("threshold_quantile" in d["calibration"], "m1 calibration")
    c.eq(srv.get("/v1/models/m2").json()["version"], 3, "m2 serves its highest version")
    r = srv.get("/v1/models/nope")
    c.eq((r.status, r.json()["error"]["code"]), (404, "model_not_found"), "unknown model")
    c.eq(srv.get("/v1/models/..%2Fetc").status, 404, "a path as a name")

    recs = [{"x0": 0.1, "x1": -1.0, "x2": 2.5, "x3": 0.0}, {"x0": 3, "x1": 1, "x2": -2, "x3": 7}]
    r1 = srv.post("/v1/models/m1/score", {"records": recs})
    c.eq(r1.status, 200, "score object form")
    out = r1.json()
    c.eq((out["model"], out["version"], len(out["results"])), ("m1", 1, 2), "score head")
    for res in out["results"]:
        c.ok(finite_numbers(res), "score finite")
        c.ok(rel_close(res["score"], -res["log_prob"]), "score == -log_prob")
        c.ok(0.0 <= res["percentile"] <= 1.0, "percentile in [0, 1]")
        c.ok(isinstance(res["anomaly"], bool), "anomaly is a bool")
    arr = [[r["x0"], r["x1"], r["x2"], r["x3"]] for r in recs]
    r2 = srv.post("/v1/models/m1/score", {"records": arr}).json()
    c.eq([x["score"] for x in r2["results"]], [x["score"] for x in out["results"]],
         "array form scores == object form scores")
    r = srv.post("/v1/models/m1/score", {"records": []})
    c.eq((r.status, r.body.strip()), (200, '{"model":"m1","version":1,"results":[]}'),
         "empty batch")

    r = srv.post("/v1/models/m1/sample", {"n": 0})
    c.eq((r.status, r.body.strip()), (200, '{"records":[]}'), "sample n=0")
    s1 = srv.post("/v1/models/m1/sample", {"n": 50, "seed": 7, "temperature": 1.0})
    s2 = srv.post("/v1/models/m1/sample", {"n": 50, "seed": 7, "temperature": 1.0})
    c.eq(s1.status, 200, "sample")
    c.eq(s1.body, s2.body, "sample with the same seed twice")
    srecs = s1.json()["records"]
    c.eq(len(srecs), 50, "sample count")
    c.ok(all(sorted(x) == ["x0", "x1", "x2", "x3"] for x in srecs), "sample fields")
    c.ok(finite_numbers(srecs), "sample finite")
    for t in (0, 0.01, 10):
        c.eq(srv.post("/v1/models/m1/sample", {"n": 3, "temperature": t}).status, 200,
             "sample temperature %g" % t)

    enc = srv.post("/v1/models/m1/encode", {"records": recs})
    c.eq(enc.status, 200, "encode")
    lat = enc.json()["latents"]
    c.eq([len(z) for z in lat], [4, 4], "latent lengths")
    enc2 = srv.post("/v1/models/m1/encode", {"records": recs})
    c.eq(enc2.body, enc.body, "encode is deterministic")
    dec = srv.post("/v1/models/m1/decode", {"latents": lat})
    c.eq(dec.status, 200, "decode")
    back = dec.json()["records"]
    for a, b in zip(recs, back):
        for k in a:
            c.ok(abs(a[k] - b[k]) <= 1e-6 * (1 + abs(a[k])), "decode(encode(x)) %s" % k)
    c.eq(srv.post("/v1/models/m1/encode", {"records": []}).body.strip(), '{"latents":[]}',
         "encode empty")
    c.eq(srv.post("/v1/models/m1/decode", {"latents": []}).body.strip(), '{"records":[]}',
         "decode empty")

    v2_checks(c, srv, arr, out)
    method_checks(c, srv)
    r = srv.post("/v1/models/m1/reload", "")
    c.eq((r.status, r.json().get("version")), (200, 1), "POST reload")
    r = srv.post("/v1/models/m1/score", {"records": [{"x0": "text"}]})
    c.eq(r.status, 400, "a bad record, for the failure metrics")
    text = srv.get("/metrics")
    c.eq(text.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8",
         "metrics content type")
    check_metrics_format(c, text.body)
    m = srv.metrics()
    c.eq(m.get(("flowscore_model_info", frozenset({("model", "m1"), ("version", "1")}))), 1.0,
         "flowscore_model_info m1")
    for name in ("process_resident_memory_bytes", "process_open_fds", "process_max_fds",
                 "process_cpu_seconds_total", "process_start_time_seconds"):
        c.ok((name, frozenset()) in m and m[(name, frozenset())] >= 0, name)
    key = ("flowscore_http_requests_total",
           frozenset({("handler", "/v1/models/{name}/score"), ("method", "POST"),
                      ("code", "200")}))
    c.eq(m.get(key), 3.0, "score requests counted")
    c.ok(m.get(("flowscore_inference_rows_total",
                frozenset({("model", "m1"), ("op", "score")}))) == 4.0, "rows counted")
    fails = {k[1]: v for k, v in m.items() if k[0] == "flowscore_inference_failures_total"
             and ("model", "m1") in k[1] and ("op", "score") in k[1]}
    c.eq(sorted((dict(k)["reason"], v) for k, v in fails.items()),
         [("invalid_input", 1.0), ("model_error", 0.0), ("unavailable", 0.0)],
         "inference failures by reason: the bad record is the client's")


def v2_checks(c, srv, arr, v1):
    md = srv.get("/v2/models/m1").json()
    c.eq((md["name"], md["versions"], md["inputs"][0]["shape"]), ("m1", ["1"], [-1, 4]),
         "v2 model metadata")
    c.eq([o["name"] for o in md["outputs"]], ["score", "log_prob", "percentile", "anomaly"],
         "v2 model metadata outputs")
    c.eq(md.get("parameters", {}).get("v2_infer"), True, "v2 metadata: infer available")
    c.eq(srv.get("/v2/models/m1/ready").status, 200, "v2 model ready")
    c.eq(srv.get("/v2/models/m1/versions/1/ready").status, 200, "v2 version ready")
    c.eq(srv.get("/v2/models/m1/versions/2/ready").status, 400, "v2 other version not ready")
    c.eq(srv.get("/v2/models/m1/versions/2").status, 404, "v2 other version metadata")
    req = {"id": "req-42", "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
                                       "data": arr}]}
    r = srv.post("/v2/models/m1/infer", req)
    c.eq(r.status, 200, "v2 infer nested")
    o = r.json()
    c.eq((o["model_name"], o["model_version"], o["id"]), ("m1", "1", "req-42"), "v2 infer head")
    outs = {x["name"]: x for x in o["outputs"]}
    c.eq(sorted(outs), ["log_prob", "score"], "v2 default outputs")
    c.eq((outs["score"]["shape"], outs["score"]["datatype"]), ([2], "FP64"), "v2 score tensor")
    for i in range(2):
        c.ok(rel_close(outs["score"]["data"][i], v1["results"][i]["score"]), "v2 == v1 score")
    flat = dict(req, inputs=[dict(req["inputs"][0], data=[v for row in arr for v in row])])
    c.eq(srv.post("/v2/models/m1/infer", flat).json()["outputs"], o["outputs"], "v2 flat data")
    req64 = dict(req, inputs=[dict(req["inputs"][0], datatype="FP64")])
    c.eq(srv.post("/v2/models/m1/infer", req64).status, 200, "v2 FP64")
    only = dict(req, outputs=[{"name": "log_prob"}])
    r = srv.post("/v2/models/m1/infer", only).json()
    c.eq([x["name"] for x in r["outputs"]], ["log_prob"], "v2 requested output")
    r = srv.post("/v2/models/m1/versions/1/infer", req)
    c.eq(r.status, 200, "v2 versioned infer")
    empty = {"inputs": [{"name": "x", "shape": [0, 4], "datatype": "FP32", "data": []}]}
    r = srv.post("/v2/models/m1/infer", empty)
    c.eq((r.status, [x["data"] for x in r.json()["outputs"]]), (200, [[], []]), "v2 [0, 4]")
    bad = [
        (dict(req, outputs=[{"name": "nope"}]), "unknown output"),
        ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                      "data": [1e39, 0, 0, 0]}]}, "1e39 in FP32"),
        ({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
                      "data": [1, 2, 3]}]}, "shape product != elements"),
        ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32",
                      "data": [1, 2, 3]}]}, "wrong D"),
        ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT8",
                      "data": [1, 2, 3, 4]}]}, "datatype"),
        ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                      "data": [1, "2", 3, 4]}]}, "string in FP32 data"),
        ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                      "data": [1, None, 3, 4]}]}, "null in FP32 data"),
        ({"inputs": []}, "no input"),
    ]
    for body, what in bad:
        r = srv.post("/v2/models/m1/infer", body)
        c.eq(r.status, 400, "v2 infer " + what)
        c.ok(isinstance(r.json().get("error"), str), "v2 error is a string: " + what)
    r = srv.post("/v2/models/m1/infer", '{"inputs":[')
    c.eq(r.status, 400, "v2 infer malformed JSON")
    c.ok("byte" in r.json()["error"], "v2 malformed JSON names the offset")
    c.eq(srv.post("/v2/models/m1/infer", req).status, 200, "v2 after errors")


def categorical_v2_checks(c, binp, tmp):
    """A model with a categorical field takes no v2 tensor: its metadata says so (no inputs,
    "v2_infer": false with the reason) instead of advertising an FP32 [-1, D] input that infer
    then refuses; it is still ready, and infer's 400 names the field and the v1 route."""
    models = os.path.join(tmp, "cat-models")
    data = os.path.join(tmp, "cat.csv")
    with open(data, "w") as f:
        f.write("bytes,proto\n")
        for i in range(40):
            f.write("%d,%s\n" % (100 + 7 * i, ("tcp", "udp", "icmp")[i % 3]))
    os.makedirs(os.path.join(models, "kdd"))
    r = fh.run([binp, "train", "--data", data, "--epochs", "0", "--quiet", "--out",
                os.path.join(models, "kdd", "1.fsm")])
    c.eq(r.returncode, 0, "train a categorical model: " + r.stderr)
    srv = fh.Server(binp, models, ["--workers", "1"])
    try:
        md = srv.get("/v2/models/kdd").json()
        c.eq(md["inputs"], [], "v2 metadata of a categorical model: no inputs")
        c.eq([(o["name"], o["datatype"], o["shape"]) for o in md["outputs"]],
             [("score", "FP64", [-1]), ("log_prob", "FP64", [-1]),
              ("percentile", "FP64", [-1]), ("anomaly", "BOOL", [-1])],
             "v2 metadata outputs of a categorical model")
        params = md.get("parameters", {})
        c.eq(params.get("v2_infer"), False, "v2 metadata says infer is not available")
        note = params.get("v2_infer_note", "")
        c.ok("proto" in note and "/v1/models/kdd/score" in note, "v2_infer_note: " + note)
        c.eq(srv.get("/v2/models/kdd/ready").status, 200, "a categorical model is ready")
        r = srv.post("/v2/models/kdd/infer", {"inputs": [
            {"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]})
        c.eq(r.status, 400, "v2 infer on a categorical model")
        c.ok(note != "" and note in r.json().get("error", ""),
             "infer's error is the metadata's note: %r" % r.json().get("error"))
        r = srv.post("/v1/models/kdd/score", {"records": [{"bytes": 120, "proto": "udp"}]})
        c.eq(r.status, 200, "v1 scores the categorical model")
    finally:
        fh.check_clean_exit(c, srv, "categorical daemon")


def method_checks(c, srv):
    r = srv.get("/v1/models/m1/score")
    c.eq((r.status, r.header("Allow")), (405, "POST"), "GET on score")
    r = srv.post("/healthz", "{}")
    c.eq((r.status, r.header("Allow")), (405, "GET, HEAD"), "POST on healthz")
    r = srv.request("PUT", "/v1/models/m1/score", "{}")
    c.eq(r.status, 405, "PUT on score")
    r = srv.get("/nope")
    c.eq((r.status, r.json()["error"]["code"]), (404, "not_found"), "unknown path")
    c.eq(srv.get("/v1/models/m1/nope").status, 404, "unknown verb")


def admin_checks(c, binp, models):
    token = "s3cret-token-value"
    srv = fh.Server(binp, models, ["--workers", "1"], env={"FLOWSCORE_ADMIN_TOKEN": token})
    try:
        r = srv.post("/v1/models/m1/reload", "")
        c.eq((r.status, r.json()["error"]["code"]), (401, "unauthorized"), "reload without token")
        c.ok((r.header("WWW-Authenticate") or "").startswith("Bearer"), "WWW-Authenticate")
        r = srv.post("/v1/models/m1/reload", "", headers={"Authorization": "Bearer wrong"})
        c.eq(r.status, 403, "reload with a wrong token")
        r = srv.post("/v1/models/m1/reload", "", headers={"Authorization": "Bearer " + token[:-1]})
        c.eq(r.status, 403, "reload with a token prefix")
        r = srv.post("/v1/models/m1/reload", "", headers={"Authorization": "Bearer " + token})
        c.eq(r.status, 200, "reload with the token")
        c.eq(srv.post("/v1/models/m1/score", {"records": []}).status, 200,
             "scoring needs no token")
    finally:
        fh.check_clean_exit(c, srv, "admin daemon")
    c.ok(token not in srv.log_text(), "the token never appears in the log")


def config_checks(c, binp, tmp, models):
    r = fh.run([binp, "serve", "--help"])
    c.ok(r.returncode == 0 and "--max-body-bytes" in r.stdout, "serve --help")
    r = fh.run([binp, "serve", "--check-config", "--models-dir", models])
    c.eq(r.returncode, 0, "--check-config " + r.stderr)
    c.eq(json.loads(r.stdout)["models_dir"], models, "--check-config prints the configuration")
    repo_cfg = os.path.join(fh.SOURCE_DIR, "config", "flowscore.json")
    r = fh.run([binp, "serve", "--check-config", "--config", repo_cfg])
    c.eq(r.returncode, 0, "config/flowscore.json is valid: " + r.stderr)
    with open(repo_cfg) as f:
        c.eq(json.loads(r.stdout), json.load(f), "config/flowscore.json holds every default")
    bad = os.path.join(tmp, "bad.json")
    cases = [
        ('{"listen":"127.0.0.1:0","bogus":1}', "unknown config key 'bogus'"),
        ('{"workers":-1}', "workers"),
        ('{"max_body_bytes":"8"}', "max_body_bytes"),
        ('{"log_level":"loud"}', "log_level"),
        ('{"watch":1}', "watch"),
        ('{"listen":"nohost"}', "listen"),
        ('{"admin_token":"x"}', "admin_token"),
        ('{"workers": 1,', "not valid JSON"),
    ]
    for text, want in cases:
        with open(bad, "w") as f:
            f.write(text)
        r = fh.run([binp, "serve", "--check-config", "--config", bad])
        c.ok(r.returncode == 2 and want in r.stderr, "bad config %s: %s" % (text, r.stderr.strip()))
    for args, want in ((["--workers", "x"], "--workers"), (["--bogus", "1"], "--bogus"),
                       (["--admin-token", "x"], "never taken from the command line"),
                       (["--listen", "1.2.3.4:99999"], "port")):
        r = fh.run([binp, "serve", "--check-config"] + args)
        c.ok(r.returncode == 2 and want in r.stderr, "bad flag %s: %s" % (args, r.stderr.strip()))
    srv = fh.Server(binp, models, ["--log-format", "json", "--workers", "1"])
    try:
        srv.get("/healthz")
    finally:
        fh.check_clean_exit(c, srv, "json-log daemon")
    for line in srv.log_text().splitlines():
        try:
            obj = json.loads(line)
            c.ok("level" in obj and "component" in obj and "msg" in obj, "json log keys")
        except ValueError:
            c.ok(False, "json log line: " + line)


if __name__ == "__main__":
    main()
