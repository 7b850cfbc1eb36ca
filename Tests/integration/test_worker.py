"""End-to-end tests of `tlsgate worker` in the three-namespace lab (see conftest.py).

Each test checks both what the plain-text client saw and the reason in the worker's
one-line connection log.
"""
import subprocess
import time

import pytest

from conftest import PY, _popen, _stop_process

MiB = 1024 * 1024


def only_record(worker, n=1):
    recs = worker.wait_connections(n)
    assert len(recs) == n, "expected exactly %d connection line(s):\n%s" % (n, worker.log_text())
    return recs


def assert_refused(res):
    """The client must get nothing back: connection closed with zero bytes."""
    assert len(res) == 1
    r = res[0]
    assert r["recv_len"] == 0, r
    # A plain close (error None) or a reset are both acceptable ways to refuse;
    # hanging until the client's timeout is not.
    assert r["error"] is None or "timed out" not in r["error"] and "timeout" not in r["error"], r


def assert_reason(rec, result, reasons, detail_substrings=()):
    reasons = (reasons,) if isinstance(reasons, str) else tuple(reasons)
    assert rec.get("result") == result, rec
    assert rec.get("reason") in reasons, rec
    if detail_substrings:
        detail = rec.get("detail", "").lower()
        assert any(s.lower() in detail for s in detail_substrings), \
            "detail %r contains none of %r (record %r)" % (rec.get("detail"), detail_substrings, rec)


def assert_tls_failure(worker, plain_client, target, reason, details):
    res = plain_client(target, 80, nbytes=4096, timeout=20)
    assert_refused(res)
    (rec,) = only_record(worker)
    assert rec.get("result") in ("failed", "refused"), rec
    assert_reason(rec, rec.get("result"), reason, details)
    return rec


# 1
def test_good_chain_ipv4_4mib(lab, tls_server, worker, redirect, plain_client, listen_port):
    tls_server("good", "198.19.0.10")
    w = worker(listen_port, networks=["198.19.0.10/32"])
    redirect(listen_port)
    (r,) = plain_client("198.19.0.10", 80, nbytes=4 * MiB, timeout=60)
    assert r["error"] is None, r
    assert r["recv_len"] == 4 * MiB, r
    assert r["recv_sha256"] == r["sent_sha256"], r
    (rec,) = only_record(w)
    assert_reason(rec, "ok", "completed")
    assert rec.get("bytes_up") == str(4 * MiB), rec
    assert rec.get("bytes_down") == str(4 * MiB), rec
    assert rec.get("dst") == "198.19.0.10:80", rec
    assert rec.get("upstream") == "198.19.0.10:443", rec
    assert rec.get("sni") == "good.test", rec
    assert rec.get("client", "").startswith("198.18.0.2:"), rec
    assert rec.get("tls_version") in ("TLSv1.2", "TLSv1.3"), rec


# 2
def test_good_chain_ipv6(lab, tls_server, worker, redirect, plain_client, listen_port):
    tls_server("good", "2001:2:0:1::10")
    w = worker(listen_port, networks=["2001:2:0:1::10/128"], listen_host="::")
    redirect(listen_port, v4=None)
    (r,) = plain_client("2001:2:0:1::10", 80, nbytes=1 * MiB, timeout=60)
    assert r["error"] is None, r
    assert r["recv_len"] == 1 * MiB and r["recv_sha256"] == r["sent_sha256"], r
    (rec,) = only_record(w)
    assert_reason(rec, "ok", "completed")
    assert rec.get("bytes_up") == str(MiB) and rec.get("bytes_down") == str(MiB), rec
    assert rec.get("upstream") in ("[2001:2:0:1::10]:443", "2001:2:0:1::10:443"), rec


# 3
def test_wrong_name(lab, tls_server, worker, redirect, plain_client, listen_port):
    srv = tls_server("wrongname", "198.19.0.12")
    w = worker(listen_port, networks=["198.19.0.12/32"])
    redirect(listen_port)
    assert_tls_failure(w, plain_client, "198.19.0.12", "tls_verify_failed", ["hostname mismatch"])
    assert srv.accepted(), "the worker should have reached the server"


# 4
def test_expired(lab, tls_server, worker, redirect, plain_client, listen_port):
    tls_server("expired", "198.19.0.13")
    w = worker(listen_port, networks=["198.19.0.13/32"])
    redirect(listen_port)
    assert_tls_failure(w, plain_client, "198.19.0.13", "tls_verify_failed", ["expired"])


