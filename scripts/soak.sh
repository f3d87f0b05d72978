#!/usr/bin/env bash
# soak.sh [MINUTES]: a soak test of `flowscore serve` (issue 7 §2), default 30 minutes.
#
# Starts the daemon with two models (with an admin token), drives it with wrk (1-record
# scoring on model a, 64-record scoring on model b; scripts/soak-score.lua) and, throughout:
# reloads through the endpoint and by SIGHUP, swaps new versions of b in, and now and then
# copies in a corrupt model file (its reload is refused with 422: counted apart, as intended).
# When the background trainer's endpoints answer (POST /v1/models/{name}/records), it also
# streams records to model a and forces refits. Every few seconds it samples the daemon's
# resident memory and open fds. It ends with a summary: requests, non-2xx answers other than
# the intended ones (must be 0), reload and refit counts, the memory slope over the second half
# (a least-squares fit over the floor of the samples, so that a refit's transient training
# memory does not count: must stay under SOAK_MAX_SLOPE_KIB_PER_MIN), fds back to the baseline,
# and the daemon's exit status on SIGTERM (must be 0). The exit status is the verdict.
#
#   FLOWSCORE_BIN              the binary (default: build-test, build-harden or build; else
#                              a Release build in build-soak)
#   SOAK_MAX_SLOPE_KIB_PER_MIN memory bound (default 1024: a leak of a few hundred bytes per
#                              request, or of one model per reload, is far above it)
#   SOAK_SAMPLE_S              seconds between samples (default 2)
#   SOAK_KEEP=1                keep the work folder (logs, samples) for inspection
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
MINUTES=${1:-30}
DURATION=$(python3 -c "print(max(20, int(float('$MINUTES') * 60)))")
MAX_SLOPE=${SOAK_MAX_SLOPE_KIB_PER_MIN:-1024}
SAMPLE_S=${SOAK_SAMPLE_S:-2}

