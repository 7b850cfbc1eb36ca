"""Real clients through the real worker, as a user runs them: curl, wget, Python's urllib and
http.client, against nginx over verified TLS. These clients keep their side of the
connection open after the request (no half-close), which is what broke `http-host`
before: the worker never read a request head that was not followed by a FIN.

Needs root (network namespaces + nftables), nginx, curl and wget (Scripts/setup.sh).
Skipped elsewhere with the reason; under CI a missing requirement fails.
"""
import json
import shutil
import subprocess
import time

import pytest

from conftest import PY, _popen, _stop_process, unavailable

NGINX_ADDR = "198.19.0.10"
NGINX_PORT = 8444          # not 443: other modules start their own servers there
PAGE = "hello through tlsgate, over verified TLS\n"


@pytest.fixture(scope="module")
def nginx(lab, pki, tmp_path_factory):
    """nginx in the server namespace on 198.19.0.10:8444 with the test PKI's good.test
    certificate; /hello is a small page, /echo-host answers with the Host it was asked."""
    for tool in ("nginx", "curl", "wget"):
        if shutil.which(tool) is None and not shutil.which(tool, path="/usr/sbin"):
            unavailable("needs `%s` (run Scripts/setup.sh)" % tool)
    run = tmp_path_factory.mktemp("nginx")
    (run / "www").mkdir()
    (run / "tmp").mkdir()
    (run / "www" / "hello").write_text(PAGE)
    conf = run / "nginx.conf"
    conf.write_text("""
user root;
worker_processes 1;
daemon off;
pid {run}/nginx.pid;
error_log {run}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log {run}/access.log;
  client_body_temp_path {run}/tmp; proxy_temp_path {run}/tmp; fastcgi_temp_path {run}/tmp;
  uwsgi_temp_path {run}/tmp; scgi_temp_path {run}/tmp;
  keepalive_timeout 30s;
  server {{
    listen {addr}:{port} ssl;
    ssl_certificate {pki}/good-chain.pem; ssl_certificate_key {pki}/good.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    root {run}/www;
    location = /echo-host {{ default_type text/plain; return 200 "host=$host\\n"; }}
  }}
}}
""".format(run=run, pki=pki, addr=NGINX_ADDR, port=NGINX_PORT))
    proc = start_nginx(lab, conf, NGINX_ADDR, NGINX_PORT)
    yield run
    _stop_process(proc)


