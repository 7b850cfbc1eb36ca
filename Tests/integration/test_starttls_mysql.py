"""MySQL/MariaDB (`starttls = "mysql"`) through `tlsgate run` with a real MariaDB (Debian's
mariadbd), initialised and started here with its own data directory, config, socket and log
in the lab's server namespace (test PKI certificates), driven by the `mariadb` client with
TLS off (`--skip-ssl`) from the client namespace.

- 198.19.0.16: TLS with good.test's certificate; every account REQUIRE SSL (the server
  itself refuses a plain session)
- 198.19.0.17: TLS off (no CLIENT_SSL in its greeting)
- 198.19.0.18: TLS with the wrongname certificate

Accounts: `native` (mysql_native_password) and `edu` (ed25519, which MariaDB reaches by an
auth switch after the native greeting: the renumbered exchange).

caching_sha2_password (MySQL 8's default): MariaDB 10.11 has no server side for it, Debian 12
ships no MySQL 8 server, and no installable package implements one (mysql-mimic, the one
Python MySQL server on PyPI, has no caching_sha2_password), so `mysql8_standin.py` stands in
for MySQL 8's connection phase, named as a stand-in, protocol-exact on the wire (see its
docstring), at 198.19.0.19 with good.test's certificate, `require_secure_transport` on:
- 198.19.0.19: accounts `alice` and `switcher` (the latter first gets an auth switch to
  caching_sha2_password with a fresh scramble); its cache starts cold, so the first login is
  full authentication, where the gateway is the client's RSA endpoint.

Needs root, mariadbd and the mariadb client (Scripts/setup.sh); skipped elsewhere with the
reason, failed under CI.
"""
import json
import os
import pwd
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import _popen, _stop_process, unavailable
import mail_servers as ms

GOOD, NOTLS, WRONG = "198.19.0.16", "198.19.0.17", "198.19.0.18"
SHA2 = "198.19.0.19"
MARIADBD = Path("/usr/sbin/mariadbd")
PASSWORD = "s3cret-pw"
STANDIN = Path(__file__).with_name("mysql8_standin.py")


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

# The start of a raw MySQL client (run with python3 -c in the client namespace, % its
# server address): rd() reads one packet, as (sequence, payload).
RAW_CLIENT = (
    "import socket,struct,subprocess,sys\n"
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
)


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
    script = RAW_CLIENT % GOOD + (
        "seq,g=rd()\n"
        "caps=struct.unpack('<H',g[g.index(0,1)+14:g.index(0,1)+16])[0]\n"
        "print('greeting',seq,'ssl' if caps&0x800 else 'nossl')\n"
        "req=struct.pack('<IIB',0x800|0x200|0x8000|0x80000,1<<24,45)+bytes(23)\n"
        "s.sendall(struct.pack('<I',len(req))[:3]+bytes([1])+req)\n"
        "seq,e=rd()\n"
        "print('reply',seq,e[:1].hex(),e[9:].decode())\n")
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


# caching_sha2_password through the gateway (the stand-in MySQL 8 server, see the docstring).

