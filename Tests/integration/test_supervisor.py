"""End-to-end tests of the gateway itself: `tlsgate run` in the lab's gateway namespace,
started as root and running as the account "tlsgate" with CAP_NET_ADMIN only, its own
nftables table, one worker per policy, signals.

Needs root (network namespaces, nftables, a system account): skipped elsewhere, and a
failure under CI (see conftest.unavailable)."""
import json
import os
import pwd
import re
import signal
import subprocess
import textwrap
import time
from pathlib import Path

from conftest import PLAIN_CLIENT, PY, _popen, gateway_policy, proc_status

NET_ADMIN_ONLY = "0000000000001000"
NOTHING = "0000000000000000"


def _intact(results):
    return [r for r in results if r["error"] is not None or r["recv_sha256"] != r["sent_sha256"]]


STREAM = textwrap.dedent("""
    import json, socket, sys, time
    host, count, progress = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    ok = refused = failed = 0
    errors = []
    deadline = time.monotonic() + 60
    for i in range(count):
        if time.monotonic() > deadline:
            break
        payload = bytes([i % 251]) * 1024
        try:
            s = socket.create_connection((host, 80), timeout=5)
        except ConnectionRefusedError as e:
            refused += 1; errors.append("%d connect: %s" % (i, e)); continue
        except OSError as e:
            failed += 1; errors.append("%d connect: %s" % (i, e)); continue
        try:
            # A real client: keeps its side open and closes once the whole echo is back.
            s.sendall(payload)
            got = b""
            while len(got) < len(payload):
                b = s.recv(65536)
                if not b: break
                got += b
            if got == payload: ok += 1
            else: failed += 1; errors.append("%d: got %d bytes" % (i, len(got)))
        except OSError as e:
            failed += 1; errors.append("%d: %s" % (i, e))
        finally:
            s.close()
        with open(progress, "w") as f: f.write(str(i + 1))
    print(json.dumps({"ok": ok, "refused": refused, "failed": failed, "errors": errors}))
""")


# ------------------------------------------------------------------------------- tests

def test_redirect_ipv4_ipv6_end_to_end_without_root(lab, tls_server, plain_client, gateway, gateway_dir):
    tls_server("good", "198.19.0.10")
    tls_server("good", "2001:2:0:1::10")
    ca = gateway_dir / "root.pem"
    g = gateway({"web": gateway_policy(["198.19.0.10/32", "2001:2:0:1::10/128"], ca=ca)})
    for host in ("198.19.0.10", "2001:2:0:1::10"):
        res = plain_client(host, 80, nbytes=256 * 1024, connections=2, timeout=30)
        assert not _intact(res), res
    deadline = time.monotonic() + 10
    while g.log().count("reason=completed") < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    log = g.log()
    assert log.count("result=ok reason=completed") >= 4, log
    assert "dst=[2001:2:0:1::10]:80" in log and "dst=198.19.0.10:80" in log, log
    table = g.table()
    assert table and re.search(r"tcp dport 80 redirect to :\d+", table), table

    # Privileges: the supervisor has CAP_NET_ADMIN alone, workers nothing; nobody is root.
    sup = proc_status(g.proc.pid)
    assert all(u != "0" for u in sup["Uid"].split()), sup["Uid"]
    assert sup["CapEff"] == NET_ADMIN_ONLY and sup["CapPrm"] == NET_ADMIN_ONLY, sup
    assert sup["CapAmb"] == NET_ADMIN_ONLY, sup
    workers = g.children()
    assert len(workers) == 1, workers
    for pid in workers:
        st = proc_status(pid)
        assert all(u != "0" for u in st["Uid"].split()), st["Uid"]
        assert st["CapEff"] == NOTHING and st["CapPrm"] == NOTHING and st["CapAmb"] == NOTHING, st
        assert st["NoNewPrivs"] == "1", st


