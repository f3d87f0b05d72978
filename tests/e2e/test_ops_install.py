#!/usr/bin/env python3
"""`cmake --install` into a temporary prefix (issue 6): the binary, the unit, the reload helper,
the configuration, the schemas and the man page land in their standard places; the installed
binary serves GET /healthz (127.0.0.1 port 0, a temporary models directory) and answers the
installed reload helper; the installed configuration is valid and points at the unit's state
directory; the installed unit names the installed paths and passes `systemd-analyze verify`
(with its man page found through MANPATH); a second install keeps an edited configuration.
"""
# labels: e2e
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsharness as fh  # noqa: E402


def cache_value(build_dir, key):
    try:
        with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
            for line in f:
                m = re.match(r"^%s:[A-Z]+=(.*)$" % re.escape(key), line.rstrip("\n"))
                if m:
                    return m.group(1)
    except OSError:
        pass
    return None


def install(build_dir, prefix):
    return fh.run(["cmake", "--install", build_dir, "--prefix", prefix], timeout=300)


def main():
    binp = fh.binary()
    build_dir = os.environ.get("FS_BUILD_DIR", "")
    if not build_dir or not os.path.isfile(os.path.join(build_dir, "cmake_install.cmake")):
        fh.skip("FS_BUILD_DIR is not a configured CMake build directory (%r)" % build_dir)
    if shutil.which("cmake") is None:
        fh.skip("cmake is not installed")
    sysconf = cache_value(build_dir, "CMAKE_INSTALL_SYSCONFDIR") or "etc"
    if os.path.isabs(sysconf):
        fh.skip("the build directory installs its configuration to the absolute %s, outside "
                "any temporary prefix" % sysconf)
    c = fh.Check()
    with tempfile.TemporaryDirectory(prefix="fs_ops_install_") as tmp:
        prefix = os.path.join(tmp, "prefix")
        r = install(build_dir, prefix)
        print(r.stdout[-3000:])
        if not c.ok(r.returncode == 0, "cmake --install failed:\n" + r.stderr[-3000:]):
            c.done()

        def p(*parts):
            return os.path.join(prefix, *parts)

        installed_bin = p("bin", "flowscore")
        helper = p("libexec", "flowscore", "flowscore-reload")
        unit = p("lib", "systemd", "system", "flowscore.service")
        conf = p(sysconf, "flowscore", "flowscore.json")
        man = p("share", "man", "man1", "flowscore.1")
        schema = p("share", "flowscore", "schemas", "nsl-kdd.json")
        for path in (installed_bin, helper, unit, conf, man, schema):
            c.ok(os.path.isfile(path), "not installed: " + os.path.relpath(path, prefix))
        c.ok(os.access(installed_bin, os.X_OK), "the installed binary is not executable")
        c.ok(os.access(helper, os.X_OK), "the installed reload helper is not executable")

        # The unit names the installed binary, helper and configuration.
        with open(unit) as f:
            unit_text = f.read()
        c.ok("ExecStart=%s serve --config %s" % (installed_bin, conf) in unit_text,
             "ExecStart does not name the installed paths:\n" +
             "\n".join(ln for ln in unit_text.splitlines() if ln.startswith("Exec")))
        c.ok("ExecReload=%s --config %s" % (helper, conf) in unit_text,
             "ExecReload does not name the installed helper")

        # The configuration is valid for the installed binary and uses the state directory.
        r = fh.run([installed_bin, "serve", "--config", conf, "--check-config"])
        c.eq(r.returncode, 0, "installed configuration check (%s)" % r.stderr.strip())
        c.ok('"models_dir":\t"/var/lib/flowscore/models"' in r.stdout,
             "models_dir of the installed configuration:\n" + r.stdout)

        # The installed binary serves /healthz, and the installed helper reloads its models.
        models = os.path.join(tmp, "models")
        fh.make_model(binp, os.path.join(models, "m", "1.fsm"), dims=4, seed=3)
        srv = fh.Server(installed_bin, models, args=("--state-dir", os.path.join(tmp, "state")))
        try:
            resp = srv.get("/healthz")
            c.eq(resp.status, 200, "GET /healthz of the installed binary")
            r = fh.run([helper, "--url", "http://127.0.0.1:%d" % srv.port], timeout=120)
            c.eq(r.returncode, 0, "installed flowscore-reload (%s%s)" % (r.stdout, r.stderr))
            c.ok("m reloaded, serving version 1" in r.stdout, "helper output: " + r.stdout)
        finally:
            fh.check_clean_exit(c, srv, "installed daemon")

        # The man page renders (flowscore(1) is found through MANPATH), without groff warnings.
        if shutil.which("man"):
            env = dict(os.environ, MANPATH=p("share", "man"), MANWIDTH="80")
            r = subprocess.run(["man", "-P", "cat", "flowscore"], capture_output=True,
                               text=True, env=env, timeout=60)
            c.ok(r.returncode == 0 and "flowscore serve" in r.stdout,
                 "man flowscore with MANPATH=<prefix>/share/man: %s" % r.stderr[-500:])
        if shutil.which("groff"):
            r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", man],
                               capture_output=True, text=True, timeout=60)
            c.ok(r.returncode == 0 and r.stderr.strip() == "", "groff warnings:\n" + r.stderr)

        # The installed unit passes systemd-analyze verify, man page included.
        sa = shutil.which("systemd-analyze")
        if sa is None:
            print("SKIP part: systemd-analyze is not installed; the unit was not verified")
        else:
            env = dict(os.environ, MANPATH=p("share", "man"))
            r = subprocess.run([sa, "verify", unit], capture_output=True, text=True, env=env,
                               timeout=120)
            out = (r.stdout + r.stderr).strip()
            c.ok(r.returncode == 0 and "flowscore.service" not in out,
                 "systemd-analyze verify of the installed unit:\n" + out)

        # A second install keeps an edited configuration and puts the new one next to it.
        with open(conf) as f:
            original = f.read()
        edited = original.replace('"log_level": "info"', '"log_level": "debug"')
        c.ok(edited != original, "log_level not found in the installed configuration")
        with open(conf, "w") as f:
            f.write(edited)
        r = install(build_dir, prefix)
        c.eq(r.returncode, 0, "second cmake --install (%s)" % r.stderr[-1000:])
        with open(conf) as f:
            c.eq(f.read(), edited, "the edited configuration after a second install")
        c.ok(os.path.isfile(conf + ".new"), "no flowscore.json.new after a second install")
    c.done()


if __name__ == "__main__":
    main()