command -v wrk >/dev/null || { echo "soak: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
command -v curl >/dev/null || { echo "soak: curl is not installed" >&2; exit 2; }

BIN=${FLOWSCORE_BIN:-}
if [ -z "$BIN" ]; then
    for b in build-test build-harden build; do
        if [ -x "$b/server/flowscore" ]; then
            BIN=$b/server/flowscore
            break
        fi
    done
fi
if [ -z "$BIN" ]; then
    cmake -S . -B build-soak -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build-soak -j"$(nproc)" --target flowscore >/dev/null
    BIN=build-soak/server/flowscore
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

WORK=$(mktemp -d "${TMPDIR:-/tmp}/flowscore-soak.XXXXXX")
PIDS=()
DAEMON=
cleanup() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    if [ -n "$DAEMON" ] && kill -0 "$DAEMON" 2>/dev/null; then
        kill -KILL "$DAEMON" 2>/dev/null || true
    fi
    if [ "${SOAK_KEEP:-0}" = 1 ]; then
        echo "soak: work folder kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

# ---------------------------------------------------------------- models, bodies, token
mk_model() { # out.fsm dims seed
    python3 tests/e2e/make_peer_model.py "$WORK/m.json" --dims "$2" --hidden 64 --blocks 6 \
        --seed "$3" --scale 0.5
    "$BIN" import --peer-json "$WORK/m.json" --out "$1" >/dev/null
}
mkdir -p "$WORK/models/a" "$WORK/models/b" "$WORK/src"
mk_model "$WORK/src/A1.fsm" 8 1
mk_model "$WORK/src/B1.fsm" 4 2
mk_model "$WORK/src/B2.fsm" 4 3
head -c $(($(stat -c %s "$WORK/src/B1.fsm") / 2)) "$WORK/src/B1.fsm" >"$WORK/src/corrupt.fsm"
cp "$WORK/src/A1.fsm" "$WORK/models/a/1.fsm"
cp "$WORK/src/B1.fsm" "$WORK/models/b/1.fsm"
python3 - "$WORK" <<'EOF'
import json, random, sys
w = sys.argv[1]
rng = random.Random(7)
with open(w + "/one.json", "w") as f:
    json.dump({"records": [[round(rng.gauss(0, 1), 6) for _ in range(8)]]}, f)
with open(w + "/batch64.json", "w") as f:
    json.dump({"records": [[round(rng.gauss(0, 1), 6) for _ in range(4)] for _ in range(64)]}, f)
with open(w + "/ingest.ndjson", "w") as f:
    for _ in range(200):
        f.write(json.dumps({"x%d" % j: round(rng.gauss(0, 1), 6) for j in range(8)}) + "\n")
EOF
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/token"
TOKEN=$(cat "$WORK/token")
AUTH="Authorization: Bearer $TOKEN"

# ---------------------------------------------------------------- the daemon
EXTRA=()
read -r -a USER_EXTRA <<<"${SOAK_SERVE_ARGS:-}" # extra flags for `flowscore serve`
EXTRA+=("${USER_EXTRA[@]}")
if "$BIN" serve --help 2>/dev/null | grep -q -- --trainer-spool-max-records; then
    # A small spool: it reaches its cap (and its steady memory) within the first minute.
    EXTRA+=(--trainer-spool-max-records 5000)
fi
"$BIN" serve --models-dir "$WORK/models" --state-dir "$WORK/state" --listen 127.0.0.1:0 \
    --workers 2 --admin-token-file "$WORK/token" --watch-debounce-ms 100 "${EXTRA[@]}" \
    2>"$WORK/daemon.log" &
DAEMON=$!
PORT=
for _ in $(seq 200); do
    PORT=$(grep -Eo 'listening address=[^ ]+ port=[0-9]+' "$WORK/daemon.log" | grep -Eo '[0-9]+$' |
        head -1 || true)
    [ -n "$PORT" ] && break
    kill -0 "$DAEMON" 2>/dev/null || { cat "$WORK/daemon.log" >&2; exit 1; }
    sleep 0.05
done
[ -n "$PORT" ] || { echo "soak: the daemon did not log its port" >&2; exit 1; }
BASE=http://127.0.0.1:$PORT
for _ in $(seq 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz")" = 200 ] && break
    sleep 0.05
done
status() { # method path [curl args...]: prints the HTTP status
    local m=$1 p=$2
    shift 2
    curl -s -o /dev/null -w '%{http_code}' --max-time 60 -X "$m" "$@" "$BASE$p" || echo 000
}
[ "$(status POST /v1/models/a/score -H 'Content-Type: application/json' \
    --data-binary @"$WORK/one.json")" = 200 ] || { echo "soak: model a does not score" >&2; exit 1; }
[ "$(status POST /v1/models/b/score -H 'Content-Type: application/json' \
    --data-binary @"$WORK/batch64.json")" = 200 ] || { echo "soak: model b does not score" >&2; exit 1; }
# The trainer's endpoints exist when an empty JSON batch is accepted.
TRAINER=0
probe=$(status POST /v1/models/a/records -H "$AUTH" -H 'Content-Type: application/json' \
    --data-binary '{"records":[]}')
case $probe in 2??) TRAINER=1 ;; esac
fds() { ls "/proc/$DAEMON/fd" 2>/dev/null | wc -l; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$DAEMON/status" 2>/dev/null || echo 0; }
FD0=$(fds)
echo "soak: ${MINUTES} min on port $PORT with $BIN (trainer endpoints: $([ $TRAINER = 1 ] &&
    echo present || echo "absent, POST .../records -> $probe")); work folder $WORK"

# ---------------------------------------------------------------- load, faults, samples
T0=$(date +%s)
END=$((T0 + DURATION))
SOAK_BODY="$WORK/one.json" wrk -t1 -c8 -d"${DURATION}s" --timeout 10s -s scripts/soak-score.lua \
    "$BASE/v1/models/a/score" >"$WORK/wrk1.log" 2>&1 &
W1=$!
SOAK_BODY="$WORK/batch64.json" wrk -t1 -c4 -d"${DURATION}s" --timeout 10s -s scripts/soak-score.lua \
    "$BASE/v1/models/b/score" >"$WORK/wrk64.log" 2>&1 &
W64=$!
PIDS+=("$W1" "$W64")

(
    # Samples: seconds since start, VmRSS KiB, open fds.
    while [ "$(date +%s)" -lt "$END" ] && kill -0 "$DAEMON" 2>/dev/null; do
        echo "$(($(date +%s) - T0)) $(rss) $(fds)" >>"$WORK/samples.txt"
        sleep "$SAMPLE_S"
    done
) &
PIDS+=($!)

