"""Workers under their own account (`worker_user`), through the real gateway: `tlsgate run`
in the lab's gw namespace, started as root switching to "tlsgate" (or, as the systemd unit
starts it, as "tlsgate" with ambient capabilities), its workers as "tlsgate-worker" or one
account per policy.

What is shown, for each worker the supervisor starts (at start, after a crash, at reload):
its /proc status (uid, gid, no supplementary group, no capability), and that a process of
its uid cannot signal the supervisor (kill(pid, 0): EPERM) nor open a file mode 0600 of
the supervisor's account (EACCES) -- the same probe as the supervisor's uid succeeds, so
the probe can fail. Files a worker's account cannot read are `check` and `run` errors
with file:line. Traffic flows all along.

Needs root, network namespaces, nftables, setpriv and the tlsgate binary: skipped
otherwise, failed under CI (conftest.unavailable).
"""
import json
import os
import pwd
import shutil
import signal
import subprocess
import time

import pytest

from conftest import PY, TLSGATE_BIN, _system_account, gateway_policy, pid_alive, proc_status, unavailable

KiB = 1024
NET_ADMIN = 1 << 12
WORKER_CAPS = (1 << 5) | (1 << 6) | (1 << 7)   # CAP_KILL, CAP_SETGID, CAP_SETUID
NO_CAPS = "0000000000000000"

# Run as the uid under test: kill(supervisor, 0) and open(file) -> 0 or the errno's name.
PROBE = r"""
import errno, json, os, sys
def attempt(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
out = {"uid": os.getuid(), "groups": os.getgroups(),
       "kill": attempt(lambda: os.kill(int(sys.argv[1]), 0))}
for path in sys.argv[2:]:
    out[path] = attempt(lambda: os.close(os.open(path, os.O_RDONLY)))
print(json.dumps(out))
"""


def _setpriv():
    path = shutil.which("setpriv")
    if path is None:
        unavailable("needs setpriv (util-linux)")
    return path


def probe_as(account, pid, *paths):
    """PROBE run as `account`'s uid and gid with no supplementary group (as a worker runs)."""
    r = subprocess.run([_setpriv(), "--reuid=%d" % account.pw_uid, "--regid=%d" % account.pw_gid, "--clear-groups",
                        PY, "-c", PROBE, str(pid)] + [str(p) for p in paths],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["uid"] == account.pw_uid and out["groups"] == [], out
    return out


def caps(status, key):
    return int(status[key], 16)


def assert_worker_runs_as(pid, account):
    st = proc_status(pid)
    assert st["Uid"].split() == [str(account.pw_uid)] * 4, (pid, st["Uid"])
    assert st["Gid"].split() == [str(account.pw_gid)] * 4, (pid, st["Gid"])
    assert st["Groups"] == "", (pid, st["Groups"])
    assert (st["CapEff"], st["CapPrm"], st["CapAmb"], st["CapInh"]) == (NO_CAPS,) * 4, (pid, st)
    assert st["NoNewPrivs"] == "1", (pid, st)


def assert_supervisor_caps(pid):
    """Permitted and effective: CAP_NET_ADMIN + CAP_SETUID/SETGID/KILL; ambient: CAP_NET_ADMIN
    alone, so the nft/ip/conntrack it runs get nothing else."""
    st = proc_status(pid)
    assert caps(st, "CapEff") == caps(st, "CapPrm") == NET_ADMIN | WORKER_CAPS, st
    assert caps(st, "CapAmb") == NET_ADMIN, st
    return st


def secret_of(gateway_dir, account, name="supervisor-only"):
    """A file mode 0600 owned by `account` in the (0755) gateway folder."""
    path = gateway_dir / name
    path.write_text("only the supervisor's account reads this\n")
    os.chown(path, account.pw_uid, account.pw_gid)
    path.chmod(0o600)
    return path


def wait_for(predicate, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def assert_flows(plain_client, g, host, policy, count):
    (r,) = plain_client(host, 80, nbytes=64 * KiB, timeout=30)
    assert r["error"] is None and r["recv_sha256"] == r["sent_sha256"] and r["recv_len"] == 64 * KiB, r
    g.wait_records("connection closed", count, policy=policy, result="ok")


def test_workers_run_as_their_own_account_at_start_restart_and_reload(
        lab, tls_server, plain_client, gateway, gateway_dir, tlsgate_account, worker_account):
    tls_server("good", "198.19.0.10")
    ca = gateway_dir / "root.pem"
    secret = secret_of(gateway_dir, tlsgate_account)
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca)})
    sup = assert_supervisor_caps(g.proc.pid)
    assert sup["Uid"].split() == [str(tlsgate_account.pw_uid)] * 4, sup["Uid"]
    assert "running as tlsgate with CAP_NET_ADMIN (ambient, for nft and ip) and CAP_SETUID, CAP_SETGID, CAP_KILL" \
        in g.log(), g.log()

    first = g.worker_for("web")
    assert g.children() == [first], (g.children(), g.log())
    assert_worker_runs_as(first, worker_account)
    # A process of the workers' uid can neither signal the supervisor nor read its file...
    seen = probe_as(worker_account, g.proc.pid, secret)
    assert (seen["kill"], seen[str(secret)]) == ("EPERM", "EACCES"), seen
    # ... which the supervisor's own uid can (the probe is able to fail).
    seen = probe_as(tlsgate_account, g.proc.pid, secret)
    assert (seen["kill"], seen[str(secret)]) == ("ok", "ok"), seen
    assert_flows(plain_client, g, "198.19.0.10", "web", 1)

    # Restart after a crash: the supervisor signals nothing here, the kernel kills it.
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: g.worker_for("web") if g.worker_for("web") != first else None, "a new worker")
    g.wait_workers_listening([second])
    assert_worker_runs_as(second, worker_account)
    assert_flows(plain_client, g, "198.19.0.10", "web", 2)

    # Reload with a changed policy: a new worker, same account; the old one is told to
    # drain by a signal from the supervisor (CAP_KILL: it is another uid) and goes.
    (g.policies / "web.toml").write_text(gateway_policy(["198.19.0.10/32"], ca, connect_timeout="4s"))
    g.hup()
    (rel,) = g.wait_records("reloaded", 1)
    assert rel.get("changed") == "web", (rel, g.log())
    third = g.worker_for("web")
    assert third not in (first, second)
    assert_worker_runs_as(third, worker_account)
    wait_for(lambda: not pid_alive(second), "the old worker to exit after draining", timeout=30)
    assert_flows(plain_client, g, "198.19.0.10", "web", 3)

    # SIGTERM: the supervisor signals its workers (another uid) and they go.
    g.proc.send_signal(signal.SIGTERM)
    assert g.proc.wait(timeout=30) == 0, g.log()
    wait_for(lambda: not pid_alive(third), "the worker to exit at stop", timeout=10)


