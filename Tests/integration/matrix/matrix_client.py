#!/usr/bin/python3
"""Plain-TCP client for Tests/integration/test_matrix.py (stdlib only).

  matrix_client.py HOST PORT PAYLOAD_HEX [--timeout S] [--expect-bytes N] [--half-close]

Connects, sends PAYLOAD and keeps its side open, as a real client does. With --expect-bytes N
it closes once N bytes came back ("end": "complete"); otherwise (or if the gateway ends the
connection first) it reads until the gateway ends it. --half-close half-closes after sending
(tests about half-close). Prints one JSON object: {"recv_hex", "end": "complete"|"eof"|
"reset"|"timeout"|"error", "error", "seconds"}. Bounded by --timeout.
"""
import argparse
import errno
import json
import socket
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("payload_hex")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--expect-bytes", type=int, default=None)
    p.add_argument("--half-close", action="store_true")
    p.add_argument("--no-half-close", action="store_true", help="the default; kept for old callers")
    a = p.parse_args()
    t0 = time.monotonic()
    deadline = t0 + a.timeout
    got, end, err = b"", "eof", None
    try:
        s = socket.create_connection((a.host, a.port), timeout=a.timeout)
        s.sendall(bytes.fromhex(a.payload_hex))
        if a.half_close:
            s.shutdown(socket.SHUT_WR)
        while True:
            if a.expect_bytes is not None and len(got) >= a.expect_bytes:
                end = "complete"
                break
            s.settimeout(max(0.05, deadline - time.monotonic()))
            b = s.recv(65536)
            if not b:
                break
            got += b
        s.close()
    except (ConnectionResetError, BrokenPipeError) as e:
        end, err = "reset", str(e)
    except socket.timeout as e:
        end, err = "timeout", str(e)
    except OSError as e:
        # ENOTCONN: the gateway's RST arrived before our half-close, so shutdown() finds no
        # connection any more.
        end, err = ("reset" if e.errno == errno.ENOTCONN else "error"), str(e)
    print(json.dumps({"recv_hex": got.hex(), "end": end, "error": err,
                      "seconds": round(time.monotonic() - t0, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
