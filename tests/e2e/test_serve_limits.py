#!/usr/bin/env python3
"""Limits: an oversized body gets a prompt 413 naming max_body_bytes, with Content-Length
(decided from the header) or chunked (as soon as the limit is crossed), with bounded memory
(case-12), on every route that takes a body; idle and slow clients are timed out and cannot
starve others; the per-address connection limit holds."""
import os
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsharness as fh  # noqa: E402

ROWS = [b'{"bytes":1200,"pkts":10}', b'{"bytes":880,"pkts":7}', b'{"bytes":15000,"pkts":40}',
        b'{"bytes":60,"pkts":1}']
BIG = 104857623  # case-12's big100MiB.json


def body_bytes(n):
    """A valid score body of about n bytes (case-12's gen-big.py layout)."""
    parts = [b'{"records":[']
    size = len(parts[0]) + 2
    i = 0
    while size < n:
        row = ROWS[i % 4]
        if i:
            parts.append(b",")
            size += 1
        parts.append(row)
        size += len(row)
        i += 1
    parts.append(b"]}")
    return b"".join(parts)


def rss_ok(c, srv, rss0, what):
    """Resident memory rose by less than the limit plus 1 MiB (not checked under ASan, whose
    quarantine keeps freed buffers resident on purpose)."""
    if not fh.sanitized():
        rss = srv.rss_kib()
        c.ok(rss - rss0 < 9 * 1024, "%s: RSS rises by less than 9 MiB (%d KiB)" % (what,
                                                                                rss - rss0))


def headers(path, extra):
    return ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n%s\r\n"
            % (path, extra)).encode()


def content_length_413(c, srv, path, limit):
    """Headers announce 100 MiB; the answer must come before any body byte is sent."""
    rss0 = srv.rss_kib()
    t0 = time.time()
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(headers(path, "Content-Length: %d\r\n" % BIG))
    data = b""
    try:
        while b"\r\n\r\n" not in data or not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    s.close()
    dt = time.time() - t0
    c.ok(data.startswith(b"HTTP/1.1 413"), "%s: 413 from Content-Length (%r)" % (path, data[:80]))
    c.ok(b"max_body_bytes=%d" % limit in data, path + ": the 413 names max_body_bytes")
    if not path.startswith("/v2/"):
        c.ok(b"body_too_large" in data, path + ": code body_too_large")
    c.ok(dt < 2.0, "%s: prompt 413 (%.2fs)" % (path, dt))
    rss_ok(c, srv, rss0, path)


def chunked_413(c, srv, limit, total=BIG):
    """Send chunks until the 413 arrives; it must arrive soon after the limit is crossed."""
    rss0 = srv.rss_kib()
    resp, sent = fh.post_chunked(srv.port, "/v1/models/num2/score", body_bytes(1 << 20), total)
    c.ok(resp.startswith(b"HTTP/1.1 413"), "chunked: 413 (%r)" % resp[:80])
    c.ok(b"max_body_bytes=%d" % limit in resp, "chunked: the 413 names the limit")
    c.ok(sent < limit + 8 * (1 << 20), "chunked: answered soon after the limit (%d sent)" % sent)
    rss_ok(c, srv, rss0, "chunked")


def post_tolerant(srv, path, body):
    """POST without Expect: 100-continue; the server may answer and close before the body
    is sent, so a broken pipe is expected and the answer is read anyway."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    try:
        s.sendall(headers(path, "Content-Length: %d\r\n" % len(body)) + body)
    except (BrokenPipeError, ConnectionResetError):
        pass
    resp = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            resp += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    return resp


def curl_checks(c, srv, tmp):
    """case-12's own steps, when curl is installed."""
    curl = shutil.which("curl")
    if curl is None:
        print("note: curl not found; case-12's curl steps skipped")
        return
    big = os.path.join(tmp, "big100MiB.json")
    gen = os.path.join(fh.SHARED_DIR, "cases", "case-12-oversized-body", "gen-big.py")
    if os.path.exists(gen):
        with open(big, "wb") as f:
            subprocess.run([sys.executable, gen], stdout=f, stderr=subprocess.DEVNULL, check=True)
    else:
        with open(big, "wb") as f:
            f.write(body_bytes(104857600))
    url = "http://127.0.0.1:%d/v1/models/num2/score" % srv.port
    for extra in ([], ["-H", "Transfer-Encoding: chunked"]):
        rss0 = srv.rss_kib()
        r = fh.run([curl, "-sS", "-o", os.path.join(tmp, "r.json"), "-w",
                    "%{http_code} %{size_upload}", "-X", "POST", "-H",
                    "Content-Type: application/json"] + extra + ["--data-binary", "@" + big, url])
        parts = r.stdout.split()
        what = "curl %s" % (extra or "Content-Length")
        c.ok(len(parts) == 2 and parts[0] == "413", "%s: 413 (%s %s)" % (what, r.stdout, r.stderr))
        if len(parts) == 2:
            c.ok(int(parts[1]) < BIG // 4, "%s: size_upload %s well below 100 MiB" % (what,
                                                                                   parts[1]))
        with open(os.path.join(tmp, "r.json")) as f:
            c.ok("max_body_bytes=8388608" in f.read(), what + ": names the limit")
        rss_ok(c, srv, rss0, what)
    os.unlink(big)