def test_tproxy_ipv4_ipv6_end_to_end(lab, tls_server, plain_client, gateway, gateway_dir):
    tls_server("good", "198.19.0.10")
    tls_server("good", "2001:2:0:1::10")
    g = gateway({"web": gateway_policy(["198.19.0.10/32", "2001:2:0:1::10/128"], ca=gateway_dir / "root.pem")},
                mode="tproxy")
    for host in ("198.19.0.10", "2001:2:0:1::10"):
        res = plain_client(host, 80, nbytes=64 * 1024, timeout=20)
        assert not _intact(res), (res, g.log())
    table = g.table()
    assert table and "tproxy ip to :" in table and "tproxy ip6 to :" in table, table
    rules = lab.run(lab.gw, ["ip", "rule", "show"]).stdout
    assert "fwmark 0x746c lookup 7468" in rules, rules
    assert g.stop() == 0
    rules = lab.run(lab.gw, ["ip", "rule", "show"]).stdout
    assert "0x746c" not in rules, "policy routing left behind:\n" + rules


def test_deny_direct_drops_the_bypass(lab, tls_server, gateway, gateway_dir):
    tls_server("good", "198.19.0.12")
    tls_server("good", "198.19.0.13")
    ca = gateway_dir / "root.pem"
    gateway({
        "closed": gateway_policy(["198.19.0.12/32"], ca=ca, deny_direct=True),
        "open": gateway_policy(["198.19.0.13/32"], ca=ca, deny_direct=False),
    })
    probe = ("import socket,sys\n"
             "try:\n"
             "    socket.create_connection((sys.argv[1], 443), timeout=2).close(); print('connected')\n"
             "except OSError as e:\n"
             "    print('failed', e)\n")
    blocked = lab.run(lab.client, [PY, "-c", probe, "198.19.0.12"], timeout=20).stdout
    allowed = lab.run(lab.client, [PY, "-c", probe, "198.19.0.13"], timeout=20).stdout
    assert blocked.startswith("failed") and "timed out" in blocked, blocked
    assert allowed.startswith("connected"), allowed


def test_killed_worker_refuses_no_connection(lab, tls_server, gateway, gateway_dir, tmp_path):
    tls_server("good", "198.19.0.10")
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca=gateway_dir / "root.pem")})
    first = g.worker_for("web")
    progress = tmp_path / "progress"
    client = _popen(lab.exec_argv(lab.client, [PY, "-c", STREAM, "198.19.0.10", "200", progress]),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if progress.exists() and progress.read_text().strip() and int(progress.read_text()) >= 50:
            break
        time.sleep(0.02)
    os.kill(first, signal.SIGKILL)
    out, err = client.communicate(timeout=90)
    summary = json.loads(out)
    g.wait_log("worker started policy=web", count=2)
    assert summary["refused"] == 0, summary
    # A connection inside the killed worker at the instant of the kill dies with it;
    # every other one (queued during the restart included) must be served.
    assert summary["failed"] <= 1, summary
    assert summary["ok"] >= 199, summary
    assert "worker exited unexpectedly; restarting" in g.log()
    assert g.worker_for("web") != first


def test_sighup_changed_policy_keeps_established_connections(lab, tls_server, plain_client, gateway, gateway_dir):
    tls_server("good", "198.19.0.10")
    tls_server("good", "198.19.0.14")
    ca = gateway_dir / "root.pem"
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca=ca)})
    old = g.worker_for("web")
    wait = plain_client("198.19.0.10", 80, nbytes=64 * 1024, connections=10, hold=3.0, timeout=40, background=True)
    time.sleep(1.0)  # established and idle inside the old worker
    (gateway_dir / "policies" / "web.toml").write_text(gateway_policy(["198.19.0.10/32", "198.19.0.14/32"], ca=ca))
    g.hup()
    g.wait_log("reloaded")
    assert "changed=web" in g.log(), g.log()
    results = wait()
    assert not _intact(results), results
    # The new policy is in force: 198.19.0.14 is intercepted now, by the new worker.
    new = g.worker_for("web")
    assert new != old
    res = plain_client("198.19.0.14", 80, nbytes=1024, timeout=20)
    assert not _intact(res), res
    g.wait_log("old worker finished draining", timeout=30)


def test_sighup_adds_and_removes_policies(lab, tls_server, plain_client, gateway, gateway_dir):
    tls_server("good", "198.19.0.15")
    ca = gateway_dir / "root.pem"
    g = gateway({"first": gateway_policy(["198.19.0.16/32"], ca=ca)})
    assert "dst_first_v4" in g.table()
    (gateway_dir / "policies" / "first.toml").unlink()
    (gateway_dir / "policies" / "second.toml").write_text(gateway_policy(["198.19.0.15/32"], ca=ca))
    g.hup()
    g.wait_log("reloaded")
    table = g.table()
    assert "dst_second_v4" in table and "dst_first_v4" not in table, table
    assert "added=second" in g.log() and "removed=first" in g.log()
    res = plain_client("198.19.0.15", 80, nbytes=1024, timeout=20)
    assert not _intact(res), res


