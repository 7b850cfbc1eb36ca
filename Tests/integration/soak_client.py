#!/usr/bin/python3
"""Steady mixed HTTP/1.1 load for a soak (Python 3 stdlib only, a few threads).

  soak_client.py HOST PORT SECONDS [--new 4] [--keepalive 4] [--bulk 1]
                 [--ka-body TEXT] [--big-sha256 HEX] [--big-size N]

For SECONDS, at the same time:
- --new loops: a new connection per request (GET /ka, body checked), closed after it;
- --keepalive loops: one connection each, GET /ka every 10 ms (reconnecting only if the
  server closes);
- --bulk loops: one connection each, alternately GET /big (SHA-256 checked) and a POST of
  --big-size bytes to /upload (answer 204).
Prints one JSON line: {"requests": {"new": N, "keepalive": N, "bulk": N}, "refused": N,
"failed": N, "reconnects": N, "errors": [...]}.
"""
import argparse
import hashlib
import http.client
import json
import threading
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("seconds", type=float)
    ap.add_argument("--new", type=int, default=4)
    ap.add_argument("--keepalive", type=int, default=4)
    ap.add_argument("--bulk", type=int, default=1)
    ap.add_argument("--ka-body", default="")
    ap.add_argument("--big-sha256", default="")
    ap.add_argument("--big-size", type=int, default=4 << 20)
    args = ap.parse_args()

    end = time.monotonic() + args.seconds
    lock = threading.Lock()
    requests = {"new": 0, "keepalive": 0, "bulk": 0}
    totals = {"refused": 0, "failed": 0, "reconnects": 0}
    errors = []
    upload = bytes(range(256)) * (args.big_size // 256)

    def count(kind, outcome=None, err=None):
        with lock:
            if outcome is None:
                requests[kind] += 1
            else:
                totals[outcome] += 1
                if err is not None and len(errors) < 5:
                    errors.append("%s: %s" % (kind, err))

    def connect():
        return http.client.HTTPConnection(args.host, args.port, timeout=30)

    def get_ka(conn):
        conn.request("GET", "/ka", headers={"Host": "good.test"})
        r = conn.getresponse()
        body = r.read()
        if r.status != 200 or body != args.ka_body.encode():
            raise ValueError("bad /ka answer %d %r" % (r.status, body[:40]))

    def new_loop():
        while time.monotonic() < end:
            conn = connect()
            try:
                get_ka(conn)
                count("new")
            except ConnectionRefusedError as e:
                count("new", "refused", e)
            except (OSError, ValueError, http.client.HTTPException) as e:
                count("new", "failed", e)
            finally:
                conn.close()

    def persistent_loop(kind, step):
        conn, i = connect(), 0
        while time.monotonic() < end:
            try:
                step(conn, i)
                count(kind)
                i += 1
            except ConnectionRefusedError as e:
                count(kind, "refused", e)
                conn.close()
                conn = connect()
            except (OSError, ValueError, http.client.HTTPException) as e:
                # A keep-alive connection the server closed between requests is a
                # reconnect; any other error a failure.
                closed = isinstance(e, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError))
                count(kind, "reconnects" if closed else "failed", None if closed else e)
                conn.close()
                conn = connect()
        conn.close()

    def ka_step(conn, i):
        get_ka(conn)
        time.sleep(0.01)

    def bulk_step(conn, i):
        if i % 2 == 0:
            conn.request("GET", "/big", headers={"Host": "good.test"})
            r = conn.getresponse()
            body = r.read()
            if r.status != 200 or hashlib.sha256(body).hexdigest() != args.big_sha256:
                raise ValueError("bad /big answer %d, %d bytes" % (r.status, len(body)))
        else:
            conn.request("POST", "/upload", body=upload, headers={"Host": "good.test"})
            r = conn.getresponse()
            r.read()
            if r.status != 204:
                raise ValueError("upload answered %d" % r.status)

    threads = [threading.Thread(target=new_loop) for _ in range(args.new)]
    threads += [threading.Thread(target=persistent_loop, args=("keepalive", ka_step)) for _ in range(args.keepalive)]
    threads += [threading.Thread(target=persistent_loop, args=("bulk", bulk_step)) for _ in range(args.bulk)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(dict(requests=requests, errors=errors, **totals)), flush=True)


if __name__ == "__main__":
    main()
