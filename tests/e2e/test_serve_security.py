#!/usr/bin/env python3
"""The daemon's attack surface (issue 7 §5, docs/security.md): model names and paths never
escape the models directory (traversal, URL-encoded traversal, NUL, overlong names); admin
endpoints need the token when one is configured, and the token never appears in logs, metadata
or printed configuration; the default bind is loopback; the daemon runs without privileges;
TLS refuses plaintext and a mismatched key; slow clients (trickled headers or bodies) lose
their connection slot after connection_timeout_s, so they cannot starve others."""
# labels: e2e
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import stat
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsharness as fh  # noqa: E402

TOKEN = "tok-9f3Qz7-admin-SECRET"


def raw_status(port, request, timeout=5):
    """Send raw request bytes; the status code of the answer, or 0 if the connection closed."""
    data = fh.raw_http(port, request, read_timeout=timeout)
    if not data.startswith(b"HTTP/1."):
        return 0, data
    return int(data.split(b" ", 2)[1]), data


def names_checks(c, binp, tmp):
    models = os.path.join(tmp, "models")
    fh.make_model(binp, os.path.join(models, "m", "1.fsm"), dims=2, seed=1)
    # A valid model just outside the repository, and a secret-looking file: no name may
    # reach either.
    fh.make_model(binp, os.path.join(tmp, "outside", "1.fsm"), dims=2, seed=2)
    with open(os.path.join(tmp, "secret.txt"), "w") as f:
        f.write("not for clients\n")
    long64 = "n" * 64
    fh.make_model(binp, os.path.join(models, long64, "1.fsm"), dims=2, seed=3)
    fh.make_model(binp, os.path.join(models, "n" * 65, "1.fsm"), dims=2, seed=4)
    fh.make_model(binp, os.path.join(models, "...", "1.fsm"), dims=2, seed=5)
    srv = fh.Server(binp, models, ["--workers", "1"])
    try:
        names = sorted(m["name"] for m in srv.get("/v1/models").json()["models"])
        c.eq(names, sorted(["m", long64]), "only valid names are served (64 bytes yes, 65 no, "
             "'...' no)")
        body = json.dumps({"records": [[0.1, 0.2]]}).encode()
        c.eq(srv.post("/v1/models/%s/score" % long64, body).status, 200, "a 64-byte name")
        bad_names = ["..%2Foutside", "%2e%2e%2foutside", "%2E%2E", "%2e%2e", ".", "..",
                     "%2e", "..%2F..%2Fsecret.txt", "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                     "%252e%252e%252foutside", "..%5Coutside", "..\\outside", "n" * 65,
                     "n" * 300, "m%2F..%2F..%2Foutside", "%2Fetc%2Fpasswd", "m%20", "m%0a",
                     "%C3%A9", "outside", "~", "m;", "m%3F"]
        seen = set()
        for name in bad_names:
            for method, path in (("GET", "/v1/models/%s" % name),
                                 ("POST", "/v1/models/%s/score" % name),
                                 ("POST", "/v1/models/%s/reload" % name),
                                 ("GET", "/v2/models/%s" % name),
                                 ("GET", "/v2/models/%s/ready" % name),
                                 ("POST", "/v2/models/%s/infer" % name)):
                req = ("%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: %d\r\nConnection: close\r\n\r\n" % (
                           method, path, len(body) if method == "POST" else 0)).encode()
                st, data = raw_status(srv.port, req + (body if method == "POST" else b""))
                seen.add(st)
                c.ok(st in (400, 404), "%s %s: 404 (got %d %r)" % (method, path, st, data[-120:]))
                c.ok(b"not for clients" not in data and b"root:" not in data,
                     "%s %s: nothing of the outside leaks" % (method, path))
        # Dot segments written plainly (clients usually normalise them; raw ones must not
        # route anywhere either).
        for path in ("/v1/models/../outside/score", "/v1/models/m/../../outside/score",
                     "/v1/models/./m/score", "/v1/models//score", "/../v1/models/m/score"):
            st, data = raw_status(srv.port, ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: "
                                             "%d\r\nConnection: close\r\n\r\n" % (
                                                 path, len(body))).encode() + body)
            c.ok(st in (400, 404), "POST %s: 404 (got %d)" % (path, st))
        # A NUL byte in the URL cuts the path short in libmicrohttpd's unescaping; whatever
        # it routes to, it is never another model and never a file.
        st, data = raw_status(srv.port, b"GET /v1/models/m%00..%2F..%2Foutside HTTP/1.1\r\n"
                              b"Host: x\r\nConnection: close\r\n\r\n")
        c.ok(st in (200, 400, 404) and b"outside" not in data.split(b"\r\n\r\n", 1)[-1].replace(
            b'"m"', b""), "NUL in the URL: %d %r" % (st, data[-160:]))
        # A URL longer than the router's buffer.
        st, _ = raw_status(srv.port, ("GET /v1/models/%s HTTP/1.1\r\nHost: x\r\nConnection: "
                                      "close\r\n\r\n" % ("m/" * 400)).encode())
        c.ok(st in (400, 404, 414), "a 800-byte URL: %d" % st)
        c.eq(srv.get("/healthz").status, 200, "served after the traversal attempts")
    finally:
        fh.check_clean_exit(c, srv, "names daemon")


