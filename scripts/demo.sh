#!/usr/bin/env bash
# demo.sh: from a fresh clone to anomaly scores over HTTP in one command (README, issue 6).
# Installs what is missing, builds, trains a model on the normal traffic of NSL-KDD, starts the
# daemon on loopback, posts every KDDTest+ record over HTTP/JSON, prints a report, and stops the
# daemon. Run scripts/demo.sh --help for the options.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODEL_NAME=nsl-kdd

usage() {
    cat <<EOF
usage: scripts/demo.sh [options]

Build flowscore, train a normalizing flow on the normal rows of NSL-KDD's KDDTrain+.txt, serve it
on 127.0.0.1 (a free port), post all 22,544 KDDTest+ records to POST /v1/models/$MODEL_NAME/score
in batches, and report AUROC/AUPRC (attack = positive), the highest-scoring records, and the
throughput; then stop the daemon with SIGTERM and check that it exits 0.

The data is looked for in \$FLOWSCORE_DATA, then ../shared/data/nsl_kdd, then data/nsl_kdd
(scripts/fetch-data.sh downloads it there).

options:
  --epochs N       training epochs over all 67,343 normal rows (default 5; each epoch shows a
                   progress line with its rows_per_s and eta_s: the time depends on the machine)
  --quick          2 epochs (same rows), for a first look in about half the time
  --batch-rows N   records per HTTP request (default 256)
  --connections N  concurrent HTTP connections of the client (default 4)
  --out DIR        where the model, the log and the scores go (default: <build dir>/demo)
  --build-dir DIR  CMake build directory (default: build-demo; \$FLOWSCORE_BUILD_DIR)
  --bin FILE       use this flowscore binary instead of building (\$FLOWSCORE_BIN)
  --no-deps        do not check or install Debian packages
  --help           this text

Exit status: 0 the demo ran and the daemon exited 0; 1 a step failed (the message says which);
2 usage error; 3 the NSL-KDD data was not found; 130 interrupted.
EOF
}

say() { printf '\n==> %s\n' "$*"; }
die() {
    echo "demo: $*" >&2
    exit 1
}

epochs=5
batch_rows=256
connections=4
out=""
build_dir=${FLOWSCORE_BUILD_DIR:-$ROOT/build-demo}
bin=${FLOWSCORE_BIN:-}
deps=1
need_arg() { [ "$2" -ge 2 ] || { echo "demo: $1 needs a value" >&2; usage >&2; exit 2; }; }
while [ $# -gt 0 ]; do
    case "$1" in
    --epochs) need_arg "$1" $#; epochs=$2; shift 2 ;;
    --quick) epochs=2; shift ;;
    --batch-rows) need_arg "$1" $#; batch_rows=$2; shift 2 ;;
    --connections) need_arg "$1" $#; connections=$2; shift 2 ;;
    --out) need_arg "$1" $#; out=$2; shift 2 ;;
    --build-dir) need_arg "$1" $#; build_dir=$2; shift 2 ;;
    --bin) need_arg "$1" $#; bin=$2; shift 2 ;;
    --no-deps) deps=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "demo: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
for v in "$epochs" "$batch_rows" "$connections"; do
    case "$v" in
    '' | *[!0-9]* | 0) echo "demo: --epochs, --batch-rows and --connections take a positive integer" >&2; exit 2 ;;
    esac
done

t_start=$(date +%s)
daemon_pid=""

# Stop the daemon on every way out (error, Ctrl-C, normal end) so that nothing is left running.
stop_daemon() {
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    daemon_pid=""
}
trap stop_daemon EXIT
trap 'echo; echo "demo: interrupted; stopping" >&2; stop_daemon; exit 130' INT TERM

# 1. Packages: the build dependencies (scripts/deps.sh) and python3 for the HTTP client.
if [ "$deps" = 1 ]; then
    say "checking Debian packages"
    if [ -z "$bin" ]; then
        "$ROOT/scripts/deps.sh" build
    fi
    if ! command -v python3 >/dev/null; then
        echo "demo: installing python3" >&2
        sudo=""
        if [ "$(id -u)" != 0 ]; then
            sudo=sudo
        fi
        export DEBIAN_FRONTEND=noninteractive
        $sudo apt-get update -qq
        $sudo apt-get install -y -qq --no-install-recommends python3 >/dev/null
    fi
fi
command -v python3 >/dev/null || die "python3 is needed for the HTTP client (apt-get install python3)"

# 2. The data, before the build, so that a missing download is reported at once.
data=""
for d in "${FLOWSCORE_DATA:-}" "$ROOT/../shared/data/nsl_kdd" "$ROOT/data/nsl_kdd" "$ROOT/data"; do
    if [ -n "$d" ] && [ -f "$d/KDDTrain+.txt" ] && [ -f "$d/KDDTest+.txt" ]; then
        data=$(cd "$d" && pwd)
        break
    fi
done
if [ -z "$data" ]; then
    cat >&2 <<EOF
