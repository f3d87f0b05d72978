#!/usr/bin/env python3
"""The README's first command on a fresh clone (issue 6): `git clone` the source tree into a
temporary directory, run scripts/demo.sh there with the NSL-KDD data given by $FLOWSCORE_DATA,
and check that the report holds an AUROC in [0, 1] and an AUPRC, the throughput and the top
records, that the daemon was stopped with exit status 0, and that no flowscore process of the
clone is left. Without the data, demo.sh must exit 3 and say how to get it.

A clone holds only committed files; where the working tree has uncommitted changes (a
developer's tree; CI runs on a committed tree) they are copied over the clone, so the test runs
what is in the tree. The demo builds its own Release binary in the clone; under sanitizer
builds the test is skipped (the Release build runs it). FS_DEMO_EPOCHS overrides the demo's
epochs (its default otherwise).
"""
# labels: e2e slow
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_helpers as h  # noqa: E402


def git(args, cwd, **kw):
    return subprocess.run(["git"] + args, cwd=cwd, capture_output=True, text=True, timeout=300,
                          **kw)


def clone(src, dest):
    r = git(["clone", "--quiet", "--no-hardlinks", src, dest], cwd=os.path.dirname(dest))
    h.check(r.returncode == 0, "git clone failed: " + r.stderr)
    # Overlay what the working tree has and the commit has not (none in CI).
    r = git(["ls-files", "-z", "--modified", "--others", "--exclude-standard"], cwd=src)
    h.check(r.returncode == 0, "git ls-files failed: " + r.stderr)
    changed = [p for p in r.stdout.split("\0") if p]
    r = git(["ls-files", "-z", "--deleted"], cwd=src)
    deleted = [p for p in r.stdout.split("\0") if p]
    copied = 0
    for rel in changed:
        s = os.path.join(src, rel)
        if os.path.isfile(s):
            d = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(d), exist_ok=True)
            shutil.copy2(s, d)
            copied += 1
    for rel in deleted:
        if os.path.lexists(os.path.join(dest, rel)):
            os.unlink(os.path.join(dest, rel))
    if copied or deleted:
        print("note: the working tree is not committed; copied %d changed or new files and "
              "removed %d deleted ones in the clone" % (copied, len(deleted)))


