#!/usr/bin/python3
"""Many TLS echo listeners in one process, for Tests/integration/test_matrix.py (stdlib only).

  matrix_server.py CONFIG.json EVENTS.log [--max-seconds 600]

CONFIG is a JSON list of listeners:
  {"name": "expired", "bind": "198.19.0.12", "port": 8443, "cert": "chain.pem", "key": "key.pem",
   "min": "1.2", "max": "1.3", "alpn": ["h2"], "client_ca": "root.pem", "weak": false}
Each listener echoes every byte back and ends with its own close_notify after the peer's
end. One thread per connection. Every event is appended to EVENTS.log as one JSON object:
  {"name", "event": "accept"|"handshake-ok"|"handshake-failed"|"closed", "peer",
   "sni", "version", "alpn", "client_cert", "error"}
Prints "ready" once every listener is bound; exits on SIGTERM/SIGINT or after --max-seconds.
"""
import argparse
import json
import signal
import socket
import ssl
import sys
import threading
import time
import warnings

VERSIONS = {"1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1,
            "1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_lock = threading.Lock()


def log(path, **event):
    with _lock:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")


def make_context(spec):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if spec.get("weak") or VERSIONS[spec.get("min", "1.2")] < ssl.TLSVersion.TLSv1_2:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = VERSIONS[spec.get("min", "1.2")]
    ctx.maximum_version = VERSIONS[spec.get("max", "1.3")]
    ctx.load_cert_chain(spec["cert"], spec["key"])
    if spec.get("alpn"):
        ctx.set_alpn_protocols(spec["alpn"])
    if spec.get("client_ca"):
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(spec["client_ca"])

    def on_sni(sslsock, name, _ctx):
        sslsock.matrix_sni = name
    ctx.sni_callback = on_sni
    return ctx


def serve_one(spec, ctx, raw, peer, events):
    name, peer_s = spec["name"], "%s:%s" % peer[:2]
    raw.settimeout(20)
    try:
        conn = ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        conn.do_handshake()
    except (ssl.SSLError, OSError) as e:
        log(events, name=name, event="handshake-failed", peer=peer_s, error=str(e))
        raw.close()
        return
    log(events, name=name, event="handshake-ok", peer=peer_s, version=conn.version(),
        sni=getattr(conn, "matrix_sni", None), alpn=conn.selected_alpn_protocol(),
        client_cert=bool(conn.getpeercert(binary_form=True)))
    n = 0
    err = None
    try:
        while True:
            try:
                data = conn.recv(65536)
            except ssl.SSLEOFError:
                data = b""
            if not data:
                break
            n += len(data)
            conn.sendall(data)
        try:
            conn.unwrap()
        except (ssl.SSLError, OSError):
            pass
    except (ssl.SSLError, OSError) as e:
        err = str(e)
    finally:
        conn.close()
    log(events, name=name, event="closed", peer=peer_s, bytes=n, error=err)


def listen(spec, events, stop):
    ctx = make_context(spec)
    srv = socket.socket(socket.AF_INET6 if ":" in spec["bind"] else socket.AF_INET)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((spec["bind"], spec["port"]))
    srv.listen(64)
    srv.settimeout(0.3)

    def loop():
        while not stop.is_set():
            try:
                raw, peer = srv.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            log(events, name=spec["name"], event="accept", peer="%s:%s" % peer[:2])
            threading.Thread(target=serve_one, args=(spec, ctx, raw, peer, events), daemon=True).start()
        srv.close()
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def main():
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("events")
    p.add_argument("--max-seconds", type=float, default=600.0)
    args = p.parse_args()
    with open(args.config, encoding="utf-8") as f:
        specs = json.load(f)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threads = [listen(s, args.events, stop) for s in specs]
    print("ready", flush=True)
    deadline = time.monotonic() + args.max_seconds
    while not stop.is_set() and time.monotonic() < deadline:
        stop.wait(0.3)
    stop.set()
    for t in threads:
        t.join(2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
