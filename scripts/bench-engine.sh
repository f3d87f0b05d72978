#!/usr/bin/env bash
# bench-engine.sh: workload W1 of ../shared/bench/SPEC.md (batch scoring, D=32 H=128 K=8,
# 65,536 rows in batches of 4,096) for flowscore and the PyTorch peer in the same run, at 1 and
# 2 threads, with the rows/s bound implied by OpenBLAS sgemm (sgemm_peak.c). Runs are
# interleaved (FS_BENCH_RUNS, default 3) and medians reported; the last line is one JSON
# object with the figures.
source "$(dirname "$0")/bench-common.sh"
bench_build
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
have_peer=0
bench_have_peer && have_peer=1
gcc -O3 -march=native "$SHARED/bench/sgemm_peak.c" -o "$OUT/sgemm_peak" -lopenblas 2>/dev/null ||
    echo "bench: sgemm_peak.c not built: no bound" >&2

for run in $(seq "$RUNS"); do
    echo "run $run/$RUNS" >&2
    if [ -x "$OUT/sgemm_peak" ]; then
        "$OUT/sgemm_peak" | grep '"W1_bound"' >>"$OUT/bound.jsonl"
    fi
    for t in 1 2; do
        "$BUILD/tests/fs_bench" w1 --threads "$t" >>"$OUT/fs_$t.jsonl"
        if [ "$have_peer" = 1 ]; then
            OMP_WAIT_POLICY=PASSIVE "$PEER_PY" "$PEER" score --threads "$t" >>"$OUT/peer_$t.jsonl"
        fi
    done
done

bound1=null bound2=null peer1=null peer2=null
if [ -s "$OUT/bound.jsonl" ]; then
    grep '"threads": 1' "$OUT/bound.jsonl" >"$OUT/b1" || true
    grep '"threads": 2' "$OUT/bound.jsonl" >"$OUT/b2" || true
    bound1=$(median rows_per_s "$OUT/b1")
    bound2=$(median rows_per_s "$OUT/b2")
fi
fs1=$(median rows_per_s "$OUT/fs_1.jsonl")
fs2=$(median rows_per_s "$OUT/fs_2.jsonl")
if [ "$have_peer" = 1 ]; then
    peer1=$(median rows_per_s "$OUT/peer_1.jsonl")
    peer2=$(median rows_per_s "$OUT/peer_2.jsonl")
fi
"$PEER_PY" - "$fs1" "$fs2" "$peer1" "$peer2" "$bound1" "$bound2" "$RUNS" "$OPENBLAS_CORE" <<'PY'
import json, sys
def num(s):
    return None if s == "null" else float(s)
fs1, fs2, p1, p2, b1, b2 = (num(s) for s in sys.argv[1:7])
runs, core = int(sys.argv[7]), sys.argv[8]
def ratio(a, b):
    return None if a is None or b is None or b == 0 else round(a / b, 3)
print(f"W1 batch scoring, D=32 H=128 K=8, median of {runs} interleaved runs (rows/s); "
      f"OpenBLAS {core} kernels")
print(f"{'threads':>8} {'flowscore':>11} {'peer':>11} {'x peer':>7} {'sgemm bound':>12} {'of bound':>9}")
for t, f, p, b in ((1, fs1, p1, b1), (2, fs2, p2, b2)):
    fmt = lambda v: "-" if v is None else f"{v:,.0f}"
    r, rb = ratio(f, p), ratio(f, b)
    print(f"{t:>8} {fmt(f):>11} {fmt(p):>11} {('-' if r is None else r):>7} {fmt(b):>12} "
          f"{('-' if rb is None else rb):>9}")
print(json.dumps({"workload": "W1", "runs": runs, "openblas_core": core, "rows_per_s_1t": fs1, "rows_per_s_2t": fs2,
                  "peer_rows_per_s_1t": p1, "peer_rows_per_s_2t": p2,
                  "sgemm_bound_rows_per_s": b1, "sgemm_bound_rows_per_s_2t": b2,
                  "ratio_peer_1t": ratio(fs1, p1), "ratio_peer_2t": ratio(fs2, p2),
                  "ratio_bound_1t": ratio(fs1, b1), "ratio_bound_2t": ratio(fs2, b2)}))
PY