# 5
def test_self_signed(lab, tls_server, worker, redirect, plain_client, listen_port):
    tls_server("selfsigned", "198.19.0.14")
    w = worker(listen_port, networks=["198.19.0.14/32"])
    redirect(listen_port)
    assert_tls_failure(w, plain_client, "198.19.0.14", "tls_verify_failed", ["self-signed", "self signed"])


# 6
def test_untrusted_root(lab, tls_server, worker, redirect, plain_client, listen_port):
    tls_server("untrusted", "198.19.0.15")
    w = worker(listen_port, networks=["198.19.0.15/32"])
    redirect(listen_port)
    assert_tls_failure(w, plain_client, "198.19.0.15", "tls_verify_failed", ["unable to get local issuer"])


# 7
def test_legacy_protocol_server(lab, tls_server, worker, redirect, plain_client, listen_port):
    tls_server("good", "198.19.0.16", min_version="1.0", max_version="1.1")
    w = worker(listen_port, networks=["198.19.0.16/32"])
    redirect(listen_port)
    assert_tls_failure(w, plain_client, "198.19.0.16", "tls_handshake_failed", ["protocol"])


# 8
def test_direct_connection_to_listen_port(lab, tls_server, worker, redirect, plain_client, listen_port):
    srv = tls_server("good", "198.19.0.10")
    w = worker(listen_port, networks=["198.19.0.10/32"])
    redirect(listen_port)
    res = plain_client(lab.gw_lan_v4, listen_port, nbytes=1024, timeout=20)
    assert_refused(res)
    (rec,) = only_record(w)
    assert_reason(rec, "refused", ("not_redirected", "destination_is_gateway"))
    time.sleep(0.3)
    assert srv.accepted() == [], "the TLS server must not see any connection: %r" % srv.events()


# 9
def test_destination_not_in_policy(lab, tls_server, worker, redirect, plain_client, listen_port):
    other = tls_server("good", "198.19.0.11")
    w = worker(listen_port, networks=["198.19.0.10/32"])
    redirect(listen_port, v4="198.19.0.11")
    res = plain_client("198.19.0.11", 80, nbytes=1024, timeout=20)
    assert_refused(res)
    (rec,) = only_record(w)
    assert_reason(rec, "refused", "destination_not_in_policy")
    assert rec.get("dst") == "198.19.0.11:80", rec
    time.sleep(0.3)
    assert other.accepted() == [], "the server must not see any connection: %r" % other.events()


# 10
def test_server_refuses(lab, worker, redirect, plain_client, listen_port):
    # Nothing listens on 198.19.0.17:443: the server's kernel answers RST.
    w = worker(listen_port, networks=["198.19.0.17/32"])
    redirect(listen_port)
    res = plain_client("198.19.0.17", 80, nbytes=1024, timeout=20)
    assert_refused(res)
    (rec,) = only_record(w)
    assert rec.get("result") in ("failed", "refused"), rec
    assert_reason(rec, rec.get("result"), "connect_refused")


# 11
def test_half_close_with_server_greeting(lab, tls_server, worker, redirect, plain_client, listen_port):
    greeting = "220 tlsgate-test greeting\r\n"
    tls_server("good", "198.19.0.18", greeting=greeting)
    w = worker(listen_port, networks=["198.19.0.18/32"])
    redirect(listen_port)
    (r,) = plain_client("198.19.0.18", 80, nbytes=256 * 1024, timeout=30, expect_prefix=greeting, half_close=True)
    assert r["error"] is None, r
    assert r["prefix_ok"], r
    assert r["recv_len"] == len(greeting) + 256 * 1024, r
    assert r["recv_sha256"] == r["sent_sha256"], r
    (rec,) = only_record(w)
    assert_reason(rec, "ok", "completed")
    assert rec.get("bytes_up") == str(256 * 1024), rec
    assert rec.get("bytes_down") == str(len(greeting) + 256 * 1024), rec


# 12
def test_concurrent_connections_json_log(lab, tls_server, worker, redirect, plain_client, listen_port):
    n = 20
    srv = tls_server("good", "198.19.0.19")
    w = worker(listen_port, networks=["198.19.0.19/32"], log_format="json")
    redirect(listen_port)
    res = plain_client("198.19.0.19", 80, nbytes=200 * 1024, connections=n, timeout=60)
    bad = [r for r in res if r["error"] is not None or r["recv_len"] != 200 * 1024
           or r["recv_sha256"] != r["sent_sha256"]]
    assert not bad, bad
    recs = w.wait_connections(n, timeout=20)
    assert len(recs) == n, w.log_text()
    for rec in recs:
        assert rec.get("level"), rec
        assert rec.get("ts"), rec
        assert_reason(rec, "ok", "completed")
        assert rec.get("bytes_up") == str(200 * 1024) and rec.get("bytes_down") == str(200 * 1024), rec
    assert len({rec.get("client") for rec in recs}) == n, "client ports must be distinct"
    assert len(srv.accepted()) == n