demo: the NSL-KDD data was not found. It is looked for (KDDTrain+.txt and KDDTest+.txt) in
  \$FLOWSCORE_DATA (${FLOWSCORE_DATA:-unset})
  $ROOT/../shared/data/nsl_kdd
  $ROOT/data/nsl_kdd
On a machine with internet access, download and verify it with
  scripts/fetch-data.sh
or point FLOWSCORE_DATA at a folder holding the files:
  FLOWSCORE_DATA=/path/to/nsl_kdd scripts/demo.sh
EOF
    exit 3
fi

# 3. Build (Release, only the flowscore binary).
if [ -z "$bin" ]; then
    say "building flowscore (Release) in $build_dir"
    cmake -S "$ROOT" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DFS_BUILD_TESTS=OFF >/dev/null
    cmake --build "$build_dir" -j"$(nproc)" --target flowscore
    bin="$build_dir/server/flowscore"
fi
[ -x "$bin" ] || die "no flowscore binary at $bin"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

if [ -z "$out" ]; then
    out="$build_dir/demo"
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
models="$out/models"
model="$models/$MODEL_NAME/1.fsm"
log="$out/flowscore-serve.log"
schema="$ROOT/config/schemas/nsl-kdd.json"
mkdir -p "$models/$MODEL_NAME" "$out/state"
rm -f "$models/$MODEL_NAME"/*.fsm # a version left by an earlier run would be served instead

# 4. Train on every normal row of KDDTrain+ (progress lines come from flowscore train).
say "training on the normal rows of $data/KDDTrain+.txt ($epochs epochs)"
t0=$(date +%s)
"$bin" train --data "$data/KDDTrain+.txt" --schema "$schema" --label-col label \
    --normal-value normal --epochs "$epochs" --seed 1 --out "$model" ||
    die "training failed (see the messages above)"
train_s=$(($(date +%s) - t0))

# 5. Serve on a free loopback port; the port is read from the log line 'listening ... port=N'.
say "starting flowscore serve (log: $log)"
OPENBLAS_NUM_THREADS=1 setsid "$bin" serve --models-dir "$models" --state-dir "$out/state" \
    --listen 127.0.0.1:0 </dev/null >"$log" 2>&1 &
daemon_pid=$!
port=""
for _ in $(seq 1 600); do
    port=$(sed -n 's/.*listening .*port=\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
    if [ -n "$port" ]; then
        break
    fi
    if ! kill -0 "$daemon_pid" 2>/dev/null; then
        cat "$log" >&2
        daemon_pid=""
        die "flowscore serve exited during start-up (log above)"
    fi
    sleep 0.1
done
[ -n "$port" ] || { cat "$log" >&2; die "flowscore serve did not log its port within 60 s"; }
echo "listening on 127.0.0.1:$port (pid $daemon_pid)"

# 6. Post KDDTest+ over HTTP and compute the report from the HTTP answers.
say "scoring $data/KDDTest+.txt over HTTP"
report="$out/report.txt"
python3 - "$port" "$MODEL_NAME" "$schema" "$data/KDDTest+.txt" "$batch_rows" "$connections" \
    "$out/scores.csv" "$report" <<'PY' || die "the HTTP client failed (daemon log: $log)"
import csv, http.client, json, math, signal, sys, threading, time

signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: no traceback; the shell's trap cleans up

port, name, schema_path, test_path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
batch_rows, n_conn, scores_path, report_path = int(sys.argv[5]), int(sys.argv[6]), sys.argv[7], sys.argv[8]


def request(conn, method, path, body=None):
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    return r.status, r.read()


# Wait until every model is loaded (GET /readyz answers 200).
deadline = time.time() + 120
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        status, _ = request(c, "GET", "/readyz")
        c.close()
        if status == 200:
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("demo: the daemon did not become ready in 120 s")
    time.sleep(0.1)

# Records as JSON objects keyed by the schema's field names; the labels are kept aside.
with open(schema_path) as f:
    fields = json.load(f)["fields"]
features = [(i, fd["name"], fd["type"]) for i, fd in enumerate(fields)
            if fd["type"] not in ("label", "ignore")]
label_idx = [i for i, fd in enumerate(fields) if fd["type"] == "label"][0]


def value(text, kind):
    if kind == "categorical":
        return text
    if kind == "integer":
        return int(text)
    return float(text)


records, labels, raw = [], [], []
with open(test_path, newline="") as f:
    for row in csv.reader(f):
        if not row:
            continue
        records.append({nm: value(row[i], kind) for i, nm, kind in features})
        labels.append(row[label_idx])
        raw.append(row)
n = len(records)
bodies = [json.dumps({"records": records[i:i + batch_rows]}, separators=(",", ":")).encode()
          for i in range(0, n, batch_rows)]

# Post the batches over n_conn keep-alive connections; only the HTTP phase is timed.
results = [None] * len(bodies)
latencies = [0.0] * len(bodies)
errors = []
next_batch = [0]
lock = threading.Lock()


def worker():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    while True:
        with lock:
            b = next_batch[0]
            next_batch[0] += 1
        if b >= len(bodies) or errors:
            break
        t = time.perf_counter()
        try:
            status, data = request(c, "POST", "/v1/models/%s/score" % name, bodies[b])
        except (OSError, http.client.HTTPException) as e:
            errors.append("batch %d: %s" % (b, e))
            break
        latencies[b] = time.perf_counter() - t
        if status != 200:
            errors.append("batch %d: HTTP %d %s" % (b, status, data[:300].decode("utf-8", "replace")))
            break
        results[b] = json.loads(data)["results"]
    c.close()


t0 = time.perf_counter()
threads = [threading.Thread(target=worker) for _ in range(n_conn)]
for t in threads:
    t.start()
for t in threads:
    t.join()
wall = time.perf_counter() - t0
if errors:
    sys.exit("demo: scoring failed: " + errors[0])

rows = [r for batch in results for r in batch]
if len(rows) != n:
    sys.exit("demo: %d results for %d records" % (len(rows), n))
# A score the daemon could not give as a finite number (null) ranks as the largest.
scores = [r["score"] if isinstance(r.get("score"), (int, float)) else math.inf for r in rows]
positive = [lb != "normal" for lb in labels]


def auroc(s, pos):
    order = sorted(range(len(s)), key=lambda i: s[i])
    ranks = [0.0] * len(s)
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and s[order[j]] == s[order[i]]:
            j += 1
        for k in range(i, j):
            ranks[order[k]] = (i + 1 + j) / 2.0  # ties share their average rank
        i = j
    n_pos = sum(pos)
    n_neg = len(pos) - n_pos
    return (sum(r for r, p in zip(ranks, pos) if p) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def auprc(s, pos):
    """Average precision over distinct thresholds (scikit-learn's definition)."""
    pairs = sorted(zip(s, pos), key=lambda t: -t[0])
    n_pos = sum(pos)
    tp = fp = 0
    ap = prev = 0.0
    i = 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            tp += pairs[j][1]
            fp += not pairs[j][1]
            j += 1
        ap += (tp / n_pos - prev) * tp / (tp + fp)
        prev = tp / n_pos
        i = j
    return ap


with open(scores_path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["row", "score", "percentile", "anomaly", "label"])
    for i, (r, lb) in enumerate(zip(rows, labels)):
        w.writerow([i, r.get("score"), r.get("percentile"), int(bool(r.get("anomaly"))), lb])

n_pos = sum(positive)
flag_att = sum(1 for r, p in zip(rows, positive) if p and r.get("anomaly"))
flag_norm = sum(1 for r, p in zip(rows, positive) if not p and r.get("anomaly"))
lat = sorted(latencies)
top = sorted(range(n), key=lambda i: -scores[i])[:5]
out = []
out.append("records scored   %d (%d attacks, %d normal) in %d requests of <= %d records"
           % (n, n_pos, n - n_pos, len(bodies), batch_rows))
out.append("AUROC            %.4f   (attack = positive, from the HTTP scores)" % auroc(scores, positive))
out.append("AUPRC            %.4f" % auprc(scores, positive))
out.append("flagged          %.1f%% of attacks, %.1f%% of normal records (the model's threshold)"
           % (100.0 * flag_att / n_pos, 100.0 * flag_norm / (n - n_pos)))
out.append("throughput       %.1f requests/s, %.0f rows/s over %d connections (%.2f s)"
           % (len(bodies) / wall, n / wall, n_conn, wall))
out.append("latency          p50 %.1f ms, p99 %.1f ms per request"
           % (1e3 * lat[len(lat) // 2], 1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))]))
out.append("top 5 scores     (row: score  label  protocol/service/flag  src_bytes dst_bytes)")
for i in top:
    r = raw[i]
    out.append("  %6d: %10.2f  %-12s %s/%s/%s  %s %s" % (i, scores[i], labels[i], r[1], r[2], r[3],
                                                          r[4], r[5]))
text = "\n".join(out)
print(text)
with open(report_path, "w") as f:
    f.write(text + "\n")
PY

# 7. Stop the daemon: SIGTERM drains and must end in exit status 0.
say "stopping the daemon (SIGTERM)"
kill -TERM "$daemon_pid"
rc=0
wait "$daemon_pid" || rc=$?
daemon_pid=""
total_s=$(($(date +%s) - t_start))
{
    echo "training         ${train_s} s ($epochs epochs on the normal rows of KDDTrain+)"
    echo "model            $model"
    echo "daemon log       $log"
    echo "scores           $out/scores.csv"
    echo "daemon stopped   exit status $rc"
    echo "total            ${total_s} s"
} | tee -a "$report"
if [ "$rc" != 0 ]; then
    tail -n 20 "$log" >&2
    die "the daemon exited with status $rc after SIGTERM (log: $log)"
fi
echo
echo "Done. Report: $report"
