"""Fail closed at the network layer: whenever a configured destination has no worker
serving it (gateway stopped by SIGTERM, supervisor killed, policy disabled after a crash
loop, a name that stops resolving), a LAN connection to it is rejected at the gateway and
never reaches the server in clear.

Each test runs a *plain* TCP listener on the destination's match port in the server
namespace: if the gateway ever forwarded a connection instead of intercepting or rejecting
it, that listener logs it. A test that then removes the guard (`tlsgate rules --remove`)
shows the listener does see a forwarded connection, so the check can fail.

Needs root, network namespaces, nftables and the tlsgate binary (conftest.unavailable).
"""
import json
import os
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from conftest import PY, TLSGATE_BIN, _popen, _stop_process, gateway_policy, pid_alive

PLAIN_LISTENER = textwrap.dedent("""
    import socket, sys, time
    host, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port)); s.listen(64); s.settimeout(0.5)
    print("ready", flush=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            c, peer = s.accept()
        except socket.timeout:
            continue
        with open(log, "a") as f:
            f.write("accept %s:%d\\n" % peer[:2])
        c.close()
""")

CONNECT = textwrap.dedent("""
    import json, socket, sys, time
    t0 = time.monotonic()
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        s.close()
        out = "connected"
    except ConnectionRefusedError:
        out = "refused"
    except socket.timeout:
        out = "timeout"
    except OSError as e:
        out = "error: %s" % e
    print(json.dumps({"outcome": out, "seconds": time.monotonic() - t0}))
""")