def test_a_file_only_the_supervisors_account_can_read_is_refused_with_file_and_line(
        lab, gateway, gateway_dir, tlsgate_account, worker_account):
    ca = gateway_dir / "gateway-only-ca.pem"
    shutil.copy(gateway_dir / "root.pem", ca)
    os.chown(ca, tlsgate_account.pw_uid, tlsgate_account.pw_gid)
    ca.chmod(0o600)
    policy = gateway_policy(["198.19.0.10/32"], ca)
    line = next(i for i, l in enumerate(policy.splitlines(), 1) if l.startswith("trust"))
    expected = ('%s:%d: trust: cannot read CA file "%s" as the account "tlsgate-worker" the workers run as: '
                'Permission denied' % (gateway_dir / "policies" / "web.toml", line, ca))
    g = gateway({"web": policy}, wait=False)
    assert g.proc.wait(timeout=30) == 2, g.log()
    assert expected in g.log() and "worker started" not in g.log(), g.log()
    check = lab.run(lab.gw, [TLSGATE_BIN, "check", "--config", gateway_dir / "tlsgate.toml"], check=False)
    assert check.returncode == 2 and expected in check.stderr, check.stdout + check.stderr
    # With worker_user = "same" the workers are the supervisor's account: it starts.
    g2 = gateway({"web": policy}, worker_user="same")
    assert "running as tlsgate with CAP_NET_ADMIN only" in g2.log(), g2.log()
    st = proc_status(g2.proc.pid)
    assert caps(st, "CapEff") == caps(st, "CapPrm") == caps(st, "CapAmb") == NET_ADMIN, st
    assert_worker_runs_as(g2.worker_for("web"), tlsgate_account)


def test_started_like_the_systemd_unit_it_lowers_setuid_setgid_kill_from_ambient(
        lab, tls_server, plain_client, gateway, gateway_dir, tlsgate_account, worker_account):
    """As the unit starts it: uid tlsgate from the first instruction, with CAP_NET_ADMIN,
    CAP_SETUID, CAP_SETGID and CAP_KILL ambient (AmbientCapabilities=)."""
    tls_server("good", "198.19.0.10")
    os.chown(gateway_dir, tlsgate_account.pw_uid, tlsgate_account.pw_gid)  # its control socket
    unit_caps = "+net_admin,+setuid,+setgid,+kill"
    wrapper = [_setpriv(), "--reuid=%d" % tlsgate_account.pw_uid, "--regid=%d" % tlsgate_account.pw_gid,
               "--clear-groups", "--bounding-set=-all," + unit_caps, "--inh-caps=" + unit_caps,
               "--ambient-caps=" + unit_caps]
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], gateway_dir / "root.pem")}, user=None, wrapper=wrapper)
    assert_supervisor_caps(g.proc.pid)
    assert_worker_runs_as(g.worker_for("web"), worker_account)
    assert_flows(plain_client, g, "198.19.0.10", "web", 1)


