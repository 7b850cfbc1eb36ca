#!/usr/bin/python3
"""A stand-in for `tlsgate worker`, used only to validate this test harness itself.

  TLSGATE_BIN=Tests/integration/fake_worker.py /usr/bin/python3 -m pytest Tests/integration

It implements the worker's command line and log lines (see DESIGN.md and the tests)
with the Python stdlib: SO_ORIGINAL_DST, policy match, verified TLS client, a
thread-per-direction relay with half-close. It is NOT the product and is never
shipped; it lets the harness be checked while (or if) the Swift worker is broken.
Limitations: half-close towards the server is a TCP FIN without close_notify.
"""
import argparse
import ipaddress
import json
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import tomllib
from datetime import datetime, timezone

SO_ORIGINAL_DST = 80
IP6T_SO_ORIGINAL_DST = 80
VERSIONS = {"1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1,
            "1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
log_lock = threading.Lock()
ARGS = None
SESSIONS = {}


def fmt_addr(host, port):
    return ("[%s]:%d" % (host, port)) if ":" in host else ("%s:%d" % (host, port))


def log(msg, level="info", **kv):
    ts = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if ARGS.log_format == "json":
        line = json.dumps(dict(ts=ts, level=level, msg=msg, **kv))
    else:
        parts = [ts, level, msg]
        for k, v in kv.items():
            v = str(v).lower() if isinstance(v, bool) else str(v)
            if v == "" or any(c in v for c in ' "='):
                v = '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
            parts.append("%s=%s" % (k, v))
        line = " ".join(parts)
    with log_lock:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def parse_duration(s):
    s = str(s)
    for suf, mul in (("ms", 0.001), ("s", 1), ("m", 60)):
        if s.endswith(suf):
            return float(s[: -len(suf)]) * mul
    return float(s)


def original_dst(conn):
    fam = conn.family
    peer = conn.getpeername()[0]
    try:
        if fam == socket.AF_INET or peer.startswith("::ffff:"):
            d = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
            return socket.inet_ntoa(d[4:8]), struct.unpack("!H", d[2:4])[0]
        d = conn.getsockopt(socket.IPPROTO_IPV6, IP6T_SO_ORIGINAL_DST, 28)
        return socket.inet_ntop(socket.AF_INET6, d[8:24]), struct.unpack("!H", d[2:4])[0]
    except OSError:
        return None


def unmap(host):
    return host[7:] if host.startswith("::ffff:") else host


def handle(conn, peer, policy, ctx, local_addrs):
    t0 = time.monotonic()
    rec = dict(policy=policy["name"], client=fmt_addr(unmap(peer[0]), peer[1]), dst="", upstream="",
               sni=policy["sni"], tls_version="", cipher="", resumed=False, bytes_up=0, bytes_down=0)
    counts = {"up": 0, "down": 0}

    def done(result, reason, detail=""):
        rec.update(bytes_up=counts["up"], bytes_down=counts["down"],
                   duration_ms=int((time.monotonic() - t0) * 1000), result=result, reason=reason)
        if detail:
            rec["detail"] = detail
        log("connection closed", **rec)

    od = original_dst(conn)
    if od is None:
        conn.close()
        return done("refused", "not_redirected")
    host, port = unmap(od[0]), od[1]
    rec["dst"] = fmt_addr(host, port)
    ip = ipaddress.ip_address(host)
    if host in local_addrs or (ip, port) == (None, None):
        conn.close()
        return done("refused", "destination_is_gateway")
    if port != policy["port"] or not any(ip in n for n in policy["networks"] if n.version == ip.version):
        conn.close()
        return done("refused", "destination_not_in_policy")
    rec["upstream"] = fmt_addr(host, policy["upstream_port"])
    try:
        up = socket.create_connection((host, policy["upstream_port"]), timeout=policy["connect_timeout"])
    except socket.timeout:
        conn.close()
        return done("failed", "connect_timeout")
    except ConnectionRefusedError:
        conn.close()
        return done("failed", "connect_refused")
    except OSError as e:
        conn.close()
        return done("failed", "connect_failed", str(e))
    try:
        up.settimeout(30)
        tls = ctx.wrap_socket(up, server_hostname=policy["sni"], session=SESSIONS.get((host, policy["upstream_port"])))
    except ssl.SSLCertVerificationError as e:
        conn.close()
        return done("failed", "tls_verify_failed", e.verify_message)
    except (ssl.SSLError, OSError) as e:
        conn.close()
        return done("failed", "tls_handshake_failed", getattr(e, "reason", None) or str(e))
    rec["tls_version"] = tls.version()
    rec["cipher"] = tls.cipher()[0]
    rec["resumed"] = tls.session_reused
    tls.settimeout(None)
    conn.settimeout(None)
    state = {"last": time.monotonic(), "idle": False, "done": False}

    def watchdog():
        while not state["done"]:
            time.sleep(0.1)
            if time.monotonic() - state["last"] > policy["idle_timeout"]:
                state["idle"] = True
                for sk in (conn, tls):
                    try:
                        socket.socket.shutdown(sk, socket.SHUT_RDWR)
                    except OSError:
                        pass
                return

    threading.Thread(target=watchdog, daemon=True).start()

    def pump_up():
        try:
            while True:
                b = conn.recv(65536)
                if not b:
                    break
                tls.sendall(b)
                counts["up"] += len(b)
                state["last"] = time.monotonic()
        except OSError:
            pass
        try:
            socket.socket.shutdown(tls, socket.SHUT_WR)
        except OSError:
            pass

    t = threading.Thread(target=pump_up, daemon=True)
    t.start()
    try:
        while True:
            try:
                b = tls.recv(65536)
            except ssl.SSLEOFError:
                b = b""
            if not b:
                break
            conn.sendall(b)
            counts["down"] += len(b)
            state["last"] = time.monotonic()
    except OSError:
        pass
    try:
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    t.join(60)
    state["done"] = True
    if tls.session is not None:
        SESSIONS[(host, policy["upstream_port"])] = tls.session  # resumption (DESIGN flow step 6)
    conn.close()
    tls.close()
    done("ok", "idle_timeout" if state["idle"] else "completed")


def main():
    global ARGS
    p = argparse.ArgumentParser(prog="tlsgate")
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker", help="serve one policy")
    w.add_argument("--policy", required=True)
    w.add_argument("--listen", required=True)
    w.add_argument("--log-format", choices=["text", "json"], default="text")
    w.add_argument("--log-level", choices=["info", "debug"], default="info")
    ARGS = p.parse_args()

    with open(ARGS.policy, "rb") as f:
        pol = tomllib.load(f)
    policy = dict(
        name=ARGS.policy.rsplit("/", 1)[-1].removesuffix(".toml"),
        networks=[ipaddress.ip_network(n) for n in pol["match"]["networks"]],
        port=int(pol["match"]["port"]), upstream_port=int(pol["upstream"]["port"]),
        sni=pol["upstream"]["server_name"],
        connect_timeout=parse_duration(pol["upstream"].get("connect_timeout", "5s")),
        max_connections=int(pol.get("limits", {}).get("max_connections", 10000)),
        idle_timeout=parse_duration(pol.get("limits", {}).get("idle_timeout", "5m")))
    ctx = ssl.create_default_context(cafile=pol["tls"]["trust"])
    ctx.minimum_version = VERSIONS[pol["tls"].get("min_version", "1.2")]

    host, _, port = ARGS.listen.rpartition(":")
    host = host.strip("[]")
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    srv = socket.socket(fam, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.bind((host, int(port)))
    srv.listen(512)
    srv.settimeout(0.5)
    local_addrs = set()
    import subprocess
    out = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) > 3:
            local_addrs.add(f[3].split("/")[0])
    active, active_lock = [0], threading.Lock()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log("worker listening", listen=ARGS.listen, policy=policy["name"])
    while not stop.is_set():
        try:
            c, a = srv.accept()
        except socket.timeout:
            continue
        with active_lock:
            full = active[0] >= policy["max_connections"]
            if not full:
                active[0] += 1
        if full:
            c.close()
            log("connection closed", policy=policy["name"], client=fmt_addr(unmap(a[0]), a[1]),
                bytes_up=0, bytes_down=0, result="refused", reason="max_connections")
            continue

        def run(c=c, a=a):
            try:
                handle(c, a, policy, ctx, local_addrs)
            finally:
                with active_lock:
                    active[0] -= 1

        threading.Thread(target=run, daemon=True).start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
