"""The offline subcommands on small generated data: --help, usage errors, train / inspect /
score / sample / eval round trips, bad cells in every column for train, score and eval, and
eval's AUROC and average precision against a reference computed from `score`.
"""
# labels: e2e
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_helpers as h  # noqa: E402

COMMANDS = ["train", "eval", "score", "sample", "inspect", "import"]


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def make_data(path, n=400, seed=3, labelled=False):
    """bytes (integer, heavy), pkts (integer), rate (real), proto (categorical)[, label]."""
    r = random.Random(seed)
    lines = ["bytes,pkts,rate,proto" + (",label" if labelled else "")]
    for i in range(n):
        anomalous = labelled and i % 4 == 0
        pkts = r.randint(1, 40)
        b = pkts * r.randint(40, 1500) * (50 if anomalous else 1)
        rate = round(r.random() * (3.0 if anomalous else 1.0), 4)
        proto = r.choice(["tcp", "tcp", "udp", "icmp"])
        row = "%d,%d,%.4f,%s" % (b, pkts, rate, proto)
        if labelled:
            row += ",attack" if anomalous else ",normal"
        lines.append(row)
    return write(path, "\n".join(lines) + "\n")


STATE = {}


def model():
    """A small model trained once for the tests that need one."""
    if "model" not in STATE:
        d = h.tmpdir()
        STATE["dir"] = d
        data = make_data(os.path.join(d.name, "train.csv"))
        out = os.path.join(d.name, "m.fsm")
        p = h.run_ok(["train", "--data", data, "--seed", "1", "--epochs", "2", "--out", out])
        STATE.update(model=out, train=data, summary=p.stdout, progress=p.stderr)
    return STATE["model"]


def test_help_and_usage_errors():
    for c in COMMANDS:
        p = h.run([c, "--help"])
        h.check(p.returncode == 0 and "usage: flowscore " + c in p.stdout,
                "%s --help: %d %r" % (c, p.returncode, p.stdout[:200]))
        p = h.run([c, "--bogus"])
        h.check(p.returncode == 2 and "unknown option '--bogus'" in p.stderr,
                "%s --bogus: %d %r" % (c, p.returncode, p.stderr))
    bad = [
        ["train", "--data", "x.csv", "--out", "m.fsm", "--epochs", "-1"],
        ["train", "--data", "x.csv", "--out", "m.fsm", "--epochs", "abc"],
        ["train", "--data", "x.csv", "--out", "m.fsm", "--lr", "nan"],
        ["train", "--data", "x.csv", "--out", "m.fsm", "--lr", "1e999"],
        ["train", "--data", "x.csv", "--out", "m.fsm", "--lr", "0x10"],
        ["train", "--data", "x.csv", "--out", "m.fsm", "--optimizer", "rmsprop"],
        ["train", "--data", "x.csv", "--out", "m.fsm", "--threshold-quantile", "1.5"],
        ["train", "--data", "x.csv", "--out", "m.fsm", "--quiet=1"],
        ["train", "--data", "x.csv", "--out", "m.fsm", "--label-col", "label"],
        ["train", "--data", "x.csv"],
        ["train", "--data", "x.csv", "--out", "m.fsm", "--epochs"],
        ["sample", "--model", "m.fsm", "-n", "-1"],
        ["sample", "--model", "m.fsm", "-n", "1.5"],
        ["sample", "--model", "m.fsm", "-n", "5", "--temperature", "11"],
        ["sample", "--model", "m.fsm", "-n", "5", "--temperature", "-1"],
        ["sample", "--model", "m.fsm", "-n", "5", "--seed", "-3"],
        ["score", "--model", "m.fsm", "--data", "x.csv", "--format", "xml"],
        ["score", "--model", "m.fsm"],
        ["eval", "--model", "m.fsm", "--data", "x.csv", "--label-col", "label"],
        ["inspect"],
        ["inspect", "a.fsm", "b.fsm"],
        ["import", "--peer-json", "x.json"],
    ]
    for args in bad:
        p = h.run(args)
        h.check(p.returncode == 2, "%s: exit %d, want 2 (%s)" % (args, p.returncode, p.stderr))
        h.check(p.stderr.startswith("flowscore %s: " % args[0]), "message: %r" % p.stderr)


