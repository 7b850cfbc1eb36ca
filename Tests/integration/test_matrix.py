"""A badssl-style matrix through the real `tlsgate worker` (see conftest.py for the lab).

The one badssl-style matrix of the suite (test_verification_matrix.py was merged into it,
keeping every case and the stricter assertion of each pair). The PKI is the suite's own
(Scripts/make-test-pki.sh: root > intermediate > one leaf per case, CRLs, OCSP responses),
one TLS server per case on its own address 198.19.0.10..30 port 8443 (a few more on port
8444; all Python listeners in one matrix/matrix_server.py process, plus `openssl s_server`
for OCSP staples and an anonymous-suite server), one worker per case with its own policy
(`tlsgate check` first), and a plain client (matrix/matrix_client.py) in the client
namespace going through the nft redirect of port 80.

Every case asserts what the client got (its bytes echoed over verified TLS, or nothing /
an HTTP error page) AND the worker's `connection closed` line: result, reason and detail
(case-insensitive substring). Verification failures also assert the `certificate rejected`
audit line. Needs root; skipped otherwise, failed under CI (conftest's rules).
"""
import json
import select
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PY, Worker, _popen, _stop_process

HERE = Path(__file__).resolve().parent
MATRIX = HERE / "matrix"
SERVER = MATRIX / "matrix_server.py"
CLIENT = MATRIX / "matrix_client.py"
TLS_PORT = 8443  # not 443: the other test files' servers bind 198.19.0.10..30:443
ALT_PORT = 8444  # second servers on some addresses (all 21 addresses have one already)

# One address per server. The IP SAN leaf names its own address.
ADDR = {
    "good": "198.19.0.10", "leafonly": "198.19.0.11", "expired": "198.19.0.12", "notyet": "198.19.0.13",
    "wronghost": "198.19.0.14", "wild": "198.19.0.15", "ipsan": "198.19.0.16", "selfsigned": "198.19.0.17",
    "untrusted": "198.19.0.18", "revoked": "198.19.0.19", "sha1": "198.19.0.20", "rsa1024": "198.19.0.21",
    "clientonly": "198.19.0.22", "tls12only": "198.19.0.23", "tls13only": "198.19.0.24", "mtls13": "198.19.0.25",
    "mtls12": "198.19.0.26", "alpn-h2": "198.19.0.27", "staple-good": "198.19.0.28",
    "staple-revoked": "198.19.0.29", "deep": "198.19.0.30",
}
# Servers on ALT_PORT of an address whose TLS_PORT is taken: name -> (address, port).
AT = {
    "untrusted-noroot": (ADDR["untrusted"], ALT_PORT), "legacy": (ADDR["expired"], ALT_PORT),
    "anon": (ADDR["notyet"], ALT_PORT),
}
PAYLOAD = b"hello through tlsgate\n"


def where(srv):
    """(address, port) of a matrix server."""
    return AT.get(srv, (ADDR.get(srv), TLS_PORT))


# --------------------------------------------------------------------------- PKI and servers

@pytest.fixture(scope="module")
def mpki(pki):
    """The suite's PKI (conftest's `pki`, made by Scripts/make-test-pki.sh): its ipsan leaf
    names ADDR["ipsan"]."""
    return pki


def spki_pin(cert):
    r = subprocess.run("openssl x509 -in %s -pubkey -noout | openssl pkey -pubin -outform der "
                       "| openssl dgst -sha256 -binary | base64" % shlex.quote(str(cert)),
                       shell=True, capture_output=True, text=True, check=True, timeout=30)
    return "sha256/" + r.stdout.strip()


def sha256_fingerprint(cert):
    r = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-fingerprint", "-sha256"],
                       capture_output=True, text=True, check=True, timeout=30)
    return r.stdout.strip().split("=", 1)[1].replace(":", "").lower()


class Servers:
    def __init__(self, events_path, s_server_logs):
        self.events_path, self.s_server_logs = Path(events_path), s_server_logs

    def events(self, name):
        if not self.events_path.exists():
            return []
        out = []
        for line in self.events_path.read_text().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("name") == name:
                out.append(e)
        return out