def test_without_root_or_capabilities_worker_user_is_an_error_naming_the_key(lab, gateway, gateway_dir):
    nobody = pwd.getpwnam("nobody")
    as_nobody = [_setpriv(), "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid, "--clear-groups"]
    expected = ('%s: worker_user "tlsgate-worker" (the default): this process (uid %d) has neither root nor '
                'CAP_SETUID, CAP_SETGID and CAP_KILL, so the workers cannot run as another account'
                % (gateway_dir / "tlsgate.toml", nobody.pw_uid))
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], gateway_dir / "root.pem")}, wrapper=as_nobody, wait=False)
    assert g.proc.wait(timeout=30) == 2, g.log()
    assert expected in g.log() and "worker started" not in g.log(), g.log()
    check = subprocess.run(as_nobody + [TLSGATE_BIN, "check", "--config", gateway_dir / "tlsgate.toml"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 2 and expected in check.stderr, check.stdout + check.stderr
    # worker_user = "same" says knowingly "as the gateway's own account": check passes.
    config = gateway_dir / "tlsgate.toml"
    config.write_text('worker_user = "same"\n' + config.read_text())
    check = subprocess.run(as_nobody + [TLSGATE_BIN, "check", "--config", config],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "workers as the gateway's account" in check.stdout, check.stdout


@pytest.fixture
def policy_accounts():
    """tlsgate-w-pa and tlsgate-w-pb (worker_user = "per-policy" for policies pa and pb);
    the ones this test created are deleted again."""
    created = []
    for name in ("tlsgate-w-pa", "tlsgate-w-pb"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            created.append(name)
    accounts = [_system_account(name) for name in ("tlsgate-w-pa", "tlsgate-w-pb")]
    yield accounts
    for name in created:
        subprocess.run(["userdel", name], capture_output=True, timeout=30)


def test_per_policy_accounts_keep_each_client_key_to_its_own_worker(
        lab, tls_server, plain_client, pki, gateway, gateway_dir, tlsgate_account, policy_accounts):
    tls_server("good", "198.19.0.10")
    tls_server("good", "198.19.0.11")
    ca = gateway_dir / "root.pem"
    shutil.copy(pki / "client.pem", gateway_dir / "client.pem")
    (gateway_dir / "client.pem").chmod(0o644)
    policies, keys = {}, {}
    for (name, host), account in zip((("pa", "198.19.0.10"), ("pb", "198.19.0.11")), policy_accounts):
        keys[name] = gateway_dir / ("%s.key" % name)
        shutil.copy(pki / "client.key", keys[name])
        os.chown(keys[name], account.pw_uid, account.pw_gid)
        keys[name].chmod(0o400)
        trust = 'trust = "%s"\n' % ca
        policies[name] = gateway_policy(["%s/32" % host], ca).replace(
            trust, trust + 'client_certificate = "%s"\nclient_key = "%s"\n' % (gateway_dir / "client.pem", keys[name]))
    g = gateway(policies, worker_user="per-policy")
    for (name, host), account in zip((("pa", "198.19.0.10"), ("pb", "198.19.0.11")), policy_accounts):
        assert_worker_runs_as(g.worker_for(name), account)
        assert_flows(plain_client, g, host, name, 1)
    # pa's uid cannot read pb's key, nor signal the supervisor; pb's own uid reads it.
    seen = probe_as(policy_accounts[0], g.proc.pid, keys["pb"], keys["pa"])
    assert (seen["kill"], seen[str(keys["pb"])], seen[str(keys["pa"])]) == ("EPERM", "EACCES", "ok"), seen
    # pb's key given to pa's account by mistake: pb's worker could not read it, pa's could:
    # a check error on the key's line (a group- or world-readable key is refused anyway).
    os.chown(keys["pb"], policy_accounts[0].pw_uid, policy_accounts[0].pw_gid)
    check = lab.run(lab.gw, [TLSGATE_BIN, "check", "--config", gateway_dir / "tlsgate.toml"], check=False)
    line = next(i for i, l in enumerate(policies["pb"].splitlines(), 1) if l.startswith("client_key"))
    expected = ('%s:%d: client_key: cannot read "%s" as the account "tlsgate-w-pb" the workers run as: '
                'Permission denied' % (gateway_dir / "policies" / "pb.toml", line, keys["pb"]))
    assert check.returncode == 2 and expected in check.stderr, check.stdout + check.stderr
