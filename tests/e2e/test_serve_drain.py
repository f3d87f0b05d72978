#!/usr/bin/env python3
"""SIGTERM drains: requests in flight are answered (200), new connections are refused, and
the daemon exits 0; past drain_timeout_s queued requests get 503 and the exit is still 0; a
second signal exits at once."""
# labels: e2e concurrency
import json
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsharness as fh  # noqa: E402

D = 16


def heavy_body(n):
    """Serialised once: the clients must all be sending at the same moment."""
    rows = [[round((i * 0.37 + j * 0.11) % 3 - 1.5, 4) for j in range(D)] for i in range(n)]
    return json.dumps({"records": rows})


def timed_body(c, srv, rows, seconds):
    """A body of rows scaled so that one request takes about seconds on this machine (a
    sanitized build on a loaded machine is 10x slower, a quiet Release build much faster).
    Returns the body and the time of one request of the first size."""
    body = heavy_body(rows)
    t0 = time.time()
    r = srv.post("/v1/models/big/score", body)
    one = max(time.time() - t0, 1e-3)
    c.eq(r.status, 200, "a heavy request")
    print("one request of %d rows takes %.3fs" % (rows, one))
    scale = max(1, int(seconds / one + 0.999))
    if scale > 1:
        body = heavy_body(min(rows * scale, 40000))  # under max_body_bytes
    return body, one


def start_clients(srv, n, body):
    results = [None] * n

    def run(k):
        try:
            r = srv.post("/v1/models/big/score", body, timeout=120)
            results[k] = (r.status, r.json())
        except Exception as e:  # noqa: BLE001
            results[k] = ("error", repr(e))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    return threads, results


def wait_in_flight(srv, n, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = srv.metrics()
        if m.get(("flowscore_http_requests_in_flight", frozenset()), 0) >= n + 1:
            return True
        time.sleep(0.01)
    return False


def graceful(c, binp, models, rows):
    srv = fh.Server(binp, models, ["--workers", "2"])
    # Six requests that take about 1.5 s on two workers, so that all six are seen in flight
    # (a 26 ms request could finish before the metrics poll saw the sixth).
    body, _ = timed_body(c, srv, rows, 1.5 / 3)
    threads, results = start_clients(srv, 6, body)
    c.ok(wait_in_flight(srv, 6), "six requests in flight")
    n0 = srv.log_len()
    srv.signal(signal.SIGTERM)
    c.ok(srv.wait_log("draining", start=n0, timeout=10) is not None, "the drain started")
    time.sleep(0.05)
    try:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=2)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        got = s.recv(100)
        s.close()
    except OSError:
        got = b""
    c.ok(not got.startswith(b"HTTP/1.1 200"), "no new connection is served while draining")
    for t in threads:
        t.join(120)
    statuses = [r[0] for r in results]
    c.eq(statuses, [200] * 6, "every request in flight was answered")
    rc = srv.proc.wait(60)
    srv.reader.join(5)  # the last log lines
    c.eq(rc, 0, "exit status after the drain")
    c.ok(srv.sanitizer_report() is None, "sanitizer report: %s" % (srv.sanitizer_report() or ""))
    c.ok("drained" in srv.log_text(), "drain logged")


def timeout_drain(c, binp, models, rows):
    srv = fh.Server(binp, models, ["--workers", "1", "--drain-timeout-s", "1"])
    # Twelve requests that take about 4 s on one worker: the 1 s timeout cuts the queue.
    body, _ = timed_body(c, srv, rows, 4.0 / 12)
    threads, results = start_clients(srv, 12, body)
    c.ok(wait_in_flight(srv, 12), "twelve requests in flight")
    srv.signal(signal.SIGTERM)
    for t in threads:
        t.join(120)
    statuses = sorted(str(r[0]) for r in results)
    print("statuses after a 1 s drain timeout: %s" % statuses)
    c.ok(all(s in ("200", "503") for s in statuses), "only 200 or 503: %s" % statuses)
    c.ok("503" in statuses and "200" in statuses, "some finished, the queued got 503")
    for r in results:
        if r[0] == 503:
            c.ok("shutting down" in r[1]["error"]["message"], "503 says why")
            break
    rc = srv.proc.wait(60)
    srv.reader.join(5)
    c.eq(rc, 0, "exit status after a drain timeout")
    c.ok(srv.sanitizer_report() is None, "sanitizer report: %s" % (srv.sanitizer_report() or ""))


def forced(c, binp, models, rows):
    srv = fh.Server(binp, models, ["--workers", "1"])
    # Four requests that take about 4 s on one worker: still in flight at the signals.
    body, _ = timed_body(c, srv, rows, 1.0)
    threads, results = start_clients(srv, 4, body)
    c.ok(wait_in_flight(srv, 4), "requests in flight before two signals")
    srv.signal(signal.SIGTERM)
    time.sleep(0.05)
    srv.signal(signal.SIGTERM)
    t0 = time.time()
    rc = srv.proc.wait(30)
    c.eq(rc, 1, "a second signal exits at once with status 1")
    c.ok(time.time() - t0 < 5, "the forced exit is quick")
    for t in threads:
        t.join(30)


def main():
    binp = fh.binary()
    c = fh.Check()
    rows = 600 if fh.sanitized() else 3000
    with fh.tempdir() as tmp:
        models = os.path.join(tmp, "models")
        fh.make_model(binp, os.path.join(models, "big", "1.fsm"), dims=D, hidden=128, blocks=8,
                      seed=5)
        graceful(c, binp, models, rows)
        timeout_drain(c, binp, models, rows)
        forced(c, binp, models, rows)
    c.done()


if __name__ == "__main__":
    main()
