#!/usr/bin/python3
"""bench-peer-quality.py: AUROC and AUPRC of the PyTorch peer's flow and of IsolationForest on
NSL-KDD (KDDTest+ and KDDTest-21), with the peer's own preprocessing and training (workload W5
of ../shared/bench/SPEC.md), so that scripts/bench-quality.py's figures for flowscore can be
set beside them. peer_torch.py reports AUROC only; this imports its functions (read-only, from
../shared/bench) and adds average precision. Run with Debian's /usr/bin/python3 (torch,
scikit-learn). Prints one JSON line.
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("FS_SHARED_DIR", os.path.join(HERE, "..", "..", "shared"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.path.join(SHARED, "data", "nsl_kdd"))
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    sys.path.insert(0, os.path.join(SHARED, "bench"))
    import peer_torch as peer  # noqa: E402  (the peer, used as it is)
    import torch
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import average_precision_score

    peer.set_threads(a.threads)
    names, train = peer.read_csv(os.path.join(a.data, "KDDTrain+.txt"), False)
    label, skip = 41, {41, 42}
    columns = [j for j in range(len(names)) if j not in skip]
    fit_rows = [r for r in train if r[label] == "normal"]
    tests = {t: peer.read_csv(os.path.join(a.data, f"{t}.txt"), False)[1]
             for t in ("KDDTest+", "KDDTest-21")}
    opts = argparse.Namespace(seed=0, H=128, K=8, lr=1e-3, epochs=30, patience=5, batch=256)
    results = {}
    model = iso = None
    for name, test in tests.items():
        x_fit, x_test = peer.encode(fit_rows, test, columns)
        mean, std = x_fit.mean(axis=0), x_fit.std(axis=0)
        keep = std > 1e-12
        x_fit = ((x_fit[:, keep] - mean[keep]) / std[keep]).astype(np.float32)
        x_test = ((x_test[:, keep] - mean[keep]) / std[keep]).astype(np.float32)
        y = np.array([r[label] != "normal" for r in test], dtype=int)
        if model is None:  # the fit rows and their encoding are the same for both test files
            model, _, _ = peer.fit_flow(x_fit, opts)
            iso = IsolationForest(n_estimators=100, random_state=0).fit(x_fit)
        with torch.no_grad():
            s = -torch.cat([model.log_prob(v) for v in torch.from_numpy(x_test).split(4096)])
        s = np.nan_to_num(s.double().numpy(), nan=np.finfo(np.float64).max,
                          posinf=np.finfo(np.float64).max)
        si = -iso.score_samples(x_test)
        results[name] = {"peer_flow": {"auroc": peer.auroc(y, s),
                                       "auprc": float(average_precision_score(y, s))},
                         "iforest": {"auroc": peer.auroc(y, si),
                                     "auprc": float(average_precision_score(y, si))}}
        print(f"{name}: peer flow AUROC {results[name]['peer_flow']['auroc']:.4f} AUPRC "
              f"{results[name]['peer_flow']['auprc']:.4f}; IsolationForest AUROC "
              f"{results[name]['iforest']['auroc']:.4f} AUPRC "
              f"{results[name]['iforest']['auprc']:.4f}", file=sys.stderr)
    print(json.dumps({"bench": "peer-quality", "results": results}))


if __name__ == "__main__":
    main()