def clone_processes(root):
    """PIDs of processes whose executable lies in the clone."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            exe = os.readlink("/proc/%s/exe" % pid)
        except OSError:
            continue
        if exe.startswith(root + os.sep):
            pids.append(int(pid))
    return pids


def data_dir():
    s = h.shared_dir()
    d = os.path.join(s, "data", "nsl_kdd") if s else None
    if d is None or not all(os.path.isfile(os.path.join(d, f))
                            for f in ("KDDTrain+.txt", "KDDTest+.txt")):
        raise h.Skip("shared/data/nsl_kdd not found (FS_SHARED_DIR=%s); the demo needs the "
                     "NSL-KDD files" % os.environ.get("FS_SHARED_DIR"))
    return d


def prerequisites():
    if h.sanitized():
        raise h.Skip("sanitizer build: the demo builds and runs its own Release binary; the "
                     "Release build's ctest runs this test")
    for tool in ("git", "cmake", "setsid"):
        if shutil.which(tool) is None:
            raise h.Skip("%s is not installed" % tool)
    src = h.source_dir()
    if not os.path.isdir(os.path.join(src, ".git")):
        raise h.Skip("%s is not a git checkout" % src)
    return src


def test_demo_on_a_fresh_clone():
    src = prerequisites()
    data = data_dir()
    with tempfile.TemporaryDirectory(prefix="fs_ops_demo_") as tmp:
        root = os.path.realpath(os.path.join(tmp, "flowscore"))
        clone(src, root)
        env = dict(os.environ)
        for k in ("FLOWSCORE_BIN", "FLOWSCORE_BUILD_DIR", "FLOWSCORE_DATA"):
            env.pop(k, None)

        # Without the data (no ../shared, no data/ in the clone): exit 3 and how to get it.
        r = subprocess.run([os.path.join(root, "scripts", "demo.sh"), "--no-deps", "--bin",
                            "/bin/false"], cwd=root, env=env, capture_output=True, text=True,
                           timeout=120)
        h.check(r.returncode == 3, "demo.sh without data exited %d:\n%s" % (r.returncode,
                                                                              r.stderr))
        h.check("scripts/fetch-data.sh" in r.stderr, "no hint at fetch-data.sh:\n" + r.stderr)

        # The README's command, with the data.
        env["FLOWSCORE_DATA"] = data
        args = [os.path.join(root, "scripts", "demo.sh")]
        if os.environ.get("FS_DEMO_EPOCHS"):
            args += ["--epochs", os.environ["FS_DEMO_EPOCHS"]]
        t0 = time.time()
        p = subprocess.run(args, cwd=root, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=840)
        took = time.time() - t0
        out = p.stdout
        report = out[out.find("records scored"):] if "records scored" in out else out[-4000:]
        print(report.rstrip())
        print("demo.sh took %.0f s" % took)
        h.check(p.returncode == 0, "demo.sh exited %d:\n%s" % (p.returncode, out[-6000:]))

        m = re.search(r"^AUROC\s+([0-9.]+)", out, re.M)
        h.check(m is not None, "no AUROC in the report")
        auroc = float(m.group(1))
        h.check(0.0 <= auroc <= 1.0, "AUROC %r is not in [0, 1]" % auroc)
        m = re.search(r"^AUPRC\s+([0-9.]+)", out, re.M)
        h.check(m is not None and 0.0 <= float(m.group(1)) <= 1.0, "no AUPRC in [0, 1]")
        h.check(re.search(r"records scored\s+22544 ", out) is not None,
                "not every KDDTest+ record was scored")
        h.check(re.search(r"^throughput\s+[0-9.]+ requests/s, [0-9.]+ rows/s", out, re.M),
                "no throughput line")
        top = re.findall(r"^\s+\d+:\s+[-0-9.]+\s+\S+", out[out.find("top 5"):], re.M)
        h.check(len(top) == 5, "expected 5 top records, got %d" % len(top))
        h.check(re.search(r"^daemon stopped\s+exit status 0$", out, re.M) is not None,
                "the report does not say the daemon exited 0")
        for what in ("model", "daemon log"):
            m = re.search(r"^%s\s+(\S+)$" % what, out, re.M)
            h.check(m is not None and os.path.isfile(m.group(1)), "no %s file in the report"
                    % what)
        log = re.search(r"^daemon log\s+(\S+)$", out, re.M).group(1)
        with open(log) as f:
            text = f.read()
        h.check("info serve: stopped" in text, "the daemon log does not end in 'stopped':\n"
                + text[-2000:])
        # The HTTP scores give the AUROC that `flowscore eval` computes from the same model.
        model = re.search(r"^model\s+(\S+)$", out, re.M).group(1)
        ev = h.json_strict(subprocess.run(
            [os.path.join(root, "build-demo", "server", "flowscore"), "eval", "--model", model,
             "--data", os.path.join(data, "KDDTest+.txt"), "--schema",
             os.path.join(root, "config", "schemas", "nsl-kdd.json"), "--label-col", "label",
             "--normal-value", "normal"], capture_output=True, text=True, timeout=300,
            check=True).stdout)
        print("flowscore eval on the same model: auroc %.4f auprc %.4f" % (ev["auroc"],
                                                                          ev["auprc"]))
        h.check(abs(ev["auroc"] - auroc) <= 1e-4 + 1e-9, "AUROC over HTTP %.4f, flowscore eval "
                "%.6f" % (auroc, ev["auroc"]))
        left = clone_processes(root)
        h.check(not left, "processes of the clone still running: %s" % left)


if __name__ == "__main__":
    h.main([test_demo_on_a_fresh_clone])
