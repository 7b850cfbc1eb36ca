"""MySQL/MariaDB (`starttls = "mysql"`) through `tlsgate run` with a real MariaDB (Debian's
mariadbd), initialised and started here with its own data directory, config, socket and log
in the lab's server namespace (test PKI certificates), driven by the `mariadb` client with
TLS off (`--skip-ssl`) from the client namespace.

- 198.19.0.16: TLS with good.test's certificate; every account REQUIRE SSL (the server
  itself refuses a plain session)
- 198.19.0.17: TLS off (no CLIENT_SSL in its greeting)
- 198.19.0.18: TLS with the wrongname certificate

Accounts: `native` (mysql_native_password) and `edu` (ed25519, which MariaDB reaches by an
auth switch after the native greeting: the renumbered exchange). MariaDB 10.11 has no
caching_sha2_password server plugin; its renumbering is covered by the unit tests.

Needs root, mariadbd and the mariadb client (Scripts/setup.sh); skipped elsewhere with the
reason, failed under CI.
"""
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import _popen, _stop_process, unavailable
import mail_servers as ms

GOOD, NOTLS, WRONG = "198.19.0.16", "198.19.0.17", "198.19.0.18"
MARIADBD = Path("/usr/sbin/mariadbd")
PASSWORD = "s3cret-pw"


