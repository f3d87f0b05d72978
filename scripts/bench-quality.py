#!/usr/bin/env python3
"""bench-quality.py: anomaly-detection quality of flowscore across the datasets of ../shared/data.

For each dataset and each configuration it trains on normal rows only and reports AUROC and
AUPRC (attack / anomaly = positive) of `flowscore eval` on held-out rows:
- NSL-KDD: fit on the normal rows of KDDTrain+ (config/schemas/nsl-kdd.json), evaluate on
  KDDTest+ and KDDTest-21;
- the ADBench sets (label 1 = anomaly): a seeded 60/40 split of the normal rows; the test set
  is the held-out 40% plus every anomaly.
Configurations: `gauss` (no training: the whitened full-covariance Gaussian the flow starts
from), `flow` (the defaults), `flow-dequant` (--dequantize), `flow-nowhiten` (--no-whiten).
With --peer, also the PyTorch peer's flow and IsolationForest on NSL-KDD (peer_torch.py quality).
The last line is one JSON object with every figure.

usage: scripts/bench-quality.py [--datasets a,b] [--configs a,b] [--max-rows N] [--peer]
"""
import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("FS_SHARED_DIR", os.path.join(ROOT, "..", "shared"))
ADBENCH = ["cardio", "http", "mammography", "satellite", "shuttle", "thyroid"]
CONFIGS = {
    "gauss": ["--epochs", "0"],
    "flow": [],
    "flow-dequant": ["--dequantize"],
    "flow-nowhiten": ["--no-whiten"],
}


def run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout


def split_adbench(name, tmp, seed=0):
    src = os.path.join(SHARED, "data", name, f"{name}.csv")
    with open(src, newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    label = header.index("label")
    normal = [r for r in rows if r[label] == "0"]
    anomalies = [r for r in rows if r[label] != "0"]
    random.Random(seed).shuffle(normal)
    cut = int(len(normal) * 0.6)
    paths = {}
    for part, data in (("train", normal[:cut]), ("test", normal[cut:] + anomalies)):
        paths[part] = os.path.join(tmp, f"{name}-{part}.csv")
        with open(paths[part], "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(data)
    return paths


def evaluate(binary, model, data, extra):
    out = run([binary, "eval", "--model", model, "--data", data, "--label-col", "label"] + extra)
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.environ.get("FLOWSCORE_BIN",
                                                       os.path.join(ROOT, "build-bench", "server",
                                                                    "flowscore")))
    ap.add_argument("--datasets", default="nsl_kdd," + ",".join(ADBENCH))
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--max-rows", type=int, default=20000,
                    help="cap on training rows per ADBench set (NSL-KDD uses all normal rows)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peer", action="store_true", help="also run peer_torch.py quality")
    ap.add_argument("--config", action="append", default=[], metavar="NAME=ARGS",
                    help="an extra configuration: train arguments, e.g. "
                         "'lr4=--lr 1e-4 --epochs 5' (repeatable)")
    a = ap.parse_args()
    for c in a.config:
        name, _, args = c.partition("=")
        CONFIGS[name] = args.split()
        a.configs += "," + name
    if not os.path.isdir(os.path.join(SHARED, "data")):
        print(f"bench-quality: {SHARED}/data not found", file=sys.stderr)
        return 1
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for ds in a.datasets.split(","):
            for cfg in a.configs.split(","):
                model = os.path.join(tmp, f"{ds}-{cfg}.fsm")
                t0 = time.time()
                seed = ["--seed", str(a.seed)]
                if ds == "nsl_kdd":
                    base = os.path.join(SHARED, "data", "nsl_kdd")
                    schema = os.path.join(ROOT, "config", "schemas", "nsl-kdd.json")
                    run([a.binary, "train", "--data", os.path.join(base, "KDDTrain+.txt"),
                         "--schema", schema, "--label-col", "label", "--normal-value", "normal",
                         "--quiet", "--out", model] + seed + CONFIGS[cfg])
                    train_s = time.time() - t0
                    for test in ("KDDTest+", "KDDTest-21"):
                        r = evaluate(a.binary, model, os.path.join(base, f"{test}.txt"),
                                     ["--schema", schema, "--normal-value", "normal"])
                        results[f"{ds}/{test}/{cfg}"] = dict(auroc=r["auroc"], auprc=r["auprc"],
                                                            train_s=round(train_s, 1))
                else:
                    paths = split_adbench(ds, tmp, a.seed)
                    run([a.binary, "train", "--data", paths["train"], "--ignore-cols", "label",
                         "--max-rows", str(a.max_rows), "--quiet", "--out", model]
                        + seed + CONFIGS[cfg])
                    train_s = time.time() - t0
                    r = evaluate(a.binary, model, paths["test"], ["--normal-value", "0"])
                    results[f"{ds}/{cfg}"] = dict(auroc=r["auroc"], auprc=r["auprc"],
                                                  train_s=round(train_s, 1))
                for k, v in results.items():
                    if k.startswith(ds) and k.endswith("/" + cfg):
                        print(f"{k:38s} AUROC {v['auroc']:.4f}  AUPRC {v['auprc']:.4f}  "
                              f"train {v['train_s']:.0f}s", flush=True)
        if a.peer and "nsl_kdd" in a.datasets:
            base = os.path.join(SHARED, "data", "nsl_kdd")
            for test in ("KDDTest+", "KDDTest-21"):
                out = run(["/usr/bin/python3", os.path.join(SHARED, "bench", "peer_torch.py"),
                           "quality", "--train", os.path.join(base, "KDDTrain+.txt"), "--test",
                           os.path.join(base, f"{test}.txt"), "--no-header", "--label-col", "41",
                           "--normal-value", "normal", "--drop-cols", "42"])
                r = json.loads(out.strip().splitlines()[-1])
                results[f"nsl_kdd/{test}/peer-flow"] = dict(auroc=r["auroc_flow"])
                results[f"nsl_kdd/{test}/peer-iforest"] = dict(auroc=r["auroc_iforest"])
                print(f"nsl_kdd/{test}: peer flow AUROC {r['auroc_flow']:.4f}, IsolationForest "
                      f"{r['auroc_iforest']:.4f}", flush=True)
    print(json.dumps({"bench": "quality", "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
