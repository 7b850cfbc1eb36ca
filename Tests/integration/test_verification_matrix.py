"""A badssl-style matrix through the real worker: one TLS server per case (a generated PKI:
root > intermediate > leaves, see matrix/make-matrix-pki.sh), one policy per case, a plain
client through the redirect. Every case asserts the verdict the client sees AND the
worker's logged reason and detail. Needs root (network namespaces, nftables)."""
import itertools
import os
import select
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PY, TLSGATE_BIN, Worker, _popen, _require_worker, _stop_process, _wait_ready, ECHO_SERVER

HERE = Path(__file__).resolve().parent
MATRIX_PKI = HERE / "matrix" / "make-matrix-pki.sh"
_addresses = itertools.count(40)  # 198.19.0.40 and up: one server address per case


@pytest.fixture(scope="session")
def mpki(pki, tmp_path_factory):
    out = tmp_path_factory.mktemp("matrix-pki")
    subprocess.run(["bash", str(MATRIX_PKI), str(pki), str(out)], check=True, timeout=120, capture_output=True)
    return out


def spki_pin(cert):
    r = subprocess.run(["sh", "-c", "openssl x509 -in '%s' -pubkey -noout | openssl pkey -pubin -outform der "
                                    "| openssl dgst -sha256 -binary | base64" % cert],
                       capture_output=True, text=True, check=True, timeout=30)
    return "sha256/" + r.stdout.strip()


