#!/usr/bin/env python3
"""A refit needs enough records, a large enough holdout, and a real gain (a user's report).

Version 1 is trained with `flowscore train` on 5,000 rows of case-04 and served with the trainer
on (min_new_records 0: refits start only when triggered).

- 4 records streamed, POST .../training: the run fails (min_refit_records, default 1000) with
  the key and the counts in its reason; version 1 stays served and no file is written. Before,
  it was accepted as version 2 with a threshold from 3 rows that flagged most of the original
  training rows.
- 1,500 more records of the same distribution: the refit runs, its last_run has a finite
  noise_nats, and it publishes only when the candidate beats the served model by more than
  that noise (margin 0); a published version comes with calibration_rows >= 200 and flags about
  as many of the original training rows as version 1 (the threshold did not move a lot).
- a second daemon with min_refit_records 100 and min_holdout_rows 200: 600 records give a
  120-row holdout and the run fails naming min_holdout_rows.
Skips (exit 77) when ../shared/cases is missing.
"""
# labels: e2e
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsharness as fh  # noqa: E402
import trainer_helpers as th  # noqa: E402


def flagged(binp, model, csv):
    """(flagged rows, rows) of csv under model, with `flowscore score`."""
    r = fh.run([binp, "score", "--model", model, "--data", csv])
    if r.returncode != 0:
        raise RuntimeError("flowscore score: " + r.stderr[:300])
    rows = [line.split(",") for line in r.stdout.splitlines()[1:] if line.strip()]
    return sum(1 for x in rows if x[4] == "1"), len(rows)


def write_rows(path, header, rows):
    with open(path, "w") as f:
        f.write(header + "\n")
        f.writelines(line + "\n" for line in rows)
    return path


def few_records(c, srv, models, recs):
    th.stream(srv, "flows", recs[:4])
    last = th.refit(srv, "flows")
    print("4 RECORDS: %s" % json.dumps(last), flush=True)
    c.eq(last["decision"], "failed", "4 records: the refit fails")
    c.ok("min_refit_records is 1000" in last["reason"] and "4 usable rows" in last["reason"],
         "the reason names the key and the counts: %s" % last["reason"])
    c.eq(th.version(srv, "flows"), 1, "4 records: version 1 still served")
    c.eq(sorted(os.listdir(os.path.join(models, "flows"))), ["1.fsm"], "4 records: no file")
    st = th.training(srv, "flows")
    c.eq((st["settings"].get("min_refit_records"), st["settings"].get("min_holdout_rows")),
         (1000, 200), "GET training shows the minimums")


def same_distribution(c, srv, binp, models, recs, train_csv):
    th.stream(srv, "flows", recs[4:1504])
    last = th.refit(srv, "flows")
    print("1500 RECORDS: %s" % json.dumps(last), flush=True)
    c.ok(last["decision"] in ("accepted", "rejected"), "1,500 records: judged (%s)"
         % last["reason"])
    c.ok(th.finite(last.get("noise_nats")) and last["noise_nats"] > 0,
         "the comparison's noise is reported: %r" % last.get("noise_nats"))
    c.ok(last["holdout_rows"] >= 200, "a holdout of at least min_holdout_rows")
    before = flagged(binp, os.path.join(models, "flows", "1.fsm"), train_csv)
    if last["decision"] == "accepted":
        c.ok(last["candidate_val_nll"] + last["noise_nats"] <= last["current_val_nll"],
             "accepted only beyond the noise: %r + %r <= %r" % (
                 last["candidate_val_nll"], last["noise_nats"], last["current_val_nll"]))
        c.ok(last["calibration_rows"] >= 200, "calibrated on %d rows" % last["calibration_rows"])
        after = flagged(binp, os.path.join(models, "flows", "%d.fsm" % last["version"]),
                        train_csv)
        print("FLAGGED training rows: v1 %d/%d, v%d %d/%d" %
              (before + (last["version"],) + after), flush=True)
        c.ok(after[0] <= before[0] + 0.02 * before[1],
             "the published threshold flags about as much as v1: %r vs %r" % (after, before))
    else:
        c.ok("not a significant improvement" in last["reason"] or "worse" in last["reason"] or
             "no improvement" in last["reason"], "the reason says why: %s" % last["reason"])
        c.eq(th.version(srv, "flows"), 1, "rejected: version 1 still served")


def small_holdout(c, binp, tmp, v1, recs):
    models = os.path.join(tmp, "models2")
    os.makedirs(os.path.join(models, "flows"))
    with open(v1, "rb") as src, open(os.path.join(models, "flows", "1.fsm"), "wb") as dst:
        dst.write(src.read())
    srv = th.server(binp, models, os.path.join(tmp, "state2"),
                    ["--trainer-min-new-records", "0", "--trainer-min-refit-records", "100",
                     "--trainer-min-holdout-rows", "200", "--trainer-exclude-anomalies", "false"])
    try:
        th.stream(srv, "flows", recs[:600])
        last = th.refit(srv, "flows")
        c.eq(last["decision"], "failed", "600 records, 120 holdout rows: failed")
        c.ok("min_holdout_rows is 200" in last["reason"] and "120 rows" in last["reason"],
             "the reason names min_holdout_rows and the counts: %s" % last["reason"])
        c.eq(th.version(srv, "flows"), 1, "small holdout: version 1 still served")
    finally:
        fh.check_clean_exit(c, srv, "small-holdout daemon")


def main():
    binp = fh.binary()
    c = fh.Check()
    d = th.case_dir("case-04")
    with fh.tempdir() as tmp:
        all_csv = os.path.join(tmp, "c04.csv")
        with open(all_csv, "w") as f:
            subprocess.run([sys.executable, os.path.join(d, "gen.py")], stdout=f, check=True)
        with open(all_csv) as f:
            header = f.readline().strip()
            lines = [line.strip() for line in f if line.strip()]
        if len(lines) < 7000:
            fh.skip("case-04's generator gave %d rows, fewer than the test needs" % len(lines))
        train_csv = write_rows(os.path.join(tmp, "train.csv"), header, lines[:5000])
        stream_csv = write_rows(os.path.join(tmp, "stream.csv"), header, lines[5000:])
        recs = th.csv_records(stream_csv)
        models = os.path.join(tmp, "models")
        v1 = th.train(binp, train_csv, os.path.join(models, "flows", "1.fsm"), tmp=tmp)
        srv = th.server(binp, models, os.path.join(tmp, "state"),
                        ["--trainer-min-new-records", "0"])
        try:
            few_records(c, srv, models, recs)
            same_distribution(c, srv, binp, models, recs, train_csv)
        finally:
            fh.check_clean_exit(c, srv)
        small_holdout(c, binp, tmp, v1, recs)
    c.done()


if __name__ == "__main__":
    main()