def token_checks(c, binp, tmp):
    models = os.path.join(tmp, "tmodels")
    fh.make_model(binp, os.path.join(models, "m", "1.fsm"), dims=2, seed=1)
    tok_file = os.path.join(tmp, "admin.token")
    with open(tok_file, "w") as f:
        f.write(TOKEN + "\n")
    os.chmod(tok_file, 0o600)
    srv = fh.Server(binp, models, ["--workers", "1", "--log-level", "debug",
                                   "--admin-token-file", tok_file])
    outputs = []
    try:
        for hdr, want in ((None, 401), ("Bearer", 401), ("Bearer ", 401), ("Basic " + TOKEN, 401),
                          ("bearer " + TOKEN, 200), ("BEARER wrong", 403), ("Bearer wrong", 403),
                          ("Bearer " + TOKEN[:-1], 403), ("Bearer " + TOKEN + "x", 403),
                          ("Bearer  " + TOKEN, 403), ("Bearer " + TOKEN.upper(), 403),
                          ("Bearer " + TOKEN, 200)):
            r = srv.post("/v1/models/m/reload", "", headers={"Authorization": hdr} if hdr else {})
            outputs.append(r.body)
            c.eq(r.status, want, "reload with Authorization %r" % (hdr and hdr.replace(
                TOKEN, "<token>")))
            if want == 401:
                c.ok((r.header("WWW-Authenticate") or "").startswith("Bearer"),
                     "401 carries WWW-Authenticate")
        c.eq(srv.post("/v1/models/m/score", {"records": [[0, 0]]}).status, 200,
             "scoring needs no token")
        # Every document a client can GET, for the check below that none holds the token.
        for path in ("/metrics", "/v1/models", "/v1/models/m", "/v2", "/v2/models/m",
                     "/v2/models/m/ready", "/readyz", "/healthz"):
            outputs.append(srv.get(path).body)
        srv.signal(signal.SIGHUP)  # a local signal needs no token
        c.ok(srv.wait_log("reload finished") is not None, "SIGHUP reloads without a token")
    finally:
        fh.check_clean_exit(c, srv, "token daemon")
    text = srv.log_text()
    c.ok(TOKEN not in text, "the token never appears in the debug log")
    c.ok(all(TOKEN not in o for o in outputs), "the token never appears in any answer")
    r = fh.run([binp, "serve", "--check-config", "--models-dir", models, "--admin-token-file",
                tok_file])
    c.ok(r.returncode == 0 and TOKEN not in r.stdout + r.stderr and "admin token set" in
         r.stderr, "--check-config says a token is set without printing it")
    env = dict(os.environ, FLOWSCORE_ADMIN_TOKEN=TOKEN)
    r = fh.run([binp, "serve", "--check-config", "--models-dir", models], env=env)
    c.ok(r.returncode == 0 and TOKEN not in r.stdout + r.stderr,
         "a token from the environment is not printed either")
    bad = os.path.join(tmp, "bad.token")
    with open(bad, "w") as f:
        f.write("has space\n")
    r = fh.run([binp, "serve", "--check-config", "--models-dir", models, "--admin-token-file",
                bad])
    c.ok(r.returncode == 2 and "has space" not in r.stderr, "a bad token is refused without "
         "being echoed: %s" % r.stderr.strip())


