"""The worker's log lines through the real binary in the lab: JSON values typed, every
empty field `-`, the worker's own lines saying which worker, and no line forged by bytes
from the network (a certificate SAN with CRLF, a Host header with CR and ESC).
"""
import json
import re
import subprocess

from conftest import PY

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (trace|debug|info|notice|warning|error|critical) ")
FORGED = "2026-01-01T00:00:00.000Z info connection closed policy=forged result=ok"


def json_lines(worker):
    return [json.loads(l) for l in worker.log_text().splitlines() if l.strip()]


def assert_every_line_is_one_event(log):
    """Each line starts with a timestamp and level; no raw CR or ESC anywhere."""
    assert "\r" not in log and "\x1b" not in log, repr(log)
    for line in log.splitlines():
        assert TS.match(line), "a log line that is not an event (forged or split?): %r\nlog:\n%s" % (line, log)


def test_json_values_are_typed_and_worker_lines_name_the_worker(lab, tls_server, worker, redirect, plain_client,
                                                                listen_port):
    tls_server("good", "198.19.0.10")
    w = worker(listen_port, networks=["198.19.0.10/32"], log_format="json")
    redirect(listen_port)
    (r,) = plain_client("198.19.0.10", 80, nbytes=25)
    assert r["error"] is None and r["recv_len"] == 25, r
    w.wait_connections(1)
    (conn,) = [rec for rec in json_lines(w) if rec["msg"] == "connection closed"]
    assert conn["resumed"] is False, conn
    assert conn["bytes_up"] == 25 and conn["bytes_down"] == 25, conn
    assert isinstance(conn["duration_ms"], int), conn
    assert conn["alpn"] == "-", conn  # no ALPN offered or agreed: present, like every empty field
    assert conn["policy"] == "test" and conn["result"] == "ok", conn
    (listening,) = [rec for rec in json_lines(w) if rec["msg"] == "worker listening"]
    assert isinstance(listening["pid"], int) and listening["policy"] == "test", listening
    w.stop()
    by_msg = {rec["msg"]: rec for rec in json_lines(w)}
    for msg in ("worker stopping", "worker stopped"):
        assert msg in by_msg, w.log_text()
        assert by_msg[msg]["policy"] == "test" and by_msg[msg]["pid"] == listening["pid"], by_msg[msg]
    assert isinstance(by_msg["worker stopping"]["open_connections"], int), by_msg["worker stopping"]
    assert isinstance(by_msg["worker stopped"]["cut_connections"], int), by_msg["worker stopped"]


def test_text_connection_line_has_alpn_dash_in_readme_order(lab, tls_server, worker, redirect, plain_client,
                                                            listen_port):
    tls_server("good", "198.19.0.10")
    w = worker(listen_port, networks=["198.19.0.10/32"])
    redirect(listen_port)
    plain_client("198.19.0.10", 80, nbytes=10)
    w.wait_connections(1)
    (line,) = [l for l in w.log_text().splitlines() if " connection closed " in l]
    keys = re.findall(r" ([a-z_]+)=", line)
    assert keys == ["policy", "client", "dst", "upstream", "sni", "tls_version", "cipher", "resumed", "alpn",
                    "bytes_up", "bytes_down", "duration_ms", "result", "reason", "detail"], line
    assert " alpn=- " in line, line


def check_crlf_san_leaf(pki):
    """The PKI's crlfsan leaf (Scripts/make-test-pki.sh): a self-signed certificate whose DNS
    SAN holds CR LF and FORGED after them."""
    sans = subprocess.run(["openssl", "x509", "-in", pki / "crlfsan.pem", "-noout", "-ext", "subjectAltName"],
                          check=True, capture_output=True, timeout=30).stdout
    assert b"evil.test\r\n" + FORGED.encode() in sans, "the test certificate lacks its CRLF line: %r" % sans


def test_crlf_in_a_certificate_san_cannot_forge_a_log_line(lab, pki, tls_server, worker, redirect, plain_client,
                                                           listen_port):
    check_crlf_san_leaf(pki)
    tls_server("crlfsan", "198.19.0.10")
    w = worker(listen_port, networks=["198.19.0.10/32"])
    redirect(listen_port)
    (r,) = plain_client("198.19.0.10", 80, nbytes=100, timeout=20)
    assert r["recv_len"] == 0, r
    (rec,) = w.wait_connections(1)
    assert rec["reason"] == "tls_verify_failed", rec
    log = w.log_text()
    audits = [l for l in log.splitlines() if " certificate rejected " in l]
    assert len(audits) == 1, log
    assert 'cert_sans="DNS:evil.test\\r\\n%s"' % FORGED in audits[0], audits[0]
    assert not any(l.startswith(FORGED[:24]) for l in log.splitlines()), log
    assert_every_line_is_one_event(log)


def test_host_header_with_cr_and_esc_gives_one_400_line(lab, pki, tls_server, worker, redirect, listen_port):
    tls_server("good", "198.19.0.10")
    w = worker(listen_port, networks=["198.19.0.10/32"], server_name="http-host",
               upstream_extra='allowed_names = ["good.test"]\non_failure = "close"\n')
    redirect(listen_port)
    # No ":" in it (that would make it a malformed port): the CR and ESC reach the detail.
    request = b"GET / HTTP/1.1\r\nHost: good\rtest\x1b[2Jwarning forged result=ok\r\n\r\n"
    # A real client: sends the request, keeps its side open, reads until the gateway closes.
    client = ("import socket,sys\n"
              "s = socket.create_connection(('198.19.0.10', 80), timeout=10)\n"
              "s.sendall(sys.stdin.buffer.read())\n"
              "data = b''\n"
              "for _ in range(100):\n"
              "    chunk = s.recv(65536)\n"
              "    if not chunk: break\n"
              "    data += chunk\n"
              "sys.stdout.buffer.write(data)\n")
    r = subprocess.run(lab.exec_argv(lab.client, [PY, "-c", client]), input=request, capture_output=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"HTTP/1.1 400 Bad Request"), r.stdout
    (rec,) = w.wait_connections(1)
    assert rec["reason"] == "bad_request", rec
    log = w.log_text()
    (line,) = [l for l in log.splitlines() if " connection closed " in l]
    assert 'detail="Host header \\"good\\rtest\\x1b[2Jwarning forged result=ok\\" is not a host name"' in line, line
    assert_every_line_is_one_event(log)
