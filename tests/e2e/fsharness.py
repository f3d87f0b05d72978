"""Shared helpers of flowscore's end-to-end tests (Python 3 standard library only).

Each test script is run by ctest with $FLOWSCORE_BIN naming the binary (or as
`python3 test_serve_x.py FLOWSCORE_BINARY`). It starts the real
daemon on 127.0.0.1 port 0, reads the port from the log line
`info http: listening address=127.0.0.1 port=N`, and talks HTTP to it. A missing prerequisite
makes the script print why and exit with SKIP (77), which ctest maps to "skipped".
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(os.path.dirname(HERE))
SHARED_DIR = os.environ.get("FS_SHARED_DIR", os.path.join(SOURCE_DIR, "..", "shared"))


def skip(why):
    print("SKIP: " + why)
    sys.exit(SKIP)


def binary():
    if len(sys.argv) > 1:
        path = sys.argv[1]
    else:
        path = os.environ.get("FLOWSCORE_BIN", "")
    if not path or not os.access(path, os.X_OK):
        skip("the flowscore binary is not given (argv[1] or $FLOWSCORE_BIN)")
    return path


def sanitized():
    """True when the binary was built with sanitizers (slower: tests scale down)."""
    return os.environ.get("FS_SANITIZE", "") != ""


class Check:
    """Collects failures so that one run reports all of them."""

    def __init__(self):
        self.failures = []
        self.count = 0

    def ok(self, cond, what):
        self.count += 1
        if not cond:
            self.failures.append(what)
            print("FAIL: " + what, flush=True)
        return cond

    def eq(self, got, want, what):
        return self.ok(got == want, "%s: got %r, want %r" % (what, got, want))

    def done(self):
        if self.failures:
            print("%d of %d checks failed" % (len(self.failures), self.count))
            sys.exit(1)
        print("all %d checks passed" % self.count)
        sys.exit(0)


def run(args, **kw):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def make_model(bin_path, out_fsm, dims=4, hidden=16, blocks=4, seed=1, scale=0.5):
    """A random ref-realnvp model imported with `flowscore import` (fields x0..x{D-1})."""
    os.makedirs(os.path.dirname(out_fsm), exist_ok=True)
    js = out_fsm + ".peer.json"
    r = run([sys.executable, os.path.join(HERE, "make_peer_model.py"), js, "--dims", str(dims),
             "--hidden", str(hidden), "--blocks", str(blocks), "--seed", str(seed),
             "--scale", str(scale)])
    if r.returncode != 0:
        raise RuntimeError("make_peer_model.py failed: " + r.stderr)
    tmp = out_fsm + ".tmp"
    r = run([bin_path, "import", "--peer-json", js, "--out", tmp])
    os.unlink(js)
    if r.returncode != 0:
        skip("flowscore import does not work yet: " + r.stderr.strip()[:300])
    os.rename(tmp, out_fsm)  # publish by rename, as the daemon's watcher expects
    return out_fsm


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body, parse_constant=_refuse_constant)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


def _refuse_constant(c):
    raise ValueError("non-finite JSON token " + c)


class Server:
    """The daemon as a child process, with its log collected from stderr."""

    def __init__(self, bin_path, models_dir, args=(), env=None, wait_ready=True, timeout=60):
        self.log = []
        self.term_sent = False
        self.lock = threading.Lock()
        self.port = None
        self._port_seen = threading.Event()
        full_env = dict(os.environ)
        full_env.setdefault("OPENBLAS_NUM_THREADS", "1")
        if env:
            full_env.update(env)
        cmd = [bin_path, "serve", "--models-dir", models_dir, "--listen", "127.0.0.1:0"]
        cmd += list(args)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=full_env)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if not self._port_seen.wait(timeout):
            self.kill()
            raise RuntimeError("the daemon did not log its port:\n" + self.log_text())
        if wait_ready:
            self.wait_ready(timeout)

    def _read(self):
        pat = re.compile(r'info http: listening address=\S+ port=(\d+)|'
                         r'"component":"http","msg":"listening".*"port":"(\d+)"')
        for line in self.proc.stderr:
            with self.lock:
                self.log.append(line.rstrip("\n"))
            m = pat.search(line)
            if m and self.port is None:
                self.port = int(m.group(1) or m.group(2))
                self._port_seen.set()
        self._port_seen.set()

    def log_text(self):
        with self.lock:
            return "\n".join(self.log)

    def wait_log(self, pattern, timeout=30, start=0):
        """Wait for a log line matching pattern (after line index start); returns it."""
        deadline = time.time() + timeout
        rx = re.compile(pattern)
        while time.time() < deadline:
            with self.lock:
                for line in self.log[start:]:
                    if rx.search(line):
                        return line
            time.sleep(0.02)
        return None

    def log_len(self):
        with self.lock:
            return len(self.log)

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the daemon exited:\n" + self.log_text())
            try:
                if self.request("GET", "/readyz").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the daemon never became ready:\n" + self.log_text())

    def conn(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    # Headers sent with every request (e.g. an Authorization for a test that ingests under a
    # token); a request's own headers override them.
    default_headers = None

    def request(self, method, path, body=None, headers=None, conn=None, timeout=60):
        own = conn is None
        c = conn or self.conn(timeout)
        try:
            h = {"Content-Type": "application/json"}
            if self.default_headers:
                h.update(self.default_headers)
            if headers:
                h.update(headers)
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            if isinstance(body, str):
                body = body.encode()
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return Response(r.status, r.getheaders(), data.decode("utf-8", "replace"))
        finally:
            if own:
                c.close()

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def metrics(self):
        """Samples of /metrics as {(name, frozenset(labels)): value}."""
        text = self.get("/metrics").body
        out = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
            if not m:
                raise ValueError("bad metrics line: " + line)
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
            out[(m.group(1), labels)] = float(m.group(4))
        return out

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def hwm_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def signal(self, sig):
        if sig == signal.SIGTERM:
            self.term_sent = True
        self.proc.send_signal(sig)

    def stop(self, timeout=60):
        """SIGTERM, wait; returns the exit status (and fails loudly on sanitizer reports)."""
        if self.proc.poll() is None and not self.term_sent:
            self.term_sent = True
            self.proc.send_signal(signal.SIGTERM)  # once: a second one forces the exit
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            print("daemon did not stop in %ds:\n%s" % (timeout, self.log_text()))
        self.reader.join(5)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def sanitizer_report(self):
        text = self.log_text()
        for marker in ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                       "ThreadSanitizer", "runtime error:"):
            if marker in text:
                return text
        return None


def check_clean_exit(check, srv, what="daemon"):
    rc = srv.stop()
    check.eq(rc, 0, what + " exit status")
    rep = srv.sanitizer_report()
    check.ok(rep is None, what + " sanitizer report:\n%s" % (rep or "")[-4000:])


def raw_http(port, data, read_timeout=10.0, shutdown_write=False):
    """Send raw bytes, return what comes back until the peer closes or the timeout."""
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    try:
        s.sendall(data)
        if shutdown_write:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def post_chunked(port, path, piece, max_sent, timeout=30.0):
    """POST a chunked JSON body, one chunk of `piece` after another, until the daemon answers,
    max_sent bytes are sent, the peer closes, or the timeout; then read the answer's JSON.
    Returns (answer bytes, bytes sent)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               "Transfer-Encoding: chunked\r\n\r\n" % path).encode())
    frame = b"%x\r\n" % len(piece) + piece + b"\r\n"
    sent, resp, closed = 0, b"", False
    s.setblocking(False)
    deadline = time.time() + timeout
    while not resp and not closed and sent < max_sent and time.time() < deadline:
        view = memoryview(frame)
        while len(view) > 0 and not resp and not closed:
            try:
                n = s.send(view)
                view = view[n:]
                sent += n
            except (BlockingIOError, InterruptedError):
                time.sleep(0.001)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            try:
                resp += s.recv(65536)
            except (BlockingIOError, InterruptedError):
                pass
            except ConnectionResetError:
                closed = True
    s.setblocking(True)
    s.settimeout(5)
    try:
        while b"}" not in resp:
            chunk = s.recv(65536)
            if not chunk:
                break
            resp += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    return resp, sent


def tempdir(prefix="fs-e2e-"):
    return tempfile.TemporaryDirectory(prefix=prefix)
