#!/usr/bin/env python3
"""systemd notification: with NOTIFY_SOCKET pointing to a datagram socket the test owns, the
daemon sends READY=1 once it listens and its models are loaded, RELOADING=1 (with
MONOTONIC_USEC) then READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM, and WATCHDOG=1
pings when WATCHDOG_USEC is set. Without NOTIFY_SOCKET it runs as well (every other test)."""
# labels: e2e
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsharness as fh  # noqa: E402


def recv_until(sock, want, timeout=20):
    """Messages received until one holds the line `want`; returns them all."""
    got = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        sock.settimeout(max(0.01, deadline - time.time()))
        try:
            msg = sock.recv(4096).decode()
        except socket.timeout:
            break
        got.append(msg)
        if want in msg.split("\n"):
            return got
    return got


def main():
    binp = fh.binary()
    c = fh.Check()
    with fh.tempdir() as tmp:
        models = os.path.join(tmp, "models")
        fh.make_model(binp, os.path.join(models, "m", "1.fsm"), dims=4, seed=1)
        path = os.path.join(tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        srv = fh.Server(binp, models, ["--workers", "1"], env={"NOTIFY_SOCKET": path,
                                                               "WATCHDOG_USEC": "400000"},
                        wait_ready=False)
        try:
            msgs = recv_until(sock, "READY=1")
            c.ok(any("READY=1" in m.split("\n") for m in msgs), "READY=1 (%r)" % msgs)
            ready = [m for m in msgs if "READY=1" in m.split("\n")]
            c.ok(ready and "STATUS=serving 1 of 1 models" in ready[0], "STATUS with READY")
            c.eq(srv.get("/readyz").status, 200, "ready when READY=1 was sent")
            msgs = recv_until(sock, "WATCHDOG=1", timeout=5)
            c.ok(any("WATCHDOG=1" in m.split("\n") for m in msgs), "WATCHDOG=1 pings")
            srv.signal(signal.SIGHUP)
            msgs = recv_until(sock, "RELOADING=1")
            rel = [m for m in msgs if "RELOADING=1" in m.split("\n")]
            c.ok(len(rel) == 1, "RELOADING=1 after SIGHUP (%r)" % msgs)
            c.ok(rel and any(x.startswith("MONOTONIC_USEC=") for x in rel[0].split("\n")),
                 "MONOTONIC_USEC with RELOADING=1")
            msgs = recv_until(sock, "READY=1")
            c.ok(any("READY=1" in m.split("\n") for m in msgs), "READY=1 after the reload")
            srv.signal(signal.SIGTERM)
            msgs = recv_until(sock, "STOPPING=1")
            c.ok(any("STOPPING=1" in m.split("\n") for m in msgs), "STOPPING=1 after SIGTERM")
        finally:
            fh.check_clean_exit(c, srv)
            sock.close()
    c.done()


if __name__ == "__main__":
    main()
