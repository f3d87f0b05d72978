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
        ["train", "--data", "x.csv", "--out", "m.fsm", "--preset", "nope"],
        ["train", "--data", "x.csv", "--out", "m.fsm", "--schedule", "weekly"],
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


HEADERLESS = "seems to have no header row"


def test_headerless_files():
    """A first row that is data is refused by train, score and eval with the fix, never read
    as names ("119.323"), blamed on a duplicate column "0" or on a missing column "a"."""
    m = model()
    with h.tmpdir() as d:
        rows = "".join("%.3f,%.3f\n" % (100 + i * 1.7, 2 + (i % 7) * 0.13) for i in range(60))
        nohdr = write(os.path.join(d, "nohdr.csv"), rows)
        out = os.path.join(d, "n.fsm")
        for args in (["train", "--data", nohdr, "--out", out, "--epochs", "1"],
                     ["train", "--data", nohdr, "--print-schema"]):
            p = h.run(args)
            h.check(p.returncode == 1 and HEADERLESS in p.stderr and
                    '"header": false' in p.stderr and "'100.000,2.000'" in p.stderr and
                    "--skip-bad-rows" not in p.stderr, "%s: %r" % (args, p.stderr))
        h.check(not os.path.exists(out), "nothing written for a headerless file")
        # NSL-KDD's first row: text cells, and 0 several times
        kdd = write(os.path.join(d, "kdd.csv"), "0,tcp,ftp_data,SF,491,0,0,normal,20\n"
                                                "0,udp,other,SF,146,0,0,normal,15\n")
        p = h.run(["train", "--data", kdd, "--print-schema"])
        h.check(p.returncode == 1 and HEADERLESS in p.stderr and "appears twice" not in p.stderr,
                p.stderr)
        # score and eval against a model whose fields the data row cannot name
        data = make_data(os.path.join(d, "t.csv"), n=20, labelled=True)
        with open(data) as f:
            body = f.read().split("\n", 1)[1]
        bare = write(os.path.join(d, "bare.csv"), body)
        p = h.run(["score", "--model", m, "--data", bare])
        h.check(p.returncode == 1 and HEADERLESS in p.stderr and "no column named" not in
                p.stderr, p.stderr)
        p = h.run(["eval", "--model", m, "--data", bare, "--label-col", "label",
                   "--normal-value", "normal"])
        h.check(p.returncode == 1 and HEADERLESS in p.stderr, p.stderr)
        # the fixes the message names work: a schema saying "header": false, or a header
        schema = write(os.path.join(d, "s.json"), json.dumps({"header": False, "fields": [
            {"name": "a", "type": "numeric"}, {"name": "b", "type": "numeric"}]}))
        h.run_ok(["train", "--data", nohdr, "--schema", schema, "--epochs", "1", "--quiet",
                  "--out", out])
        p = h.run_ok(["score", "--model", out, "--data", nohdr, "--schema", schema])
        h.check(len(h.read_scores(p.stdout)) == 60, "all 60 rows scored with the schema")
        p = h.run_ok(["score", "--model", out, "--data",
                      write(os.path.join(d, "hdr.csv"), "a,b\n" + rows)])
        h.check(len(h.read_scores(p.stdout)) == 60, "all 60 rows scored with a header")
        # real headers made of numbers are not refused: pandas' 0,1 and years (with a note)
        for head in ("0,1", "2019,2020"):
            p = h.run_ok(["train", "--data", write(os.path.join(d, "num.csv"),
                                                   head + "\n" + rows), "--print-schema"])
            names = [f["name"] for f in h.json_strict(p.stdout)["fields"]]
            h.check(names == head.split(","), "%s: %r" % (head, names))
            h.check("is a number" in p.stderr and "'%s'" % head in p.stderr, p.stderr)
        # a header with one numeric name among others stays a header, with no note
        p = h.run_ok(["train", "--data", write(os.path.join(d, "mix.csv"), "id,2019\n" + rows),
                      "--print-schema"])
        h.check(p.stderr == "", "no note for a mixed header: %r" % p.stderr)


def test_train_output_explains_itself():
    """The help and the summary say that val_nll is trimmed and train_nll is not, epoch 0 is
    the untrained model, and the skipped-rows line reads once."""
    p = h.run_ok(["train", "--help"])
    h.check("trimmed" in p.stdout and "worst 1%" in p.stdout and "untrained" in p.stdout,
            p.stdout)
    with h.tmpdir() as d:
        data = make_data(os.path.join(d, "t.csv"), n=200)
        with open(data, "a") as f:
            f.write("nan,3,0.5,tcp\n12,,0.5,udp\n")
        out = os.path.join(d, "m.fsm")
        p = h.run_ok(["train", "--data", data, "--epochs", "0", "--skip-bad-rows", "--out", out])
        best = [ln for ln in p.stdout.splitlines() if "best validation NLL" in ln]
        h.check(len(best) == 1 and "trimmed" in best[0] and "at epoch 0" in best[0], p.stdout)
        h.check("saved model: epoch 0 (the untrained model: the whitened Gaussian" in p.stdout,
                p.stdout)
        bad = [ln for ln in p.stdout.splitlines() if "bad row" in ln]
        h.check(len(bad) == 1 and bad[0].count("bad row") == 1 and
                bad[0].strip().startswith("skipped bad rows: 2 (1 non-finite value, 1 empty "
                                          "cell); line 202 (bytes: non-finite value)"),
                "skipped rows line: %r" % bad)
        p = h.run_ok(["train", "--data", data, "--epochs", "0", "--skip-bad-rows", "--no-whiten",
                      "--out", out])
        h.check("the Gaussian of the standardised fields" in p.stdout, p.stdout)
        p = h.run_ok(["train", "--data", data, "--epochs", "2", "--skip-bad-rows", "--seed", "1",
                      "--out", out])
        saved = [ln for ln in p.stdout.splitlines() if "saved model:" in ln]
        h.check(len(saved) == 1, p.stdout)
        h.check("epoch 0 (the untrained model" in saved[0] or
                "(the best validation NLL of 2 epochs run)" in saved[0], saved)


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
            test_print_schema_round_trip, test_headerless_files,
            test_train_output_explains_itself, test_failures_leave_no_file,
            test_import_golden_and_score])
