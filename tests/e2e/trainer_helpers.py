"""Helpers of the background-trainer end-to-end tests (test_trainer_*.py; issue 5).

Python 3 standard library only. Models are trained with `flowscore train` on small specs so
that each test stays within a couple of minutes on two cores; refits are triggered with
POST /v1/models/{name}/training and followed with GET /v1/models/{name}/training.
"""
import json
import math
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsharness as fh  # noqa: E402

SMALL_SPEC = {"preset": "realnvp", "blocks": 2, "hidden": [32, 32]}
CASES = os.path.join(fh.SHARED_DIR, "cases")


def case_dir(name):
    if not os.path.isdir(CASES):
        fh.skip("the shared cases are missing: " + CASES)
    for d in os.listdir(CASES):
        if d.startswith(name):
            return os.path.join(CASES, d)
    fh.skip("case folder %s missing" % name)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)
    return path


def gaussian_csv(path, n, dims=3, shift=0.0, seed=1):
    """n rows of N(shift, I) in dims columns x0..x{dims-1}."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        f.write(",".join("x%d" % i for i in range(dims)) + "\n")
        for _ in range(n):
            f.write(",".join("%.6f" % (shift + rng.gauss(0, 1)) for _ in range(dims)) + "\n")
    return path


def gaussian_records(n, dims=3, shift=0.0, seed=2):
    rng = random.Random(seed)
    return [[shift + rng.gauss(0, 1) for _ in range(dims)] for _ in range(n)]


def csv_records(path, limit=None):
    """The rows of a CSV file as JSON objects (numbers where the cell is a number)."""
    out = []
    with open(path) as f:
        header = f.readline().strip().split(",")
        for line in f:
            cells = line.rstrip("\n").split(",")
            rec = {}
            for k, v in zip(header, cells):
                try:
                    rec[k] = float(v)
                except ValueError:
                    rec[k] = v
            out.append(rec)
            if limit is not None and len(out) >= limit:
                break
    return out


def train(binp, csv, out, spec=None, epochs=5, extra=(), tmp=None):
    """`flowscore train` into out (a models/<name>/<v>.fsm path), skipping when it fails."""
    os.makedirs(os.path.dirname(out), exist_ok=True)
    args = [binp, "train", "--data", csv, "--seed", "1", "--out", out, "--quiet",
            "--epochs", str(epochs)]
    if spec is not None:
        spec_path = write_json(os.path.join(tmp or os.path.dirname(out), "spec.json"), spec)
        args += ["--spec", spec_path]
    r = fh.run(args + list(extra))
    if r.returncode != 0:
        fh.skip("flowscore train failed on %s: %s" % (csv, r.stderr.strip()[:400]))
    return out


def post_ndjson(srv, name, records, conn=None):
    body = "\n".join(json.dumps(r) for r in records) + "\n"
    return srv.post("/v1/models/%s/records" % name, body,
                    headers={"Content-Type": "application/x-ndjson"}, conn=conn)


def post_records(srv, name, records, conn=None):
    return srv.post("/v1/models/%s/records" % name, {"records": records}, conn=conn)


def stream(srv, name, records, batch=500):
    """Post records in NDJSON batches; every batch must be accepted whole."""
    for i in range(0, len(records), batch):
        r = post_ndjson(srv, name, records[i:i + batch])
        if r.status != 202 or r.json()["accepted"] != len(records[i:i + batch]):
            raise RuntimeError("ingest failed: %d %s" % (r.status, r.body[:300]))


def training(srv, name):
    return srv.get("/v1/models/%s/training" % name).json()


def trigger(srv, name, token=None):
    h = {"Authorization": "Bearer " + token} if token else None
    return srv.post("/v1/models/%s/training" % name, "", headers=h)


def wait_run(srv, name, runs_before, timeout=180):
    """Wait until the model has finished more refits than runs_before; its last_run."""
    deadline = time.time() + timeout
    st = None
    while time.time() < deadline:
        st = training(srv, name)
        if st["refits"] > runs_before and st["state"] == "idle":
            return st["last_run"]
        time.sleep(0.1)
    raise RuntimeError("no refit finished in %ds: %s\n%s" % (timeout, st, srv.log_text()[-3000:]))


def refit(srv, name, token=None, timeout=180):
    runs = training(srv, name)["refits"]
    r = trigger(srv, name, token)
    if r.status != 202:
        raise RuntimeError("trigger: %d %s" % (r.status, r.body))
    return wait_run(srv, name, runs, timeout)


def version(srv, name):
    return srv.get("/v1/models/" + name).json().get("version")


def scores(srv, name, records):
    r = srv.post("/v1/models/%s/score" % name, {"records": records})
    if r.status != 200:
        raise RuntimeError("score: %d %s" % (r.status, r.body[:300]))
    js = r.json()
    return js["version"], [x["score"] for x in js["results"]], js["results"]


def metric(srv, name, **labels):
    return srv.metrics().get((name, frozenset(labels.items())))


def spool_records(binp, state_dir, name):
    """Every record of a spool, read with `flowscore spool inspect --records`."""
    r = fh.run([binp, "spool", "inspect", "--records", state_dir, name])
    if r.returncode != 0:
        raise RuntimeError("spool inspect: " + r.stderr)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def spool_summary(binp, state_dir, name):
    r = fh.run([binp, "spool", "inspect", state_dir, name])
    if r.returncode != 0:
        raise RuntimeError("spool inspect: " + r.stderr)
    return json.loads(r.stdout)


def percentile(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(math.ceil(q * len(v))) - 1))
    return v[k]


def finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x)


def server(binp, models, state, args=(), env=None, config=None, tmp=None):
    """The daemon with the trainer on state (and a config file when config is a dict)."""
    extra = ["--state-dir", state, "--workers", "2", "--watch-debounce-ms", "50"]
    if config is not None:
        extra += ["--config", write_json(os.path.join(tmp, "config.json"), config)]
    return fh.Server(binp, models, extra + list(args), env=env)


def run_quiet(args):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