def test_broken_reload_changes_nothing(lab, tls_server, plain_client, gateway, gateway_dir):
    tls_server("good", "198.19.0.10")
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca=gateway_dir / "root.pem")})
    workers, table = g.children(), g.table()
    (gateway_dir / "policies" / "web.toml").write_text("[match]\nnetworks = [\"198.19.0.10/33\"]\nport = 80\n")
    g.hup()
    g.wait_log("reload refused: the running configuration stays")
    assert re.search(r"web\.toml:2: .*198\.19\.0\.10/33", g.log()), g.log()
    assert g.children() == workers
    assert g.table() == table
    res = plain_client("198.19.0.10", 80, nbytes=1024, timeout=20)
    assert not _intact(res), res


def test_sigterm_leaves_nothing_behind(lab, tls_server, gateway, gateway_dir):
    tls_server("good", "198.19.0.10")
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca=gateway_dir / "root.pem")})
    pids = [g.proc.pid] + g.children()
    assert len(pids) == 2
    g.proc.send_signal(signal.SIGTERM)
    assert g.proc.wait(timeout=30) == 0, g.log()
    assert g.table() is None
    assert "gateway stopped" in g.log()
    time.sleep(0.2)
    for pid in pids:
        assert not Path("/proc/%d" % pid).exists() or "Z" in proc_status(pid).get("State", ""), pid


def test_broken_config_at_start_is_reported_and_changes_nothing(lab, gateway, gateway_dir):
    g = gateway({"bad": "[match]\nnetworks = [\"198.19.0.10/32\"]\nport = 80\n[upstream]\nport = 443\nservr_name = \"x\"\n"},
                wait=False)
    assert g.proc.wait(timeout=30) == 2, g.log()
    assert 'bad.toml:6: unknown key "servr_name" (did you mean "server_name"?)' in g.log(), g.log()
    assert g.table() is None


def test_root_without_user_is_refused(lab, gateway, gateway_dir):
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca=gateway_dir / "root.pem")}, user=None, wait=False)
    assert g.proc.wait(timeout=30) == 2, g.log()
    assert "refusing to run as root" in g.log() and "AmbientCapabilities=CAP_NET_ADMIN" in g.log(), g.log()
    assert g.table() is None


def test_workers_exit_when_the_supervisor_dies_and_a_stale_table_is_replaced(lab, tls_server, plain_client, gateway,
                                                                              gateway_dir):
    tls_server("good", "198.19.0.10")
    ca = gateway_dir / "root.pem"
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca=ca)})
    workers = g.children()
    assert workers
    g.proc.send_signal(signal.SIGKILL)
    g.proc.wait(timeout=10)
    # The control pipe closed: every worker drains (nothing open here) and exits.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(Path("/proc/%d" % p).exists() for p in workers):
        time.sleep(0.1)
    assert not any(Path("/proc/%d" % p).exists() for p in workers), workers
    # SIGKILL left the table behind; the next start replaces it and works.
    assert g.table() is not None
    g2 = gateway({"web": gateway_policy(["198.19.0.10/32"], ca=ca)})
    assert "replacing a stale nftables table" in g2.log(), g2.log()
    res = plain_client("198.19.0.10", 80, nbytes=1024, timeout=20)
    assert not _intact(res), res
    assert g2.stop() == 0
    assert g2.table() is None


def test_local_mode_upgrades_the_gateways_own_connections(lab, tls_server, gateway, gateway_dir):
    tls_server("good", "198.19.0.10")
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca=gateway_dir / "root.pem")}, mode="local")
    table = g.table()
    assert table and "hook output" in table and "meta skuid != %d" % pwd.getpwnam("tlsgate").pw_uid in table, table
    r = lab.run(lab.gw, [PY, PLAIN_CLIENT, "198.19.0.10", "80", "--bytes", "4096", "--timeout", "20"], timeout=40)
    res = json.loads(r.stdout.splitlines()[0])
    assert res["error"] is None and res["recv_sha256"] == res["sent_sha256"], (res, g.log())
    assert "dst=198.19.0.10:80" in g.log() and "result=ok" in g.log(), g.log()