def default_bind_checks(c, binp):
    r = fh.run([binp, "serve", "--check-config"])
    c.ok(r.returncode == 0 and json.loads(r.stdout)["listen"] == "127.0.0.1:8080",
         "the built-in default listens on loopback only: %s" % r.stdout[:80])
    with open(os.path.join(fh.SOURCE_DIR, "config", "flowscore.json")) as f:
        c.eq(json.load(f)["listen"], "127.0.0.1:8080", "config/flowscore.json listens on loopback")
    r = fh.run([binp, "serve", "--help"])
    c.ok("127.0.0.1:8080" in r.stdout, "--help shows the loopback default")


def unprivileged_checks(c, binp, tmp):
    """As root, run the daemon as nobody with no capabilities and no_new_privs; either way,
    the daemon has no effective capability."""
    setpriv = shutil.which("setpriv")
    models = os.path.join(tmp, "pmodels")
    fh.make_model(binp, os.path.join(models, "m", "1.fsm"), dims=2, seed=1)
    prog = binp
    if os.geteuid() == 0 and setpriv is not None:
        for d in (tmp, models, os.path.join(models, "m")):
            os.chmod(d, 0o755)
        os.chmod(os.path.join(models, "m", "1.fsm"), 0o644)
        prog = os.path.join(tmp, "as-nobody.sh")
        with open(prog, "w") as f:
            f.write("#!/bin/sh\nexec %s --reuid=65534 --regid=65534 --clear-groups "
                    "--inh-caps=-all --bounding-set=-all --no-new-privs %s \"$@\"\n" % (
                        setpriv, binp))
        os.chmod(prog, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH |
                 stat.S_IXOTH)
        # the binary and its build tree must be reachable for nobody
        p = os.path.dirname(os.path.abspath(binp))
        ok = True
        while p != "/":
            ok = ok and os.stat(p).st_mode & stat.S_IXOTH
            p = os.path.dirname(p)
        if not ok:
            print("note: the binary's directories are not searchable by nobody; running as "
                  "the current user")
            prog = binp
    srv = fh.Server(prog, models, ["--workers", "1"])
    try:
        st = {}
        with open("/proc/%d/status" % srv.proc.pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                st[k] = v.strip()
        c.eq(st.get("CapEff"), "0000000000000000", "no effective capability")
        if prog != binp:
            c.eq(st.get("Uid", "").split()[0], "65534", "runs as nobody")
            c.eq(st.get("NoNewPrivs"), "1", "no_new_privs")
            c.eq(st.get("CapBnd"), "0000000000000000", "empty bounding set")
        c.eq(srv.post("/v1/models/m/score", {"records": [[0, 0]]}).status, 200,
             "scores unprivileged")
        c.eq(srv.post("/v1/models/m/reload", "").status, 200, "reloads unprivileged")
    finally:
        fh.check_clean_exit(c, srv, "unprivileged daemon")


def tls_checks(c, binp, tmp):
    openssl = shutil.which("openssl")
    if openssl is None:
        print("note: openssl not found; TLS checks skipped")
        return
    models = os.path.join(tmp, "smodels")
    fh.make_model(binp, os.path.join(models, "m", "1.fsm"), dims=2, seed=1)
    keys = {}
    for n in ("a", "b"):
        key, cert = os.path.join(tmp, n + ".key"), os.path.join(tmp, n + ".crt")
        r = fh.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost"])
        if r.returncode != 0:
            print("note: openssl could not make a certificate; TLS checks skipped")
            return
        keys[n] = (key, cert)
    with open(keys["a"][0]) as f:
        key_text = f.read()
    srv = fh.Server(binp, models, ["--workers", "1", "--tls-cert-file", keys["a"][1],
                                   "--tls-key-file", keys["a"][0]], wait_ready=False)
    try:
        ctx = ssl.create_default_context(cafile=keys["a"][1])
        ctx.check_hostname = False
        status = None
        for _ in range(100):
            try:
                conn = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx,
                                                   timeout=10)
                conn.request("GET", "/readyz")
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        c.eq(status, 200, "HTTPS with the self-signed certificate verified")
        st, data = raw_status(srv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
        c.ok(st == 0 and b"status" not in data, "plain HTTP on the TLS port gets no answer "
             "(%r)" % data[:40])
        conn = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx, timeout=10)
        conn.request("GET", "/healthz")
        c.eq(conn.getresponse().status, 200, "HTTPS after a plaintext attempt")
        conn.close()
    finally:
        fh.check_clean_exit(c, srv, "TLS daemon")
    c.ok("PRIVATE KEY" not in srv.log_text() and key_text[40:80] not in srv.log_text(),
         "the key never appears in the log")
    # A key that does not match the certificate: refused at start, never served.
    r = fh.run([binp, "serve", "--models-dir", models, "--listen", "127.0.0.1:0",
                "--tls-cert-file", keys["a"][1], "--tls-key-file", keys["b"][0]], timeout=60)
    c.ok(r.returncode != 0 and "PRIVATE KEY" not in r.stderr,
         "a mismatched key is refused at start (%d: %s)" % (r.returncode, r.stderr.strip()[-200:]))
    r = fh.run([binp, "serve", "--check-config", "--tls-cert-file", keys["a"][1]])
    c.ok(r.returncode == 2 and "together" in r.stderr, "a certificate without a key is refused")


