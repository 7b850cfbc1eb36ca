"""Protocol upgrades (`[upstream] starttls`) through `tlsgate run`, with real servers and
real plain-text clients: postfix (SMTP STARTTLS on 25 and 587) and dovecot (IMAP STARTTLS on
143, POP3 STLS on 110), each started here with its own config, data and log in the lab's
server namespace, certificates from the test PKI.

- 198.19.0.10: postfix and dovecot with good.test's certificate (TLS offered)
- 198.19.0.11: postfix and dovecot with TLS off (no STARTTLS offered)
- 198.19.0.12: postfix and dovecot with the wrongname certificate (other.test)

A mail submitted with curl smtp:// (plain, from the client namespace) is fetched back
with curl imap:// and pop3://; the servers' logs confirm every session was TLS. The other
two servers are refused with the protocol's own error, shown by curl, and the logged reason.

Needs root, postfix, dovecot and curl (Scripts/setup.sh). Skipped elsewhere with the reason;
under CI a missing requirement fails.
"""
import os
import re
import shutil
import tempfile
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import _popen, _stop_process, unavailable
import mail_servers as ms

GOOD, NOTLS, WRONG = "198.19.0.10", "198.19.0.11", "198.19.0.12"


@pytest.fixture(scope="module")
def mail(lab, pki, tmp_path_factory):
    for tool in ("postfix", "dovecot", "curl"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/usr/bin") is None:
            unavailable("needs `%s` (run Scripts/setup.sh)" % tool)
    # Not under pytest's 0700 tmp: postfix's and dovecot's unprivileged processes must reach it.
    root = Path(tempfile.mkdtemp(prefix="tlsgate-mail-%d-" % os.getpid(), dir="/tmp"))
    root.chmod(0o755)
    procs, postfixes = [], []
    servers = {}
    etc = ms.isolate_name_service(lab)
    try:
        for addr, name, leaf, tls in ((GOOD, "good", "good", True), (NOTLS, "notls", "good", False),
                                      (WRONG, "wrong", "wrongname", True)):
            base = root / name
            base.mkdir()
            base.chmod(0o755)
            maildir = base / "mail"
            ms.make_maildirs(maildir)
            d = ms.start_dovecot(lab, _popen, base / "dovecot", addr, pki, leaf=leaf, ssl=tls, mail=maildir)
            procs.append(d)
            p = ms.start_postfix(lab, _popen, base / "postfix", addr, pki, leaf=leaf, tls=tls, mail=maildir)
            procs.append(p)
            postfixes.append((p, base / "postfix"))
            servers[name] = base
    except RuntimeError as e:
        for p, run in postfixes:
            ms.stop_postfix(lab, p, run)
        for p in procs:
            _stop_process(p)
        ms.remove_name_service(etc)
        pytest.fail("mail servers did not start: %s" % e, pytrace=False)
    yield servers
    for p, run in postfixes:
        ms.stop_postfix(lab, p, run)
    for p in procs:
        _stop_process(p)
    ms.remove_name_service(etc)
    if not os.environ.get("TLSGATE_KEEP_MAIL"):
        shutil.rmtree(root, ignore_errors=True)


def policy(ca, addr, port, proto, extra=""):
    return ('[match]\nnetworks = ["%s/32"]\nport = %d\n\n'
            '[upstream]\nport = %d\nserver_name = "good.test"\nconnect_timeout = "3s"\nstarttls = "%s"\n%s\n'
            '[tls]\ntrust = "%s"\n' % (addr, port, port, proto, extra, ca))


@pytest.fixture
def mail_gateway(gateway, gateway_dir, mail):
    ca = gateway_dir / "root.pem"
    policies = {}
    for name, addr in (("good", GOOD), ("notls", NOTLS), ("wrong", WRONG)):
        policies["smtp-%s" % name] = policy(ca, addr, 25, "smtp")
        policies["imap-%s" % name] = policy(ca, addr, 143, "imap")
        policies["pop3-%s" % name] = policy(ca, addr, 110, "pop3")
    policies["submission-good"] = policy(ca, GOOD, 587, "smtp")
    return gateway(policies)


def curl(lab, *args, timeout=30):
    """curl from the client namespace, verbose (the protocol lines are in stderr)."""
    return lab.run(lab.client, ["curl", "-v", "-sS", "--max-time", "20"] + list(args), timeout=timeout, check=False)


def submit(lab, tmp_path, port, token):
    msg = tmp_path / ("msg-%s.txt" % token)
    msg.write_text("From: bob@ext.test\r\nTo: alice@lab.test\r\nSubject: %s\r\n\r\nbody %s\r\n" % (token, token))
    return curl(lab, "smtp://%s:%d/client.lab" % (GOOD, port), "--mail-from", "bob@ext.test",
                "--mail-rcpt", "alice@lab.test", "-T", msg)


def wait_for(predicate, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out after %.0fs waiting for %s" % (timeout, what))


def test_starttls_mail_submitted_over_smtp_then_fetched_over_imap_and_pop3_needs_root(lab, mail, mail_gateway, tmp_path):
    g = mail_gateway
    token = uuid.uuid4().hex[:12]
    r = submit(lab, tmp_path, 25, token)
    assert r.returncode == 0, r.stderr
    # The client saw the gateway's greeting (the server's own came before TLS), then the
    # server's real post-TLS EHLO answer (which no longer offers STARTTLS).
    assert "< 220 good.test ESMTP ready (tlsgate: TLS to the server verified)" in r.stderr, r.stderr
    assert "< 250-mx.lab.test" in r.stderr and "STARTTLS" not in r.stderr.split("< 250-mx.lab.test", 1)[1]
    maillog = mail["good"] / "postfix" / "maillog"
    wait_for(lambda: "status=sent" in maillog.read_text(), what="postfix delivery")
    log = maillog.read_text()
    # postfix: the session came from the gateway and was TLS.
    assert re.search(r"TLS connection established from gw\.lab\.test\[198\.19\.0\.1\]: TLSv1\.[23]", log), log
    assert re.search(r"disconnect from gw\.lab\.test\[198\.19\.0\.1\] ehlo=2 starttls=1 mail=1 rcpt=1 data=1", log), log

    # The submission port too (587 -> 587).
    token2 = uuid.uuid4().hex[:12]
    r = submit(lab, tmp_path, 587, token2)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: maillog.read_text().count("status=sent") >= 2, what="delivery of the mail sent to 587")

    r = curl(lab, "imap://%s/INBOX" % GOOD, "-u", "%s@%s:%s" % (ms.MAIL_USER, ms.MAIL_DOMAIN, ms.MAIL_PASSWORD),
             "-X", "FETCH 1:* BODY[TEXT]")
    assert r.returncode == 0, r.stderr
    seen = r.stdout + r.stderr  # curl -v shows the literal in stderr
    assert "body %s" % token in seen and "body %s" % token2 in seen, seen
    assert "< * OK IMAP server good.test ready (tlsgate: TLS to the server verified)" in r.stderr, r.stderr

    r = curl(lab, "pop3://%s/" % GOOD, "-u", "%s@%s:%s" % (ms.MAIL_USER, ms.MAIL_DOMAIN, ms.MAIL_PASSWORD))
    assert r.returncode == 0, r.stderr
    count = len([l for l in r.stdout.splitlines() if l.strip()])
    assert count >= 2, r.stdout
    bodies = ""
    for n in range(1, min(count, 10) + 1):
        bodies += curl(lab, "pop3://%s/%d" % (GOOD, n), "-u",
                       "%s@%s:%s" % (ms.MAIL_USER, ms.MAIL_DOMAIN, ms.MAIL_PASSWORD)).stdout
    assert "body %s" % token in bodies, bodies

    dlog = (mail["good"] / "dovecot" / "dovecot.log").read_text()
    assert re.search(r"imap-login: Info: Login: user=<alice@lab\.test>.*rip=198\.19\.0\.1,.*TLS", dlog), dlog
    assert re.search(r"pop3-login: Info: Login: user=<alice@lab\.test>.*rip=198\.19\.0\.1,.*TLS", dlog), dlog

    for name in ("smtp-good", "submission-good", "imap-good", "pop3-good"):
        recs = g.wait_records("connection closed", 1, policy=name)
        assert all(r["reason"] == "completed" and r["tls_version"].startswith("TLSv1.") for r in recs), recs


@pytest.mark.parametrize("proto,port,url,words", [
    ("smtp", 25, "smtp://%s/client.lab", "421 4.7.0 tlsgate: policy smtp-%s: %s"),
    ("imap", 143, "imap://%s/INBOX", "* BYE tlsgate: policy imap-%s: %s"),
    ("pop3", 110, "pop3://%s/", "-ERR tlsgate: policy pop3-%s: %s"),
])
@pytest.mark.parametrize("server,addr,reason", [
    ("notls", NOTLS, "starttls_refused"),
    ("wrong", WRONG, "tls_verify_failed"),
])
def test_starttls_refusal_speaks_the_protocol_needs_root(lab, mail, mail_gateway, proto, port, url, words,
                                                         server, addr, reason):
    g = mail_gateway
    args = [url % addr]
    if proto != "smtp":
        args += ["-u", "%s@%s:%s" % (ms.MAIL_USER, ms.MAIL_DOMAIN, ms.MAIL_PASSWORD)]
    else:
        args += ["--mail-from", "bob@ext.test", "--mail-rcpt", "alice@lab.test", "-T", "/dev/null"]
    r = curl(lab, *args)
    assert r.returncode != 0, r.stdout + r.stderr
    assert ("< " + words % (server, reason)) in r.stderr, r.stderr
    recs = g.wait_records("connection closed", 1, policy="%s-%s" % (proto, server))
    assert recs[-1]["reason"] == reason and recs[-1]["result"] == "failed", recs
    if server == "notls":
        assert "STARTTLS" in recs[-1]["detail"] or "STLS" in recs[-1]["detail"], recs
    # Nothing the server said reached the client: no Postfix/Dovecot banner in what curl saw.
    assert "Postfix" not in r.stderr and "Dovecot" not in r.stderr and "mx.lab.test" not in r.stderr, r.stderr


@pytest.mark.parametrize("proto,port,first_command", [("smtp", 25, "C: EHLO [198.19.0.1]"),
                                                       ("imap", 143, "C: T1 CAPABILITY"),
                                                       ("pop3", 110, "C: STLS")])
def test_starttls_probe_shows_the_upgrade_needs_root(lab, pki, mail, worker_bin, tmp_path, proto, port, first_command):
    for server, addr in (("good", GOOD), ("notls", NOTLS)):
        p = tmp_path / ("%s-%s.toml" % (proto, server))
        p.write_text(policy(pki / "root.pem", addr, port, proto))
        r = lab.run(lab.gw, [worker_bin, "probe", "--policy", p], check=False, timeout=60)
        out = r.stdout
        assert ("upgrade: %s (starttls = \"%s\")" % (proto.upper(), proto)) in out, out + r.stderr
        assert first_command in out, out
        if server == "good":
            assert r.returncode == 0 and "verdict: ACCEPTED" in out, out + r.stderr
        else:
            assert r.returncode == 1, out + r.stderr
            assert "check upgrade: FAILED: " in out and "(starttls_refused)" in out, out
            assert "verdict: REFUSED: the server does not offer" in out, out


def test_starttls_smtp_ehlo_name_is_what_the_server_sees_needs_root(lab, pki, mail, worker_bin, tmp_path):
    """`[upstream] ehlo_name` replaces the address literal in SMTP's EHLO."""
    p = tmp_path / "smtp-ehlo.toml"
    p.write_text(policy(pki / "root.pem", GOOD, 25, "smtp", extra='ehlo_name = "Relay.Lab.Test"'))
    r = lab.run(lab.gw, [worker_bin, "probe", "--policy", p], check=False, timeout=60)
    assert r.returncode == 0 and "verdict: ACCEPTED" in r.stdout, r.stdout + r.stderr
    assert "C: EHLO relay.lab.test" in r.stdout and "C: EHLO [" not in r.stdout, r.stdout


def test_starttls_local_mode_same_port_does_not_loop_needs_root(lab, mail, gateway, gateway_dir, tmp_path):
    """`local` mode intercepts the gateway host's own connections (nat output) except the
    gateway's accounts' (the supervisor's and its workers', worker_user): the worker's own
    25 -> 25 upstream connection is not redirected back into itself, and a local client's
    plain SMTP still goes out upgraded."""
    import pwd
    g = gateway({"smtp-local": policy(gateway_dir / "root.pem", GOOD, 25, "smtp")}, mode="local")
    table = g.table()
    own = sorted({pwd.getpwnam("tlsgate").pw_uid, pwd.getpwnam("tlsgate-worker").pw_uid})
    assert "hook output" in table and "meta skuid != { %d, %d }" % tuple(own) in table, table
    token = uuid.uuid4().hex[:12]
    msg = tmp_path / "local.txt"
    msg.write_text("Subject: %s\r\n\r\nbody %s\r\n" % (token, token))
    r = lab.run(lab.gw, ["curl", "-v", "-sS", "--max-time", "20", "smtp://%s/gw.lab" % GOOD, "--mail-from",
                         "root@gw.lab.test", "--mail-rcpt", "alice@lab.test", "-T", msg], timeout=30, check=False)
    assert r.returncode == 0, r.stderr
    assert "< 220 good.test ESMTP ready (tlsgate: TLS to the server verified)" in r.stderr, r.stderr
    recs = g.wait_records("connection closed", 1, policy="smtp-local")
    assert len(recs) == 1 and recs[0]["reason"] == "completed" and recs[0]["tls_version"].startswith("TLSv1."), recs