(
    # Reloads, swaps, corrupt files and (with the trainer) ingest and refits, once a second.
    ok=0 refused=0 bad=0 hup=0 swaps=0 corrupt=0 ingest_ok=0 ingest_bad=0 refits=0 busy=0
    v=1
    i=0
    while [ "$(date +%s)" -lt $((END - 2)) ]; do
        i=$((i + 1))
        if [ $((i % 2)) = 0 ]; then
            s=$(status POST /v1/models/a/reload -H "$AUTH")
            if [ "$s" = 200 ]; then ok=$((ok + 1)); else bad=$((bad + 1)); echo "reload a: $s"; fi
        else
            kill -HUP "$DAEMON" && hup=$((hup + 1))
        fi
        if [ $((i % 10)) = 5 ]; then # swap in the next version of b
            v=$((v + 1))
            src=$WORK/src/B$((v % 2 + 1)).fsm
            cp "$src" "$WORK/models/b/tmp.part" && mv "$WORK/models/b/tmp.part" "$WORK/models/b/$v.fsm"
            s=$(status POST /v1/models/b/reload -H "$AUTH")
            if [ "$s" = 200 ]; then swaps=$((swaps + 1)); else bad=$((bad + 1)); echo "swap b: $s"; fi
            rm -f "$WORK/models/b/$((v - 1)).fsm"
        fi
        if [ $((i % 15)) = 8 ]; then # a corrupt file above the served version: refused, 422
            cp "$WORK/src/corrupt.fsm" "$WORK/models/b/tmp.part"
            mv "$WORK/models/b/tmp.part" "$WORK/models/b/$((v + 1)).fsm"
            s=$(status POST /v1/models/b/reload -H "$AUTH")
            corrupt=$((corrupt + 1))
            if [ "$s" = 422 ]; then refused=$((refused + 1)); else bad=$((bad + 1)); echo "corrupt b: $s"; fi
            rm -f "$WORK/models/b/$((v + 1)).fsm"
        fi
        if [ "$TRAINER" = 1 ]; then
            s=$(status POST /v1/models/a/records -H "$AUTH" -H 'Content-Type: application/x-ndjson' \
                --data-binary @"$WORK/ingest.ndjson")
            case $s in 2??) ingest_ok=$((ingest_ok + 1)) ;; *) ingest_bad=$((ingest_bad + 1)); echo "ingest: $s" ;; esac
            if [ $((i % 20)) = 10 ]; then
                s=$(status POST /v1/models/a/training -H "$AUTH")
                case $s in
                2??) refits=$((refits + 1)) ;;
                409 | 429) busy=$((busy + 1)) ;; # a refit already running: intended
                *) bad=$((bad + 1)); echo "training: $s" ;;
                esac
            fi
        fi
        sleep 1
    done
    echo "ok=$ok refused=$refused bad=$bad hup=$hup swaps=$swaps corrupt=$corrupt" \
        "ingest_ok=$ingest_ok ingest_bad=$ingest_bad refits=$refits busy=$busy" >"$WORK/faults.txt"
) >"$WORK/faults.log" 2>&1 &
DRIVER=$!
PIDS+=("$DRIVER")

wait "$W1" "$W64" || true
wait "$DRIVER" || true
# Connections close when wrk exits; give the daemon a moment, then compare fds.
FD_END=$(fds)
for _ in $(seq 50); do
    FD_END=$(fds)
    [ "$FD_END" -le "$FD0" ] && break
    sleep 0.2
done
RSS_END=$(rss)
curl -s --max-time 30 "$BASE/metrics" >"$WORK/metrics.txt" || true
kill -TERM "$DAEMON"
set +e
wait "$DAEMON"
EXIT=$?
set -e
DAEMON=

# ---------------------------------------------------------------- summary
python3 - "$WORK" "$DURATION" "$MAX_SLOPE" "$FD0" "$FD_END" "$RSS_END" "$EXIT" "$TRAINER" \
    "$probe" "$MINUTES" <<'EOF'
import json, re, sys
w, dur, max_slope, fd0, fd_end, rss_end, exit_code, trainer, probe, minutes = sys.argv[1:]
dur, max_slope, fd0, fd_end, rss_end, exit_code = (int(dur), float(max_slope), int(fd0),
                                                    int(fd_end), int(rss_end), int(exit_code))
metrics = open(w + "/metrics.txt").read()

def wrk(name):
    text = open(w + "/" + name).read()
    m = re.search(r"SOAK-WRK (.*)", text)
    if not m:
        return {"requests": 0, "error": text[-300:]}
    return {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}

one, batch = wrk("wrk1.log"), wrk("wrk64.log")
faults = dict(kv.split("=") for kv in open(w + "/faults.txt").read().split())
faults = {k: int(v) for k, v in faults.items()}
daemon_5xx = sum(float(v) for code, v in re.findall(
    r'^flowscore_http_requests_total\{[^}]*code="(5\d\d)"[^}]*\} (\S+)$', metrics, re.M))
reload_failures = sum(float(v) for v in re.findall(
    r'^flowscore_model_reload_failures_total\{[^}]*\} (\S+)$', metrics, re.M))
def by_label(name, label):
    out = {}
    for lab, v in re.findall(r'^%s\{[^}]*%s="([^"]*)"[^}]*\} (\S+)$' % (name, label), metrics,
                             re.M):
        out[lab] = out.get(lab, 0) + int(float(v))
    return out

