"""Helpers of the shared-failure-case tests (tests/e2e/test_cases_*.py), Python 3 stdlib only.

Each test_cases_*.py file holds functions named after their case (test_case05_...), each taking
(check, ctx). They use the case's own input files and generators from $FS_SHARED_DIR/cases as
they are. When that folder is absent the whole file is skipped (exit 77, with the reason).
Models are trained with `flowscore train` as each case's steps say, once per file.
"""
import csv
import io
import json
import math
import os
import re
import subprocess
import sys
import time
import traceback

import fsharness as fh

CASES = os.path.join(fh.SHARED_DIR, "cases")


def require_cases():
    if not os.path.isdir(CASES):
        fh.skip("%s not found: the shared failure cases are absent (set FS_SHARED_DIR)" % CASES)


def case(name, *parts):
    """A path inside the folder of case `name` (e.g. "case-05")."""
    for d in sorted(os.listdir(CASES)):
        if d.startswith(name + "-"):
            return os.path.join(CASES, d, *parts)
    fh.skip("case folder %s missing in %s" % (name, CASES))
    return None


def read(path):
    with open(path, "rb") as f:
        return f.read()


def gen(name, out, args=(), stdin_path=None, script="gen.py"):
    """Run a case's generator (python3), writing its stdout to out."""
    with open(out, "wb") as f:
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        try:
            subprocess.run([sys.executable, case(name, script)] + list(args), stdout=f,
                           stdin=stdin, check=True, cwd=case(name))
        finally:
            if stdin_path:
                stdin.close()
    return out


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def train(binp, data, out, extra=()):
    """`flowscore train` as the cases' steps run it; a failure fails the test file."""
    os.makedirs(os.path.dirname(out), exist_ok=True)
    t0 = time.time()
    r = fh.run([binp, "train", "--data", data, "--seed", "1", "--out", out, "--quiet"] +
               list(extra))
    if r.returncode != 0:
        raise AssertionError("flowscore train %s failed: %s" % (data, r.stderr.strip()[-600:]))
    print("trained %s in %.1fs" % (os.path.relpath(out, os.path.dirname(os.path.dirname(
        os.path.dirname(out)))), time.time() - t0), flush=True)
    return out


def cli_scores(binp, model, data, extra=()):
    """Rows of `flowscore score` as dicts of floats (row, score, log_prob, percentile, ...)."""
    r = fh.run([binp, "score", "--model", model, "--data", data] + list(extra))
    if r.returncode != 0:
        raise AssertionError("flowscore score failed: " + r.stderr.strip()[-600:])
    return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(r.stdout))]


def strict(body):
    """json.loads that refuses NaN, Infinity and -Infinity tokens."""
    def refuse(token):
        raise ValueError("non-finite JSON token " + token)
    return json.loads(body, parse_constant=refuse)


def rel(a, b, tol=1e-6):
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def finite_tree(obj):
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(finite_tree(v) for v in obj.values())
    if isinstance(obj, list):
        return all(finite_tree(v) for v in obj)
    return True


def quantile(values, q):
    v = sorted(values)
    k = (len(v) - 1) * q
    lo, hi = int(math.floor(k)), int(math.ceil(k))
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def error_of(resp):
    """(code, field, message) of a v1 error body, or (None, None, text) if it is not one."""
    try:
        e = strict(resp.body)["error"]
        if isinstance(e, str):  # the Open Inference Protocol form
            return None, None, e
        return e.get("code"), e.get("field"), e.get("message", "")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, None, "not a JSON error body: " + resp.body[:200]


NUMBER = re.compile(r'-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?')


def significant_digits(token):
    """Digits of a JSON number's mantissa, leading zeros aside ("-0.0012345e-7" -> 5)."""
    return len(re.split(r"[eE]", token)[0].lstrip("-").replace(".", "").lstrip("0"))


class Context:
    """What a test file's functions share: the binary, a temp dir, the daemon, models."""

    def __init__(self, binp, tmp):
        self.bin = binp
        self.tmp = tmp
        self.models = os.path.join(tmp, "models")
        self.srv = None
        self.data = {}

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def model_file(self, name, version=1):
        return os.path.join(self.models, name, "%d.fsm" % version)


def run_tests(tests, setup, server_args=()):
    """Run each test function with (check, ctx) against one daemon; report every failure."""
    binp = fh.binary()
    require_cases()
    c = fh.Check()
    with fh.tempdir("fs-cases-") as tmp:
        ctx = Context(binp, tmp)
        setup(ctx)
        ctx.srv = fh.Server(binp, ctx.models, list(server_args))
        try:
            for t in tests:
                t0 = time.time()
                print("== %s" % t.__name__, flush=True)
                n0 = len(c.failures)
                try:
                    t(c, ctx)
                except Exception:  # noqa: BLE001 - report and go on with the next case
                    c.ok(False, "%s raised:\n%s" % (t.__name__, traceback.format_exc()))
                print("   %s: %s in %.1fs" % (t.__name__, "ok" if len(c.failures) == n0 else
                                              "FAILED", time.time() - t0), flush=True)
        finally:
            fh.check_clean_exit(c, ctx.srv)
    c.done()