# 13 (beyond the brief's list): back-pressure. The client reads nothing for a second, so
# the echo piles up at the gateway; when the server ends, everything queued for the
# client must still be delivered before the worker closes it.
def test_slow_reader_gets_everything(lab, tls_server, worker, redirect, plain_client, listen_port):
    tls_server("good", "198.19.0.20")
    w = worker(listen_port, networks=["198.19.0.20/32"])
    redirect(listen_port)
    (r,) = plain_client("198.19.0.20", 80, nbytes=4 * MiB, timeout=60, read_delay=1.0)
    assert r["error"] is None, r
    assert r["recv_len"] == 4 * MiB, "client got %d of %d bytes (truncated)" % (r["recv_len"], 4 * MiB)
    assert r["recv_sha256"] == r["sent_sha256"], r
    (rec,) = only_record(w)
    assert_reason(rec, "ok", "completed")
    assert rec.get("bytes_up") == str(4 * MiB) and rec.get("bytes_down") == str(4 * MiB), rec


# 14 (beyond the brief's list): the server's SYNs vanish -> connect_timeout after the
# policy's connect_timeout (2s), and the client is closed without data.
def test_connect_timeout(lab, worker, redirect, plain_client, listen_port, tmp_path):
    drop = tmp_path / "drop.nft"
    drop.write_text("table inet tlsgate_test_drop {\n"
                    "  chain input { type filter hook input priority filter; policy accept;\n"
                    "    ip daddr 198.19.0.21 tcp dport 443 drop\n  }\n}\n")
    lab.run(lab.server, ["nft", "-f", drop])
    try:
        w = worker(listen_port, networks=["198.19.0.21/32"], connect_timeout="2s")
        redirect(listen_port)
        t0 = time.monotonic()
        res = plain_client("198.19.0.21", 80, nbytes=1024, timeout=20)
        elapsed = time.monotonic() - t0
        assert_refused(res)
        (rec,) = only_record(w)
        assert rec.get("result") in ("failed", "refused"), rec
        assert_reason(rec, rec.get("result"), "connect_timeout")
        assert 1.5 <= elapsed <= 10, "connect_timeout=2s but the client waited %.1fs" % elapsed
    finally:
        lab.run(lab.server, ["nft", "delete", "table", "inet", "tlsgate_test_drop"], check=False)


# 15 (beyond the brief's list): [limits] max_connections = 2 -> a third concurrent
# connection is refused while the first two stay intact.
def test_max_connections(lab, tls_server, worker, redirect, plain_client, listen_port):
    tls_server("good", "198.19.0.22")
    w = worker(listen_port, networks=["198.19.0.22/32"], extra="\n[limits]\nmax_connections = 2\n")
    redirect(listen_port)
    holders = plain_client("198.19.0.22", 80, nbytes=1000, connections=2, hold=3.0, timeout=20,
                           background=True)
    time.sleep(1.0)  # both holders connected and relaying (well within their 3s hold)
    res = plain_client("198.19.0.22", 80, nbytes=1024, timeout=20)
    assert_refused(res)
    held = holders()
    for r in held:
        assert r["error"] is None and r["recv_len"] == 1000 and r["recv_sha256"] == r["sent_sha256"], r
    recs = w.wait_connections(3)
    refused = [r for r in recs if r.get("reason") == "max_connections"]
    assert len(refused) == 1, recs
    assert refused[0].get("result") in ("refused", "failed"), refused
    assert sum(1 for r in recs if r.get("reason") == "completed") == 2, recs


# 16 (beyond the brief's list): [limits] idle_timeout = "1s" -> a connection idle for
# longer is closed with reason idle_timeout (after the data already relayed).
def test_idle_timeout(lab, tls_server, worker, redirect, plain_client, listen_port):
    tls_server("good", "198.19.0.23")
    w = worker(listen_port, networks=["198.19.0.23/32"], extra='\n[limits]\nidle_timeout = "1s"\n')
    redirect(listen_port)
    (r,) = plain_client("198.19.0.23", 80, nbytes=1000, hold=8.0, timeout=20)
    assert r["recv_len"] == 1000, r  # the echo came back before the idle period
    assert 0.8 <= r["recv_end_s"] < 6.0, \
        "the worker did not end the idle connection in time (closed after %.1fs)" % r["recv_end_s"]
    (rec,) = only_record(w)
    assert rec.get("reason") == "idle_timeout", rec