refits = by_label("flowscore_refits_total", "result")
ingested = by_label("flowscore_ingest_records_total", "result")
samples = [tuple(map(int, line.split())) for line in open(w + "/samples.txt") if line.strip()]
half = [(t, r) for t, r, _ in samples if t >= dur / 2]


def fit(points):
    """Least-squares slope of (t s, rss KiB) points, in KiB per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mr = sum(r for _, r in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (r - mr) for t, r in points) / var * 60 if var > 0 else 0.0


# A refit holds its training data for a moment: those spikes are not growth. The judged slope
# is the fit over the floor of the second half, the lowest sample of each of 6 windows; a leak
# raises the floor, a transient does not. The fit over every sample is shown beside it.
raw_slope = fit(half)
k = max(1, len(half) // 6)
floor = [min(half[i:i + k], key=lambda p: p[1]) for i in range(0, len(half) - k + 1, k)]
slope = fit(floor) if len(floor) >= 3 else raw_slope
socket_errors = sum(int(x.get(k, 0)) for x in (one, batch)
                    for k in ("connect", "read", "write", "timeout"))
wrk_non2xx = int(one.get("non2xx", 0) + batch.get("non2xx", 0))
unexpected = wrk_non2xx + socket_errors + faults["bad"] + faults["ingest_bad"] + int(daemon_5xx)
rss0 = samples[0][1] if samples else 0
checks = {
    "requests": one.get("requests", 0) > 0 and batch.get("requests", 0) > 0,
    "unexpected non-2xx": unexpected == 0,
    "memory slope": slope <= max_slope,
    "fds back to baseline": fd_end <= fd0,
    "exit 0 on SIGTERM": exit_code == 0,
}
print()
print("==== soak summary (%s min, %d s) ====" % (minutes, dur))
print("requests             1-record (model a): %d, p50 %.2f ms, p99 %.2f ms" % (
    one.get("requests", 0), one.get("p50_ms", 0), one.get("p99_ms", 0)))
print("                     64-record (model b): %d, p50 %.2f ms, p99 %.2f ms" % (
    batch.get("requests", 0), batch.get("p50_ms", 0), batch.get("p99_ms", 0)))
print("non-2xx, unexpected  %d  (wrk status %d, socket errors %d, reload/swap/training %d, "
      "ingest %d, daemon 5xx %d)" % (unexpected, wrk_non2xx, socket_errors, faults["bad"],
                                     faults["ingest_bad"], daemon_5xx))
print("non-2xx, intended    %d  (422 for %d corrupt model files)" % (faults["refused"],
                                                                    faults["corrupt"]))
print("reloads              endpoint %d, SIGHUP %d, swaps to a new version %d; "
      "reload failures counted by the daemon %d" % (faults["ok"], faults["hup"], faults["swaps"],
                                                   reload_failures))
if trainer == "1":
    print("trainer              ingest posts %d ok (records accepted %d, rejected %d); refits "
          "requested %d (busy %d): accepted %d, rejected %d, failed %d" % (
              faults["ingest_ok"], ingested.get("accepted", 0), ingested.get("rejected", 0),
              faults["refits"], faults["busy"], refits.get("accepted", 0),
              refits.get("rejected", 0), refits.get("failed", 0)))
else:
    print("trainer              endpoints absent (POST /v1/models/a/records -> %s): not driven"
          % probe)
print("memory               RSS start %.1f MiB, end %.1f MiB, max %.1f MiB; slope of the "
      "second half's floor %.1f KiB/min (bound %g; over every sample %.1f)" % (
          rss0 / 1024, rss_end / 1024, max([r for _, r, _ in samples] or [0]) / 1024, slope,
          max_slope, raw_slope))
print("fds                  baseline %d, end %d" % (fd0, fd_end))
print("daemon exit          %d" % exit_code)
failed = [k for k, ok in checks.items() if not ok]
print("result               %s" % ("PASS" if not failed else "FAIL: " + ", ".join(failed)))
print("SOAK-JSON " + json.dumps({
    "minutes": float(minutes), "requests_1": one.get("requests", 0),
    "requests_64": batch.get("requests", 0), "unexpected_non2xx": unexpected,
    "intended_422": faults["refused"], "reloads_endpoint": faults["ok"],
    "reloads_sighup": faults["hup"], "swaps": faults["swaps"], "trainer": trainer == "1",
    "refits_requested": faults["refits"], "refits": refits, "rss_start_kib": rss0, "rss_end_kib": rss_end,
    "slope_kib_per_min": round(slope, 1), "raw_slope_kib_per_min": round(raw_slope, 1),
    "fd_baseline": fd0, "fd_end": fd_end,
    "exit": exit_code, "pass": not failed}))
sys.exit(0 if not failed else 1)
EOF