def test_train_inspect_score_sample():
    m = model()
    h.check("summary:" in STATE["summary"], STATE["summary"])
    h.check(len(h.progress_lines(STATE["progress"])) >= 1, STATE["progress"])
    p = h.run_ok(["inspect", m])
    header = h.json_strict(p.stdout)
    h.check("schema" in header, "inspect: no schema")
    p = h.run_ok(["score", "--model", m, "--data", STATE["train"]])
    h.check(p.stdout.splitlines()[0] == "row,score,log_prob,percentile,anomaly,saturated",
            p.stdout.splitlines()[0])
    rows = h.read_scores(p.stdout)
    h.check(len(rows) == 400 and [r["row"] for r in rows] == list(range(400)), "row order")
    nd = h.run_ok(["score", "--model", m, "--data", STATE["train"], "--format", "ndjson"])
    objs = [h.json_strict(line) for line in nd.stdout.splitlines()]
    h.check(len(objs) == 400, "ndjson rows")
    for o, r in zip(objs, rows):
        h.check(o["score"] == r["score"] and o["line"] == r["row"] + 2, "ndjson vs csv")
        h.check(isinstance(o["anomaly"], bool), "anomaly is a boolean")
    p = h.run_ok(["sample", "--model", m, "-n", "200", "--seed", "7"])
    lines = p.stdout.splitlines()
    h.check(lines[0] == "bytes,pkts,rate,proto" and len(lines) == 201, lines[:2])
    for line in lines[1:]:
        cells = line.split(",")
        for c in cells[:3]:
            h.finite_number(c)
        h.check(cells[3] in ("icmp", "tcp", "udp"), "level name: %r" % cells[3])
    again = h.run_ok(["sample", "--model", m, "-n", "200", "--seed", "7"])
    h.check(again.stdout == p.stdout, "same seed, same records")
    p = h.run_ok(["sample", "--model", m, "-n", "0"])
    h.check(p.stdout == "bytes,pkts,rate,proto\n", "sample -n 0: %r" % p.stdout)


def test_header_only_and_extra_columns():
    m = model()
    with h.tmpdir() as d:
        p = h.run_ok(["score", "--model", m, "--data", write(os.path.join(d, "h.csv"),
                                                             "bytes,pkts,rate,proto\n")])
        h.check(p.stdout == "row,score,log_prob,percentile,anomaly,saturated\n", p.stdout)
        # columns in another order, an extra column, a label copied into the output,
        # an unseen level and a quoted cell
        data = write(os.path.join(d, "x.csv"),
                     "proto,extra,rate,pkts,bytes,label\n"
                     "tcp,zz,0.5,10,1200,normal\nsctp,q,0.5,10,1200,\"odd,label\"\n")
        p = h.run_ok(["score", "--model", m, "--data", data, "--label-col", "label"])
        lines = p.stdout.splitlines()
        h.check(lines[0].endswith(",label") and lines[2].endswith(',"odd,label"'), lines)
        h.check("extra" in p.stderr, "note about the extra column: %r" % p.stderr)
        h.read_scores("\n".join(lines) + "\n")
        p = h.run(["score", "--model", m, "--data", write(os.path.join(d, "miss.csv"),
                                                          "bytes,pkts,rate\n1,2,3\n")])
        h.check(p.returncode == 1 and "no column named proto" in p.stderr, p.stderr)


SPELLINGS = ["tcp", "0x10", "NaN", "nan", "NAN", "-nan", "Infinity", "inf", "-inf",
             "+Infinity", "1e999", "1e309", "", "  ", '" 12"']


