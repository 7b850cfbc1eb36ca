"""Real mail servers for the starttls tests, each with its own config, data and log under a
given folder, run in the lab's server namespace as plain processes (never system services):
postfix (SMTP, STARTTLS) delivering into Maildirs, and dovecot (IMAP and POP3, STARTTLS)
reading the same Maildirs.

Every start waits (bounded) for the listening port; every stop is by PID.
"""
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

MAIL_USER = "alice"
MAIL_PASSWORD = "wonderland"
MAIL_DOMAIN = "lab.test"


def wait_listening(lab, addr, port, proc=None, timeout=15.0, what="server"):
    """Wait (bounded) until addr:port listens in the server namespace."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = lab.run(lab.server, ["ss", "-Hltn", "sport = :%d" % port], check=False)
        if addr in r.stdout:
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with %s before listening on %s:%d" % (what, proc.returncode, addr, port))
        time.sleep(0.1)
    raise RuntimeError("%s did not listen on %s:%d within %.0fs" % (what, addr, port, timeout))


def isolate_name_service(lab):
    """/etc/netns/<server ns>/{hosts,resolv.conf}, which `ip netns exec` mounts over /etc:
    the servers' name lookups (postfix looks up every client) are answered from the lab's
    own hosts file, and DNS goes to 127.0.0.1 in the namespace (refused at once), never to
    the host's resolver outside 198.18.0.0/15. Returns the folder, for remove_name_service."""
    etc = Path("/etc/netns") / lab.server
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "hosts").write_text(
        "127.0.0.1 localhost\n198.19.0.1 gw.lab.test\n198.18.0.2 client.lab.test\n"
        "198.19.0.10 mx.lab.test good.test\n198.19.0.11 notls.lab.test\n198.19.0.12 wrong.lab.test\n")
    (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    return etc


def remove_name_service(etc):
    shutil.rmtree(etc, ignore_errors=True)
    try:
        etc.parent.rmdir()  # only if no other namespace has files there
    except OSError:
        pass


def nobody():
    p = pwd.getpwnam("nobody")
    return p.pw_uid, p.pw_gid


def make_maildirs(root):
    """root/lab.test/alice/{cur,new,tmp}, owned by nobody (the servers' mail uid)."""
    uid, gid = nobody()
    box = root / MAIL_DOMAIN / MAIL_USER
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True, exist_ok=True)
    for p in [root, root / MAIL_DOMAIN, box] + [box / s for s in ("cur", "new", "tmp")]:
        os.chown(p, uid, gid)
        p.chmod(0o755)
    return box


def dovecot_conf(run, addr, pki, leaf="good", ssl=True, mail=None):
    """A dovecot.conf serving IMAP 143 and POP3 110 on addr (STARTTLS / STLS when ssl)."""
    uid, gid = nobody()
    base = run / "base"
    base.mkdir(parents=True, exist_ok=True)
    (run / "state").mkdir(exist_ok=True)
    passwd = run / "passwd"
    passwd.write_text("%s@%s:{PLAIN}%s:%d:%d::%s::\n" % (MAIL_USER, MAIL_DOMAIN, MAIL_PASSWORD, uid, gid, run))
    ssl_lines = ("ssl = yes\nssl_cert = <%s/%s-chain.pem\nssl_key = <%s/%s.key\nssl_min_protocol = TLSv1.2\n"
                 % (pki, leaf, pki, leaf)) if ssl else "ssl = no\n"
    conf = run / "dovecot.conf"
    conf.write_text("""
protocols = imap pop3
listen = {addr}
base_dir = {base}
state_dir = {run}/state
log_path = {run}/dovecot.log
info_log_path = {run}/dovecot.log
auth_verbose = yes
login_log_format_elements = user=<%u> method=%m rip=%r lip=%l %c session=<%{{session}}>
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:{mail}/%d/%n
pop3_uidl_format = %08Xu%08Xv
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {passwd}
}}
userdb {{
  driver = passwd-file
  args = {passwd}
}}
service imap-login {{
  inet_listener imap {{
    port = 143
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 110
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
service pop3-login {{
  chroot =
}}
""".format(addr=addr, base=base, run=run, ssl=ssl_lines, mail=mail or (run / "mail"), passwd=passwd))
    return conf


def start_dovecot(lab, popen, run, addr, pki, leaf="good", ssl=True, mail=None):
    run.mkdir(parents=True, exist_ok=True)
    if mail is None:
        mail = run / "mail"
        make_maildirs(mail)
    conf = dovecot_conf(run, addr, pki, leaf=leaf, ssl=ssl, mail=mail)
    proc = popen(lab.exec_argv(lab.server, ["dovecot", "-F", "-c", conf]),
                 stdout=subprocess.DEVNULL, stderr=open(run / "dovecot.stderr", "wb"))
    wait_listening(lab, addr, 143, proc, what="dovecot")
    wait_listening(lab, addr, 110, proc, what="dovecot")
    return proc


