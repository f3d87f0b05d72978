"""Shared helpers of the tests/e2e/test_cli_*.py tests: locating the binary and shared/,
running commands, reading their CSV and progress output, and a tiny test runner.

Python 3 stdlib only. A test file calls main(tests) with its test functions; a function may
raise Skip to report that its data is missing. Exit status: 0 all passed, 1 a failure,
77 everything skipped.
"""
import csv
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import traceback


class Skip(Exception):
    """The test cannot run here (missing binary or data); the message says why."""


def skip_all(msg):
    print("SKIP: " + msg)
    sys.exit(77)


def binary():
    path = os.environ.get("FLOWSCORE_BIN")
    if not path or not os.access(path, os.X_OK):
        skip_all("FLOWSCORE_BIN is not set to an executable flowscore binary")
    return path


def source_dir():
    return os.environ.get("FS_SOURCE_DIR") or os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def shared_dir():
    """shared/ or None when it is absent."""
    d = os.environ.get("FS_SHARED_DIR")
    if d and os.path.isdir(d):
        return d
    return None


def case_dir(name):
    """Folder of a shared failure case, or raise Skip."""
    s = shared_dir()
    path = os.path.join(s, "cases", name) if s else None
    if path is None or not os.path.isdir(path):
        raise Skip("shared/cases/%s not found (FS_SHARED_DIR=%s)" % (name, os.environ.get(
            "FS_SHARED_DIR")))
    return path


def sanitized():
    return bool(os.environ.get("FS_SANITIZE"))


def run(args, input=None, timeout=600, cwd=None):
    """Run flowscore with args; returns CompletedProcess (text)."""
    cmd = [binary()] + [str(a) for a in args]
    return subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                          cwd=cwd)


def run_ok(args, **kw):
    p = run(args, **kw)
    if p.returncode != 0:
        raise AssertionError("flowscore %s exited %d\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(str(a) for a in args), p.returncode, p.stdout[-3000:], p.stderr[-3000:]))
    return p


def gen(case, out_path, script="gen.py", args=(), cwd=None):
    """Run a case's generator (python3) writing stdout to out_path."""
    with open(out_path, "w") as f:
        subprocess.run([sys.executable, os.path.join(case_dir(case), script)] + list(args),
                       stdout=f, check=True, cwd=cwd)
    return out_path


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def finite_number(text):
    """Parse a number printed by flowscore: it must be finite and not an inf/nan spelling."""
    check(re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text) is not None,
          "not a plain finite number: %r" % text)
    v = float(text)
    check(math.isfinite(v), "non-finite: %r" % text)
    return v


def read_scores(text):
    """Rows of `flowscore score` CSV output as dicts with numbers parsed and checked."""
    rows = list(csv.DictReader(io.StringIO(text)))
    for r in rows:
        for k in ("score", "log_prob", "percentile"):
            r[k] = finite_number(r[k])
        r["row"] = int(r["row"])
        r["anomaly"] = int(r["anomaly"])
        r["saturated"] = int(r["saturated"])
        s = r["score"]
        check(abs(r["log_prob"] + s) <= 1e-6 * max(1.0, abs(s)),
              "log_prob %r is not -score %r" % (r["log_prob"], s))
        check(0.0 <= r["percentile"] <= 1.0, "percentile out of [0, 1]: %r" % r["percentile"])
    return rows


EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+) (.*)$")


def progress_lines(stderr):
    """The plain per-epoch progress lines; each NLL on them must be finite."""
    out = []
    for line in stderr.splitlines():
        m = EPOCH_LINE.match(line)
        if not m:
            continue
        fields = dict(kv.split("=", 1) for kv in m.group(3).split() if "=" in kv)
        for k in ("train_nll", "val_nll"):
            check(k in fields, "progress line without %s: %s" % (k, line))
            fields[k] = finite_number(fields[k])
        out.append(fields)
    return out


def json_strict(text):
    def refuse(c):
        raise AssertionError("non-finite JSON token " + c)
    return json.loads(text, parse_constant=refuse)


def find_key(obj, pred):
    """All values in nested JSON whose key satisfies pred."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if pred(k):
                found.append(v)
            found.extend(find_key(v, pred))
    elif isinstance(obj, list):
        for v in obj:
            found.extend(find_key(v, pred))
    return found


def auroc(scores, positive):
    """AUROC with average ranks for ties (reference for `flowscore eval`)."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and scores[order[j]] == scores[order[i]]:
            j += 1
        for k in range(i, j):
            ranks[order[k]] = (i + 1 + j) / 2.0
        i = j
    n_pos = sum(1 for p in positive if p)
    n_neg = len(positive) - n_pos
    s = sum(r for r, p in zip(ranks, positive) if p)
    return (s - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def average_precision(scores, positive):
    """Average precision over distinct thresholds, as scikit-learn computes it."""
    pairs = sorted(zip(scores, positive), key=lambda t: -t[0])
    n_pos = sum(1 for p in positive if p)
    tp = fp = 0
    ap = prev_recall = 0.0
    i = 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            tp += 1 if pairs[j][1] else 0
            fp += 0 if pairs[j][1] else 1
            j += 1
        recall = tp / n_pos
        ap += (recall - prev_recall) * tp / (tp + fp)
        prev_recall = recall
        i = j
    return ap


def tmpdir():
    return tempfile.TemporaryDirectory(prefix="fs_e2e_cli_")


def main(tests):
    binary()
    passed = failed = skipped = 0
    for t in tests:
        name = t.__name__
        try:
            t()
        except Skip as e:
            skipped += 1
            print("SKIP %s: %s" % (name, e))
        except Exception:  # a failing check or an unexpected error
            failed += 1
            print("FAIL %s" % name)
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print("ok   %s" % name)
        sys.stdout.flush()
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    if failed:
        sys.exit(1)
    if passed == 0 and skipped > 0:
        sys.exit(77)
    sys.exit(0)