def test_bad_cells_every_column_train_score_eval():
    m = model()
    cols = ["bytes", "pkts", "rate"]
    good = ["1200", "10", "0.5"]
    with h.tmpdir() as d:
        for s in SPELLINGS:
            for i, col in enumerate(cols):
                cells = list(good)
                cells[i] = s
                text = ("bytes,pkts,rate,proto,label\n1000,8,0.25,tcp,normal\n"
                        "%s,udp,normal\n900,7,0.1,tcp,attack\n" % ",".join(cells))
                data = write(os.path.join(d, "bad.csv"), text)
                out = os.path.join(d, "bad.fsm")
                runs = [
                    ["train", "--data", data, "--out", out, "--epochs", "1", "--quiet"],
                    ["score", "--model", m, "--data", data],
                    ["eval", "--model", m, "--data", data, "--label-col", "label",
                     "--normal-value", "normal"],
                ]
                for args in runs:
                    p = h.run(args)
                    want = "line 3, column %s: " % col
                    h.check(p.returncode == 1 and want in p.stderr,
                            "%r in %s, %s: exit %d, %r" % (s, col, args[0], p.returncode,
                                                          p.stderr))
                    h.check(not os.path.exists(out), "a file was left at --out")
                    if args[0] == "score":
                        scored = h.read_scores(p.stdout)
                        h.check([r["row"] for r in scored] == [0], "rows printed: %r" % scored)
                p = h.run_ok(["score", "--model", m, "--data", data, "--skip-bad-rows"])
                h.check([r["row"] for r in h.read_scores(p.stdout)] == [0, 2],
                        "skip keeps the row numbers")
                h.check("1 bad row skipped" in p.stderr and "line 3" in p.stderr, p.stderr)


def test_sentinels_and_exponents_pass():
    m = model()
    with h.tmpdir() as d:
        data = write(os.path.join(d, "s.csv"),
                     "bytes,pkts,rate,proto\n-1,-1,-1,tcp\n1.2e+03,1E1,5e-1,udp\n")
        rows = h.read_scores(h.run_ok(["score", "--model", m, "--data", data]).stdout)
        h.check(len(rows) == 2, "two rows")


def test_eval_matches_reference_auroc():
    m = model()
    with h.tmpdir() as d:
        data = make_data(os.path.join(d, "lab.csv"), n=300, seed=5, labelled=True)
        # duplicate some rows so that tied scores occur
        with open(data) as f:
            lines = f.read().splitlines()
        lines += lines[1:40]
        write(data, "\n".join(lines) + "\n")
        p = h.run_ok(["eval", "--model", m, "--data", data, "--label-col", "label",
                      "--normal-value", "normal"])
        h.check(len(p.stdout.splitlines()) == 1, "one JSON line")
        e = h.json_strict(p.stdout)
        s = h.run_ok(["score", "--model", m, "--data", data, "--label-col", "label"])
        rows = h.read_scores(s.stdout)
        scores = [r["score"] for r in rows]
        pos = [r["label"] != "normal" for r in rows]
        h.check(e["rows"] == len(rows) and e["n_anomalous"] == sum(pos), e)
        ref_auc = h.auroc(scores, pos)
        ref_ap = h.average_precision(scores, pos)
        h.check(abs(e["auroc"] - ref_auc) < 1e-9, "auroc %r vs %r" % (e["auroc"], ref_auc))
        h.check(abs(e["auprc"] - ref_ap) < 1e-9, "auprc %r vs %r" % (e["auprc"], ref_ap))
        normal_lp = [r["log_prob"] for r in rows if r["label"] == "normal"]
        h.check(abs(e["mean_log_prob"] - sum(normal_lp) / len(normal_lp)) <=
                1e-9 * max(1.0, abs(e["mean_log_prob"])), "mean_log_prob")
        flagged = sum(1 for r in rows if r["label"] == "normal" and r["anomaly"])
        h.check(abs(e["flagged_normal_share"] - flagged / len(normal_lp)) < 1e-12, e)
        # no anomalous rows: undefined figures are null, never NaN
        p = h.run_ok(["eval", "--model", m, "--data", data, "--label-col", "label",
                      "--normal-value", "nothing-is-normal"])
        e = h.json_strict(p.stdout)
        h.check(e["auroc"] is None and e["mean_log_prob"] is None, e)