MASTER_CF = """\
{addr}:25 inet n - n - - smtpd
{addr}:587 inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def start_postfix(lab, popen, run, addr, pki, leaf="good", tls=True, mail=None):
    """postfix (master in the foreground) on addr:25 and addr:587, delivering mail for
    alice@lab.test into mail/lab.test/alice/ (a Maildir). Logs (maillog_file = /dev/stdout,
    the container way) go to run/maillog."""
    conf_dir = run / "etc"
    queue = run / "queue"
    data = run / "data"
    for d in (conf_dir, queue, data):
        d.mkdir(parents=True, exist_ok=True)
    if mail is None:
        mail = run / "mail"
        make_maildirs(mail)
    uid, gid = nobody()
    pf = pwd.getpwnam("postfix")
    os.chown(data, pf.pw_uid, pf.pw_gid)
    (conf_dir / "vmailbox").write_text("%s@%s %s/%s/\n" % (MAIL_USER, MAIL_DOMAIN, MAIL_DOMAIN, MAIL_USER))
    tls_lines = ("smtpd_tls_security_level = may\nsmtpd_tls_chain_files = %s/%s.key, %s/%s-chain.pem\n"
                 "smtpd_tls_loglevel = 1\nsmtpd_tls_received_header = yes\n" % (pki, leaf, pki, leaf)) \
        if tls else "smtpd_tls_security_level = none\n"
    (conf_dir / "main.cf").write_text("""
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
myhostname = mx.{domain}
mydomain = {domain}
mydestination =
inet_interfaces = {addr}
inet_protocols = ipv4
mynetworks = 198.18.0.0/15
maillog_file = /dev/stdout
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {mail}
virtual_mailbox_maps = texthash:{conf}/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtp_dns_support_level = disabled
disable_dns_lookups = yes
alias_maps =
alias_database =
biff = no
{tls}
""".format(queue=queue, data=data, domain=MAIL_DOMAIN, addr=addr, run=run, mail=mail, conf=conf_dir,
           uid=uid, gid=gid, tls=tls_lines))
    (conf_dir / "master.cf").write_text(MASTER_CF.format(addr=addr))
    env = dict(os.environ, MAIL_CONFIG=str(conf_dir))
    r = subprocess.run(lab.exec_argv(lab.server, ["postfix", "-c", conf_dir, "set-permissions"]),
                       capture_output=True, text=True, timeout=60, env=env)
    proc = popen(lab.exec_argv(lab.server, ["postfix", "-c", conf_dir, "start-fg"]),
                 stdout=open(run / "maillog", "wb"), stderr=subprocess.STDOUT, env=env)
    wait_listening(lab, addr, 25, proc, what="postfix")
    return proc


def stop_postfix(lab, proc, run):
    """`postfix stop` (bounded), then SIGTERM/SIGKILL the master by the PID it wrote, then
    the start-fg wrapper we started: start-fg's master outlives its wrapper."""
    conf_dir = run / "etc"
    env = dict(os.environ, MAIL_CONFIG=str(conf_dir))
    try:
        subprocess.run(lab.exec_argv(lab.server, ["postfix", "-c", conf_dir, "stop"]),
                       capture_output=True, timeout=20, env=env)
    except subprocess.TimeoutExpired:
        pass
    pid_file = run / "queue" / "pid" / "master.pid"
    try:
        master = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        master = None
    try:
        is_master = master is not None and b"master" in Path("/proc/%d/cmdline" % master).read_bytes()
    except OSError:
        is_master = False
    if is_master:
        for sig in (15, 9):
            try:
                os.kill(master, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and Path("/proc/%d" % master).exists():
                time.sleep(0.1)


def starttls_policy(ca, addr, port, starttls, server_name="good.test"):
    """A policy for one lab server reached with `starttls` on its own port."""
    return ('[match]\nnetworks = ["%s/32"]\nport = %d\n\n'
            '[upstream]\nport = %d\nserver_name = "%s"\nconnect_timeout = "3s"\nstarttls = "%s"\n\n'
            '[tls]\ntrust = "%s"\n' % (addr, port, port, server_name, starttls, ca))


@contextlib.contextmanager
def server_folder(prefix, what):
    """A fresh folder under /tmp for a module's servers and the list their processes go in:
    on leaving, every process is stopped by PID and the folder removed; a RuntimeError from
    a start fails the test with `what did not start`."""
    from conftest import _stop_process
    root = Path(tempfile.mkdtemp(prefix="tlsgate-%s-%d-" % (prefix, os.getpid()), dir="/tmp"))
    root.chmod(0o755)
    procs = []
    try:
        yield root, procs
    except RuntimeError as e:
        pytest.fail("%s did not start: %s" % (what, e), pytrace=False)
    finally:
        for p in reversed(procs):
            _stop_process(p, 30)
        shutil.rmtree(root, ignore_errors=True)
