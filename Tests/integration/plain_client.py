#!/usr/bin/python3
"""Plain-TCP client for tlsgate's integration tests (Python 3 stdlib only).

Run in the lab's client namespace:
  ip netns exec tg-client /usr/bin/python3 plain_client.py HOST PORT \
      [--bytes N] [--connections K] [--timeout S] [--expect-prefix TEXT] [--read-delay S] [--hold S]
      [--send-over S] [--half-close]

For each of K concurrent connections: connects, sends N random bytes (from a sender
thread, so the echo can flow back meanwhile; with --send-over S in 10 pieces spread over
S seconds, a slow talker), and reads the echo while keeping its side open, as a real client
does: it closes once it has everything back (the expected prefix + N bytes), or when the
gateway ends the connection. Only with --half-close (or --hold) does it half-close
(shutdown(SHUT_WR)) after sending and read until EOF. Prints one JSON object per line:
  {"sent_sha256", "recv_sha256", "recv_len", "sent_len", "error", "recv_end_s", ...}
(recv_end_s: seconds from connect until the receive side ended).
With --expect-prefix, the received bytes must start with TEXT: "prefix_ok" tells
whether they did, and recv_sha256 covers only what follows the prefix.
Bounded by --timeout for the whole run.
"""
import argparse
import hashlib
import json
import os
import socket
import sys
import threading
import time


def one(host, port, nbytes, deadline, prefix, read_delay=0.0, hold=0.0, send_over=0.0, half_close=False):
    res = {"sent_len": 0, "recv_len": 0, "sent_sha256": None, "recv_sha256": None, "error": None}
    data = os.urandom(nbytes)
    res["sent_sha256"] = hashlib.sha256(data).hexdigest()
    chunks = []
    send_err = []
    recv_done = threading.Event()
    try:
        s = socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic()))
    except OSError as e:
        res["error"] = "connect: %s" % e
        return res

    t_connected = time.monotonic()

    def sender():
        try:
            view = memoryview(data)
            off = 0
            pieces = 10 if send_over > 0 else 1
            piece = max(1, -(-len(view) // pieces))
            for k in range(pieces):
                if k and send_over > 0:
                    time.sleep(min(send_over / (pieces - 1), max(0.0, deadline - time.monotonic())))
                end = min(len(view), (k + 1) * piece)
                while off < end:
                    s.settimeout(max(0.1, deadline - time.monotonic()))
                    n = s.send(view[off:min(end, off + 65536)])
                    off += n
                    res["sent_len"] = off
            if hold > 0:
                # Keep the connection open (idle) before half-closing; stop waiting if
                # the gateway ends the connection meanwhile.
                recv_done.wait(min(hold, max(0.0, deadline - time.monotonic())))
            if half_close or hold > 0:
                s.shutdown(socket.SHUT_WR)
        except OSError as e:
            send_err.append("send: %s" % e)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    if read_delay > 0:
        # A slow reader: the echo piles up in the gateway, which must apply back-pressure.
        time.sleep(min(read_delay, max(0.0, deadline - time.monotonic())))
    # Without a half-close the client knows it is done when the whole echo is back.
    expected = None if (half_close or hold > 0) else nbytes + (len(prefix.encode()) if prefix is not None else 0)
    received = 0
    try:
        while expected is None or received < expected:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("overall timeout")
            s.settimeout(left)
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
            received += len(b)
    except OSError as e:
        res["error"] = "recv: %s" % e
    res["recv_end_s"] = round(time.monotonic() - t_connected, 3)
    recv_done.set()
    t.join(max(0.1, deadline - time.monotonic()))
    if send_err and res["error"] is None:
        res["error"] = send_err[0]
    elif send_err:
        res["error"] += "; " + send_err[0]
    s.close()
    got = b"".join(chunks)
    res["recv_len"] = len(got)
    if prefix is not None:
        p = prefix.encode()
        res["prefix_ok"] = got.startswith(p)
        if res["prefix_ok"]:
            got = got[len(p):]
    res["recv_sha256"] = hashlib.sha256(got).hexdigest()
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--bytes", type=int, default=1024)
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--expect-prefix", default=None)
    p.add_argument("--hold", type=float, default=0.0,
                   help="seconds to stay idle after sending, before the half-close (implies --half-close)")
    p.add_argument("--half-close", action="store_true",
                   help="shutdown(SHUT_WR) after sending and read until EOF (tests about half-close)")
    p.add_argument("--read-delay", type=float, default=0.0,
                   help="seconds to wait before reading the echo (back-pressure)")
    p.add_argument("--send-over", type=float, default=0.0,
                   help="send the bytes in 10 pieces spread over this many seconds (a slow talker)")
    args = p.parse_args()
    deadline = time.monotonic() + args.timeout
    results = [None] * args.connections

    def run(i):
        results[i] = one(args.host, args.port, args.bytes, deadline, args.expect_prefix, args.read_delay, args.hold,
                         args.send_over, args.half_close)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic() + 1))
    for r in results:
        print(json.dumps(r if r is not None else {"error": "thread did not finish", "recv_len": 0}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
