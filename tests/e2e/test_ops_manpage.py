#!/usr/bin/env python3
"""The man page docs/flowscore.1 matches the built binary (issue 6): every command that
`flowscore --help` lists has its section, every option that `flowscore <command> --help` prints
is described, every key of config/flowscore.json is named with the default `serve --help` gives,
config/flowscore.json holds exactly the built-in defaults (it is installed as
/etc/flowscore/flowscore.json), the signals, the environment and the exit status are there, and
groff renders it without warnings.
"""
# labels: e2e
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_helpers as h  # noqa: E402


def page_source():
    with open(os.path.join(h.source_dir(), "docs", "flowscore.1")) as f:
        return f.read()


def page_text():
    """The page's words with roff escapes undone (\\- is -, font changes dropped)."""
    text = page_source().replace("\\-", "-").replace("\\e", "\\")
    text = re.sub(r"\\f[BIRP]", "", text)
    text = re.sub(r"\\\(\w\w", " ", text)
    return text


def commands():
    out = h.run_ok(["--help"]).stdout
    names = re.findall(r"^  ([a-z]+)\s{2,}", out, re.M)
    h.check(len(names) >= 5, "no command list in flowscore --help:\n" + out)
    return names


def help_options(cmd):
    p = h.run([cmd, "--help"])
    h.check(p.returncode == 0, "flowscore %s --help exited %d" % (cmd, p.returncode))
    text = p.stdout + p.stderr
    return sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-z])\b", text)))


def test_every_command_has_a_section():
    text = page_text()
    for cmd in commands():
        h.check(re.search(r"^\.SS flowscore %s$" % cmd, text, re.M) is not None,
                "no '.SS flowscore %s' section in docs/flowscore.1" % cmd)
        h.check(re.search(r"^\.B flowscore %s$" % cmd, text, re.M) is not None,
                "flowscore %s is missing from the SYNOPSIS" % cmd)


def test_every_option_is_described():
    text = page_text()
    missing = []
    for cmd in commands():
        # The options of each command must appear in that command's section.
        m = re.search(r"^\.SS flowscore %s$(.*?)(?=^\.S[SH] )" % cmd, text, re.M | re.S)
        section = m.group(1) if m else ""
        for opt in help_options(cmd):
            if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(opt), section):
                missing.append("flowscore %s %s" % (cmd, opt))
    h.check(not missing, "options of --help missing from the man page:\n  " +
            "\n  ".join(missing))


def test_every_config_key_is_named():
    with open(os.path.join(h.source_dir(), "config", "flowscore.json")) as f:
        keys = list(json.load(f))
    text = page_text()
    m = re.search(r"^\.SH CONFIGURATION FILE$(.*?)(?=^\.SH )", text, re.M | re.S)
    h.check(m is not None, "no CONFIGURATION FILE section")
    missing = [k for k in keys if k not in m.group(1)]
    h.check(not missing, "configuration keys missing from CONFIGURATION FILE: %s" % missing)
    # and each option line of `serve --help` names its key and default as the page does
    out = h.run_ok(["serve", "--help"]).stdout
    for key, default in re.findall(r"\[([\w.]+), default (\S+?)\]", out):
        h.check("[%s, %s]" % (key, default) in text,
                "the page does not give [%s, %s] as serve --help does" % (key, default))


def test_config_file_is_the_defaults():
    """config/flowscore.json (installed as /etc/flowscore/flowscore.json) holds the defaults."""
    conf = os.path.join(h.source_dir(), "config", "flowscore.json")
    defaults = h.json_strict(h.run_ok(["serve", "--check-config"]).stdout)
    from_file = h.json_strict(h.run_ok(["serve", "--config", conf, "--check-config"]).stdout)
    diff = {k: (defaults.get(k), from_file.get(k)) for k in set(defaults) | set(from_file)
            if defaults.get(k) != from_file.get(k)}
    h.check(not diff, "config/flowscore.json differs from the built-in defaults "
            "(key: (default, file)): %s" % diff)


def test_required_sections():
    text = page_text()
    for sec in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "HTTP API",
                "CONFIGURATION FILE", "SIGNALS", "ENVIRONMENT", "FILES", "EXIT STATUS",
                "SEE ALSO"):
        h.check(re.search(r"^\.SH %s$" % sec, text, re.M) is not None, "no .SH " + sec)
    for word in ("SIGHUP", "SIGTERM", "FLOWSCORE_ADMIN_TOKEN", "NOTIFY_SOCKET",
                 "OPENBLAS_NUM_THREADS", "/etc/flowscore/flowscore.json",
                 "/var/lib/flowscore/models"):
        h.check(word in text, word + " is not mentioned")
    ver = h.run_ok(["--version"]).stdout.split()[-1]
    h.check(re.search(r'^\.TH FLOWSCORE 1 .*"flowscore %s"' % re.escape(ver), text, re.M),
            "the .TH line does not name flowscore %s" % ver)


def test_groff_renders_cleanly():
    if shutil.which("groff") is None:
        raise h.Skip("groff is not installed")
    path = os.path.join(h.source_dir(), "docs", "flowscore.1")
    p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", path], capture_output=True,
                       text=True, timeout=60)
    h.check(p.returncode == 0 and not p.stderr.strip(), "groff warnings:\n" + p.stderr)


if __name__ == "__main__":
    h.main([test_every_command_has_a_section, test_every_option_is_described,
            test_every_config_key_is_named, test_config_file_is_the_defaults,
            test_required_sections, test_groff_renders_cleanly])