def idle_checks(c, binp, models):
    """Idle connections hold slots only until connection_timeout_s; slow headers too."""
    srv = fh.Server(binp, models, ["--workers", "1", "--connection-limit", "8",
                                   "--per-ip-connection-limit", "8", "--connection-timeout-s",
                                   "1"])
    try:
        idle = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(8)]
        slow = idle[0]
        slow.sendall(b"POST /v1/models/num2/score HTTP/1.1\r\nHost: x\r\n")
        time.sleep(2.5)  # past the timeout: MHD closed them all
        r = srv.get("/healthz", timeout=5)
        c.eq(r.status, 200, "served after idle connections timed out")
        closed = 0
        for s in idle:
            s.settimeout(1)
            try:
                if s.recv(1) == b"":
                    closed += 1
            except (socket.timeout, ConnectionResetError):
                closed += 1 if isinstance(sys.exc_info()[1], ConnectionResetError) else 0
            s.close()
        c.eq(closed, 8, "idle and slow connections were closed by the timeout")
    finally:
        fh.check_clean_exit(c, srv, "idle daemon")
    srv = fh.Server(binp, models, ["--workers", "1", "--per-ip-connection-limit", "4"])
    try:
        # The per-address limit: a 5th concurrent connection is refused, the next is fine.
        time.sleep(0.3)  # let the daemon see the readiness probe's connection close
        held = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(4)]
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", srv.port), timeout=3)
        try:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            got = extra.recv(100)
        except (socket.timeout, ConnectionResetError, BrokenPipeError):
            got = b""
        c.eq(got, b"", "a connection over the per-address limit is closed")
        extra.close()
        for s in held:
            s.close()
        time.sleep(0.2)
        c.eq(srv.get("/healthz").status, 200, "served after the connections closed")
    finally:
        fh.check_clean_exit(c, srv, "per-ip daemon")


def main():
    binp = fh.binary()
    c = fh.Check()
    with fh.tempdir() as tmp:
        models = os.path.join(tmp, "models")
        fh.make_model(binp, os.path.join(models, "num2", "1.fsm"), dims=2, seed=3)
        os.rename(os.path.join(models, "num2", "1.fsm"), os.path.join(models, "num2", "1.fsm"))
        # The imported model's fields are x0, x1; case-12's bodies use bytes and pkts, and the
        # body is never parsed anyway: only its size matters here.
        srv = fh.Server(binp, models, ["--workers", "2"])
        try:
            for path in ("/v1/models/num2/score", "/v1/models/num2/sample",
                         "/v1/models/num2/encode", "/v1/models/num2/decode",
                         "/v2/models/num2/infer", "/v1/models/num2/reload", "/nope"):
                content_length_413(c, srv, path, 8388608)
            chunked_413(c, srv, 8388608)
            valid = {"records": [{"x0": 1200, "x1": 10}]}
            c.eq(srv.post("/v1/models/num2/score", valid).status, 200, "valid after 413s")
            curl_checks(c, srv, tmp)
            c.eq(srv.post("/v1/models/num2/score", valid).status, 200, "valid after curl")
            body = body_bytes(8388608 - 100)
            r = srv.post("/v1/models/num2/score", body)
            c.ok(r.status in (400, 413), "a body just under the limit is read (%d)" % r.status)
        finally:
            fh.check_clean_exit(c, srv)
        srv = fh.Server(binp, models, ["--workers", "1", "--max-body-bytes", "1048576"])
        try:
            content_length_413(c, srv, "/v1/models/num2/score", 1048576)
            chunked_413(c, srv, 1048576, total=2097158)
            resp = post_tolerant(srv, "/v1/models/num2/score", body_bytes(2097152))
            c.ok(resp.startswith(b"HTTP/1.1 413"), "2 MiB over a 1 MiB limit (%r)" % resp[:40])
            c.ok(b"max_body_bytes=1048576" in resp, "the configured limit is named")
        finally:
            fh.check_clean_exit(c, srv, "1 MiB daemon")
        idle_checks(c, binp, models)
    c.done()


if __name__ == "__main__":
    main()