# 17 (beyond the brief's list): DESIGN "Flow" step 6 -- a new connection to the same
# server resumes the TLS session cached in the worker.
def test_session_resumption(lab, tls_server, worker, redirect, plain_client, listen_port):
    tls_server("good", "198.19.0.24")
    w = worker(listen_port, networks=["198.19.0.24/32"])
    redirect(listen_port)
    for i in range(2):
        # hold: half-close only after the relay is up (early EOF has its own test, 18).
        (r,) = plain_client("198.19.0.24", 80, nbytes=10000, hold=0.5, timeout=20)
        assert r["error"] is None and r["recv_sha256"] == r["sent_sha256"], r
        w.wait_connections(i + 1)
    first, second = w.wait_connections(2)
    assert_reason(first, "ok", "completed")
    assert_reason(second, "ok", "completed")
    assert first.get("resumed") == "false", first
    assert second.get("resumed") == "true", second


# 18 (beyond the brief's list): the commonest real client -- a short request and an
# immediate half-close (HTTP/1.0 style), i.e. data and FIN reach the gateway before its
# TLS connection to the server is up. Both must be relayed, in that order. Repeated,
# since it depends on timing.
@pytest.mark.parametrize("nbytes", [100, 1024, 10000])
def test_short_request_immediate_half_close(lab, tls_server, worker, redirect, plain_client, listen_port,
                                            nbytes):
    tls_server("good", "198.19.0.25")
    w = worker(listen_port, networks=["198.19.0.25/32"])
    redirect(listen_port)
    for i in range(3):
        (r,) = plain_client("198.19.0.25", 80, nbytes=nbytes, timeout=10, half_close=True)
        assert r["error"] is None and r["recv_len"] == nbytes and r["recv_sha256"] == r["sent_sha256"], \
            "attempt %d: %r" % (i + 1, r)
    recs = w.wait_connections(3)
    for rec in recs:
        assert_reason(rec, "ok", "completed")
        assert rec.get("bytes_up") == str(nbytes) and rec.get("bytes_down") == str(nbytes), rec


# Fail closed, bounded: a client that resets while its upstream connect is pending cancels
# that connect (socket and SSL freed at once), and a pending connect holds its
# max_connections slot. 1,000 connect-then-RST against a black-holed server address with
# max_connections = 10: never more than 10 upstream sockets in SYN-SENT, none left after.
def test_pending_connects_are_bounded_and_cancelled(lab, worker, redirect, listen_port, tmp_path):
    from conftest import PY, _popen
    address = "198.19.0.200"
    lab.run(lab.server, ["ip", "addr", "add", address + "/32", "dev", lab.prefix + "s0"], check=False)
    drop = tmp_path / "blackhole.nft"
    drop.write_text("table inet tlsgate_test_blackhole {\n"
                    "  chain input { type filter hook input priority filter; policy accept;\n"
                    "    ip daddr %s tcp dport 443 drop\n  }\n}\n" % address)
    lab.run(lab.server, ["nft", "-f", drop])
    client = None
    try:
        w = worker(listen_port, networks=[address + "/32"], connect_timeout="20s",
                   extra="\n[limits]\nmax_connections = 10\n")
        redirect(listen_port)
        # Connect, then close with SO_LINGER 0 (a RST); 1,000 times, bounded to 60 s.
        code = ("import socket,struct,sys,time\n"
                "end=time.monotonic()+60\n"
                "n=0\n"
                "for i in range(1000):\n"
                "    if time.monotonic()>end: break\n"
                "    s=socket.socket(); s.settimeout(5)\n"
                "    try:\n"
                "        s.connect((sys.argv[1],80)); n+=1\n"
                "        time.sleep(0.002)\n"
                "    except OSError: pass\n"
                "    s.setsockopt(socket.SOL_SOCKET,socket.SO_LINGER,struct.pack('ii',1,0)); s.close()\n"
                "print(n)\n")
        import subprocess
        client = _popen(lab.exec_argv(lab.client, [PY, "-c", code, address]), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)

        def syn_sent():
            r = lab.run(lab.gw, ["ss", "-Htn", "state", "syn-sent", "dst", address], check=False)
            return len([l for l in r.stdout.splitlines() if l.strip()])

        peak, samples = 0, 0
        deadline = time.monotonic() + 70
        while client.poll() is None and time.monotonic() < deadline:
            peak = max(peak, syn_sent())
            samples += 1
            time.sleep(0.02)
        out, err = client.communicate(timeout=10)
        assert client.returncode == 0, err
        assert int(out.strip()) >= 900, "the client connected only %s times: %s" % (out, err)
        peak = max(peak, syn_sent())
        assert samples >= 5, "sampled ss only %d times" % samples
        assert peak <= 10, "%d upstream sockets in SYN-SENT with max_connections = 10" % peak
        # Every connect was cancelled with its client: nothing waits for the 20 s connect_timeout.
        deadline = time.monotonic() + 5
        while syn_sent() > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert syn_sent() == 0, "upstream connects outlived their clients"
        assert w.proc.poll() is None, w.log_text()
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait(timeout=5)
        lab.run(lab.server, ["nft", "delete", "table", "inet", "tlsgate_test_blackhole"], check=False)


