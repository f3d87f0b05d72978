#!/usr/bin/env bash
# bench-train.sh: workloads W2 (training samples/s, D=32 H=128 K=8, batch 256, 200 steps after
# 10 warm-up) and W3 (peak RSS of training at K = 8, 32, 128, batch 1024, a fresh process each)
# of ../shared/bench/SPEC.md, for flowscore and the PyTorch peer in the same run. W2 runs are
# interleaved (FS_BENCH_RUNS, default 3) and medians reported. W3 also reports the activation
# figure the issue asks for: peak RSS minus the parameter state (16 bytes x parameters).
# The last line is one JSON object with the figures.
source "$(dirname "$0")/bench-common.sh"
bench_build
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
have_peer=0
bench_have_peer && have_peer=1

for run in $(seq "$RUNS"); do
    echo "run $run/$RUNS" >&2
    for t in 1 2; do
        "$BUILD/tests/fs_bench" w2 --threads "$t" >>"$OUT/fs_w2_$t.jsonl"
        if [ "$have_peer" = 1 ]; then
            OMP_WAIT_POLICY=PASSIVE "$PEER_PY" "$PEER" train --threads "$t" >>"$OUT/peer_w2_$t.jsonl"
        fi
    done
done
for K in 8 32 128; do
    "$BUILD/tests/fs_bench" w3 --K "$K" >>"$OUT/fs_w3.jsonl"
done
if [ "$have_peer" = 1 ]; then
    OMP_WAIT_POLICY=PASSIVE "$PEER_PY" "$PEER" memory --K 8 32 128 >>"$OUT/peer_w3.jsonl"
fi

args=()
for f in fs_w2_1 fs_w2_2 peer_w2_1 peer_w2_2; do
    if [ -s "$OUT/$f.jsonl" ]; then
        args+=("$(median samples_per_s "$OUT/$f.jsonl")")
    else
        args+=(null)
    fi
done
"$PEER_PY" - "$OUT" "$RUNS" "$OPENBLAS_CORE" "${args[@]}" <<'PY'
import json, os, sys
out, runs, core = sys.argv[1], int(sys.argv[2]), sys.argv[3]
num = lambda s: None if s == "null" else float(s)
fs1, fs2, p1, p2 = (num(s) for s in sys.argv[4:8])
def load(name):
    path = os.path.join(out, name)
    return [json.loads(l) for l in open(path)] if os.path.exists(path) else []
fs_w3 = {r["K"]: r for r in load("fs_w3.jsonl")}
peer_w3 = {r["K"]: r for r in load("peer_w3.jsonl")}
ratio = lambda a, b: None if a is None or b in (None, 0) else round(a / b, 3)
fmt = lambda v: "-" if v is None else f"{v:,.0f}"
print(f"W2 training, D=32 H=128 K=8, batch 256, median of {runs} interleaved runs (samples/s); "
      f"OpenBLAS {core} kernels")
print(f"{'threads':>8} {'flowscore':>11} {'peer':>11} {'x peer':>7}")
for t, f, p in ((1, fs1, p1), (2, fs2, p2)):
    r = ratio(f, p)
    print(f"{t:>8} {fmt(f):>11} {fmt(p):>11} {('-' if r is None else r):>7}")
print("W3 training peak RSS, batch 1024, 1 thread (MiB); activations = peak - 16 B x params")
print(f"{'K':>5} {'flowscore':>10} {'activations':>12} {'peer peak':>10} {'peer delta':>11}")
res = {"workload": "W2+W3", "runs": runs, "openblas_core": core, "samples_per_s": fs1, "samples_per_s_2t": fs2,
       "peer_samples_per_s": p1, "peer_samples_per_s_2t": p2, "ratio_peer_1t": ratio(fs1, p1)}
for K in (8, 32, 128):
    f, p = fs_w3.get(K), peer_w3.get(K)
    act = None if f is None else round(f["peak_rss_mb"] - f["param_state_mb"], 1)
    print(f"{K:>5} {('-' if f is None else f['peak_rss_mb']):>10} {('-' if act is None else act):>12} "
          f"{('-' if p is None else p['peak_rss_mb']):>10} {('-' if p is None else p['delta_mb']):>11}")
    res[f"peak_rss_mib_k{K}"] = None if f is None else f["peak_rss_mb"]
    res[f"activation_mib_k{K}"] = act
    res[f"peer_peak_rss_mib_k{K}"] = None if p is None else p["peak_rss_mb"]
    res[f"peer_delta_mib_k{K}"] = None if p is None else p["delta_mb"]
a8, a128 = res["activation_mib_k8"], res["activation_mib_k128"]
res["activation_ratio_k128_k8"] = ratio(a128, a8)
print(f"activation memory K=128 / K=8: {res['activation_ratio_k128_k8']} (target <= 1.25)")
print(json.dumps(res))
PY
