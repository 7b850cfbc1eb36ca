"""LDAP StartTLS (`starttls = "ldap"`) through `tlsgate run` with a real slapd, started here
with its own config, database and log in the lab's server namespace (test PKI certificates),
driven by ldapsearch and curl ldap:// from the client namespace, plain text.

- 198.19.0.20: slapd with good.test's certificate
- 198.19.0.21: slapd without TLS (StartTLS refused by the server)
- 198.19.0.22: slapd with the wrongname certificate

Needs root, slapd, ldapsearch and curl (Scripts/setup.sh); skipped elsewhere with the
reason, failed under CI.
"""
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import PY, _popen, _stop_process, unavailable
import mail_servers as ms

GOOD, NOTLS, WRONG = "198.19.0.20", "198.19.0.21", "198.19.0.22"
BASE = "dc=lab,dc=test"

LDIF = """dn: dc=lab,dc=test
objectClass: dcObject
objectClass: organization
dc: lab
o: tlsgate lab

dn: uid=alice,dc=lab,dc=test
objectClass: inetOrgPerson
uid: alice
cn: Alice Liddell
sn: Liddell
mail: alice@lab.test
"""


# An anonymous simple BindRequest (messageID 1), then everything until the server closes
# (bounded: 10 s, 64 KiB), printed as hex.
RAW_BIND = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], 389), timeout=10)
s.sendall(bytes.fromhex("300c020101600702010304008000"))
out, deadline = b"", time.monotonic() + 10
while len(out) < 65536 and time.monotonic() < deadline:
    chunk = s.recv(4096)
    if not chunk:
        break
    out += chunk
print(out.hex())
"""


def start_slapd(lab, run, addr, pki, leaf, tls):
    run.mkdir(parents=True)
    (run / "db").mkdir()
    tls_lines = ("TLSCertificateFile %s/%s-chain.pem\nTLSCertificateKeyFile %s/%s.key\nTLSCACertificateFile %s/root.pem\n"
                 % (pki, leaf, pki, leaf, pki)) if tls else ""
    conf = run / "slapd.conf"
    conf.write_text("""include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {run}/slapd.pid
