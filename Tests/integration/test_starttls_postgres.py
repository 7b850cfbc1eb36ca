"""PostgreSQL (`starttls = "postgres"`) through `tlsgate run` with a real PostgreSQL 15,
initialised and started here with its own data directory, config and log in the lab's
server namespace (test PKI certificates), driven by psql from the client namespace with
`sslmode=disable` and `sslmode=prefer` (the gateway answers the client's SSLRequest `N`).

- 198.19.0.25: ssl = on with good.test's certificate; pg_hba allows only `hostssl`
- 198.19.0.26: ssl = off
- 198.19.0.27: ssl = on with the wrongname certificate

Needs root, PostgreSQL 15 and psql (Scripts/setup.sh); skipped elsewhere with the reason,
failed under CI.
"""
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import _popen, _stop_process, unavailable
import mail_servers as ms

GOOD, NOTLS, WRONG = "198.19.0.25", "198.19.0.26", "198.19.0.27"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def start_postgres(lab, run, addr, pki, leaf, tls):
    pg = pwd.getpwnam("postgres")
    run.mkdir(parents=True)
    os.chown(run, pg.pw_uid, pg.pw_gid)
    data = run / "data"
    r = subprocess.run(["runuser", "-u", "postgres", "--", PG_BIN / "initdb", "-D", data, "-A", "trust",
                        "-U", "postgres", "--no-sync"], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError("initdb failed: %s" % r.stderr)
    if tls:
        for src, dst in (("%s-chain.pem" % leaf, "server.crt"), ("%s.key" % leaf, "server.key")):
            shutil.copy(pki / src, data / dst)
            os.chown(data / dst, pg.pw_uid, pg.pw_gid)
            (data / dst).chmod(0o600)
    # Only TLS sessions may log in to the TLS server: a plain session would be refused.
    (data / "pg_hba.conf").write_text(("hostssl all all 198.19.0.0/24 trust\n" if tls else
                                       "host all all 198.19.0.0/24 trust\n"))
    log = run / "postgres.log"
    argv = ["runuser", "-u", "postgres", "--", PG_BIN / "postgres", "-D", data,
            "-c", "listen_addresses=%s" % addr, "-c", "port=5432", "-c", "unix_socket_directories=%s" % run,
            "-c", "ssl=%s" % ("on" if tls else "off"), "-c", "log_connections=on", "-c", "logging_collector=off"]
    with open(log, "wb") as f:
        proc = _popen(lab.exec_argv(lab.server, argv), stdout=f, stderr=subprocess.STDOUT)
    ms.wait_listening(lab, addr, 5432, proc, what="postgres", timeout=30)
    return proc


@pytest.fixture(scope="module")
def postgres(lab, pki):
    for tool in ("psql", "runuser"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin") is None:
            unavailable("needs `%s` (run Scripts/setup.sh)" % tool)
    if not (PG_BIN / "postgres").exists():
        unavailable("needs PostgreSQL 15 (%s; run Scripts/setup.sh)" % PG_BIN)
    root = Path(tempfile.mkdtemp(prefix="tlsgate-pg-%d-" % os.getpid(), dir="/tmp"))
    root.chmod(0o755)
    procs, logs = [], {}
    try:
        for name, addr, leaf, tls in (("good", GOOD, "good", True), ("notls", NOTLS, "good", False),
                                      ("wrong", WRONG, "wrongname", True)):
            procs.append(start_postgres(lab, root / name, addr, pki, leaf, tls))
            logs[name] = root / name / "postgres.log"
    except RuntimeError as e:
        for p in procs:
            _stop_process(p, 15)
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail("postgres did not start: %s" % e, pytrace=False)
    yield logs
    for p in procs:
        _stop_process(p, 15)
    shutil.rmtree(root, ignore_errors=True)


def policy(ca, addr):
    return ('[match]\nnetworks = ["%s/32"]\nport = 5432\n\n'
            '[upstream]\nport = 5432\nserver_name = "good.test"\nconnect_timeout = "3s"\nstarttls = "postgres"\n\n'
            '[tls]\ntrust = "%s"\n' % (addr, ca))


@pytest.fixture
def pg_gateway(gateway, gateway_dir, postgres):
    ca = gateway_dir / "root.pem"
    return gateway({"pg-good": policy(ca, GOOD), "pg-notls": policy(ca, NOTLS), "pg-wrong": policy(ca, WRONG)})


def psql(lab, addr, sslmode, sql):
    conninfo = "host=%s port=5432 user=postgres dbname=postgres sslmode=%s gssencmode=disable connect_timeout=10" % (
        addr, sslmode)
    return lab.run(lab.client, ["psql", "-X", "-A", "-t", conninfo, "-c", sql], timeout=30, check=False)


SQL = "select 'row-' || 42, ssl, version from pg_stat_ssl where pid = pg_backend_pid()"


@pytest.mark.parametrize("sslmode", ["disable", "prefer"])
def test_starttls_postgres_select_over_tls_needs_root(lab, postgres, pg_gateway, sslmode):
    g = pg_gateway
    r = psql(lab, GOOD, sslmode, SQL)
    assert r.returncode == 0, r.stdout + r.stderr
    # The server says the session was TLS (and pg_hba allows nothing else there).
    row, ssl, version = r.stdout.strip().split("|")
    assert row == "row-42" and ssl == "t" and version.startswith("TLSv1."), r.stdout
    recs = g.wait_records("connection closed", 1, policy="pg-good")
    assert recs[-1]["reason"] == "completed" and recs[-1]["tls_version"].startswith("TLSv1."), recs
    log = postgres["good"].read_text()
    assert re.search(r"connection received: host=198\.19\.0\.1 ", log), log
    assert re.search(r"connection authorized: user=postgres database=postgres .*SSL enabled \(protocol=TLSv1\.[23]", log), log


@pytest.mark.parametrize("server,addr,reason,detail", [
    ("notls", NOTLS, "starttls_refused", "the server does not accept TLS (it answered SSLRequest with N)"),
    ("wrong", WRONG, "tls_verify_failed", "hostname mismatch"),
])
def test_starttls_postgres_refusal_is_an_error_response_needs_root(lab, postgres, pg_gateway, server, addr,
                                                                    reason, detail):
    g = pg_gateway
    r = psql(lab, addr, "prefer", "select 1")
    assert r.returncode != 0, r.stdout + r.stderr
    assert "FATAL:  tlsgate: policy pg-%s: %s: %s" % (server, reason, detail) in r.stderr, r.stderr
    recs = g.wait_records("connection closed", 1, policy="pg-%s" % server)
    assert recs[-1]["reason"] == reason and detail in recs[-1]["detail"], recs


def test_starttls_postgres_probe_shows_the_upgrade_needs_root(lab, pki, postgres, worker_bin, tmp_path):
    for addr, ok in ((GOOD, True), (NOTLS, False)):
        p = tmp_path / ("pg-%s.toml" % addr)
        p.write_text(policy(pki / "root.pem", addr))
        r = lab.run(lab.gw, [worker_bin, "probe", "--policy", p], check=False, timeout=60)
        assert 'upgrade: PostgreSQL (starttls = "postgres")' in r.stdout and "C: SSLRequest" in r.stdout, r.stdout + r.stderr
        if ok:
            assert r.returncode == 0 and "S: S (TLS accepted)" in r.stdout and "verdict: ACCEPTED" in r.stdout, r.stdout
        else:
            assert r.returncode == 1 and "S: N" in r.stdout and "(starttls_refused)" in r.stdout, r.stdout