def test_print_schema_round_trip():
    with h.tmpdir() as d:
        data = make_data(os.path.join(d, "t.csv"), n=100)
        p = h.run_ok(["train", "--data", data, "--print-schema"])
        schema = h.json_strict(p.stdout)
        types = {f["name"]: f for f in schema["fields"]}
        h.check(types["bytes"]["type"] == "integer" and types["bytes"]["transform"] == "log1p",
                types["bytes"])
        h.check(types["rate"]["type"] == "numeric", types["rate"])
        h.check(types["proto"]["levels"] == ["icmp", "tcp", "udp"], types["proto"])
        path = write(os.path.join(d, "schema.json"), p.stdout)
        out = os.path.join(d, "s.fsm")
        h.run_ok(["train", "--data", data, "--schema", path, "--epochs", "1", "--quiet",
                  "--out", out])
        h.check(os.path.exists(out), "model written with the printed schema")


def test_failures_leave_no_file():
    with h.tmpdir() as d:
        data = make_data(os.path.join(d, "t.csv"), n=50)
        p = h.run(["train", "--data", data, "--out", os.path.join(d, "no", "such", "m.fsm")])
        h.check(p.returncode == 1 and "--out" in p.stderr, p.stderr)
        p = h.run(["train", "--data", os.path.join(d, "missing.csv"), "--out",
                   os.path.join(d, "m.fsm")])
        h.check(p.returncode == 1 and "missing.csv" in p.stderr, p.stderr)
        h.check(os.listdir(d) == ["t.csv"], "leftovers: %r" % os.listdir(d))
        bad = write(os.path.join(d, "bad.fsm"), "not a model")
        p = h.run(["inspect", bad])
        h.check(p.returncode == 1 and "(FS_ERR_" in p.stderr, p.stderr)
        p = h.run(["inspect", os.path.join(d, "nope.fsm")])
        h.check(p.returncode == 1 and "(FS_ERR_IO)" in p.stderr, p.stderr)
        p = h.run(["score", "--model", bad, "--data", data])
        h.check(p.returncode == 1 and "(FS_ERR_" in p.stderr, p.stderr)


def test_import_golden_and_score():
    s = h.shared_dir()
    golden = os.path.join(s, "bench", "golden_small.json") if s else None
    if golden is None or not os.path.exists(golden):
        raise h.Skip("shared/bench/golden_small.json not found")
    with open(golden) as f:
        g = json.load(f)
    with h.tmpdir() as d:
        out = os.path.join(d, "g.fsm")
        h.run_ok(["import", "--peer-json", golden, "--out", out])
        dims = len(g["test"]["x"][0])
        data = write(os.path.join(d, "x.csv"), ",".join("x%d" % i for i in range(dims)) + "\n" +
                     "".join(",".join(repr(v) for v in row) + "\n" for row in g["test"]["x"]))
        rows = h.read_scores(h.run_ok(["score", "--model", out, "--data", data]).stdout)
        for r, want in zip(rows, g["test"]["logp"]):
            h.check(abs(r["log_prob"] - want) < 1e-4, "log_prob %r vs %r" % (r["log_prob"],
                                                                              want))


if __name__ == "__main__":
    h.main([test_help_and_usage_errors, test_train_inspect_score_sample,
            test_header_only_and_extra_columns, test_bad_cells_every_column_train_score_eval,
            test_sentinels_and_exponents_pass, test_eval_matches_reference_auroc,
            test_print_schema_round_trip, test_failures_leave_no_file,
            test_import_golden_and_score])
