"""NSL-KDD end to end (issue 3 section 7): train on a sample of the normal rows of KDDTrain+
with config/schemas/nsl-kdd.json, evaluate on KDDTest+ (and KDDTest-21), require
AUROC >= 0.93 on KDDTest+, and print the figures. Skipped, saying why, when
shared/data/nsl_kdd is absent. FS_E2E_NSL_ROWS and FS_E2E_NSL_EPOCHS change the sample size
(20000) and the epochs (3).
"""
# labels: e2e
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_helpers as h  # noqa: E402


def data_dir():
    s = h.shared_dir()
    d = os.path.join(s, "data", "nsl_kdd") if s else None
    if d is None or not os.path.exists(os.path.join(d, "KDDTrain+.txt")):
        raise h.Skip("shared/data/nsl_kdd not found (FS_SHARED_DIR=%s)" %
                     os.environ.get("FS_SHARED_DIR"))
    return d


def test_nslkdd_train_eval():
    d = data_dir()
    schema = os.path.join(h.source_dir(), "config", "schemas", "nsl-kdd.json")
    rows = os.environ.get("FS_E2E_NSL_ROWS", "20000")
    epochs = os.environ.get("FS_E2E_NSL_EPOCHS", "3")
    with h.tmpdir() as t:
        model = os.path.join(t, "nsl.fsm")
        t0 = time.time()
        p = h.run_ok(["train", "--data", os.path.join(d, "KDDTrain+.txt"), "--schema", schema,
                      "--label-col", "label", "--normal-value", "normal", "--max-rows", rows,
                      "--epochs", epochs, "--seed", "1", "--out", model])
        train_s = time.time() - t0
        h.progress_lines(p.stderr)
        print(p.stdout.rstrip())
        const = [ln for ln in p.stdout.splitlines() if "constant fields:" in ln][0]
        h.check("num_outbound_cmds" in const, const)
        figures = {}
        for name in ("KDDTest+", "KDDTest-21"):
            e = h.json_strict(h.run_ok([
                "eval", "--model", model, "--data", os.path.join(d, name + ".txt"), "--schema",
                schema, "--label-col", "label", "--normal-value", "normal"]).stdout)
            figures[name] = e
            print("%-11s rows=%d auroc=%.4f auprc=%.4f mean_log_prob=%.2f "
                  "flagged_normal=%.4f flagged_anomalous=%.4f" % (
                      name, e["rows"], e["auroc"], e["auprc"], e["mean_log_prob"],
                      e["flagged_normal_share"], e["flagged_anomalous_share"]))
        print("train %.1f s on %s normal rows, %s epochs" % (train_s, rows, epochs))
        plus = figures["KDDTest+"]
        h.check(plus["rows"] == 22544 and plus["n_normal"] == 9711, plus)
        h.check(plus["auroc"] >= 0.93, "KDDTest+ AUROC %.4f < 0.93" % plus["auroc"])


if __name__ == "__main__":
    h.main([test_nslkdd_train_eval])
