#!/usr/bin/python3
"""TLS echo server for tlsgate's integration tests (Python 3 stdlib only).

Run in the lab's server namespace:
  ip netns exec tg-server /usr/bin/python3 tls_echo_server.py \
      --cert good-chain.pem --key good.key --bind 198.19.0.10 --port 443 \
      [--min-version 1.2] [--max-version 1.3] [--greeting TEXT] \
      [--accept-log FILE] [--max-seconds 600]

Echoes every byte back. When the peer ends its side (close_notify or TCP EOF), it
has already sent everything back (the echo is synchronous), so it sends its own
close_notify and closes. One thread per connection. Prints "ready" on stdout once
listening. Every accepted TCP connection (before the handshake) and every handshake
result is appended to --accept-log, one line each:
  accept PEER / handshake-ok PEER VERSION / handshake-failed PEER REASON / closed PEER IN OUT
It exits after --max-seconds (bounded), on SIGTERM, or SIGINT.
"""
import argparse
import warnings
import signal
import socket
import ssl
import sys
import threading
import time

VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}

log_lock = threading.Lock()


def log(path, line):
    if not path:
        return
    with log_lock:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()


def serve_one(ctx, raw, peer, args):
    peer_s = "%s:%s" % (peer[0], peer[1])
    raw.settimeout(args.io_timeout)
    n_in = n_out = 0
    try:
        try:
            conn = ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            conn.do_handshake()
        except (ssl.SSLError, OSError) as e:
            log(args.accept_log, "handshake-failed %s %s" % (peer_s, str(e).replace("\n", " ")))
            raw.close()
            return
        log(args.accept_log, "handshake-ok %s %s" % (peer_s, conn.version()))
        if args.greeting:
            g = args.greeting.encode()
            conn.sendall(g)
            n_out += len(g)
        while True:
            try:
                data = conn.recv(65536)
            except ssl.SSLEOFError:
                data = b""
            if not data:
                break
            n_in += len(data)
            conn.sendall(data)
            n_out += len(data)
        try:
            conn.unwrap()  # our close_notify
        except (ssl.SSLError, OSError):
            pass
        conn.close()
        log(args.accept_log, "closed %s %d %d" % (peer_s, n_in, n_out))
    except (ssl.SSLError, OSError) as e:
        log(args.accept_log, "error %s %s in=%d out=%d" % (peer_s, e, n_in, n_out))
        try:
            raw.close()
        except OSError:
            pass


def main():
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cert", required=True, help="certificate chain (PEM, leaf first)")
    p.add_argument("--key", required=True)
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, default=443)
    p.add_argument("--min-version", choices=sorted(VERSIONS), default="1.2")
    p.add_argument("--max-version", choices=sorted(VERSIONS), default="1.3")
    p.add_argument("--greeting", default="", help="sent right after the handshake")
    p.add_argument("--accept-log", default="")
    p.add_argument("--max-seconds", type=float, default=600.0)
    p.add_argument("--weak", action="store_true", help="allow weak certificates (security level 0)")
    p.add_argument("--alpn", default="", help="comma-separated protocols the server accepts")
    p.add_argument("--client-ca", default="", help="require a client certificate from this CA")
    p.add_argument("--io-timeout", type=float, default=30.0)
    args = p.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if VERSIONS[args.min_version] < ssl.TLSVersion.TLSv1_2:
        # Legacy protocols need the lowest security level (SHA-1 MACs etc.).
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = VERSIONS[args.min_version]
    ctx.maximum_version = VERSIONS[args.max_version]
    if args.weak:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.load_cert_chain(args.cert, args.key)
    if args.alpn:
        ctx.set_alpn_protocols(args.alpn.split(","))
    if args.client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(args.client_ca)

    family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.bind, args.port))
    srv.listen(128)
    srv.settimeout(0.5)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    print("ready", flush=True)
    deadline = time.monotonic() + args.max_seconds
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            raw, peer = srv.accept()
        except socket.timeout:
            continue
        except OSError:
            if stop.is_set():
                break
            raise
        log(args.accept_log, "accept %s:%s" % (peer[0], peer[1]))
        threading.Thread(target=serve_one, args=(ctx, raw, peer, args), daemon=True).start()
    srv.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
