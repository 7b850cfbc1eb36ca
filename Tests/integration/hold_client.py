#!/usr/bin/python3
"""Opens many HTTP/1.1 keep-alive connections and holds them (one thread, epoll).

  hold_client.py HOST PORT COUNT [--inflight 256] [--path /ka] [--expect BODY]
                 [--timeout 120] [--hold-max 300]

Each connection connects, sends one `GET PATH` request, reads the whole answer (status 200,
Content-Length body equal to --expect) and is then kept open, watched for an unexpected
close. At most --inflight connections are being set up at a time. Once every connection
is answered or failed (or --timeout), prints one JSON line:
  {"ok": N, "refused": N, "failed": N, "open_seconds": S, "errors": [...]}
and holds them until a line `close` arrives on stdin (or --hold-max seconds), then closes
them all and prints {"dropped_while_held": N, "closed": N}. Exit status 0 either way.
"""
import argparse
import errno
import json
import os
import resource
import select
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("count", type=int)
    ap.add_argument("--inflight", type=int, default=256)
    ap.add_argument("--path", default="/ka")
    ap.add_argument("--expect", default="")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--hold-max", type=float, default=300.0)
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.count + 64:
        sys.exit("hold_client: RLIMIT_NOFILE hard limit %d is below %d connections" % (hard, args.count))

    request = ("GET %s HTTP/1.1\r\nHost: good.test\r\n\r\n" % args.path).encode()
    expect = args.expect.encode()
    ep = select.epoll()
    conns = {}          # fd -> [socket, state, buffer]; state: "connecting", "reading", "held"
    ok = refused = failed = 0
    errors = []
    started = 0
    setting_up = 0      # connections not yet answered
    dropped = 0         # answered, then closed by the other side while held
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    t_last_ok = t0

    def fail(fd, why, is_refused=False):
        nonlocal failed, refused, setting_up, dropped
        s, state, _ = conns.pop(fd)
        ep.unregister(fd)
        s.close()
        if state == "held":
            dropped += 1
            return
        setting_up -= 1
        if is_refused:
            refused += 1
        else:
            failed += 1
        if len(errors) < 5:
            errors.append(why)

    def answered(buf):
        """None while incomplete, else (status line, body)."""
        head, sep, rest = buf.partition(b"\r\n\r\n")
        if not sep:
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v.strip())
        if len(rest) < length:
            return None
        return head.split(b"\r\n")[0], rest[:length]

    while (started < args.count or setting_up) and time.monotonic() < deadline:
        while started < args.count and setting_up < args.inflight:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex((args.host, args.port))
            started += 1
            if err not in (0, errno.EINPROGRESS):
                s.close()
                if err == errno.ECONNREFUSED:
                    refused += 1
                else:
                    failed += 1
                    if len(errors) < 5:
                        errors.append("connect: " + os.strerror(err))
                continue
            conns[s.fileno()] = [s, "connecting", b""]
            setting_up += 1
            ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLIN | select.EPOLLRDHUP)
        for fd, ev in ep.poll(0.5):
            c = conns.get(fd)
            if c is None:
                continue
            s, state, _ = c
            if state == "connecting":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(fd, "connect: " + os.strerror(err), err == errno.ECONNREFUSED)
                    continue
                s.send(request)   # small: fits the empty send buffer
                c[1] = "reading"
                ep.modify(fd, select.EPOLLIN | select.EPOLLRDHUP)
                continue
            if state == "held":
                fail(fd, "closed while held")
                continue
            try:
                data = s.recv(65536)
            except OSError as e:
                fail(fd, "recv: %s" % e, e.errno == errno.ECONNREFUSED)
                continue
            if not data:
                fail(fd, "closed before the answer" if state == "reading" else "closed while held")
                continue
            c[2] += data
            got = answered(c[2])
            if got is None:
                continue
            status, body = got
            if not status.startswith(b"HTTP/1.1 200") or (expect and body != expect):
                fail(fd, "bad answer: %r %r" % (status, body[:40]))
                continue
            c[1], c[2] = "held", b""
            setting_up -= 1
            ok += 1
            t_last_ok = time.monotonic()
    pending = [fd for fd, c in conns.items() if c[1] != "held"]
    for fd in pending:
        fail(fd, "no answer within --timeout")
    failed += args.count - started
    print(json.dumps({"ok": ok, "refused": refused, "failed": failed,
                      "open_seconds": round(t_last_ok - t0, 2), "errors": errors}), flush=True)

    # Hold: watch the held connections (any event on one is an unexpected close or byte)
    # and stdin for `close`.
    ep.register(sys.stdin.fileno(), select.EPOLLIN)
    hold_end = time.monotonic() + args.hold_max
    done = False
    while not done and time.monotonic() < hold_end:
        for fd, ev in ep.poll(0.5):
            if fd == sys.stdin.fileno():
                line = sys.stdin.readline()
                done = True if not line or line.strip() == "close" else done
                continue
            if fd in conns:
                fail(fd, "closed while held")
    closed = len(conns)
    for s, _, _ in conns.values():
        s.close()
    print(json.dumps({"dropped_while_held": dropped, "closed": closed}), flush=True)


if __name__ == "__main__":
    main()