@pytest.fixture(scope="module")
def servers(lab, mpki, tmp_path_factory):
    """Every Python TLS server of the matrix in one process, plus five `openssl s_server -www`
    stapling OCSP responses and one offering anonymous suites only; all stopped at the end of
    the module."""
    d = tmp_path_factory.mktemp("badssl-servers")
    m = lambda f: str(mpki / f)  # noqa: E731

    def spec(name, leaf, **kw):
        bind, port = where(name)
        s = {"name": name, "bind": bind, "port": port, "cert": m(leaf + "-chain.pem"), "key": m(leaf + ".key")}
        s.update(kw)
        return s

    mitm_leaf, mitm_int = d / "mitm-leaf-chain.pem", d / "mitm-int-chain.pem"
    mitm_leaf.write_bytes((mpki / "untrusted.pem").read_bytes() + (mpki / "selfsigned.pem").read_bytes())
    mitm_int.write_bytes((mpki / "untrusted.pem").read_bytes() + (mpki / "intermediate.pem").read_bytes())
    specs = [
        spec("good", "good"),
        dict(spec("leafonly", "good"), cert=m("good.pem")),  # the leaf without its intermediate
        spec("expired", "expired"), spec("notyet", "notyet"), spec("wronghost", "wrongname"),
        spec("wild", "wild"), spec("ipsan", "ipsan"), spec("selfsigned", "selfsigned"),
        dict(spec("untrusted", "untrusted"), cert=m("untrusted-withroot-chain.pem")),
        spec("revoked", "revoked"),
        spec("sha1", "sha1", weak=True), spec("rsa1024", "rsa1024", weak=True),
        spec("clientonly", "clientonly"),
        spec("tls12only", "good", min="1.2", max="1.2"), spec("tls13only", "good", min="1.3", max="1.3"),
        spec("mtls13", "good", client_ca=m("root.pem"), min="1.3"),
        spec("mtls12", "good", client_ca=m("root.pem"), max="1.2"),
        spec("alpn-h2", "good", alpn=["h2"]),
        spec("deep", "deep"),
        # An impostor for a pin_only policy: its own certificate and key for good.test, with
        # the pinned (public) certificate of the real server appended to its chain.
        dict(name="mitm-pinned-leaf", bind=ADDR["selfsigned"], port=ALT_PORT, cert=str(mitm_leaf),
             key=m("untrusted.key")),
        dict(name="mitm-pinned-intermediate", bind=ADDR["good"], port=ALT_PORT, cert=str(mitm_int),
             key=m("untrusted.key")),
        # Servers on ALT_PORT (see AT).
        spec("untrusted-noroot", "untrusted"),
        spec("legacy", "good", min="1.0", max="1.1"),
    ]
    config = d / "servers.json"
    config.write_text(json.dumps(specs, indent=1))
    events = d / "events.log"
    procs = []
    errors = d / "matrix_server.stderr"
    with open(errors, "wb") as errf:
        proc = _popen(lab.exec_argv(lab.server, [PY, SERVER, config, events, "--max-seconds", "900"]),
                      stdout=subprocess.PIPE, stderr=errf)
    procs.append(proc)
    try:
        deadline, out = time.monotonic() + 15, b""
        while b"ready" not in out:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("matrix_server.py did not start: %s %s" % (out, errors.read_text(errors="replace")),
                            pytrace=False)
            if select.select([proc.stdout], [], [], 0.2)[0]:
                out += proc.stdout.read1(4096)
        logs = {}

        def start_s_server(name, address, port, args):
            log = d / ("s_server-%s-%d.log" % (name, port))
            with open(log, "wb") as f:
                p = _popen(lab.exec_argv(lab.server, ["openssl", "s_server", "-accept", "%s:%d" % (address, port)]
                                         + args + ["-www"]), stdin=subprocess.DEVNULL, stdout=f,
                           stderr=subprocess.STDOUT)
            procs.append(p)
            logs[(name, port)] = log
            deadline = time.monotonic() + 10
            while b"ACCEPT" not in log.read_bytes():
                if p.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("openssl s_server %s did not start: %s" % (name, log.read_text(errors="replace")),
                                pytrace=False)
                time.sleep(0.05)

        for name, leaf, response, port in (("staple-good", "stapled", "ocsp-stapled.der", TLS_PORT),
                                           ("staple-revoked", "revoked", "ocsp-revoked.der", TLS_PORT),
                                           ("staple-good", "stapled", "ocsp-revoked.der", ALT_PORT),
                                           ("staple-revoked", "stapled", "ocsp-badsigner.der", ALT_PORT),
                                           ("alpn-h2", "stapled", "ocsp-unknown.der", ALT_PORT)):
            start_s_server(name, ADDR[name], port, ["-cert", m(leaf + ".pem"), "-key", m(leaf + ".key"),
                                                     "-cert_chain", m("intermediate.pem"), "-status_file",
                                                     m(response)])
        # No certificate at all: anonymous suites only, TLS 1.2.
        start_s_server("anon", *AT["anon"], ["-nocert", "-cipher", "aNULL:@SECLEVEL=0", "-tls1_2"])
        yield Servers(events, logs)
    finally:
        for p in procs:
            _stop_process(p)


# --------------------------------------------------------------------------- worker per case

def policy_text(address, mpki, server_name="good.test", upstream="", tls="", trust=True, port=TLS_PORT):
    """A whole policy file: the match on `address`:80, upstream port 8443, [tls] trusting
    the matrix root (unless trust=False), plus raw extra lines for [upstream] and [tls]."""
    return ('[match]\nnetworks = ["%s/32"]\nport = 80\n\n'
            '[upstream]\nport = %d\nserver_name = "%s"\nconnect_timeout = "3s"\n%s\n\n'
            '[tls]\n%s%s\n'
            % (address, port, server_name, upstream,
               ('trust = "%s"\n' % (mpki / "root.pem")) if trust else "", tls))