def trickle(port, data, step, limit):
    """Send data a byte every step seconds on a new connection: see trickle_on."""
    return trickle_on(socket.create_connection(("127.0.0.1", port)), data, step, limit)


def slow_client_checks(c, binp, tmp):
    models = os.path.join(tmp, "lmodels")
    fh.make_model(binp, os.path.join(models, "m", "1.fsm"), dims=2, seed=1)
    srv = fh.Server(binp, models, ["--workers", "1", "--connection-timeout-s", "2",
                                   "--connection-limit", "4", "--per-ip-connection-limit", "4"])
    try:
        hdr = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200
        t = trickle(srv.port, hdr, 0.4, 15)
        c.ok(t is not None and 1.5 < t < 5.5, "trickled headers are cut off after the 2 s "
             "timeout (%s s)" % t)
        body = (b"POST /v1/models/m/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/"
                b"json\r\nContent-Length: 400\r\n\r\n")
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall(body)
        t = trickle_on(s, b" " * 400, 0.2, 15)
        c.ok(t is not None and 1.5 < t < 5.5, "a trickled body is cut off (%s s)" % t)
        # Four trickling clients hold every slot; within the timeout (plus the 1 s tick) the
        # slots are free again and an ordinary client is served.
        ths = [threading.Thread(target=trickle, args=(srv.port, hdr, 0.4, 15))
               for _ in range(4)]
        for th in ths:
            th.start()
        time.sleep(0.5)
        t0 = time.time()
        status = None
        while time.time() - t0 < 10 and status != 200:
            try:
                status = srv.get("/healthz", timeout=2).status
            except OSError:
                time.sleep(0.2)
        waited = time.time() - t0
        c.ok(status == 200 and waited < 6.0, "an ordinary client is served while slow clients "
             "trickle (after %.1fs)" % waited)
        for th in ths:
            th.join()
        # Keep-alive within the timeout is untouched; a slow but steady upload is served.
        conn = srv.conn()
        for i in range(3):
            r = srv.get("/healthz", conn=conn)
            c.eq(r.status, 200, "keep-alive request %d" % i)
            time.sleep(1.2)
        conn.close()
        rec = b"[0.1,0.2]"
        doc = b'{"records":[' + b",".join([rec] * 1200) + b"]}"
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
        s.sendall(b"POST /v1/models/m/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/"
                  b"json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(doc))
        for i in range(0, len(doc), 1000):  # ~3.3 KB/s for 3.3 s: past the 2 s grace
            s.sendall(doc[i:i + 1000])
            time.sleep(0.3)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        c.ok(data.startswith(b"HTTP/1.1 200"), "a slow but steady upload (%d bytes) is served "
             "(%r)" % (len(doc), data[:40]))
    finally:
        fh.check_clean_exit(c, srv, "slow-client daemon")


def trickle_on(s, data, step, limit):
    """Send data a byte every step seconds on socket s (closed here); seconds until the server
    closed, -1.0 when it answered instead, or None when it kept waiting past limit."""
    t0 = time.time()
    try:
        for ch in data:
            try:
                s.send(bytes([ch]))
                s.settimeout(step)
                got = s.recv(100)
                if got == b"":
                    return time.time() - t0
                if got:
                    return -1.0  # answered: the request was complete
            except socket.timeout:
                pass
            except OSError:
                return time.time() - t0
            if time.time() - t0 > limit:
                return None
        return None
    finally:
        s.close()


def main():
    binp = fh.binary()
    c = fh.Check()
    with fh.tempdir("fs-sec-") as tmp:
        names_checks(c, binp, tmp)
        token_checks(c, binp, tmp)
        default_bind_checks(c, binp)
        unprivileged_checks(c, binp, tmp)
        tls_checks(c, binp, tmp)
        slow_client_checks(c, binp, tmp)
    c.done()


if __name__ == "__main__":
    main()