HOSTILE_AFTER_CLOSE_NOTIFY = r'''
# A hostile TLS server: handshake, close_notify, then MiB of raw bytes on the same TCP
# connection (memory BIOs, so the close_notify goes out without waiting for the peer's).
import socket, ssl, sys, time
cert, key, bind, mib = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((bind, 443)); srv.listen(4); print("ready", flush=True)
srv.settimeout(60)
c, _ = srv.accept(); c.settimeout(30)
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = ctx.wrap_bio(inc, out, server_side=True)
while True:
    try:
        obj.do_handshake(); break
    except ssl.SSLWantReadError:
        if out.pending: c.sendall(out.read())
        data = c.recv(65536)
        if not data: sys.exit(1)
        inc.write(data)
if out.pending: c.sendall(out.read())
try:
    obj.unwrap()
except ssl.SSLError:     # wants the peer's close_notify (or saw its data): ours is written
    pass
notify = out.read()
if not notify:
    sys.exit("no close_notify was produced")
c.sendall(notify)                           # close_notify
junk = b"\x17\x03\x03\x40\x00" + b"\xaa" * 16379   # looks like application-data records
sent, t0 = 0, time.monotonic()
try:
    while sent < mib << 20 and time.monotonic() - t0 < 60:
        c.sendall(junk); sent += len(junk)
except OSError:
    pass
print("sent %d" % sent, flush=True)
time.sleep(1)
'''


def _rss_kib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_bytes_after_close_notify_do_not_grow_memory(lab, pki, worker, redirect, listen_port):
    """Item 9 of the fail-closed issue: after the server's close_notify, 100 MiB more bytes
    from it must not pile up in the worker (they are dropped, or the kernel's window stops
    them); the client keeps its side open meanwhile."""
    p = _popen(lab.exec_argv(lab.server, [PY, "-c", HOSTILE_AFTER_CLOSE_NOTIFY, pki / "good-chain.pem",
                                          pki / "good.key", "198.19.0.26", "100"]),
               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert b"ready" in p.stdout.readline()
        w = worker(listen_port, networks=["198.19.0.26/32"])
        redirect(listen_port)
        wpid = w.proc.pid   # `ip netns exec` execs the worker in place
        before = _rss_kib(wpid)
        client = ("import socket,sys,time\n"
                  "s=socket.create_connection(('198.19.0.26',80),timeout=90)\n"
                  "n=0\n"
                  "t=time.monotonic()\n"
                  "while time.monotonic()-t<90:\n"
                  "    b=s.recv(65536)\n"
                  "    if not b: break\n"
                  "    n+=len(b)\n"
                  "print(n, flush=True)\n"
                  "time.sleep(float(sys.argv[1]))\n"   # keeps its side open after the FIN
                  "s.close()\n")
        c = _popen(lab.exec_argv(lab.client, [PY, "-c", client, "40"]), stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE)
        peak = before
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and p.poll() is None:
            peak = max(peak, _rss_kib(wpid))
            time.sleep(0.2)
        out = p.stdout.read().decode() + p.stderr.read().decode()
        got = c.stdout.readline().decode().strip()
        _stop_process(c)
        assert "sent" in out, out
        sent = int(out.split()[-1])
        # The server wrote 100 MiB after its close_notify (or the kernel stopped it: then
        # the worker did not read them, which is bounded too).
        print("sent after close_notify: %d bytes; worker RSS %d -> peak %d KiB" % (sent, before, peak))
        assert got == "0", "the client got %s bytes after the server's close_notify" % got
        assert peak - before < 16 * 1024, "worker RSS grew by %d KiB while the server sent %d bytes after " \
            "close_notify" % (peak - before, sent)
    finally:
        _stop_process(p)