@pytest.fixture
def gate(lab, worker_bin, mpki, servers, tmp_path, listen_port, redirect, request):
    """gate(address, **policy_text kwargs) -> Worker for that one policy, listening on a
    fresh port that the redirect sends 198.19.0.0/24:80 to; `tlsgate check` must accept the
    policy first. Stopped at teardown; its log is attached to the report."""
    started = []

    def start(address, **kw):
        assert not started, "one worker per test"
        policy = tmp_path / "matrix.toml"
        policy.write_text(policy_text(address, mpki, **kw))
        chk = subprocess.run([str(worker_bin), "check", str(tmp_path)], capture_output=True, text=True, timeout=30)
        assert chk.returncode == 0, "tlsgate check refused the policy:\n%s%s\n%s" % (
            chk.stdout, chk.stderr, policy.read_text())
        log_path = tmp_path / "worker.log"
        listen = "0.0.0.0:%d" % listen_port
        with open(log_path, "wb") as logf:
            proc = _popen(lab.exec_argv(lab.gw, [worker_bin, "worker", "--policy", policy, "--listen", listen,
                                                  "--drain-timeout", "2s"]),
                          stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
        w = Worker(proc, log_path, "text", listen, policy)
        started.append(w)
        deadline = time.monotonic() + 20
        while "worker listening" not in w.log_text():
            assert proc.poll() is None, "worker exited %s:\n%s" % (proc.returncode, w.log_text())
            assert time.monotonic() < deadline, "worker not listening after 20s:\n" + w.log_text()
            time.sleep(0.05)
        redirect(listen_port, v4="198.19.0.0/24", v6=None)
        return w

    yield start
    for w in started:
        w.stop()
        request.node.add_report_section("teardown", "worker log", w.policy_path.read_text() + "\n" + w.log_text())


def connect(lab, address, payload=PAYLOAD, timeout=10, expect=None):
    """The client sends payload and keeps its side open; with expect it closes once that many
    bytes came back (the server echoes), else it reads until the gateway ends the connection."""
    argv = [PY, CLIENT, address, "80", payload.hex(), "--timeout", str(timeout)]
    if expect is not None:
        argv += ["--expect-bytes", str(expect)]
    r = lab.run(lab.client, argv, timeout=timeout + 15)
    res = json.loads(r.stdout)
    res["recv"] = bytes.fromhex(res.pop("recv_hex"))
    return res


def the_record(worker):
    recs = worker.wait_connections(1)
    assert len(recs) == 1, "expected one connection line:\n" + worker.log_text()
    return recs[0]


def audit_lines(worker):
    return [r for r in worker.records() if r.get("msg") == "certificate rejected"]


def detail_has(rec, wanted):
    wanted = (wanted,) if isinstance(wanted, str) else tuple(wanted)
    detail = rec.get("detail", "")
    assert any(w.lower() in detail.lower() for w in wanted), \
        "detail %r contains none of %r; record: %r" % (detail, wanted, rec)


def expect_relayed(lab, w, address, payload=PAYLOAD, sni="good.test", port=TLS_PORT):
    """The client gets its bytes back from the server's echo, over verified TLS."""
    res = connect(lab, address, payload, expect=len(payload))
    assert res["recv"] == payload and res["end"] == "complete", (res, w.log_text())
    rec = the_record(w)
    assert (rec.get("result"), rec.get("reason")) == ("ok", "completed"), rec
    assert rec.get("dst") == "%s:80" % address and rec.get("upstream") == "%s:%d" % (address, port), rec
    assert rec.get("sni") == sni, rec
    assert rec.get("bytes_up") == str(len(payload)) and rec.get("bytes_down") == str(len(payload)), rec
    assert not audit_lines(w), w.log_text()
    return rec


def expect_refused(lab, w, address, reason, details, result="failed", payload=PAYLOAD):
    """The worker logs reason + detail, relays nothing, and the client gets no byte."""
    res = connect(lab, address, payload)
    rec = the_record(w)
    assert (rec.get("result"), rec.get("reason")) == (result, reason), rec
    detail_has(rec, details)
    assert rec.get("bytes_down") == "0", rec
    if reason == "tls_verify_failed":
        # Nothing the client sent may reach a server that was not verified.
        assert rec.get("bytes_up") == "0", rec
    # on_failure = "close" (the default): no byte, and an end, never a hang. Not only FIN:
    # the gateway closes with the client's request still unread, so the kernel often sends
    # RST (see test_on_failure for the deterministic cases).
    assert res["recv"] == b"" and res["end"] in ("eof", "reset"), (res, w.log_text())
    audits = audit_lines(w)
    if reason == "tls_verify_failed":
        assert len(audits) == 1, "one `certificate rejected` line expected:\n" + w.log_text()
        assert audits[0].get("verify_error") == rec.get("detail"), (audits[0], rec)
        for field in ("cert_subject", "cert_issuer", "cert_not_after", "cert_sha256"):
            assert audits[0].get(field), "%s missing from the audit line %r" % (field, audits[0])
    else:
        assert not audits, w.log_text()
    return rec


def server_saw(servers, name, before, event="handshake-ok"):
    new = servers.events(name)[before:]
    return [e for e in new if e["event"] == event]


# --------------------------------------------------------------------------- chain, dates, names

# (case, server, server_name, reason or None, detail substrings)
CHAIN_CASES = [
    ("good-chain", "good", "good.test", None, ()),
    ("missing-intermediate", "leafonly", "good.test", "tls_verify_failed", ("unable to get local issuer certificate",)),
    ("expired", "expired", "good.test", "tls_verify_failed", ("certificate has expired",)),
    ("not-yet-valid", "notyet", "good.test", "tls_verify_failed", ("certificate is not yet valid",)),
    ("wrong-host", "wronghost", "good.test", "tls_verify_failed", ("hostname mismatch",)),
    ("wildcard-good", "wild", "a.wild.test", None, ()),
    ("wildcard-too-deep", "wild", "a.b.wild.test", "tls_verify_failed", ("hostname mismatch",)),
    ("wildcard-bare-domain", "wild", "wild.test", "tls_verify_failed", ("hostname mismatch",)),
    ("ip-san-by-ip", "ipsan", ADDR["ipsan"], None, ()),
    ("ip-san-cert-by-name", "ipsan", "good.test", "tls_verify_failed", ("hostname mismatch",)),
    ("dns-cert-by-ip", "wronghost", ADDR["wronghost"], "tls_verify_failed", ("IP address mismatch",)),
    ("self-signed", "selfsigned", "good.test", "tls_verify_failed", ("self-signed certificate", "self signed certificate")),
    ("untrusted-root", "untrusted", "good.test", "tls_verify_failed",
     ("self-signed certificate in certificate chain", "self signed certificate in certificate chain")),
    # The same untrusted hierarchy served without its root: the chain ends at an unknown issuer.
    ("untrusted-root-not-served", "untrusted-noroot", "good.test", "tls_verify_failed",
     ("unable to get local issuer certificate",)),
    ("sha1-signed-leaf", "sha1", "good.test", "tls_verify_failed",
     ("CA signature digest algorithm too weak", "ca md too weak")),
    ("rsa-1024-leaf", "rsa1024", "good.test", "tls_verify_failed", ("EE certificate key too weak",)),
    ("client-auth-only-eku", "clientonly", "good.test", "tls_verify_failed",
     ("unsuitable certificate purpose", "unsupported certificate purpose")),
]


@pytest.mark.parametrize("case,srv,server_name,reason,details", CHAIN_CASES, ids=[c[0] for c in CHAIN_CASES])
def test_certificate(case, srv, server_name, reason, details, lab, mpki, servers, gate):
    address, port = where(srv)
    before = len(servers.events(srv))
    w = gate(address, server_name=server_name, port=port)
    if reason is None:
        rec = expect_relayed(lab, w, address, sni=server_name, port=port)
        (hs,) = server_saw(servers, srv, before)
        # SNI is the DNS name; an IP identity sends none.
        assert hs["sni"] == (None if server_name[0].isdigit() else server_name), hs
        assert rec.get("tls_version") == "TLSv1.3", rec
    else:
        expect_refused(lab, w, address, reason, details)
        # The worker did reach the server: the refusal is the certificate's, not the network's.
        assert servers.events(srv)[before:], "the server saw no connection"
        assert not server_saw(servers, srv, before, "closed"), "no application data may have flowed"


@pytest.mark.parametrize("srv,verify_error,code,not_after", [
    ("expired", "certificate has expired", "10", "2021-01-01T00:00:00Z"),
    ("wronghost", "hostname mismatch", "62", None),
], ids=["expired", "wrong-host"])
def test_certificate_rejected_audit_line(srv, verify_error, code, not_after, lab, mpki, servers, gate):
    """The separate `certificate rejected` line names the certificate precisely."""
    address = ADDR[srv]
    w = gate(address)
    rec = expect_refused(lab, w, address, "tls_verify_failed", verify_error)
    (a,) = audit_lines(w)
    leaf = mpki / ("%s.pem" % {"expired": "expired", "wronghost": "wrongname"}[srv])
    cn = {"expired": "good.test", "wronghost": "other.test"}[srv]
    assert a.get("level") in ("warning", "WARNING", "warn"), a
    assert a.get("policy") == "matrix" and a.get("sni") == "good.test", a
    assert a.get("client", "").startswith("198.18.0.2:") and a.get("client") == rec.get("client"), (a, rec)
    assert a.get("dst") == "%s:80" % address and a.get("upstream") == "%s:%d" % (address, TLS_PORT), a
    assert a.get("verify_error", "").lower() == verify_error and a.get("verify_code") == code, a
    assert "CN=%s" % cn in a.get("cert_subject", ""), a
    assert "CN=tlsgate test intermediate" in a.get("cert_issuer", ""), a
    assert a.get("cert_sans") == "DNS:%s" % cn, a
    if not_after:
        assert a.get("cert_not_after") == not_after, a
    else:
        assert a.get("cert_not_after", "").startswith(time.strftime("%Y", time.gmtime(time.time() + 365 * 86400))), a
    assert a.get("cert_sha256") == sha256_fingerprint(leaf), a
    assert a.get("cert_spki_pin") == spki_pin(leaf), a


@pytest.mark.parametrize("srv,depth,ok", [
    ("good", 1, True),    # OpenSSL's depth: CA certificates above the leaf, below the anchor
    ("deep", 2, True),
    ("deep", 1, False),
], ids=["one-intermediate-depth-1", "two-intermediates-depth-2", "two-intermediates-depth-1"])
def test_verify_depth(srv, depth, ok, lab, mpki, servers, gate):
    address = ADDR[srv]
    w = gate(address, tls="verify_depth = %d" % depth)
    if ok:
        expect_relayed(lab, w, address)
    else:
        expect_refused(lab, w, address, "tls_verify_failed", "certificate chain too long")


def test_accepted_names_rescue_a_wrong_host(lab, mpki, servers, gate):
    address = ADDR["wronghost"]
    w = gate(address, tls='accepted_names = ["other.test"]')
    expect_relayed(lab, w, address)


# --------------------------------------------------------------------------- revocation

@pytest.mark.parametrize("srv,crl,reason,details", [
    ("revoked", "crl.pem", "tls_verify_failed", ("certificate revoked",)),
    ("good", "crl.pem", None, ()),
    ("good", "crl-expired.pem", "tls_verify_failed", ("CRL has expired",)),
    ("deep", "crl.pem", "tls_verify_failed", ("unable to get certificate CRL",)),  # no CRL from the leaf's issuer
], ids=["revoked-by-crl", "not-revoked-current-crl", "expired-crl", "no-crl-for-the-issuer"])
def test_crl(srv, crl, reason, details, lab, mpki, servers, gate):
    address = ADDR[srv]
    w = gate(address, tls='crl = ["%s"]' % (mpki / crl))
    if reason is None:
        expect_relayed(lab, w, address)
    else:
        expect_refused(lab, w, address, reason, details)


HTTP_GET = b"GET / HTTP/1.0\r\nHost: good.test\r\n\r\n"


@pytest.mark.parametrize("srv,ocsp,reason,details", [
    ("staple-revoked", "if-stapled", "tls_verify_failed", ("certificate revoked (stapled OCSP",)),
    ("staple-revoked", "require-stapled", "tls_verify_failed", ("certificate revoked (stapled OCSP",)),
    ("good", "require-stapled", "tls_verify_failed",
     ("the server stapled no OCSP response (ocsp = require-stapled)",)),
    ("good", "if-stapled", None, ()),
    ("staple-good", "require-stapled", None, ()),
    ("staple-other-cert", "if-stapled", "tls_verify_failed",
     ("stapled OCSP response does not cover the server's certificate",)),
    ("staple-bad-signer", "if-stapled", "tls_verify_failed", ("stapled OCSP response signature does not verify",)),
    ("staple-unknown", "if-stapled", "tls_verify_failed", ("stapled OCSP status is unknown",)),
], ids=["revoked-staple-if-stapled", "revoked-staple-require-stapled", "no-staple-require-stapled",
        "no-staple-if-stapled", "good-staple-require-stapled", "staple-for-another-certificate",
        "staple-signed-by-a-non-responder", "staple-status-unknown"])
def test_ocsp_staple(srv, ocsp, reason, details, lab, mpki, servers, gate):
    # The "stapled" leaf served by s_server on ALT_PORT with a wrong staple: the response
    # made for "revoked", one signed by a plain leaf's key, one saying "unknown".
    address, port = {
        "staple-other-cert": (ADDR["staple-good"], ALT_PORT),
        "staple-bad-signer": (ADDR["staple-revoked"], ALT_PORT),
        "staple-unknown": (ADDR["alpn-h2"], ALT_PORT),
    }.get(srv, (ADDR.get(srv), TLS_PORT))
    w = gate(address, tls='ocsp = "%s"' % ocsp, port=port)
    if reason is not None:
        rec = expect_refused(lab, w, address, reason, details, payload=HTTP_GET)
        if srv == "staple-revoked":
            detail_has(rec, "keyCompromise")
        return
    if srv == "good":  # a Python server: no staple
        expect_relayed(lab, w, address)
        return
    # openssl s_server -www answers the GET with a status page, then closes.
    res = connect(lab, address, HTTP_GET)
    assert res["recv"].startswith(b"HTTP/1.0 200 ok"), (res, w.log_text())
    rec = the_record(w)
    assert (rec.get("result"), rec.get("reason")) == ("ok", "completed"), rec
    assert not audit_lines(w), w.log_text()


@pytest.mark.parametrize("srv,crl,reason,details", [
    ("revoked", "crl.pem", "tls_verify_failed", ("certificate revoked",)),
    ("good", "crl.pem", None, ()),
    ("good", "crl-expired.pem", "tls_verify_failed", ("CRL has expired",)),
], ids=["pin-only-revoked-by-crl", "pin-only-not-revoked", "pin-only-expired-crl"])
def test_pin_only_honours_crl(srv, crl, reason, details, lab, mpki, servers, gate):
    """pin_only checks the leaf against `crl` on the chain that leads to the pin."""
    address = ADDR[srv]
    w = gate(address, tls='%s\npin_only = true\ncrl = ["%s"]' % (pin_of(mpki, "intermediate"), mpki / crl),
             trust=False)
    if reason is None:
        expect_relayed(lab, w, address)
    else:
        expect_refused(lab, w, address, reason, details)


@pytest.mark.parametrize("srv,ok", [("staple-good", True), ("staple-revoked", False)],
                         ids=["good-staple", "revoked-staple"])
def test_pin_only_with_ocsp_staples(srv, ok, lab, mpki, servers, gate):
    """pin_only checks a stapled response against the chain that leads to the pin."""
    address, port = where(srv)
    w = gate(address, tls='%s\npin_only = true\nocsp = "require-stapled"' % pin_of(mpki, "intermediate"),
             trust=False, port=port)
    if ok:
        res = connect(lab, address, HTTP_GET)
        assert res["recv"].startswith(b"HTTP/1.0 200 ok"), (res, w.log_text())
        assert (the_record(w).get("result"), the_record(w).get("reason")) == ("ok", "completed"), w.log_text()
    else:
        rec = expect_refused(lab, w, address, "tls_verify_failed", "certificate revoked (stapled OCSP",
                             payload=HTTP_GET)
        detail_has(rec, "keyCompromise")


@pytest.mark.parametrize("srv,ok", [("staple-good", True), ("staple-revoked", False)],
                         ids=["good-staple-20-connections", "revoked-staple-every-time"])
def test_require_stapled_survives_resumption(srv, ok, lab, mpki, servers, gate):
    """Consecutive TLS 1.3 connections under require-stapled: all accepted, most of them
    resumed (the staple's verdict is kept with the session until its nextUpdate); a revoked
    staple is refused every time."""
    address, port = where(srv)
    w = gate(address, tls='ocsp = "require-stapled"\nmin_version = "1.3"', port=port)
    n = 20 if ok else 3
    for i in range(n):
        res = connect(lab, address, HTTP_GET)
        if ok:
            assert res["recv"].startswith(b"HTTP/1.0 200 ok"), ("connection %d" % (i + 1), res, w.log_text())
        else:
            assert res["recv"] == b"", (res, w.log_text())
    recs = w.wait_connections(n)
    assert len(recs) == n, w.log_text()
    if ok:
        assert [r["result"] for r in recs] == ["ok"] * n, recs
        assert all(r["tls_version"] == "TLSv1.3" for r in recs), recs
        resumed = [r for r in recs if r["resumed"] == "true"]
        assert len(resumed) >= 10, "only %d of %d resumed: %r" % (len(resumed), n, recs)
    else:
        assert all(r["reason"] == "tls_verify_failed" and "revoked" in r.get("detail", "") for r in recs), recs


# --------------------------------------------------------------------------- pins

def pin_of(mpki, *names):
    return "pins = [%s]" % ", ".join('"%s"' % spki_pin(mpki / ("%s.pem" % n)) for n in names)


@pytest.mark.parametrize("srv,pins,pin_only,ok", [
    ("good", ("good",), False, True),
    ("good", ("intermediate",), False, True),
    ("good", ("wrongname", "root"), False, True),        # a backup pin on the root of the verified chain
    ("good", ("selfsigned", "intermediate"), False, True),  # a backup pin on the intermediate
    ("good", ("wrongname", "selfsigned"), False, False),
    ("selfsigned", ("selfsigned",), True, True),
    ("selfsigned", ("wrongname",), True, False),
    ("selfsigned", ("selfsigned",), False, False),       # pinned but not pin_only: the chain still counts
    ("expired", ("expired",), True, False),              # pin_only still checks the leaf's dates
], ids=["leaf-pin", "intermediate-pin", "root-backup-pin", "intermediate-backup-pin", "pin-mismatch", "pin-only-self-signed",
        "pin-only-mismatch", "pinned-self-signed-without-pin-only", "pin-only-expired-leaf"])
def test_pins(srv, pins, pin_only, ok, lab, mpki, servers, gate):
    address = ADDR[srv]
    tls = pin_of(mpki, *pins) + ("\npin_only = true" if pin_only else "")
    w = gate(address, tls=tls, trust=not pin_only)
    if ok:
        expect_relayed(lab, w, address)
    elif srv == "expired":
        expect_refused(lab, w, address, "tls_verify_failed", "certificate has expired")
    elif pin_only:
        expect_refused(lab, w, address, "tls_verify_failed",
                       "no certificate the server presented matches the policy's pins (pin_only)")
    elif srv == "selfsigned":
        expect_refused(lab, w, address, "tls_verify_failed", "self-signed certificate")
    else:
        expect_refused(lab, w, address, "tls_verify_failed", "no certificate of the verified chain matches the policy's pins")


@pytest.mark.parametrize("srv,address,pinned", [
    ("mitm-pinned-leaf", ADDR["selfsigned"], "selfsigned"),
    ("mitm-pinned-intermediate", ADDR["good"], "intermediate"),
], ids=["pinned-leaf-appended", "pinned-intermediate-appended"])
def test_pin_only_impostor_with_the_pinned_certificate_appended(srv, address, pinned, lab, mpki, servers, gate):
    """A pin must bind the key that signed the handshake. A man in the middle has the real
    server's certificate (it is public) but not its key: it presents its own leaf and key
    and appends the pinned certificate to its chain. pin_only must refuse it."""
    before = len(servers.events(srv))
    w = gate(address, tls=pin_of(mpki, pinned) + "\npin_only = true", trust=False, port=ALT_PORT)
    res = connect(lab, address)
    rec = the_record(w)
    assert server_saw(servers, srv, before, "accept"), "the impostor was not reached"
    assert rec.get("reason") == "tls_verify_failed" and "pin" in rec.get("detail", "").lower(), \
        "pin_only accepted a server whose leaf key is not pinned (the pinned certificate was only appended " \
        "to its chain): client got %r; record %r" % (res, rec)
    assert res["recv"] == b"" and rec.get("bytes_up") == "0", (res, rec)


# --------------------------------------------------------------------------- protocol versions

@pytest.mark.parametrize("srv,policy,version", [
    ("tls12only", 'max_version = "1.2"', "TLSv1.2"),
    ("tls12only", 'min_version = "1.3"', None),
    ("tls13only", 'min_version = "1.3"', "TLSv1.3"),
    ("tls13only", 'max_version = "1.2"', None),
    ("tls12only", "", "TLSv1.2"),
    ("tls13only", "", "TLSv1.3"),
], ids=["tls12-server-max12-ok", "tls12-server-min13-fails", "tls13-server-min13-ok", "tls13-server-max12-fails",
        "tls12-server-default-ok", "tls13-server-default-ok"])
def test_protocol_versions(srv, policy, version, lab, mpki, servers, gate):
    address = ADDR[srv]
    w = gate(address, tls=policy)
    if version:
        rec = expect_relayed(lab, w, address)
        assert rec.get("tls_version") == version, rec
    else:
        expect_refused(lab, w, address, "tls_handshake_failed", ("protocol version", "unsupported protocol"))


# --------------------------------------------------------------------------- mTLS and ALPN

@pytest.mark.parametrize("srv", ["mtls13", "mtls12"], ids=["tls13", "tls12"])
def test_mtls_with_client_certificate(srv, lab, mpki, servers, gate):
    address = ADDR[srv]
    before = len(servers.events(srv))
    w = gate(address, tls='client_certificate = "%s"\nclient_key = "%s"' % (mpki / "client-chain.pem", mpki / "client.key"))
    expect_relayed(lab, w, address)
    (hs,) = server_saw(servers, srv, before)
    assert hs["client_cert"] is True, hs


@pytest.mark.parametrize("srv,details", [
    ("mtls13", ("certificate required",)),
    ("mtls12", ("handshake failure", "certificate required", "peer did not return a certificate")),
], ids=["tls13", "tls12"])
def test_mtls_without_client_certificate(srv, details, lab, mpki, servers, gate):
    address = ADDR[srv]
    before = len(servers.events(srv))
    w = gate(address)
    expect_refused(lab, w, address, "tls_handshake_failed", details)
    failed = server_saw(servers, srv, before, "handshake-failed")
    assert failed and "certificate" in failed[0]["error"].lower(), servers.events(srv)[before:]


def test_mtls_refusal_gets_the_502_page(lab, mpki, servers, gate):
    """TLS 1.3: the server's `certificate required` alert comes after the gateway's Finished;
    it is still an upstream failure, so on_failure = "http-502" applies."""
    address = ADDR["mtls13"]
    w = gate(address, upstream='on_failure = "http-502"')
    r = lab.run(lab.client, [PY, CLIENT, address, "80", HTTP_GET.hex(), "--no-half-close", "--timeout", "8"],
                timeout=25)
    res = json.loads(r.stdout)
    got = bytes.fromhex(res["recv_hex"])
    rec = the_record(w)
    assert (rec.get("result"), rec.get("reason")) == ("failed", "tls_handshake_failed"), rec
    detail_has(rec, "certificate required")
    assert got.startswith(b"HTTP/1.1 502 Bad Gateway\r\n") and b"tls_handshake_failed" in got, (res, w.log_text())


def test_mtls_client_key_must_be_private(lab, mpki, servers, tmp_path, worker_bin):
    """client_key readable by others is a configuration error (`tlsgate check` exits 2)."""
    key = tmp_path / "loose.key"
    key.write_bytes((mpki / "client.key").read_bytes())
    key.chmod(0o644)
    pdir = tmp_path / "policies"
    pdir.mkdir()
    (pdir / "loose.toml").write_text(policy_text(
        ADDR["mtls13"], mpki, tls='client_certificate = "%s"\nclient_key = "%s"' % (mpki / "client-chain.pem", key)))
    r = subprocess.run([str(worker_bin), "check", str(pdir)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "client_key" in (r.stdout + r.stderr), r.stdout + r.stderr


@pytest.mark.parametrize("alpn,required,ok,logged", [
    ('["http/1.1"]', True, False, None),
    ('["http/1.1"]', False, True, ""),
    ('["h2", "http/1.1"]', True, True, "h2"),
], ids=["mismatch-required-fails", "mismatch-not-required-ok", "match-required-ok"])
def test_alpn(alpn, required, ok, logged, lab, mpki, servers, gate):
    address = ADDR["alpn-h2"]
    before = len(servers.events("alpn-h2"))
    w = gate(address, tls="alpn = %s\nalpn_required = %s" % (alpn, "true" if required else "false"))
    if not ok:
        expect_refused(lab, w, address, "tls_handshake_failed", ("alpn_required",))
        return
    rec = expect_relayed(lab, w, address)
    assert rec.get("alpn", "") in ((logged,) if logged else ("", "-", "none")), rec
    (hs,) = server_saw(servers, "alpn-h2", before)
    assert hs["alpn"] == (logged or None), hs


# --------------------------------------------------------------------------- http-host

HOST_POLICY = dict(server_name="http-host",
                   upstream='allowed_names = ["good.test", "*.wild.test"]\nhost_header_timeout = "2s"')


@pytest.mark.parametrize("request_head,reason,status,details", [
    (b"GET / HTTP/1.1\r\nHost: good.test\r\n\r\n", None, None, ()),
    (b"GET / HTTP/1.1\r\nHost: GOOD.test:80\r\n\r\n", None, None, ()),
    (b"GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n", "host_not_allowed", b"403 Forbidden",
     ('Host "evil.test" is not in the policy\'s allowed_names',)),
    (b"GET / HTTP/1.1\r\nHost: a.b.wild.test\r\n\r\n", "host_not_allowed", b"403 Forbidden", ("a.b.wild.test",)),
    (b"GET / HTTP/1.1\r\nUser-Agent: matrix\r\n\r\n", "bad_request", b"400 Bad Request", ("missing Host header",)),
    (b"GET / HTTP/1.1\r\nHost: good.test\r\nHost: evil.test\r\n\r\n", "bad_request", b"400 Bad Request",
     ("more than one Host header",)),
    (b"GET / HTTP/1.1\r\nHost: bad host!\r\n\r\n", "bad_request", b"400 Bad Request", ("is not a host name",)),
    (b"HELLO THERE\r\n\r\n", "bad_request", b"400 Bad Request", ("not an HTTP",)),
], ids=["allowed", "allowed-mixed-case-with-port", "disallowed", "wildcard-too-deep", "missing-host", "two-hosts",
        "malformed-host", "malformed-request-line"])
def test_http_host(request_head, reason, status, details, lab, mpki, servers, gate):
    address = ADDR["good"]
    before = len(servers.events("good"))
    w = gate(address, **HOST_POLICY)
    if reason is None:
        expect_relayed(lab, w, address, payload=request_head, sni="good.test")
        (hs,) = server_saw(servers, "good", before)
        assert hs["sni"] == "good.test", hs
        return
    res = connect(lab, address, request_head)
    assert res["recv"].startswith(b"HTTP/1.1 " + status + b"\r\n"), (res, w.log_text())
    assert res["end"] == "eof", res
    rec = the_record(w)
    assert (rec.get("result"), rec.get("reason")) == ("refused", reason), rec
    detail_has(rec, details)
    body = res["recv"].split(b"\r\n\r\n", 1)[1].decode()
    assert "policy: matrix" in body and rec["detail"] in body, body
    assert not servers.events("good")[before:], "the gateway must not connect upstream for a refused Host"


def test_http_host_allowed_name_still_verified(lab, mpki, servers, gate):
    """An allowed Host is the identity checked: a.wild.test at a server holding good.test fails."""
    address = ADDR["good"]
    w = gate(address, **HOST_POLICY)
    rec = expect_refused(lab, w, address, "tls_verify_failed", "hostname mismatch",
                         payload=b"GET / HTTP/1.1\r\nHost: a.wild.test\r\n\r\n")
    assert rec.get("sni") == "a.wild.test", rec


def test_http_host_header_timeout(lab, mpki, servers, gate):
    address = ADDR["good"]
    w = gate(address, **HOST_POLICY)
    r = lab.run(lab.client, [PY, CLIENT, address, "80", b"GET / HTTP/1.1\r\nHost: go".hex(), "--no-half-close",
                             "--timeout", "8"], timeout=25)
    res = json.loads(r.stdout)
    assert bytes.fromhex(res["recv_hex"]).startswith(b"HTTP/1.1 408 Request Timeout\r\n"), res
    assert 1.5 <= res["seconds"] < 6, res
    rec = the_record(w)
    assert (rec.get("result"), rec.get("reason")) == ("refused", "host_header_timeout"), rec


# --------------------------------------------------------------------------- on_failure

@pytest.mark.parametrize("on_failure", ["close", "reset", "http-502"])
def test_on_failure(on_failure, lab, mpki, servers, gate):
    """What the client gets when the server fails verification. For close/reset the client
    sends nothing and waits (with unread client bytes, Linux turns any close into a RST);
    for http-502 it sends its request first, as a browser would."""
    address = ADDR["expired"]
    w = gate(address, upstream='on_failure = "%s"' % on_failure)
    payload = HTTP_GET if on_failure == "http-502" else b""
    r = lab.run(lab.client, [PY, CLIENT, address, "80", payload.hex(), "--no-half-close", "--timeout", "8"],
                timeout=25)
    res = json.loads(r.stdout)
    got = bytes.fromhex(res["recv_hex"])
    rec = the_record(w)
    assert (rec.get("result"), rec.get("reason")) == ("failed", "tls_verify_failed"), rec
    detail_has(rec, "certificate has expired")
    assert rec.get("bytes_up") == "0", rec
    assert res["seconds"] < 5, res
    if on_failure == "http-502":
        assert got.startswith(b"HTTP/1.1 502 Bad Gateway\r\n"), res
        assert b"policy: matrix" in got and b"tls_verify_failed: certificate has expired" in got, got
        assert b"BEGIN" not in got and b"PRIVATE" not in got, got
        assert res["end"] == "eof", res
    else:
        assert got == b"", res
        assert res["end"] == ("reset" if on_failure == "reset" else "eof"), res


# --------------------------------------------------------------------------- probe

def test_probe_shows_chain_checks_and_verdict(lab, mpki, servers, tmp_path, worker_bin):
    good, wrong = ADDR["good"], ADDR["wronghost"]
    pin = spki_pin(mpki / "intermediate.pem")
    policy = tmp_path / "probe.toml"
    policy.write_text(policy_text(good, mpki, tls='pins = ["%s"]' % pin).replace(
        'networks = ["%s/32"]' % good, 'networks = ["%s/32", "%s/32"]' % (good, wrong)))
    ok = lab.run(lab.gw, [worker_bin, "probe", "--policy", policy, "--address", good], check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "cert 0: subject CN=good.test" in ok.stdout and "cert 1: subject CN=tlsgate test intermediate" in ok.stdout
    assert "pin     %s" % pin in ok.stdout
    assert "check pins: ok" in ok.stdout and "verdict: ACCEPTED" in ok.stdout, ok.stdout
    bad = lab.run(lab.gw, [worker_bin, "probe", "--policy", policy, "--address", wrong], check=False)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "check certificate: FAILED: hostname mismatch" in bad.stdout
    assert "verdict: REFUSED: hostname mismatch" in bad.stdout, bad.stdout
    usage = lab.run(lab.gw, [worker_bin, "probe", "--policy", policy], check=False)
    assert usage.returncode == 2 and "give --address" in usage.stderr, usage.stdout + usage.stderr


# --------------------------------------------------------------------------- legacy servers, suites

@pytest.mark.parametrize("legacy", [False, True], ids=["strict-policy-refused", "legacy-policy-ok"])
def test_legacy_server(legacy, lab, mpki, servers, gate):
    """A TLS 1.0/1.1-only server: refused by a default policy, served by one that allows it."""
    address, port = where("legacy")
    w = gate(address, tls='min_version = "1.0"' if legacy else "", port=port)
    if not legacy:
        expect_refused(lab, w, address, "tls_handshake_failed", ("protocol version", "unsupported protocol"))
        return
    assert "legacy TLS allowed" in w.log_text(), w.log_text()
    rec = expect_relayed(lab, w, address, port=port)
    assert rec["tls_version"] in ("TLSv1", "TLSv1.1"), rec


@pytest.mark.parametrize("tls,cipher", [
    ('ciphersuites = "TLS_CHACHA20_POLY1305_SHA256"\ngroups = "P-384"', "TLS_CHACHA20_POLY1305_SHA256"),
    ('max_version = "1.2"\nciphers = "ECDHE-ECDSA-CHACHA20-POLY1305"', "ECDHE-ECDSA-CHACHA20-POLY1305"),
], ids=["tls13-ciphersuites-and-groups", "tls12-ciphers"])
def test_cipher_suites_and_groups_are_applied(tls, cipher, lab, mpki, servers, gate):
    address = ADDR["good"]
    w = gate(address, tls=tls)
    rec = expect_relayed(lab, w, address)
    assert rec["cipher"] == cipher, rec


def test_anonymous_suite_server_is_refused(lab, mpki, servers, gate, tmp_path, worker_bin):
    """`openssl s_server -nocert -cipher 'aNULL:@SECLEVEL=0' -tls1_2`: no certificate, nothing to
    verify. A policy asking for @SECLEVEL never runs; a legacy policy with ciphers = "ALL" never
    offers an anonymous suite; in neither case does a byte reach the server's application."""
    address, port = where("anon")
    # 1. ciphers = "ALL:@SECLEVEL=0": `check` and the worker refuse the policy, with its line.
    pdir = tmp_path / "anon"
    pdir.mkdir()
    policy = pdir / "anon.toml"
    policy.write_text(policy_text(address, mpki, tls='ciphers = "ALL:@SECLEVEL=0"', port=port))
    line = policy.read_text().splitlines().index('ciphers = "ALL:@SECLEVEL=0"') + 1
    check = subprocess.run([str(worker_bin), "check", str(pdir)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 2, check.stdout + check.stderr
    assert 'anon.toml:%d: ciphers "ALL:@SECLEVEL=0" sets @SECLEVEL' % line in check.stderr, check.stderr
    worker = lab.run(lab.gw, [worker_bin, "worker", "--policy", policy, "--listen", "0.0.0.0:0"], check=False,
                     timeout=30)
    assert worker.returncode == 2 and "sets @SECLEVEL" in worker.stderr, worker.stdout + worker.stderr
    assert "worker listening" not in worker.stdout + worker.stderr
    # 2. A legacy policy, ciphers = "ALL": security level 0 for the versions, still no anonymous suite.
    w = gate(address, tls='min_version = "1.0"\nciphers = "ALL"', port=port)
    res = connect(lab, address, HTTP_GET)
    assert res["recv"] == b"", (res, w.log_text())
    rec = the_record(w)
    assert (rec.get("result"), rec.get("reason")) == ("failed", "tls_handshake_failed"), rec
    assert rec.get("cipher") == "-" and "ADH" not in w.log_text(), w.log_text()
