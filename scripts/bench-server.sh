#!/usr/bin/env bash
# bench-server.sh: HTTP throughput and latency of `flowscore serve`, measured with wrk.
#
# Scores 1-record and 64-record requests (POST /v1/models/bench/score, a Lua script posting a
# fixed body) at 1, 16 and 64 connections, and GET /healthz at the same connection counts as
# the HTTP ceiling of the same run. The model is ref-realnvp D=32, H=128, K=8 with random
# weights (bench/SPEC.md W1), made with tests/e2e/make_peer_model.py and `flowscore import`.
# Prints a table, then one JSON line with every figure (the last line of the output).
#
#   FLOWSCORE_BIN     the binary (default: build a Release tree in build-bench)
#   BENCH_SECONDS     seconds per wrk run (default 5)
#   BENCH_WORKERS     --workers of the daemon (default: number of cores)
#   BENCH_EXTRA       extra daemon flags, e.g. "--max-queue-delay-us 200"
# Targets (issue 04): 1-record scoring at 64 connections >= 50% of the healthz requests/s;
# p99 <= 5 ms at 16 connections.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_PER_RUN=${BENCH_SECONDS:-5}
WORKERS=${BENCH_WORKERS:-$(nproc)}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

if ! command -v wrk >/dev/null; then
    echo "bench-server.sh: wrk is not installed (apt-get install wrk)" >&2
    exit 2
fi
BIN=${FLOWSCORE_BIN:-}
if [ -z "$BIN" ]; then
    cmake -S "$ROOT" -B "$ROOT/build-bench" -DCMAKE_BUILD_TYPE=Release -DFS_BUILD_TESTS=OFF \
        >/dev/null
    cmake --build "$ROOT/build-bench" -j"$(nproc)" --target flowscore >/dev/null
    BIN=$ROOT/build-bench/server/flowscore
fi

WORK=$(mktemp -d /tmp/fs-bench-XXXXXX)
PID=
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID"
        wait "$PID" || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/models/bench"
"$PY" "$ROOT/tests/e2e/make_peer_model.py" "$WORK/peer.json" --dims 32 --hidden 128 --blocks 8 \
    --seed 0 --scale 1.0
"$BIN" import --peer-json "$WORK/peer.json" --out "$WORK/models/bench/1.fsm" >/dev/null

# Request bodies: 1 and 64 records of 32 values (array form), standard normal.
"$PY" - "$WORK" <<'EOF'
import json, random, sys
rng = random.Random(0)
def body(n):
    return json.dumps({"records": [[round(rng.gauss(0, 1), 6) for _ in range(32)]
                                   for _ in range(n)]})
for n in (1, 64):
    with open("%s/body%d.json" % (sys.argv[1], n), "w") as f:
        f.write(body(n))
EOF
for n in 1 64; do
    cat >"$WORK/post$n.lua" <<EOF
local f = io.open("$WORK/body$n.json", "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
EOF
done

# shellcheck disable=SC2086 # BENCH_EXTRA is a list of flags
"$BIN" serve --models-dir "$WORK/models" --listen 127.0.0.1:0 --workers "$WORKERS" \
    --connection-limit 2000 --per-ip-connection-limit 0 ${BENCH_EXTRA:-} 2>"$WORK/serve.log" &
PID=$!
PORT=
for _ in $(seq 200); do
    PORT=$(sed -n 's/.*info http: listening address=[^ ]* port=\([0-9]*\).*/\1/p' \
        "$WORK/serve.log" | head -1)
    [ -n "$PORT" ] && curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
    sleep 0.05
done
if [ -z "$PORT" ]; then
    echo "bench-server.sh: the daemon did not start:" >&2
    cat "$WORK/serve.log" >&2
    exit 1
fi
BASE=http://127.0.0.1:$PORT
curl -sf -X POST -H 'Content-Type: application/json' --data-binary @"$WORK/body64.json" \
    "$BASE/v1/models/bench/score" >/dev/null

# run NAME CONNECTIONS URL [LUA]: one wrk run; appends "name conns rps p50_ms p99_ms errors".
run() {
    local name=$1 conns=$2 url=$3 lua=${4:-} threads
    threads=$((conns < $(nproc) ? conns : $(nproc)))
    local args=(-t"$threads" -c"$conns" -d"${SECONDS_PER_RUN}s" --latency --timeout 10s)
    [ -n "$lua" ] && args+=(-s "$lua")
    wrk "${args[@]}" "$url" >"$WORK/wrk.out" 2>&1
    "$PY" - "$name" "$conns" "$WORK/wrk.out" >>"$WORK/results.txt" <<'EOF'
import re, sys
name, conns, path = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(path).read()
def ms(v, unit):
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
lat = {p: ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)", text, re.M)}
errors = 0
m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if m:
    errors += int(m.group(1))
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
if m:
    errors += sum(int(x) for x in m.groups())
print(name, conns, rps, lat.get("50", -1), lat.get("99", -1), errors)
EOF
}

: >"$WORK/results.txt"
for c in 1 16 64; do
    run healthz "$c" "$BASE/healthz"
    run score1 "$c" "$BASE/v1/models/bench/score" "$WORK/post1.lua"
    run score64 "$c" "$BASE/v1/models/bench/score" "$WORK/post64.lua"
done
METRICS=$(curl -sf "$BASE/metrics")

"$PY" - "$WORK/results.txt" "$WORKERS" "$SECONDS_PER_RUN" "$(nproc)" <<EOF
import json, re, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
metrics = """$METRICS"""
def metric(name):
    m = re.search(r"^%s (\S+)$" % re.escape(name), metrics, re.M)
    return float(m.group(1)) if m else 0.0
calls = metric('flowscore_inference_executions_total{model="bench"}')
scored = metric('flowscore_inference_rows_total{model="bench",op="score"}')
print("%-8s %5s %12s %9s %9s %7s" % ("run", "conns", "requests/s", "p50 ms", "p99 ms", "errors"))
out = {"workers": int(sys.argv[2]), "seconds_per_run": int(sys.argv[3]),
       "cores": int(sys.argv[4]), "model": "ref-realnvp D=32 H=128 K=8"}
for name, conns, rps, p50, p99, err in rows:
    print("%-8s %5s %12.0f %9.3f %9.3f %7s" % (name, conns, float(rps), float(p50), float(p99),
                                               err))
    key = "%s_c%s" % (name, conns)
    out[key + "_rps"] = round(float(rps), 1)
    out[key + "_p50_ms"] = round(float(p50), 3)
    out[key + "_p99_ms"] = round(float(p99), 3)
    out[key + "_errors"] = int(err)
ratio = out["score1_c64_rps"] / max(out["healthz_c64_rps"], 1e-9)
out["score1_c64_vs_healthz"] = round(ratio, 3)
out["mean_batch_rows"] = round(scored / max(calls, 1), 1)
out["target_score1_c64_ge_half_healthz"] = ratio >= 0.5
out["target_p99_c16_le_5ms_score1"] = out["score1_c16_p99_ms"] <= 5.0
out["target_p99_c16_le_5ms_score64"] = out["score64_c16_p99_ms"] <= 5.0
print("1-record scoring at 64 connections: %.0f%% of healthz; mean batch %.1f rows"
      % (100 * ratio, out["mean_batch_rows"]))
print(json.dumps(out, sort_keys=True))
EOF