@pytest.fixture(scope="module")
def mysql8(lab, pki):
    if shutil.which("mariadb") is None:
        unavailable("needs `mariadb` (run Scripts/setup.sh)")
    plugin = Path("/usr/lib/x86_64-linux-gnu/libmariadb3/plugin/caching_sha2_password.so")
    if not plugin.exists():
        unavailable("needs libmariadb's caching_sha2_password client plugin (%s; libmariadb3)" % plugin)
    with ms.server_folder("my8", "the MySQL 8 stand-in") as (root, procs):
        log = root / "standin.jsonl"
        proc = _popen(lab.exec_argv(lab.server, [
            "python3", STANDIN, "--bind", SHA2, "--port", "3306", "--cert", pki / "good-chain.pem",
            "--key", pki / "good.key", "--log", log, "--account", "alice:%s" % PASSWORD,
            "--account", "switcher:%s" % PASSWORD]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        ms.wait_listening(lab, SHA2, 3306, proc, what="mysql8_standin.py", timeout=30)
        yield log


def standin_logins(log, count, timeout=10):
    """The stand-in's first `count` login records (bounded wait: it logs when a session ends)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return [json.loads(line) for line in lines]
        time.sleep(0.1)


@pytest.fixture
def sha2_gateway(gateway, gateway_dir, mysql8):
    return gateway({"my-sha2": policy(gateway_dir / "root.pem", SHA2)})


SHA2_SQL = "SELECT v FROM lab.t; SHOW STATUS LIKE 'Ssl_cipher'; SELECT CURRENT_USER()"


def test_starttls_mysql_caching_sha2_full_then_fast_authentication_needs_root(lab, mysql8, sha2_gateway):
    """The real mariadb client (libmariadb's caching_sha2_password plugin, TLS off) against a
    cold cache: the server asks for full authentication, the client asks the gateway for its
    public key and sends the password RSA-encrypted; the server gets it in clear inside TLS.
    The second login is the server's fast authentication (0x01 0x03), relayed as before."""
    g = sha2_gateway
    before = len(standin_logins(mysql8, 0, timeout=0))
    for n, auth in enumerate(("full", "fast")):
        r = client(lab, SHA2, "alice", SHA2_SQL)
        assert r.returncode == 0, r.stdout + r.stderr
        lines = r.stdout.strip().splitlines()
        assert lines[0] == "row-42", r.stdout
        cipher = lines[1].split("\t")
        assert cipher[0] == "Ssl_cipher" and len(cipher) == 2 and cipher[1], r.stdout
        assert lines[2] == "alice@%", r.stdout
        recs = standin_logins(mysql8, before + n + 1)
        rec = recs[before + n]
        assert rec["user"] == "alice" and rec["tls"] is True and rec["tls_version"].startswith("TLSv1."), rec
        assert rec["auth"] == auth and rec["ok"] is True and rec.get("quit") is True, rec
        assert rec["queries"] == SHA2_SQL.split("; "), rec
        if auth == "full":
            # The password reached the server in clear (and its NUL) inside TLS only.
            assert rec["clear_password_over_tls"] is True and rec["password_nul"] is True, rec
    recs = g.wait_records("connection closed", 2, policy="my-sha2")
    assert [r["reason"] for r in recs[-2:]] == ["completed", "completed"], recs
    # Never the password in the gateway's log; the worker made its key without a crash.
    assert PASSWORD not in g.log(), "the password is in the gateway's log"
    assert "worker exited unexpectedly" not in g.log(), g.log()


def writable_memory_holding(pid, needle):
    """The writable mappings of process `pid` (heap, anonymous, data) whose bytes contain
    `needle`, as "start-end name" strings (root reads /proc/PID/mem)."""
    found = []
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", buffering=0) as mem:
        for line in maps:
            fields = line.split()
            if "w" not in fields[1] or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except OSError:
                continue
            if needle in data:
                found.append("%s %s" % (fields[0], fields[5] if len(fields) > 5 else "[anon]"))
    return found


def test_starttls_mysql_caching_sha2_password_is_wiped_from_the_worker_needs_root(lab, mysql8, sha2_gateway):
    """After full authentication the decrypted password is gone from the worker's memory:
    every copy the gateway made (the RSA output, the packet to the server, the buffer handed
    to TLS) is overwritten once used, not just freed, so no later over-read or core file
    finds it."""
    g = sha2_gateway
    r = client(lab, SHA2, "alice", SHA2_SQL)
    assert r.returncode == 0, r.stdout + r.stderr
    recs = standin_logins(mysql8, 1)
    assert any(rec.get("auth") == "full" and rec.get("clear_password_over_tls") for rec in recs), recs
    g.wait_records("connection closed", 1, policy="my-sha2")
    pid = g.worker_for("my-sha2")
    assert pid is not None, g.log()
    held = writable_memory_holding(pid, PASSWORD.encode())
    assert not held, "the worker still holds the clear password in: %s" % held


def test_starttls_mysql_caching_sha2_after_an_auth_switch_needs_root(lab, mysql8, sha2_gateway):
    """An auth switch to caching_sha2_password brings a fresh scramble: the gateway unmasks
    the password with that one, not the greeting's."""
    before = len(standin_logins(mysql8, 0, timeout=0))
    r = client(lab, SHA2, "switcher", "SELECT v FROM lab.t")
    assert r.returncode == 0 and r.stdout.strip() == "row-42", r.stdout + r.stderr
    rec = standin_logins(mysql8, before + 1)[before]
    assert rec["user"] == "switcher" and rec["auth_switch"] is True and rec["auth"] == "full", rec
    assert rec["ok"] is True and rec["tls"] is True and rec["clear_password_over_tls"] is True, rec


def test_starttls_mysql_caching_sha2_wrong_password_is_the_servers_err_needs_root(lab, mysql8, sha2_gateway):
    """The server's own ERR 1045 reaches the client (renumbered). (The log's reason is not
    checked: the server's bare close and the client's close race, as with MariaDB.)"""
    g = sha2_gateway
    before = len(standin_logins(mysql8, 0, timeout=0))
    r = lab.run(lab.client, ["mariadb", "--no-defaults", "-h", SHA2, "-u", "alice", "-pnot-the-password",
                             "--skip-ssl", "--connect-timeout=10", "-e", "SELECT v FROM lab.t"], timeout=30, check=False)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "ERROR 1045 (28000): Access denied for user 'alice'@" in r.stderr, r.stderr
    rec = standin_logins(mysql8, before + 1)[before]
    # The (wrong) password went the whole way: decrypted, in clear inside TLS, refused by the server.
    assert rec["auth"] == "full" and rec["ok"] is False and rec["clear_password_over_tls"] is True, rec
    assert rec["password_nul"] is True, rec
    assert PASSWORD not in g.log() and "not-the-password" not in g.log(), "a password is in the gateway's log"


def test_starttls_mysql_caching_sha2_password_for_another_key_is_refused_needs_root(lab, mysql8, sha2_gateway,
                                                                                  tmp_path):
    """A client that encrypts its password with another public key (one configured for the
    real server; the mariadb CLI has no option for it, so a raw client plays it, with
    `openssl pkeyutl`) gets the gateway's ERR, and the server gets nothing."""
    g = sha2_gateway
    key = tmp_path / "other.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key],
                   check=True, capture_output=True, timeout=60)
    before = len(standin_logins(mysql8, 0, timeout=0))
    script = RAW_CLIENT % SHA2 + (
        "def wr(seq,p): s.sendall(struct.pack('<I',len(p))[:3]+bytes([seq])+p)\n"
        "seq,g=rd()\n"
        "v=g.index(0,1); scramble=g[v+5:v+13]+g[v+32:v+44]\n"
        "caps=0x200|0x8000|0x80000\n"
        "wr(1,struct.pack('<IIB',caps,1<<24,45)+bytes(23)+b'alice\\0'+bytes([32])+bytes(32)+b'caching_sha2_password\\0')\n"
        "seq,p=rd(); print('server asks',seq,p.hex())\n"
        "pw=bytes(c^scramble[i%%20] for i,c in enumerate(b'%s\\0'))\n"
        "blob=subprocess.run(['openssl','pkeyutl','-encrypt','-inkey','%s','-pkeyopt','rsa_padding_mode:oaep'],"
        "input=pw,capture_output=True,check=True).stdout\n"
        "wr(seq+1,blob)\n"
        "seq,e=rd(); print('reply',seq,e[:1].hex(),e[9:].decode())\n" % (PASSWORD, key))
    r = lab.run(lab.client, ["python3", "-c", script], timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "server asks 2 0104" in r.stdout, r.stdout
    assert re.search(r"reply 4 ff tlsgate: policy my-sha2: client_error: the client's password does not decrypt "
                     r"with the gateway's RSA key", r.stdout), r.stdout
    recs = g.wait_records("connection closed", 1, policy="my-sha2")
    assert recs[-1]["reason"] == "client_error" and "does not decrypt" in recs[-1]["detail"], recs
    # The server saw the login start and no password: the gateway closed.
    rec = standin_logins(mysql8, before + 1)[before]
    assert rec["auth"] == "full" and "ok" not in rec and "clear_password_over_tls" not in rec, rec
    assert rec["error"].startswith("Closed"), rec
