#!/usr/bin/env python3
"""Start-up of a daemon with the trainer on: what it says, and what it refuses (a user's report).

- The trainer's start-up line says what it counts: with two models loaded and no "models"
  entries it read "models=0"; it now says that every served model is trained and how many
  "models" entries, stream-trained models, disabled models and spools there are.
- A models_dir that does not exist: the daemon exits 2 at once, naming models_dir (it used to
  report ready with /readyz 200 while every scan failed); `--check-config` warns and passes
  (under systemd, StateDirectory= creates the directory when the unit starts). An empty
  models_dir is fine: ready with 0 models.
- TLS files that cannot be read: `--check-config` exits 2 naming the key (it used to say
  "configuration ok"), and so does the daemon, before it loads anything.
"""
# labels: e2e
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsharness as fh  # noqa: E402
import trainer_helpers as th  # noqa: E402


def run(args, timeout=30):
    """`flowscore serve ...` that must exit by itself; rc None when it had to be killed."""
    try:
        r = fh.run(args, timeout=timeout)
        return r.returncode, r.stderr
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        return None, err


def log_line(c, binp, tmp):
    models = os.path.join(tmp, "models")
    fh.make_model(binp, os.path.join(models, "a", "1.fsm"), dims=3, seed=1)
    fh.make_model(binp, os.path.join(models, "b", "1.fsm"), dims=3, seed=2)
    srv = th.server(binp, models, os.path.join(tmp, "state"))
    try:
        line = srv.wait_log(r"info trainer: background trainer on ", 10)
        print("LOG: %s" % line, flush=True)
        c.ok(line is not None and "trains=every-served-model" in line and
             "configured_models=0" in line and " models=" not in line,
             "the trainer's start-up line says what it counts: %s" % line)
        ready = srv.wait_log(r"info serve: ready models=2 loaded=2", 10)
        c.ok(ready is not None, "two models loaded")
    finally:
        fh.check_clean_exit(c, srv, "log-line daemon")
    config = {"models": {"b": {"trainer": {"enabled": False}}}}
    srv = th.server(binp, models, os.path.join(tmp, "state"), config=config, tmp=tmp)
    try:
        line = srv.wait_log(r"info trainer: background trainer on ", 10)
        c.ok(line is not None and "configured_models=1" in line and "disabled_models=1" in line,
             "a disabled model is counted as such: %s" % line)
    finally:
        fh.check_clean_exit(c, srv, "log-line daemon with a disabled model")


def models_dir(c, binp, tmp):
    missing = os.path.join(tmp, "no-such-dir")
    state = os.path.join(tmp, "state-md")
    rc, err = run([binp, "serve", "--models-dir", missing, "--state-dir", state, "--listen",
                   "127.0.0.1:0"])
    c.ok(rc == 2 and ("models_dir: cannot open the directory " + missing) in err,
         "a missing models_dir stops the daemon at start-up (rc %r): %s" % (rc, err.strip()[-300:]))
    rc, err = run([binp, "serve", "--models-dir", missing, "--check-config"])
    c.ok(rc == 0 and "warning: models_dir" in err and "configuration ok" in err,
         "--check-config warns about a missing models_dir (rc %r): %s" % (rc, err.strip()))
    not_dir = os.path.join(tmp, "file")
    with open(not_dir, "w") as f:
        f.write("x")
    rc, err = run([binp, "serve", "--models-dir", not_dir, "--state-dir", state, "--listen",
                   "127.0.0.1:0"])
    c.ok(rc == 2 and "models_dir" in err, "a file as models_dir (rc %r): %s" % (rc, err.strip()))
    empty = os.path.join(tmp, "empty-models")
    os.makedirs(empty)
    srv = th.server(binp, empty, state)
    try:
        c.eq(srv.get("/readyz").status, 200, "an empty models_dir: ready")
        c.eq(srv.get("/v1/models").json()["models"], [], "an empty models_dir: no models")
    finally:
        fh.check_clean_exit(c, srv, "empty-models daemon")


def tls(c, binp, tmp):
    models = os.path.join(tmp, "models")
    bad = ["--tls-cert-file", "/nonexistent.pem", "--tls-key-file", "/nonexistent.key"]
    rc, err = run([binp, "serve", "--models-dir", models, "--check-config"] + bad)
    c.ok(rc == 2 and "tls_cert_file: cannot open /nonexistent.pem" in err,
         "--check-config refuses unreadable TLS files (rc %r): %s" % (rc, err.strip()[-300:]))
    rc, err = run([binp, "serve", "--models-dir", models, "--state-dir",
                   os.path.join(tmp, "state-tls"), "--listen", "127.0.0.1:0"] + bad)
    c.ok(rc == 2 and "tls_cert_file: cannot open /nonexistent.pem" in err and
         "started" not in err,
         "the daemon refuses them before it starts (rc %r): %s" % (rc, err.strip()[-300:]))
    empty = os.path.join(tmp, "empty.key")
    open(empty, "w").close()
    cert = os.path.join(tmp, "cert.pem")
    with open(cert, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\n")
    rc, err = run([binp, "serve", "--models-dir", models, "--check-config", "--tls-cert-file",
                   cert, "--tls-key-file", empty])
    c.ok(rc == 2 and "tls_key_file: %s is empty" % empty in err,
         "an empty key file (rc %r): %s" % (rc, err.strip()[-300:]))


def main():
    binp = fh.binary()
    c = fh.Check()
    with fh.tempdir() as tmp:
        log_line(c, binp, tmp)
        models_dir(c, binp, tmp)
        tls(c, binp, tmp)
    c.done()


if __name__ == "__main__":
    main()