def start_nginx(lab, conf, addr, port):
    """nginx -c conf in the server namespace, once it listens on addr:port (bounded: 10 s)."""
    proc = _popen(lab.exec_argv(lab.server, ["nginx", "-c", conf]), stdout=subprocess.DEVNULL,
                  stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = lab.run(lab.server, ["ss", "-Hltn", "sport = :%d" % port], check=False)
        if addr in r.stdout:
            return proc
        if proc.poll() is not None:
            pytest.fail("nginx exited: %s" % proc.stderr.read().decode(errors="replace"), pytrace=False)
        time.sleep(0.1)
    _stop_process(proc)
    pytest.fail("nginx did not listen on %s:%d within 10s" % (addr, port), pytrace=False)


def http_host_policy(allowed=('good.test',), timeout="3s"):
    return dict(upstream_port=NGINX_PORT, server_name="http-host",
                upstream_extra='allowed_names = [%s]\nhost_header_timeout = "%s"\n'
                % (", ".join('"%s"' % a for a in allowed), timeout))


@pytest.fixture
def http_worker(worker, redirect, listen_port):
    def start(**policy):
        w = worker(listen_port, networks=("%s/32" % NGINX_ADDR,), **policy)
        redirect(listen_port, v4="%s/32" % NGINX_ADDR, v6=None)
        return w
    return start


def client(lab, argv, timeout=20):
    t0 = time.monotonic()
    r = lab.run(lab.client, argv, timeout=timeout, check=False)
    return r, time.monotonic() - t0


def test_http_host_curl_keeps_its_side_open(lab, nginx, http_worker):
    w = http_worker(**http_host_policy())
    r, took = client(lab, ["curl", "-sS", "--max-time", "10", "-H", "Host: good.test",
                           "http://%s/hello" % NGINX_ADDR])
    assert r.returncode == 0 and r.stdout == PAGE, (r.returncode, r.stdout, r.stderr, w.log_text())
    assert took < 2.5, "curl took %.1fs: the request head was not read when it arrived" % took
    (rec,) = w.wait_connections(1)
    assert (rec["result"], rec["reason"], rec["sni"]) == ("ok", "completed", "good.test"), rec


def test_http_host_wget(lab, nginx, http_worker):
    w = http_worker(**http_host_policy())
    r, took = client(lab, ["wget", "-q", "-O", "-", "--timeout=10", "--tries=1", "--header=Host: good.test",
                           "http://%s/hello" % NGINX_ADDR])
    assert r.returncode == 0 and r.stdout == PAGE, (r.returncode, r.stdout, r.stderr, w.log_text())
    assert took < 2.5, took
    (rec,) = w.wait_connections(1)
    assert (rec["result"], rec["sni"]) == ("ok", "good.test"), rec


def test_http_host_python_urllib(lab, nginx, http_worker):
    w = http_worker(**http_host_policy())
    code = ("import urllib.request,sys\n"
            "req = urllib.request.Request('http://%s/hello', headers={'Host': 'good.test'})\n"
            "sys.stdout.write(urllib.request.urlopen(req, timeout=10).read().decode())\n" % NGINX_ADDR)
    r, took = client(lab, [PY, "-c", code])
    assert r.returncode == 0 and r.stdout == PAGE, (r.returncode, r.stdout, r.stderr, w.log_text())
    assert took < 2.5, took
    (rec,) = w.wait_connections(1)
    assert rec["result"] == "ok", rec


def test_http_host_keep_alive_serves_later_requests(lab, nginx, http_worker):
    """Three requests on one connection (http.client keeps it open between them): all are
    answered over the one TLS connection verified for the first request's Host."""
    w = http_worker(**http_host_policy())
    code = ("import http.client,json\n"
            "c = http.client.HTTPConnection('%s', 80, timeout=10)\n"
            "out = []\n"
            "for path in ('/hello', '/echo-host', '/hello'):\n"
            "    c.request('GET', path, headers={'Host': 'good.test'})\n"
            "    r = c.getresponse(); out.append([r.status, r.read().decode()])\n"
            "print(json.dumps({'answers': out, 'port': c.sock.getsockname()[1]}))\n" % NGINX_ADDR)
    r, took = client(lab, [PY, "-c", code])
    assert r.returncode == 0, (r.stdout, r.stderr, w.log_text())
    res = json.loads(r.stdout)
    assert res["answers"] == [[200, PAGE], [200, "host=good.test\n"], [200, PAGE]], res
    assert took < 3, took
    (rec,) = w.wait_connections(1)   # one connection for the three requests
    assert rec["result"] == "ok" and rec["client"].endswith(":%d" % res["port"]), rec


@pytest.mark.parametrize("tool", ["curl", "wget", "urllib"])
def test_http_host_disallowed_name_gets_403(tool, lab, nginx, http_worker):
    w = http_worker(**http_host_policy())
    url = "http://%s/hello" % NGINX_ADDR
    if tool == "curl":
        argv = ["curl", "-sS", "--max-time", "10", "-o", "/dev/stdout", "-w", "\nstatus=%{http_code}",
                "-H", "Host: evil.test", url]
    elif tool == "wget":
        argv = ["wget", "-S", "--content-on-error", "-O", "-", "--timeout=10", "--tries=1", "--header=Host: evil.test", url]
    else:
        code = ("import urllib.request,urllib.error,sys\n"
                "req = urllib.request.Request(sys.argv[1], headers={'Host': 'evil.test'})\n"
                "try:\n"
                "    urllib.request.urlopen(req, timeout=10)\n"
                "except urllib.error.HTTPError as e:\n"
                "    sys.stdout.write('%d\\n%s' % (e.code, e.read().decode()))\n")
        argv = [PY, "-c", code, url]
    r, took = client(lab, argv)
    out = r.stdout + r.stderr
    assert "403" in out and "is not in the policy's allowed_names" in out, out
    assert took < 2.5, took
    (rec,) = w.wait_connections(1)
    assert (rec["result"], rec["reason"]) == ("refused", "host_not_allowed"), rec
    access = (nginx / "access.log").read_text() if (nginx / "access.log").exists() else ""
    assert "evil.test" not in access


def test_fixed_name_policy_with_curl(lab, nginx, http_worker):
    w = http_worker(upstream_port=NGINX_PORT, server_name="good.test")
    r, took = client(lab, ["curl", "-sS", "--max-time", "10", "http://%s/hello" % NGINX_ADDR])
    assert r.returncode == 0 and r.stdout == PAGE, (r.stdout, r.stderr, w.log_text())
    (rec,) = w.wait_connections(1)
    assert (rec["result"], rec["sni"]) == ("ok", "good.test"), rec


def test_client_speaking_tls_is_refused(lab, nginx, http_worker):
    """curl https:// to the plain port: refused with client_speaks_tls, nothing relayed.
    (Whether curl's ClientHello or the upstream handshake comes first is a race: curl takes
    a few milliseconds to build its ClientHello after connecting.)"""
    w = http_worker(upstream_port=NGINX_PORT, server_name="good.test")
    r, _ = client(lab, ["curl", "-sS", "--max-time", "10", "-k", "https://%s:80/hello" % NGINX_ADDR])
    assert r.returncode != 0, r.stdout
    (rec,) = w.wait_connections(1)
    assert (rec["result"], rec["reason"], rec["bytes_up"]) == ("refused", "client_speaks_tls", "0"), rec


CLIENT_HELLO_AT_ONCE = (
    "import socket,sys\n"
    "s=socket.socket()\n"
    "s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\n"
    "s.connect((sys.argv[1], 80))\n"
    "s.sendall(bytes.fromhex('160301002e0100002a0303') + bytes(32) + bytes.fromhex('000000'))\n"
    "s.settimeout(10)\n"
    "try:\n"
    "    while s.recv(4096): pass\n"
    "except OSError: pass\n")


def test_client_hello_sent_with_the_connection_is_refused_before_any_upstream_handshake(lab, nginx, http_worker):
    """A client that sends its ClientHello as soon as it is connected: the worker's first
    read sees it, so the gateway refuses before doing any TLS upstream (no version in the
    line). Three times; the old code (checking only after the handshake) never did."""
    w = http_worker(upstream_port=NGINX_PORT, server_name="good.test")
    for _ in range(3):
        client(lab, [PY, "-c", CLIENT_HELLO_AT_ONCE, NGINX_ADDR])
    recs = w.wait_connections(3)
    for rec in recs:
        assert (rec["result"], rec["reason"], rec["bytes_up"]) == ("refused", "client_speaks_tls", "0"), rec
    assert sum(rec.get("tls_version") == "-" for rec in recs) >= 2, recs
