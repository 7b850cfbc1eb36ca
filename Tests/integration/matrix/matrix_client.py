#!/usr/bin/python3
"""Plain-TCP client for Tests/integration/test_matrix.py (stdlib only).

  matrix_client.py HOST PORT PAYLOAD_HEX [--timeout S] [--no-half-close]

Connects, sends PAYLOAD, half-closes (unless --no-half-close), reads until the gateway ends
the connection, and prints one JSON object: {"recv_hex", "end": "eof"|"reset"|"timeout"|
"error", "error", "seconds"}. Bounded by --timeout.
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
    p.add_argument("--no-half-close", action="store_true")
    a = p.parse_args()
    t0 = time.monotonic()
    deadline = t0 + a.timeout
    got, end, err = b"", "eof", None
    try:
        s = socket.create_connection((a.host, a.port), timeout=a.timeout)
        s.sendall(bytes.fromhex(a.payload_hex))
        if not a.no_half_close:
            s.shutdown(socket.SHUT_WR)
        while True:
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