@pytest.fixture
def server(lab, tmp_path):
    """server(chain, key, min_version, max_version, alpn, client_ca) -> address it listens on (port 443)."""
    procs = []

    def start(chain, key, min_version="1.2", max_version="1.3", alpn="", client_ca="", address=None):
        weak = "sha1" in chain or "rsa1024" in chain
        address = address or "198.19.0.%d" % next(_addresses)
        lab.run(lab.server, ["ip", "addr", "add", address + "/32", "dev", lab.prefix + "s0"], check=False)
        argv = [PY, ECHO_SERVER, "--cert", chain, "--key", key, "--bind", address, "--port", "443",
                "--min-version", min_version, "--max-version", max_version, "--max-seconds", "120"]
        if alpn:
            argv += ["--alpn", alpn]
        if weak:
            argv += ["--weak"]
        if client_ca:
            argv += ["--client-ca", client_ca]
        proc = _popen(lab.exec_argv(lab.server, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _wait_ready(proc, "TLS server %s" % address)
        procs.append(proc)
        return address

    yield start
    for p in procs:
        _stop_process(p)


@pytest.fixture
def s_server(lab):
    """s_server(*args, naccept=20) -> address of an `openssl s_server -www` started with args."""
    procs = []

    def start(*args, naccept=20):
        address = "198.19.0.%d" % next(_addresses)
        lab.run(lab.server, ["ip", "addr", "add", address + "/32", "dev", lab.prefix + "s0"], check=False)
        argv = ["openssl", "s_server", "-accept", "%s:443" % address] + [str(a) for a in args] + [
            "-www", "-naccept", str(naccept)]
        proc = _popen(lab.exec_argv(lab.server, argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                      stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        buf = b""
        while time.monotonic() < deadline and b"ACCEPT" not in buf:
            r, _, _ = select.select([proc.stdout.fileno()], [], [], 0.2)
            if r:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
        assert b"ACCEPT" in buf, buf
        procs.append(proc)
        return address

    yield start
    for p in procs:
        _stop_process(p)


@pytest.fixture
def staple_server(lab):
    """staple_server(chain, key, status_file, naccept=20) -> address of an `openssl s_server -www`
    stapling that response."""
    procs = []

    def start(cert, key, chain, status_file, naccept=20):
        address = "198.19.0.%d" % next(_addresses)
        lab.run(lab.server, ["ip", "addr", "add", address + "/32", "dev", lab.prefix + "s0"], check=False)
        argv = ["openssl", "s_server", "-accept", "%s:443" % address, "-cert", cert, "-key", key,
                "-cert_chain", chain, "-status_file", status_file, "-www", "-naccept", str(naccept)]
        proc = _popen(lab.exec_argv(lab.server, argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                      stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        buf = b""
        while time.monotonic() < deadline and b"ACCEPT" not in buf:
            r, _, _ = select.select([proc.stdout.fileno()], [], [], 0.2)
            if r:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
        assert b"ACCEPT" in buf, buf
        procs.append(proc)
        return address

    yield start
    for p in procs:
        _stop_process(p)


@pytest.fixture
def gate(lab, tmp_path, listen_port, redirect):
    """gate(address, policy_body) -> Worker serving a policy for `address`:80 -> 443."""
    _require_worker()
    started = []

    def start(address, upstream='server_name = "good.test"', tls="", trust=None):
        trust_line = 'trust = "%s"\n' % trust if trust else ""
        text = ('[match]\nnetworks = ["%s/32"]\nport = 80\n\n[upstream]\nport = 443\nconnect_timeout = "3s"\n%s\n\n'
                '[tls]\n%s%s\n' % (address, upstream, trust_line, tls))
        policy = tmp_path / ("case-%d.toml" % len(started))
        policy.write_text(text)
        log_path = tmp_path / ("worker-%d.log" % len(started))
        argv = [TLSGATE_BIN, "worker", "--policy", policy, "--listen", "0.0.0.0:%d" % listen_port]
        with open(log_path, "wb") as logf:
            proc = _popen(lab.exec_argv(lab.gw, argv), stdin=subprocess.DEVNULL, stdout=logf,
                          stderr=subprocess.STDOUT)
        w = Worker(proc, log_path, "text", "0.0.0.0:%d" % listen_port, policy)
        started.append(w)
        deadline = time.monotonic() + 15
        while "worker listening" not in w.log_text():
            assert proc.poll() is None and time.monotonic() < deadline, "worker did not start:\n" + w.log_text()
            time.sleep(0.05)
        if len(started) == 1:
            redirect(listen_port, v4="198.19.0.0/24", v6=None)
        return w

    yield start
    for w in started:
        w.stop()


def exchange(lab, address, payload=b"hello through tlsgate\n", timeout=10):
    """Plain TCP from the client namespace, as a real client: send and keep the write side
    open; stop once the server's echo of the payload is complete, or when the other end
    closes (an HTTP answer from s_server -www, a refusal). Returns the bytes."""
    code = ("import socket,sys\n"
            "p=bytes.fromhex(sys.argv[2])\n"
            "s=socket.create_connection((sys.argv[1],80),timeout=%d)\n"
            "d=b''\n"
            "try:\n"
            "    s.sendall(p)\n"
            "    while d != p:\n"
            "        b=s.recv(65536)\n"
            "        if not b: break\n"
            "        d+=b\n"
            "except OSError: pass\n"
            "s.close()\n"
            "sys.stdout.write(d.hex())\n" % timeout)
    r = lab.run(lab.client, [PY, "-c", code, address, payload.hex()], timeout=timeout + 10)
    return bytes.fromhex(r.stdout.strip())


def verdict(worker):
    (rec,) = worker.wait_connections(1)
    return rec


def expect_ok(lab, worker, address):
    assert exchange(lab, address) == b"hello through tlsgate\n", worker.log_text()
    rec = verdict(worker)
    assert (rec["result"], rec["reason"]) == ("ok", "completed"), rec
    return rec


def expect_refused(lab, worker, address, reason, *details):
    assert exchange(lab, address) == b"", worker.log_text()
    rec = verdict(worker)
    assert rec["reason"] == reason, rec
    detail = rec.get("detail", "").lower()
    assert any(d.lower() in detail for d in details), "detail %r, wanted one of %r" % (rec.get("detail"), details)
    return rec


# (id, server chain, server key, upstream line, [tls] extra, expected reason or None, detail substrings)
CASES = [
    ("good-chain", "B/good-chain.pem", "B/good.key", None, "", None, ()),
    ("missing-intermediate", "B/good.pem", "B/good.key", None, "", "tls_verify_failed",
     ("unable to get local issuer certificate",)),
    ("expired", "B/expired-chain.pem", "B/expired.key", None, "", "tls_verify_failed", ("certificate has expired",)),
    ("not-yet-valid", "M/notyet-chain.pem", "M/notyet.key", None, "", "tls_verify_failed",
     ("certificate is not yet valid",)),
    ("wrong-host", "B/wrongname-chain.pem", "B/wrongname.key", None, "", "tls_verify_failed", ("hostname mismatch",)),
    ("wildcard-good", "M/wild-chain.pem", "M/wild.key", 'server_name = "a.wild.test"', "", None, ()),
    ("wildcard-too-deep", "M/wild-chain.pem", "M/wild.key", 'server_name = "a.b.wild.test"', "", "tls_verify_failed",
     ("hostname mismatch",)),
    ("ip-san-by-ip", "M/ipsan-chain.pem", "M/ipsan.key", 'server_name = "198.19.0.20"', "", None, ()),
    ("ip-san-by-name", "M/ipsan-chain.pem", "M/ipsan.key", None, "", "tls_verify_failed", ("hostname mismatch",)),
    ("self-signed", "B/selfsigned-chain.pem", "B/selfsigned.key", None, "", "tls_verify_failed",
     ("self-signed certificate", "self signed certificate")),
    ("untrusted-root", "B/untrusted-chain.pem", "B/untrusted.key", None, "", "tls_verify_failed",
     ("unable to get local issuer certificate",)),
    ("revoked-by-crl", "M/revoked-chain.pem", "M/revoked.key", None, 'crl = "M/crl.pem"', "tls_verify_failed",
     ("certificate revoked",)),
    ("crl-not-revoked", "M/stapled-chain.pem", "M/stapled.key", None, 'crl = "M/crl.pem"', None, ()),
    ("crl-expired", "M/stapled-chain.pem", "M/stapled.key", None, 'crl = "M/crl-expired.pem"', "tls_verify_failed",
     ("crl has expired",)),
    ("sha1-signed", "M/sha1-chain.pem", "M/sha1.key", None, "", "tls_verify_failed", ("too weak",)),
    ("rsa-1024", "M/rsa1024-chain.pem", "M/rsa1024.key", None, "", "tls_verify_failed", ("too weak", "too small")),
    ("no-serverauth-eku", "M/noeku-chain.pem", "M/noeku.key", None, "", "tls_verify_failed",
     ("unsuitable certificate purpose", "unsupported certificate purpose")),
    ("pin-leaf", "B/good-chain.pem", "B/good.key", None, "pins = [\"PIN:B/good.pem\"]", None, ()),
    ("pin-intermediate-backup", "B/good-chain.pem", "B/good.key", None,
     "pins = [\"PIN:B/selfsigned.pem\", \"PIN:B/intermediate.pem\"]", None, ()),
    ("pin-mismatch", "B/good-chain.pem", "B/good.key", None, "pins = [\"PIN:B/selfsigned.pem\"]", "tls_verify_failed",
     ("matches the policy's pins",)),
    ("pin-only-self-signed", "B/selfsigned-chain.pem", "B/selfsigned.key", None,
     "pins = [\"PIN:B/selfsigned.pem\"]\npin_only = true", None, ()),
    # pin_only honours crl: the leaf is checked against it on the chain that leads to the pin.
    ("pin-only-crl-revoked", "M/revoked-chain.pem", "M/revoked.key", None,
     "pins = [\"PIN:B/intermediate.pem\"]\npin_only = true\ncrl = \"M/crl.pem\"", "tls_verify_failed",
     ("certificate revoked",)),
    ("pin-only-crl-not-revoked", "M/stapled-chain.pem", "M/stapled.key", None,
     "pins = [\"PIN:B/intermediate.pem\"]\npin_only = true\ncrl = \"M/crl.pem\"", None, ()),
    ("pin-only-crl-expired", "M/stapled-chain.pem", "M/stapled.key", None,
     "pins = [\"PIN:B/intermediate.pem\"]\npin_only = true\ncrl = \"M/crl-expired.pem\"", "tls_verify_failed",
     ("crl has expired",)),
]


def _resolve(text, pki, mpki):
    def path(token):
        return str((pki if token.startswith("B/") else mpki) / token[2:])
    out = []
    for part in text.split('"'):
        if part.startswith("PIN:"):
            part = spki_pin(path(part[4:]))
        elif part.startswith(("B/", "M/")):
            part = path(part)
        out.append(part)
    return '"'.join(out)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_certificate_matrix(case, lab, pki, mpki, server, gate):
    name, chain, key, upstream, tls, reason, details = case
    # The IP SAN certificate names 198.19.0.20: serve it there.
    fixed = "198.19.0.20" if chain.startswith("M/ipsan") else None
    address = server(_resolve('"%s"' % chain, pki, mpki).strip('"'), _resolve('"%s"' % key, pki, mpki).strip('"'),
                     address=fixed)
    trust = None if "pin_only" in tls else str(pki / "root.pem")
    w = gate(address, upstream or 'server_name = "good.test"', _resolve(tls, pki, mpki), trust=trust)
    if reason is None:
        expect_ok(lab, w, address)
    else:
        expect_refused(lab, w, address, reason, *details)
        if reason == "tls_verify_failed":
            audit = [l for l in w.log_text().splitlines() if "certificate rejected" in l]
            assert len(audit) == 1, w.log_text()
            for field in ("cert_subject=", "cert_issuer=", "cert_not_after=", "cert_sha256=", "verify_error="):
                assert field in audit[0], audit[0]


@pytest.mark.parametrize("server_max, policy, ok", [
    ("1.2", 'min_version = "1.2"', True),
    ("1.2", 'min_version = "1.3"', False),
    ("1.3", 'max_version = "1.2"', False),
    ("1.3", 'min_version = "1.3"', True),
], ids=["tls12-server-default", "tls12-server-min13", "tls13only-server-max12", "tls13-server-min13"])
def test_protocol_versions(server_max, policy, ok, lab, pki, server, gate):
    server_min = "1.3" if server_max == "1.3" else "1.2"
    address = server(str(pki / "good-chain.pem"), str(pki / "good.key"), min_version=server_min, max_version=server_max)
    w = gate(address, tls=policy, trust=str(pki / "root.pem"))
    if ok:
        rec = expect_ok(lab, w, address)
        assert rec["tls_version"] == ("TLSv1.3" if server_max == "1.3" else "TLSv1.2"), rec
    else:
        expect_refused(lab, w, address, "tls_handshake_failed", "protocol", "version")


def test_mtls_with_and_without_client_certificate(lab, pki, mpki, server, gate):
    address = server(str(pki / "good-chain.pem"), str(pki / "good.key"), client_ca=str(mpki / "client-ca.pem"))
    with_cert = gate(address, trust=str(pki / "root.pem"),
                     tls='client_certificate = "%s"\nclient_key = "%s"' % (mpki / "client-chain.pem", mpki / "client.key"))
    expect_ok(lab, with_cert, address)
    with_cert.stop()
    without = gate(address, trust=str(pki / "root.pem"))
    assert exchange(lab, address) == b""
    rec = verdict(without)
    # TLS 1.3: the server's "certificate required" alert arrives after the client's Finished.
    assert rec["result"] == "failed" and rec["reason"] in ("tls_handshake_failed", "upstream_error"), rec
    assert "certificate required" in rec.get("detail", "").lower(), rec


def test_alpn_mismatch_with_alpn_required(lab, pki, server, gate):
    address = server(str(pki / "good-chain.pem"), str(pki / "good.key"), alpn="h2")
    w = gate(address, trust=str(pki / "root.pem"), tls='alpn = ["http/1.1"]\nalpn_required = true')
    expect_refused(lab, w, address, "tls_handshake_failed", "alpn_required")


def test_ocsp_stapling(lab, pki, mpki, server, staple_server, gate):
    root = str(pki / "root.pem")
    # No staple at all, but require-stapled.
    plain = server(str(pki / "good-chain.pem"), str(pki / "good.key"))
    w = gate(plain, trust=root, tls='ocsp = "require-stapled"')
    expect_refused(lab, w, plain, "tls_verify_failed", "stapled no ocsp response")
    w.stop()
    # A good staple passes require-stapled.
    good = staple_server(str(mpki / "stapled.pem"), str(mpki / "stapled.key"), str(pki / "intermediate.pem"),
                         str(mpki / "ocsp-stapled.der"))
    w = gate(good, trust=root, tls='ocsp = "require-stapled"')
    reply = exchange(lab, good, payload=b"GET / HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 200"), (reply[:200], w.log_text())
    assert verdict(w)["result"] == "ok"
    w.stop()
    # A stapled "revoked" always refuses, even with if-stapled.
    revoked = staple_server(str(mpki / "revoked.pem"), str(mpki / "revoked.key"), str(pki / "intermediate.pem"),
                            str(mpki / "ocsp-revoked.der"))
    w = gate(revoked, trust=root, tls='ocsp = "if-stapled"')
    assert exchange(lab, revoked, payload=b"GET / HTTP/1.0\r\n\r\n") == b""
    rec = verdict(w)
    assert rec["reason"] == "tls_verify_failed" and "revoked" in rec.get("detail", ""), rec


def test_http_host_allowed_and_disallowed(lab, pki, server, gate):
    address = server(str(pki / "good-chain.pem"), str(pki / "good.key"))
    w = gate(address, trust=str(pki / "root.pem"),
             upstream='server_name = "http-host"\nallowed_names = ["good.test"]')
    allowed = b"GET / HTTP/1.1\r\nHost: good.test\r\n\r\n"
    assert exchange(lab, address, payload=allowed) == allowed  # echoed by the server, over verified TLS
    rec = verdict(w)
    assert rec["result"] == "ok" and rec["sni"] == "good.test", rec

    reply = exchange(lab, address, payload=b"GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 403 Forbidden"), reply
    reply = exchange(lab, address, payload=b"GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 Bad Request") and b"missing Host header" in reply, reply
    recs = w.wait_connections(3)
    assert [r["reason"] for r in recs] == ["completed", "host_not_allowed", "bad_request"], recs


def test_probe_shows_chain_checks_and_verdict(lab, pki, server, tmp_path):
    _require_worker()
    good = server(str(pki / "good-chain.pem"), str(pki / "good.key"))
    wrong = server(str(pki / "wrongname-chain.pem"), str(pki / "wrongname.key"))
    pin = spki_pin(str(pki / "intermediate.pem"))
    policy = tmp_path / "probe.toml"
    policy.write_text('[match]\nnetworks = ["%s/32", "%s/32"]\nport = 80\n[upstream]\nport = 443\n'
                      'server_name = "good.test"\n[tls]\ntrust = "%s"\npins = ["%s"]\n'
                      % (good, wrong, pki / "root.pem", pin))
    ok = lab.run(lab.gw, [TLSGATE_BIN, "probe", "--policy", policy, "--address", good], check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "cert 0: subject CN=good.test" in ok.stdout and "cert 1: subject CN=tlsgate test intermediate" in ok.stdout
    assert "pin     %s" % pin in ok.stdout
    assert "check pins: ok" in ok.stdout and "verdict: ACCEPTED" in ok.stdout, ok.stdout
    bad = lab.run(lab.gw, [TLSGATE_BIN, "probe", "--policy", policy, "--address", wrong], check=False)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "check certificate: FAILED: hostname mismatch" in bad.stdout
    assert "verdict: REFUSED: hostname mismatch" in bad.stdout, bad.stdout
    usage = lab.run(lab.gw, [TLSGATE_BIN, "probe", "--policy", policy], check=False)
    assert usage.returncode == 2 and "give --address" in usage.stderr, usage.stdout + usage.stderr


def test_legacy_server_with_a_legacy_policy(lab, pki, server, gate):
    address = server(str(pki / "good-chain.pem"), str(pki / "good.key"), min_version="1.0", max_version="1.1")
    strict = gate(address, trust=str(pki / "root.pem"))
    expect_refused(lab, strict, address, "tls_handshake_failed", "protocol", "version")
    strict.stop()
    legacy = gate(address, trust=str(pki / "root.pem"), tls='min_version = "1.0"')
    assert "legacy TLS allowed" in legacy.log_text(), legacy.log_text()
    rec = expect_ok(lab, legacy, address)
    assert rec["tls_version"] in ("TLSv1", "TLSv1.1"), rec


def test_cipher_suites_and_groups_are_applied(lab, pki, server, gate):
    address = server(str(pki / "good-chain.pem"), str(pki / "good.key"))
    w = gate(address, trust=str(pki / "root.pem"),
             tls='ciphersuites = "TLS_CHACHA20_POLY1305_SHA256"\ngroups = "P-384"')
    rec = expect_ok(lab, w, address)
    assert rec["cipher"] == "TLS_CHACHA20_POLY1305_SHA256", rec
    w.stop()
    tls12 = gate(address, trust=str(pki / "root.pem"), tls='max_version = "1.2"\nciphers = "ECDHE-ECDSA-CHACHA20-POLY1305"')
    rec = expect_ok(lab, tls12, address)
    assert rec["cipher"] == "ECDHE-ECDSA-CHACHA20-POLY1305", rec


# --------------------------------------------------------------------------- fail closed

def _http_get(lab, address):
    return exchange(lab, address, payload=b"GET / HTTP/1.0\r\n\r\n")


def test_anonymous_suite_server_is_refused(lab, pki, s_server, gate, tmp_path):
    """`openssl s_server -nocert -cipher 'aNULL:@SECLEVEL=0' -tls1_2`: no certificate, nothing to
    verify. A policy asking for @SECLEVEL never runs; a legacy policy with ciphers = "ALL" never
    offers an anonymous suite; in neither case does a byte reach the server's application."""
    address = s_server("-nocert", "-cipher", "aNULL:@SECLEVEL=0", "-tls1_2")
    root = pki / "root.pem"
    # 1. ciphers = "ALL:@SECLEVEL=0": `check` and the worker refuse the policy, with its line.
    policy = tmp_path / "anon.toml"
    policy.write_text('[match]\nnetworks = ["%s/32"]\nport = 80\n\n[upstream]\nport = 443\n'
                      'server_name = "good.test"\n\n[tls]\ntrust = "%s"\nciphers = "ALL:@SECLEVEL=0"\n'
                      % (address, root))
    check = subprocess.run([str(TLSGATE_BIN), "check", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 2, check.stdout + check.stderr
    assert "anon.toml:11: ciphers \"ALL:@SECLEVEL=0\" sets @SECLEVEL" in check.stderr, check.stderr
    worker = lab.run(lab.gw, [TLSGATE_BIN, "worker", "--policy", policy, "--listen", "0.0.0.0:0"], check=False,
                     timeout=30)
    assert worker.returncode == 2 and "sets @SECLEVEL" in worker.stderr, worker.stdout + worker.stderr
    assert "worker listening" not in worker.stdout + worker.stderr
    policy.unlink()
    # 2. A legacy policy, ciphers = "ALL": security level 0 for the versions, still no anonymous suite.
    w = gate(address, trust=str(root), tls='min_version = "1.0"\nciphers = "ALL"')
    assert _http_get(lab, address) == b"", w.log_text()
    rec = verdict(w)
    assert rec["result"] == "failed" and rec["reason"] == "tls_handshake_failed", rec
    assert rec.get("cipher") == "-" and "ADH" not in w.log_text(), w.log_text()


def test_pin_only_with_ocsp_staples(lab, pki, mpki, staple_server, gate):
    """pin_only checks a stapled response against the chain that leads to the pin."""
    pin = spki_pin(str(pki / "intermediate.pem"))
    tls = 'pins = ["%s"]\npin_only = true\nocsp = "require-stapled"' % pin
    good = staple_server(str(mpki / "stapled.pem"), str(mpki / "stapled.key"), str(pki / "intermediate.pem"),
                         str(mpki / "ocsp-stapled.der"))
    w = gate(good, tls=tls)
    reply = _http_get(lab, good)
    assert reply.startswith(b"HTTP/1.0 200"), (reply[:200], w.log_text())
    assert verdict(w)["result"] == "ok"
    w.stop()
    revoked = staple_server(str(mpki / "revoked.pem"), str(mpki / "revoked.key"), str(pki / "intermediate.pem"),
                            str(mpki / "ocsp-revoked.der"))
    w = gate(revoked, tls=tls)
    assert _http_get(lab, revoked) == b""
    rec = verdict(w)
    assert rec["reason"] == "tls_verify_failed" and "revoked" in rec.get("detail", ""), rec


def test_require_stapled_survives_resumption(lab, pki, mpki, staple_server, gate):
    """20 consecutive TLS 1.3 connections under require-stapled: all accepted, most of them
    resumed (the staple's verdict is kept with the session until its nextUpdate); a revoked
    staple is still refused every time."""
    root = str(pki / "root.pem")
    good = staple_server(str(mpki / "stapled.pem"), str(mpki / "stapled.key"), str(pki / "intermediate.pem"),
                         str(mpki / "ocsp-stapled.der"), naccept=40)
    w = gate(good, trust=root, tls='ocsp = "require-stapled"\nmin_version = "1.3"')
    for i in range(20):
        reply = _http_get(lab, good)
        assert reply.startswith(b"HTTP/1.0 200"), ("connection %d" % (i + 1), reply[:200], w.log_text())
    recs = w.wait_connections(20)
    assert [r["result"] for r in recs] == ["ok"] * 20, recs
    assert all(r["tls_version"] == "TLSv1.3" for r in recs), recs
    resumed = [r for r in recs if r["resumed"] == "true"]
    assert len(resumed) >= 10, "only %d of 20 resumed: %r" % (len(resumed), recs)
    w.stop()
    revoked = staple_server(str(mpki / "revoked.pem"), str(mpki / "revoked.key"), str(pki / "intermediate.pem"),
                            str(mpki / "ocsp-revoked.der"))
    w = gate(revoked, trust=root, tls='ocsp = "require-stapled"\nmin_version = "1.3"')
    for _ in range(3):
        assert _http_get(lab, revoked) == b""
    recs = w.wait_connections(3)
    assert all(r["reason"] == "tls_verify_failed" and "revoked" in r.get("detail", "") for r in recs), recs