class PlainListener:
    def __init__(self, log):
        self.log = Path(log)

    def accepted(self):
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def plain_listener(lab, tmp_path):
    """plain_listener(host, port=80) -> PlainListener in the server namespace."""
    procs = []

    def start(host, port=80):
        log = tmp_path / ("plain-%s-%d.log" % (host, port))
        p = _popen(lab.exec_argv(lab.server, [PY, "-c", PLAIN_LISTENER, host, str(port), log]),
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = p.stdout.readline()
        assert b"ready" in line, (line, p.stderr.read() if p.poll() is not None else b"")
        procs.append(p)
        return PlainListener(log)

    yield start
    for p in procs:
        _stop_process(p)


def connect(lab, host, port=80):
    r = lab.run(lab.client, [PY, "-c", CONNECT, host, str(port)], timeout=20)
    return json.loads(r.stdout)


def assert_rejected(lab, host, listener, why):
    res = connect(lab, host)
    assert res["outcome"] == "refused", "%s: a LAN connection to %s:80 was not rejected: %r" % (why, host, res)
    assert res["seconds"] < 2, res
    time.sleep(0.2)
    assert listener.accepted() == [], "%s: the server saw a plain connection: %r" % (why, listener.accepted())


def wait_gone(pids, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(pid_alive(p) for p in pids), pids


def remove_rules(lab, gateway_dir):
    r = lab.run(lab.gw, [TLSGATE_BIN, "rules", "--remove", "--config", gateway_dir / "tlsgate.toml"], check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "removed" in r.stdout, r.stdout


def test_sigterm_leaves_the_guard_and_rules_remove_takes_it_away(lab, tls_server, plain_client, plain_listener,
                                                                   gateway, gateway_dir):
    tls_server("good", "198.19.0.20")
    listener = plain_listener("198.19.0.20")
    g = gateway({"web": gateway_policy(["198.19.0.20/32"], gateway_dir / "root.pem")})
    (r,) = plain_client("198.19.0.20", 80, nbytes=1024, timeout=20)
    assert r["error"] is None and r["recv_sha256"] == r["sent_sha256"], (r, g.log())
    g.proc.send_signal(signal.SIGTERM)
    assert g.proc.wait(timeout=30) == 0, g.log()
    assert "the fail-closed guard stays" in g.log(), g.log()
    assert g.table() is None
    guard = g.guard()
    assert guard and "reject with tcp reset" in guard and "198.19.0.20" in guard, guard
    assert_rejected(lab, "198.19.0.20", listener, "after SIGTERM")
    # The operator takes the gateway out of service: now traffic flows without it, so the
    # listener does see connections that are not intercepted (the check above can fail).
    remove_rules(lab, gateway_dir)
    assert g.guard() is None
    assert connect(lab, "198.19.0.20")["outcome"] == "connected"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not listener.accepted():
        time.sleep(0.1)
    assert len(listener.accepted()) == 1, listener.accepted()


def test_supervisor_kill_9_fails_closed(lab, tls_server, plain_listener, gateway, gateway_dir):
    tls_server("good", "198.19.0.20")
    listener = plain_listener("198.19.0.20")
    g = gateway({"web": gateway_policy(["198.19.0.20/32"], gateway_dir / "root.pem")})
    workers = g.children()
    g.proc.send_signal(signal.SIGKILL)
    g.proc.wait(timeout=10)
    wait_gone(workers)
    assert_rejected(lab, "198.19.0.20", listener, "after kill -9 of the supervisor")
    assert g.guard() is not None


def test_crash_looping_policy_is_rejected_not_forwarded(lab, tls_server, plain_listener, gateway, gateway_dir):
    tls_server("good", "198.19.0.20")
    listener = plain_listener("198.19.0.20")
    g = gateway({"web": gateway_policy(["198.19.0.20/32"], gateway_dir / "root.pem")},
                extra='crash_limit = 1\ncrash_window = "60s"\n')
    for _ in range(2):   # two crashes within the window: more than crash_limit
        pid = g.worker_for("web")
        os.kill(pid, signal.SIGKILL)
        wait_gone([pid])
        if "policy disabled" in g.log():
            break
        g.wait_log("worker started", count=2)
    g.wait_log("policy disabled")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "redirect" in (g.table() or ""):
        time.sleep(0.1)
    assert "redirect" not in (g.table() or ""), g.table()
    assert "dst_web_v4" in (g.guard() or ""), g.guard()
    assert_rejected(lab, "198.19.0.20", listener, "with the policy disabled")


def test_on_stop_open_is_an_explicit_choice(lab, tls_server, plain_listener, gateway, gateway_dir):
    tls_server("good", "198.19.0.20")
    listener = plain_listener("198.19.0.20")
    g = gateway({"web": gateway_policy(["198.19.0.20/32"], gateway_dir / "root.pem")},
                intercept_extra='on_stop = "open"\n')
    g.proc.send_signal(signal.SIGTERM)
    assert g.proc.wait(timeout=30) == 0, g.log()
    assert 'on_stop = "open"' in g.log(), g.log()
    assert g.guard() is None and g.table() is None
    assert connect(lab, "198.19.0.20")["outcome"] == "connected"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not listener.accepted():
        time.sleep(0.1)
    assert len(listener.accepted()) == 1, listener.accepted()


@pytest.fixture
def gw_hosts_file(lab):
    """/etc/netns/<gw>/hosts and resolv.conf: `ip netns exec` mounts them over /etc/hosts
    and /etc/resolv.conf for processes started in the gw namespace. DNS goes to 127.0.0.1
    (nothing listens: an unknown name fails at once, no packet leaves)."""
    d = Path("/etc/netns") / lab.gw
    d.mkdir(parents=True, exist_ok=True)
    (d / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    hosts = d / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    yield hosts
    shutil.rmtree(d, ignore_errors=True)


def test_names_that_stop_resolving_keep_their_addresses_and_overlaps_are_reported(
        lab, tls_server, plain_listener, gateway, gateway_dir, gw_hosts_file):
    tls_server("good", "198.19.0.21")
    tls_server("good", "198.19.0.22")
    listener = plain_listener("198.19.0.21")
    gw_hosts_file.write_text("127.0.0.1 localhost\n198.19.0.21 origin.test\n198.19.0.22 origin.test\n")
    ca = gateway_dir / "root.pem"
    named = gateway_policy([], ca).replace("networks = []", 'hosts = ["origin.test"]')
    g = gateway({"a-named": named, "strict": gateway_policy(["198.19.0.22/32"], ca)})
    # 198.19.0.22 is in policy strict's literal networks: it stays there, and it is said.
    g.wait_log("it stays with policy strict")
    from test_gateway import set_elements
    table = g.table()
    assert set_elements(table, "dst_a_dnamed_v4") == {"198.19.0.21"}, table
    assert set_elements(table, "dst_strict_v4") == {"198.19.0.22"}, table
    # The name stops resolving; a reload keeps the last addresses (and says so).
    with open(gw_hosts_file, "w") as f:   # in place: the bind mount follows the inode
        f.write("127.0.0.1 localhost\n")
    g.hup()
    g.wait_log("reloaded")
    assert "keeping its last addresses" in g.log(), g.log()
    assert set_elements(g.table(), "dst_a_dnamed_v4") == {"198.19.0.21"}, g.table()
    g.proc.send_signal(signal.SIGTERM)
    assert g.proc.wait(timeout=30) == 0
    assert set_elements(g.guard(), "dst_a_dnamed_v4") == {"198.19.0.21"}, g.guard()
    assert_rejected(lab, "198.19.0.21", listener, "after stop, for a name that no longer resolves")


def test_policy_names_that_look_alike_get_their_own_sets(lab, tls_server, plain_client, gateway, gateway_dir):
    tls_server("good", "198.19.0.23")
    tls_server("good", "198.19.0.24")
    ca = gateway_dir / "root.pem"
    g = gateway({"a-b": gateway_policy(["198.19.0.23/32"], ca), "a_b": gateway_policy(["198.19.0.24/32"], ca)})
    from test_gateway import set_elements
    table = g.table()
    assert set_elements(table, "dst_a_db_v4") == {"198.19.0.23"}, table
    assert set_elements(table, "dst_a__b_v4") == {"198.19.0.24"}, table
    for host, policy in (("198.19.0.23", "a-b"), ("198.19.0.24", "a_b")):
        (r,) = plain_client(host, 80, nbytes=512, timeout=20)
        assert r["error"] is None, (r, g.log())
        g.wait_records("connection closed", 1, policy=policy, dst="%s:80" % host)


def test_a_file_the_workers_cannot_read_is_a_config_error_not_a_crash_loop(lab, gateway, gateway_dir,
                                                                          tlsgate_account, worker_account):
    """Started as root with user = "tlsgate": a root-only (0600) CA file would be readable
    by `check` and `run` (root) but not by the workers (their own account, tlsgate-worker).
    Both refuse it with file:line; so they do a file only the supervisor's account can read."""
    secret = gateway_dir / "root-only-ca.pem"
    shutil.copy(gateway_dir / "root.pem", secret)
    os.chown(secret, 0, 0)
    secret.chmod(0o600)
    policy = gateway_policy(["198.19.0.20/32"], secret)
    chk_dir = gateway_dir / "policies"
    (chk_dir / "web.toml").write_text(policy)
    (chk_dir / "web.toml").chmod(0o644)
    g = gateway({"web": policy}, wait=False)
    assert g.proc.wait(timeout=30) == 2, g.log()
    line = next(i for i, l in enumerate(policy.splitlines(), 1) if l.startswith("trust"))
    expected = ('%s:%d: trust: cannot read CA file "%s" as the account "tlsgate-worker" the workers run as: '
                'Permission denied' % (chk_dir / "web.toml", line, secret))
    assert expected in g.log(), g.log()
    assert "worker started" not in g.log(), g.log()
    check = lab.run(lab.gw, [TLSGATE_BIN, "check", "--config", gateway_dir / "tlsgate.toml"], check=False)
    assert check.returncode == 2 and expected in check.stderr, check.stdout + check.stderr
    # Readable by the supervisor's account (group tlsgate) but not by the workers': the same.
    os.chown(secret, 0, tlsgate_account.pw_gid)
    secret.chmod(0o640)
    g1 = gateway({"web": policy}, wait=False)
    assert g1.proc.wait(timeout=30) == 2, g1.log()
    assert expected in g1.log() and "worker started" not in g1.log(), g1.log()
    # Made readable by the workers' account, the same config starts.
    os.chown(secret, 0, worker_account.pw_gid)
    g2 = gateway({"web": policy})
    assert "gateway started" in g2.log()


def test_the_saved_guard_comes_back_after_a_reboot_even_with_a_broken_config(
        lab, tls_server, plain_listener, gateway, gateway_dir, tlsgate_account):
    """The kernel forgets the guard at reboot. The gateway saves it ([intercept] guard_file)
    and `tlsgate rules --restore-guard` (the boot unit, and ExecStartPre) puts it back, even
    when the config has since been broken so that `run` would refuse to start."""
    tls_server("good", "198.19.0.20")
    listener = plain_listener("198.19.0.20")
    state = gateway_dir / "state"
    state.mkdir()
    os.chown(state, tlsgate_account.pw_uid, tlsgate_account.pw_gid)
    guard_file = state / "guard.nft"
    g = gateway({"web": gateway_policy(["198.19.0.20/32"], gateway_dir / "root.pem")},
                intercept_extra='guard_file = "%s"\n' % guard_file)
    assert guard_file.exists(), g.log()
    assert (guard_file.stat().st_mode & 0o777) == 0o600
    g.proc.send_signal(signal.SIGTERM)
    assert g.proc.wait(timeout=30) == 0, g.log()
    # "Reboot": the kernel has no table any more; the config is broken meanwhile.
    lab.run(lab.gw, ["nft", "delete", "table", "inet", "tlsgate_guard"])
    assert g.guard() is None
    config = gateway_dir / "tlsgate.toml"
    config.write_text(config.read_text() + "\nthis is not toml =\n")
    assert connect(lab, "198.19.0.20")["outcome"] == "connected", "without the guard the lab forwards"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not listener.accepted():
        time.sleep(0.1)
    seen = len(listener.accepted())
    assert seen == 1
    r = lab.run(lab.gw, [TLSGATE_BIN, "rules", "--restore-guard", "--config", config], check=False)
    assert r.returncode == 0 and "restored" in r.stdout, r.stdout + r.stderr
    assert g.guard() is not None and "198.19.0.20" in g.guard()
    res = connect(lab, "198.19.0.20")
    assert res["outcome"] == "refused", res
    time.sleep(0.2)
    assert len(listener.accepted()) == seen, listener.accepted()
    # A tampered file that names another table is refused.
    guard_file.write_text(guard_file.read_text() + "table inet filter { }\n")
    bad = lab.run(lab.gw, [TLSGATE_BIN, "rules", "--restore-guard", "--config", config], check=False)
    assert bad.returncode == 1 and "names another table" in bad.stderr, bad.stdout + bad.stderr
    # Out of service: --remove deletes the saved guard too, so no reboot brings it back.
    remove_rules(lab, gateway_dir)
    assert not guard_file.exists()


# Client connections from fixed source ports: HOLD opens them and keeps them open until
# the gateway dies under them; FROM_PORTS opens new ones from the same ports and checks
# the echo server's answer comes back through the gateway.
HOLD = textwrap.dedent("""
    import socket, sys, time
    host, ports = sys.argv[1], [int(p) for p in sys.argv[2].split(",")]
    held = []
    for port in ports:
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port)); s.settimeout(5); s.connect((host, 80))
        s.sendall(b"x" * 10); got = b""
        while len(got) < 10:
            got += s.recv(10)
        held.append(s)
    # Then send without reading the echo: the gateway's side stops reading (back
    # pressure), so bytes wait unread in its socket; closed by a kill, such a socket
    # answers with a reset, as connections cut mid-transfer do.
    for s in held:
        s.setblocking(False)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        for s in held:
            try:
                s.send(b"z" * 65536)
            except BlockingIOError:
                pass
        time.sleep(0.01)
    print("open", flush=True)
    deadline = time.monotonic() + 30
    for s in held:
        s.setblocking(True)
        s.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            while s.recv(65536):
                pass
        except OSError:
            pass
""")

FROM_PORTS = textwrap.dedent("""
    import json, socket, sys
    host, ports = sys.argv[1], [int(p) for p in sys.argv[2].split(",")]
    out = {}
    for port in ports:
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port)); s.settimeout(5)
        try:
            s.connect((host, 80)); s.sendall(b"y" * 100); got = b""
            while len(got) < 100:
                b = s.recv(100)
                if not b:
                    break
                got += b
            out[port] = "ok" if got == b"y" * 100 else "short"
        except ConnectionRefusedError:
            out[port] = "refused"
        except OSError as e:
            out[port] = "error: %s" % e
        finally:
            s.close()
    print(json.dumps(out))
""")


def test_a_restart_forgets_the_flows_the_dead_run_redirected(lab, tls_server, plain_listener, gateway, gateway_dir):
    """After a kill -9, the kernel keeps the dead run's redirections (conntrack entries
    pointing at its listen port; 10 s after a reset from the gateway's side). A client
    reusing such a source port meanwhile was refused by the next run (2 of these 4 ports,
    those cut with unread bytes); the next run now deletes those entries before its first
    rules, and the same source ports are served at once."""
    tls_server("good", "198.19.0.20")
    listener = plain_listener("198.19.0.20")
    ca = gateway_dir / "root.pem"
    # Above the ephemeral range (32768-60999): no other connection of the lab can hold them
    # (45101-45104 once collided with one: EADDRINUSE at bind).
    ports = "61101,61102,61103,61104"
    g = gateway({"web": gateway_policy(["198.19.0.20/32"], ca)})
    old_port = g.listen_port("web")
    hold = _popen(lab.exec_argv(lab.client, [PY, "-c", HOLD, "198.19.0.20", ports]),
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert hold.stdout.readline().strip() == b"open", hold.stderr.read().decode(errors="replace")
        workers = g.children()
        g.proc.send_signal(signal.SIGKILL)
        g.proc.wait(timeout=10)
        wait_gone(workers)
        hold.wait(timeout=35)
    finally:
        _stop_process(hold)
    # The dead run's redirections are still in the kernel.
    table = lab.run(lab.gw, ["conntrack", "-L", "-p", "tcp", "--orig-port-dst", "80", "--dst-nat"], check=False).stdout
    stale = [l for l in table.splitlines()
             if any("sport=%s " % p in l for p in ports.split(",")) and "sport=%d " % old_port in l]
    assert len(stale) == 4, table
    g2 = gateway({"web": gateway_policy(["198.19.0.20/32"], ca)})
    cleared = g2.records("cleared connection-tracking entries of flows redirected by an earlier run")
    assert cleared and int(cleared[0]["flows"]) >= 4, g2.log()
    r = lab.run(lab.client, [PY, "-c", FROM_PORTS, "198.19.0.20", ports], check=False, timeout=60)
    assert json.loads(r.stdout) == {p: "ok" for p in ports.split(",")}, (r.stdout, r.stderr, g2.log())
    assert listener.accepted() == []