def start_mariadb(lab, run, addr, pki, leaf, tls):
    my = pwd.getpwnam("mysql")
    run.mkdir(parents=True)
    data = run / "data"
    data.mkdir()
    for d in (run, data):
        os.chown(d, my.pw_uid, my.pw_gid)
    conf = run / "my.cnf"
    lines = ["[mariadbd]", "datadir=%s" % data, "socket=%s" % (run / "sock"), "pid-file=%s" % (run / "pid"),
             "bind-address=%s" % addr, "port=3306", "skip-name-resolve", "log-error=%s" % (run / "error.log"),
             "plugin-load-add=auth_ed25519", "innodb_buffer_pool_size=16M", "skip-log-bin",
             "lower_case_table_names=0"]
    if tls:
        for src, dst in (("%s-chain.pem" % leaf, "server.crt"), ("%s.key" % leaf, "server.key")):
            shutil.copy(pki / src, run / dst)
            os.chown(run / dst, my.pw_uid, my.pw_gid)
            (run / dst).chmod(0o600)
        lines += ["ssl-cert=%s" % (run / "server.crt"), "ssl-key=%s" % (run / "server.key")]
    else:
        lines += ["skip-ssl"]
    conf.write_text("\n".join(lines) + "\n")
    os.chown(conf, my.pw_uid, my.pw_gid)
    r = subprocess.run(["mariadb-install-db", "--defaults-file=%s" % conf, "--user=mysql", "--skip-test-db",
                        "--auth-root-authentication-method=socket"], capture_output=True, text=True, timeout=180)
    if r.returncode != 0:
        raise RuntimeError("mariadb-install-db failed: %s%s" % (r.stdout, r.stderr))
    proc = _popen(lab.exec_argv(lab.server, [MARIADBD, "--defaults-file=%s" % conf, "--user=mysql"]),
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ms.wait_listening(lab, addr, 3306, proc, what="mariadbd", timeout=60)
    except RuntimeError as e:
        log = (run / "error.log").read_text() if (run / "error.log").exists() else ""
        _stop_process(proc, 15)
        raise RuntimeError("%s\n%s" % (e, log[-2000:]))
    require = " REQUIRE SSL" if tls else ""
    sql = ("CREATE USER 'native'@'%%' IDENTIFIED VIA mysql_native_password USING PASSWORD('%s')%s;"
           "CREATE USER 'edu'@'%%' IDENTIFIED VIA ed25519 USING PASSWORD('%s')%s;"
           "CREATE DATABASE lab; CREATE TABLE lab.t (v VARCHAR(20)); INSERT INTO lab.t VALUES ('row-42');"
           "GRANT SELECT ON lab.* TO 'native'@'%%'; GRANT SELECT ON lab.* TO 'edu'@'%%';") % (
        PASSWORD, require, PASSWORD, require)
    r = lab.run(lab.server, ["mariadb", "--no-defaults", "-S", run / "sock", "-u", "root", "-e", sql],
                check=False, timeout=60)
    if r.returncode != 0:
        _stop_process(proc, 15)
        raise RuntimeError("creating the accounts failed: %s" % r.stderr)
    return proc


@pytest.fixture(scope="module")
def mariadb(lab, pki):
    for tool in ("mariadb", "mariadb-install-db"):
        if shutil.which(tool) is None:
            unavailable("needs `%s` (run Scripts/setup.sh)" % tool)
    if not MARIADBD.exists():
        unavailable("needs mariadbd (%s; run Scripts/setup.sh)" % MARIADBD)
    with ms.server_folder("my", "mariadbd") as (root, procs):
        runs = {}
        for name, addr, leaf, tls in (("good", GOOD, "good", True), ("notls", NOTLS, "good", False),
                                      ("wrong", WRONG, "wrongname", True)):
            procs.append(start_mariadb(lab, root / name, addr, pki, leaf, tls))
            runs[name] = root / name
        yield runs


def policy(ca, addr):
    return ms.starttls_policy(ca, addr, 3306, "mysql")


@pytest.fixture
def my_gateway(gateway, gateway_dir, mariadb):
    ca = gateway_dir / "root.pem"
    return gateway({"my-good": policy(ca, GOOD), "my-notls": policy(ca, NOTLS), "my-wrong": policy(ca, WRONG)})


def client(lab, addr, user, sql, *extra):
    return lab.run(lab.client, ["mariadb", "--no-defaults", "-h", addr, "-P", "3306", "-u", user,
                                "-p%s" % PASSWORD, "--skip-ssl", "--connect-timeout=10", "-N", "-B", *extra,
                                "-e", sql], timeout=30, check=False)


SQL = "SELECT v FROM lab.t; SHOW STATUS LIKE 'Ssl_cipher'; SHOW STATUS LIKE 'Ssl_version'; SELECT CURRENT_USER()"


@pytest.mark.parametrize("user", ["native", "edu"])
def test_starttls_mysql_select_over_tls_needs_root(lab, mariadb, my_gateway, user):
    g = my_gateway
    r = client(lab, GOOD, user, SQL)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "row-42", r.stdout
    # The server says this very session is TLS (and the account requires it).
    cipher = lines[1].split("\t")
    assert cipher[0] == "Ssl_cipher" and len(cipher) == 2 and cipher[1], r.stdout
    version = lines[2].split("\t")
    assert version[0] == "Ssl_version" and version[1].startswith("TLSv1."), r.stdout
    assert lines[3] == "%s@%%" % user, r.stdout
    recs = g.wait_records("connection closed", 1, policy="my-good")
    assert recs[-1]["reason"] == "completed" and recs[-1]["tls_version"].startswith("TLSv1."), recs


def test_starttls_mysql_wrong_password_is_the_servers_err_needs_root(lab, mariadb, my_gateway):
    r = lab.run(lab.client, ["mariadb", "--no-defaults", "-h", GOOD, "-u", "native", "-pwrong", "--skip-ssl",
                             "-e", "SELECT 1"], timeout=30, check=False)
    assert r.returncode != 0 and "ERROR 1045 (28000): Access denied for user 'native'" in r.stderr, r.stderr


def test_starttls_mysql_client_asking_for_tls_gets_an_err_needs_root(lab, mariadb, my_gateway):
    """A client that itself asks for TLS is answered by the gateway, not left hanging.
    The greeting has no CLIENT_SSL, so the mariadb client with --ssl (required) stops
    itself; a raw client that sends an SSL request anyway reads the gateway's ERR."""
    g = my_gateway
    r = lab.run(lab.client, ["mariadb", "--no-defaults", "-h", GOOD, "-u", "native", "-p%s" % PASSWORD,
                             "--ssl", "--ssl-verify-server-cert", "-e", "SELECT 1"], timeout=30, check=False)
    assert r.returncode != 0 and "SSL" in r.stderr, r.stderr
    script = (
        "import socket,struct,sys\n"
        "s=socket.create_connection(('%s',3306),timeout=10)\n"
        "def rd():\n"
        "  h=b''\n"
        "  while len(h)<4:\n"
        "    c=s.recv(4-len(h))\n"
        "    if not c: sys.exit('closed')\n"
        "    h+=c\n"
        "  n=h[0]|h[1]<<8|h[2]<<16; b=b''\n"
        "  while len(b)<n:\n"
        "    c=s.recv(n-len(b))\n"
        "    if not c: sys.exit('closed')\n"
        "    b+=c\n"
        "  return h[3],b\n"
        "seq,g=rd()\n"
        "caps=struct.unpack('<H',g[g.index(0,1)+14:g.index(0,1)+16])[0]\n"
        "print('greeting',seq,'ssl' if caps&0x800 else 'nossl')\n"
        "req=struct.pack('<IIB',0x800|0x200|0x8000|0x80000,1<<24,45)+bytes(23)\n"
        "s.sendall(struct.pack('<I',len(req))[:3]+bytes([1])+req)\n"
        "seq,e=rd()\n"
        "print('reply',seq,e[:1].hex(),e[9:].decode())\n" % GOOD)
    r = lab.run(lab.client, ["python3", "-c", script], timeout=30, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "greeting 0 nossl" in r.stdout, r.stdout
    assert re.search(r"reply 2 ff tlsgate: policy my-good: client_speaks_tls: the client asked for TLS", r.stdout), r.stdout
    recs = g.wait_records("connection closed", 1, policy="my-good")
    assert recs[-1]["reason"] == "client_speaks_tls", recs


@pytest.mark.parametrize("server,addr,reason,detail", [
    ("notls", NOTLS, "starttls_refused", "the server does not offer TLS (no CLIENT_SSL in its greeting)"),
    ("wrong", WRONG, "tls_verify_failed", "hostname mismatch"),
])
def test_starttls_mysql_refusal_is_an_err_packet_needs_root(lab, mariadb, my_gateway, server, addr, reason, detail):
    g = my_gateway
    r = client(lab, addr, "native", "SELECT 1")
    assert r.returncode != 0, r.stdout + r.stderr
    assert "ERROR 1043 (08S01)" in r.stderr and "tlsgate: policy my-%s: %s: %s" % (server, reason, detail) in r.stderr, \
        r.stderr
    recs = g.wait_records("connection closed", 1, policy="my-%s" % server)
    assert recs[-1]["reason"] == reason and detail in recs[-1]["detail"], recs


def test_starttls_mysql_probe_shows_the_upgrade_needs_root(lab, pki, mariadb, worker_bin, tmp_path):
    for addr, ok in ((GOOD, True), (NOTLS, False)):
        p = tmp_path / ("my-%s.toml" % addr)
        p.write_text(policy(pki / "root.pem", addr))
        r = lab.run(lab.gw, [worker_bin, "probe", "--policy", p], check=False, timeout=60)
        out = r.stdout + r.stderr
        assert 'upgrade: MySQL (starttls = "mysql")' in r.stdout, out
        if ok:
            assert r.returncode == 0 and "S: greeting, protocol 10" in r.stdout and "C: SSL request" in r.stdout, out
            assert "verdict: ACCEPTED" in r.stdout, out
        else:
            assert r.returncode == 1 and "no CLIENT_SSL" in r.stdout and "(starttls_refused)" in r.stdout, out