loglevel stats
{tls}
database mdb
maxsize 10485760
suffix "{base}"
rootdn "cn=admin,{base}"
rootpw secret
directory {run}/db
""".format(run=run, tls=tls_lines, base=BASE))
    (run / "data.ldif").write_text(LDIF)
    r = subprocess.run(["slapadd", "-f", conf, "-l", run / "data.ldif"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("slapadd failed: %s" % r.stderr)
    log = open(run / "slapd.log", "wb")
    proc = _popen(lab.exec_argv(lab.server, ["slapd", "-d", "stats", "-f", conf, "-h", "ldap://%s:389/" % addr]),
                  stdout=log, stderr=subprocess.STDOUT)
    log.close()
    ms.wait_listening(lab, addr, 389, proc, what="slapd")
    return proc


@pytest.fixture(scope="module")
def slapd(lab, pki):
    for tool in ("slapd", "slapadd", "ldapsearch", "curl"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/usr/bin") is None:
            unavailable("needs `%s` (run Scripts/setup.sh)" % tool)
    root = Path(tempfile.mkdtemp(prefix="tlsgate-ldap-%d-" % os.getpid(), dir="/tmp"))
    procs = []
    logs = {}
    try:
        for name, addr, leaf, tls in (("good", GOOD, "good", True), ("notls", NOTLS, "good", False),
                                      ("wrong", WRONG, "wrongname", True)):
            procs.append(start_slapd(lab, root / name, addr, pki, leaf, tls))
            logs[name] = root / name / "slapd.log"
    except RuntimeError as e:
        for p in procs:
            _stop_process(p)
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail("slapd did not start: %s" % e, pytrace=False)
    yield logs
    for p in procs:
        _stop_process(p)
    shutil.rmtree(root, ignore_errors=True)


def policy(ca, addr):
    return ('[match]\nnetworks = ["%s/32"]\nport = 389\n\n'
            '[upstream]\nport = 389\nserver_name = "good.test"\nconnect_timeout = "3s"\nstarttls = "ldap"\n\n'
            '[tls]\ntrust = "%s"\n' % (addr, ca))


@pytest.fixture
def ldap_gateway(gateway, gateway_dir, slapd):
    ca = gateway_dir / "root.pem"
    return gateway({"ldap-good": policy(ca, GOOD), "ldap-notls": policy(ca, NOTLS), "ldap-wrong": policy(ca, WRONG)})


def ldapsearch(lab, addr):
    return lab.run(lab.client, ["ldapsearch", "-x", "-o", "nettimeout=10", "-l", "10", "-H", "ldap://%s" % addr,
                                "-b", BASE, "(uid=alice)", "mail"], timeout=30, check=False)


def test_starttls_ldap_search_returns_the_entry_over_tls_needs_root(lab, slapd, ldap_gateway):
    g = ldap_gateway
    r = ldapsearch(lab, GOOD)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "dn: uid=alice,dc=lab,dc=test" in r.stdout and "mail: alice@lab.test" in r.stdout, r.stdout
    r = lab.run(lab.client, ["curl", "-sS", "--max-time", "20", "ldap://%s/%s?mail?sub?(uid=alice)" % (GOOD, BASE)],
                timeout=30, check=False)
    assert r.returncode == 0 and "alice@lab.test" in r.stdout, r.stdout + r.stderr
    # slapd: StartTLS, then TLS established, then the searches, all from the gateway.
    log = slapd["good"].read_text()
    assert re.search(r"conn=\d+ .*ACCEPT from IP=198\.19\.0\.1:", log), log
    assert re.search(r"conn=\d+ op=0 STARTTLS", log), log
    assert re.search(r"conn=\d+ fd=\d+ TLS established tls_ssf=\d+", log), log
    assert re.search(r'conn=\d+ op=\d+ SRCH base="dc=lab,dc=test"', log), log
    recs = g.wait_records("connection closed", 2, policy="ldap-good")
    assert all(r["reason"] == "completed" and r["tls_version"].startswith("TLSv1.") for r in recs), recs


@pytest.mark.parametrize("server,addr,reason,detail", [
    ("notls", NOTLS, "starttls_refused", "the server refused StartTLS: resultCode"),
    ("wrong", WRONG, "tls_verify_failed", "hostname mismatch"),
])
def test_starttls_ldap_refusal_is_a_notice_of_disconnection_needs_root(lab, slapd, ldap_gateway, server, addr,
                                                                        reason, detail):
    g = ldap_gateway
    r = ldapsearch(lab, addr)
    assert r.returncode != 0, r.stdout + r.stderr
    recs = g.wait_records("connection closed", 1, policy="ldap-%s" % server)
    assert recs[-1]["reason"] == reason and detail in recs[-1]["detail"], recs
    out = r.stdout + r.stderr
    assert "Can't contact LDAP server" in out and "dn: uid=alice" not in out, out
    # libldap takes the notice of disconnection silently; a raw client shows what was sent:
    # an anonymous BindRequest answered with messageID 0, ExtendedResponse unavailable (52),
    # the notice's OID, and a diagnostic naming the policy and the reason.
    r = lab.run(lab.client, [PY, "-c", RAW_BIND, addr], timeout=30, check=False)
    assert r.returncode == 0, r.stderr
    got = bytes.fromhex(r.stdout.strip())
    assert got[:2] in (b"\x30\x81", b"\x30\x82") or got[0] == 0x30, got
    assert b"\x02\x01\x00\x78" in got and b"\x0a\x01\x34" in got, got
    assert b"1.3.6.1.4.1.1466.20036" in got, got
    assert ("tlsgate: policy ldap-%s: %s" % (server, reason)).encode() in got, got


def test_starttls_ldap_probe_shows_the_upgrade_needs_root(lab, pki, slapd, worker_bin, tmp_path):
    for addr, ok in ((GOOD, True), (NOTLS, False)):
        p = tmp_path / ("ldap-%s.toml" % addr)
        p.write_text(policy(pki / "root.pem", addr))
        r = lab.run(lab.gw, [worker_bin, "probe", "--policy", p], check=False, timeout=60)
        assert 'upgrade: LDAP (starttls = "ldap")' in r.stdout, r.stdout + r.stderr
        assert "C: ExtendedRequest StartTLS (1.3.6.1.4.1.1466.20037), messageID 2147483647" in r.stdout, r.stdout
        if ok:
            assert r.returncode == 0 and "S: ExtendedResponse messageID 2147483647, resultCode 0" in r.stdout, r.stdout
            assert "verdict: ACCEPTED" in r.stdout, r.stdout
        else:
            assert r.returncode == 1 and "(starttls_refused)" in r.stdout, r.stdout
