"""End-to-end tests of the whole gateway: `tlsgate run` (the supervisor) in the lab's gw
namespace, started as root and switching to the account "tlsgate" (CAP_NET_ADMIN only),
its nftables table `inet tlsgate`, one worker per policy, and its signals.

Every test asserts what a client sees (bytes intact by sha256, refused, timed out) and
the gateway's own state (log lines, the nft ruleset, /proc).

Needs root, network namespaces, nftables and the tlsgate binary: skipped otherwise,
failed under CI (conftest.unavailable). The fixtures (lab, pki, tls_server, plain_client,
gateway, gateway_dir) live in conftest.py; teardown stops every process by PID and removes
the table and the TPROXY routing on every exit path.
"""
import json
import os
import re
import select
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pwd

from conftest import PLAIN_CLIENT, PY, _popen, _stop_process, gateway_policy, pid_alive, proc_status

KiB = 1024
NET_ADMIN_ONLY = "0000000000001000"   # bit 12 = CAP_NET_ADMIN
# CAP_NET_ADMIN + CAP_KILL (5), CAP_SETGID (6), CAP_SETUID (7): the supervisor's permitted and
# effective sets when its workers run as their own account (worker_user).
GATEWAY_CAPS = "00000000000010e0"
NO_CAPS = "0000000000000000"


def ca_of(gateway_dir):
    return gateway_dir / "root.pem"


def assert_intact(r, nbytes):
    assert r["error"] is None, r
    assert r["sent_len"] == nbytes and r["recv_len"] == nbytes, r
    assert r["recv_sha256"] == r["sent_sha256"], r


def assert_ok_record(rec, dst, upstream):
    assert rec.get("result") == "ok" and rec.get("reason") == "completed", rec
    assert rec.get("dst") == dst, rec
    assert rec.get("upstream") == upstream, rec
    assert rec.get("sni") == "good.test", rec


def rule_lines(table, *needles):
    """The ruleset lines containing every needle."""
    return [l.strip() for l in (table or "").splitlines() if all(n in l for n in needles)]


def set_elements(table, name):
    m = re.search(r"set %s \{.*?elements = \{([^}]*)\}" % re.escape(name), table or "", re.S)
    return {e.strip() for e in m.group(1).split(",")} if m else set()


def established_by_pid(lab, port):
    """{pid: count} of established TCP sockets with local port `port` in the gw namespace
    (the workers' accepted, redirected connections)."""
    r = lab.run(lab.gw, ["ss", "-Htnp", "state", "established", "( sport = :%d )" % port], check=False)
    out = {}
    for pid in re.findall(r"pid=(\d+)", r.stdout):
        out[int(pid)] = out.get(int(pid), 0) + 1
    return out


def wait_established(lab, port, pid, n, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = established_by_pid(lab, port)
        if seen.get(pid, 0) >= n:
            return seen
        time.sleep(0.05)
    raise AssertionError("expected %d established connections in worker %d on :%d, saw %r"
                         % (n, pid, port, established_by_pid(lab, port)))


def tlsgate_pids_in_gw(lab):
    """Live tlsgate processes in the gw namespace (`ip netns pids`)."""
    out = subprocess.run(["ip", "netns", "pids", lab.gw], capture_output=True, text=True, timeout=10).stdout
    pids = []
    for p in out.split():
        try:
            if b"tlsgate" in Path("/proc/%s/cmdline" % p).read_bytes() and pid_alive(int(p)):
                pids.append(int(p))
        except (FileNotFoundError, ProcessLookupError):
            pass
    return pids


# ------------------------------------------------------------------------------- 1, 2: REDIRECT

def test_redirect_ipv4_end_to_end(lab, tls_server, plain_client, gateway, gateway_dir):
    tls_server("good", "198.19.0.10")
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca_of(gateway_dir))})
    (r,) = plain_client("198.19.0.10", 80, nbytes=256 * KiB, timeout=30)
    assert_intact(r, 256 * KiB)
    (rec,) = g.wait_records("connection closed", 1, policy="web")
    assert_ok_record(rec, "198.19.0.10:80", "198.19.0.10:443")
    assert rec.get("client", "").startswith("198.18.0.2:"), rec
    assert rec.get("bytes_up") == str(256 * KiB) and rec.get("bytes_down") == str(256 * KiB), rec
    port = g.listen_port("web")
    table = g.table()
    assert table is not None, g.log()
    assert "198.18.0.0/24" in set_elements(table, "clients_v4"), table
    assert "198.19.0.10" in set_elements(table, "dst_web_v4"), table
    assert rule_lines(table, "type nat hook prerouting"), table
    assert rule_lines(table, "ip saddr @clients_v4", "ip daddr @dst_web_v4", "tcp dport 80",
                      "redirect to :%d" % port), table


def test_redirect_ipv6_end_to_end(lab, tls_server, plain_client, gateway, gateway_dir):
    tls_server("good", "2001:2:0:1::10")
    g = gateway({"web": gateway_policy(["198.19.0.10/32", "2001:2:0:1::10/128"], ca_of(gateway_dir))})
    (r,) = plain_client("2001:2:0:1::10", 80, nbytes=256 * KiB, timeout=30)
    assert_intact(r, 256 * KiB)
    (rec,) = g.wait_records("connection closed", 1, policy="web")
    assert_ok_record(rec, "[2001:2:0:1::10]:80", "[2001:2:0:1::10]:443")
    assert rec.get("client", "").startswith("[2001:2::2]:"), rec
    table = g.table()
    assert "2001:2::/64" in set_elements(table, "clients_v6"), table
    assert "2001:2:0:1::10" in set_elements(table, "dst_web_v6"), table
    assert rule_lines(table, "ip6 saddr @clients_v6", "ip6 daddr @dst_web_v6", "tcp dport 80",
                      "redirect to :%d" % g.listen_port("web")), table


# ------------------------------------------------------------------------------- 3: TPROXY

def tproxy_diagnosis(lab, g):
    parts = []
    for title, argv in (("nft list ruleset", ["nft", "list", "ruleset"]),
                        ("ip -4 rule", ["ip", "-4", "rule"]), ("ip -6 rule", ["ip", "-6", "rule"]),
                        ("ip -4 route show table 7468", ["ip", "-4", "route", "show", "table", "7468"]),
                        ("ip -6 route show table 7468", ["ip", "-6", "route", "show", "table", "7468"]),
                        ("ss -Htlnp", ["ss", "-Htlnp"])):
        r = lab.run(lab.gw, argv, check=False)
        parts.append("--- %s\n%s%s" % (title, r.stdout, r.stderr))
    parts.append("--- gateway log\n" + g.log())
    return "\n".join(parts)


def test_tproxy_ipv4_and_ipv6_end_to_end(lab, tls_server, plain_client, gateway, gateway_dir):
    tls_server("good", "198.19.0.10")
    tls_server("good", "2001:2:0:1::10")
    g = gateway({"web": gateway_policy(["198.19.0.10/32", "2001:2:0:1::10/128"], ca_of(gateway_dir))},
                mode="tproxy")
    port = g.listen_port("web")
    table = g.table()
    assert rule_lines(table, "type filter hook prerouting priority mangle"), tproxy_diagnosis(lab, g)
    assert rule_lines(table, "ip daddr @dst_web_v4", "tcp dport 80", "tproxy ip to :%d" % port,
                      "meta mark set 0x0000746c"), tproxy_diagnosis(lab, g)
    assert rule_lines(table, "ip6 daddr @dst_web_v6", "tcp dport 80", "tproxy ip6 to :%d" % port,
                      "meta mark set 0x0000746c"), tproxy_diagnosis(lab, g)
    for fam in ("-4", "-6"):
        rules = lab.run(lab.gw, ["ip", fam, "rule"]).stdout
        assert re.search(r"fwmark 0x746c lookup 7468", rules), tproxy_diagnosis(lab, g)
        routes = lab.run(lab.gw, ["ip", fam, "route", "show", "table", "7468"]).stdout
        assert re.search(r"local default dev lo", routes), tproxy_diagnosis(lab, g)

    for host, dst, up in (("198.19.0.10", "198.19.0.10:80", "198.19.0.10:443"),
                          ("2001:2:0:1::10", "[2001:2:0:1::10]:80", "[2001:2:0:1::10]:443")):
        (r,) = plain_client(host, 80, nbytes=64 * KiB, timeout=20)
        assert r["error"] is None and r["recv_sha256"] == r["sent_sha256"] and r["recv_len"] == 64 * KiB, \
            "%s: %r\n%s" % (host, r, tproxy_diagnosis(lab, g))
        recs = g.wait_records("connection closed", 1, policy="web", dst=dst)
        assert_ok_record(recs[-1], dst, up)

    assert g.stop() == 0, g.log()
    for fam in ("-4", "-6"):
        assert "0x746c" not in lab.run(lab.gw, ["ip", fam, "rule"]).stdout, "TPROXY rule left behind"
        assert lab.run(lab.gw, ["ip", fam, "route", "show", "table", "7468"], check=False).stdout.strip() == "", \
            "TPROXY routes left behind"


# ------------------------------------------------------------------------------- 4: deny_direct

TLS_PROBE = textwrap.dedent("""
    import json, socket, ssl, sys
    host, ca = sys.argv[1], sys.argv[2]
    ctx = ssl.create_default_context(cafile=ca)
    try:
        with socket.create_connection((host, 443), timeout=2) as s:
            s.settimeout(10)
            with ctx.wrap_socket(s, server_hostname="good.test") as t:
                print(json.dumps({"ok": True, "version": t.version()}))
    except OSError as e:
        print(json.dumps({"ok": False, "error": "%s: %s" % (type(e).__name__, e)}))
""")


def test_deny_direct(lab, tls_server, plain_client, gateway, gateway_dir):
    tls_server("good", "198.19.0.12")
    tls_server("good", "198.19.0.13")
    ca = ca_of(gateway_dir)
    g = gateway({"closed": gateway_policy(["198.19.0.12/32"], ca, deny_direct=True),
                 "open": gateway_policy(["198.19.0.13/32"], ca, deny_direct=False)})

    def probe(host):
        r = lab.run(lab.client, [PY, "-c", TLS_PROBE, host, ca], timeout=20)
        return json.loads(r.stdout)

    blocked, allowed = probe("198.19.0.12"), probe("198.19.0.13")
    # Dropped, not refused: the SYN vanishes, the client's 2 s connect times out.
    assert not blocked["ok"] and "timed out" in blocked["error"], blocked
    assert allowed["ok"] and allowed["version"] in ("TLSv1.2", "TLSv1.3"), allowed
    table = g.guard()   # deny_direct lives in the fail-closed guard table
    (drop,) = rule_lines(table, "@dst_closed_v4", "tcp dport 443", "drop")
    assert not re.search(r"packets 0 ", drop), "the drop rule never matched: " + drop
    assert not rule_lines(table, "@dst_open_v4", "tcp dport 443"), table
    # The plain path through the gateway to the closed server still works: only the
    # gateway speaks TLS to it.
    (r,) = plain_client("198.19.0.12", 80, nbytes=4 * KiB, timeout=20)
    assert_intact(r, 4 * KiB)
    g.wait_records("connection closed", 1, policy="closed", result="ok")


# ------------------------------------------------------------------------------- 5: kill -9

STREAM = textwrap.dedent("""
    # N sequential short connections; one JSON line per connection, flushed at once.
    import json, socket, sys, time
    host, count = sys.argv[1], int(sys.argv[2])
    deadline = time.monotonic() + 90
    for i in range(count):
        if time.monotonic() > deadline:
            print(json.dumps({"i": i, "outcome": "not_run"})); continue
        payload = bytes([i % 251]) * 1024
        t0 = time.monotonic()
        rec = {"i": i, "t0": t0}
        try:
            s = socket.create_connection((host, 80), timeout=5)
        except ConnectionRefusedError as e:
            rec.update(outcome="refused", error=str(e), t1=time.monotonic())
            print(json.dumps(rec), flush=True); continue
        except OSError as e:
            rec.update(outcome="failed", error="connect: %s" % e, t1=time.monotonic())
            print(json.dumps(rec), flush=True); continue
        try:
            s.settimeout(5)
            s.sendall(payload)
            # A real client: keeps its side open and closes once the whole echo is back.
            got = b""
            while len(got) < len(payload):
                b = s.recv(65536)
                if not b:
                    break
                got += b
            rec.update(outcome="ok" if got == payload else "failed", got=len(got))
        except OSError as e:
            rec.update(outcome="failed", error="%s: %s" % (type(e).__name__, e))
        finally:
            s.close()
        rec["t1"] = time.monotonic()
        print(json.dumps(rec), flush=True)
""")


def test_kill_9_worker_under_a_stream(lab, tls_server, gateway, gateway_dir):
    total, kill_after = 200, 50
    tls_server("good", "198.19.0.10")
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca_of(gateway_dir))})
    old = g.worker_for("web")
    assert old in g.children(), (old, g.children())
    client = _popen(lab.exec_argv(lab.client, [PY, "-c", STREAM, "198.19.0.10", str(total)]),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    results, buf = [], b""
    t_kill = None
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([client.stdout], [], [], 0.5)
            if r:
                chunk = os.read(client.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                results += [json.loads(l) for l in lines if l.strip()]
            if t_kill is None and len(results) >= kill_after:
                # CLOCK_MONOTONIC is system-wide: comparable with the client's timestamps.
                t_kill = (time.monotonic(),)
                os.kill(old, signal.SIGKILL)
                t_kill += (time.monotonic(),)
        client.wait(timeout=10)
    finally:
        _stop_process(client)
    assert t_kill is not None, "the stream never reached %d connections: %r" % (kill_after, results[-3:])
    assert len(results) == total, (len(results), results[-3:], client.stderr.read())

    # In flight at the kill: started before it and ended after it. Such a connection was
    # accepted by the killed worker (or was between SYN and accept) and may die with it --
    # at most one, since the client is sequential. Every other connection, before the kill
    # and after it (those queued on the listening socket during the restart included),
    # must be intact, and none refused at connect.
    in_flight = [r for r in results if r["t0"] <= t_kill[1] and r["t1"] >= t_kill[0]]
    others = [r for r in results if r not in in_flight]
    print("kill -9 of worker %d after %d connections; in flight: %r" % (old, kill_after, in_flight))
    assert len(in_flight) <= 1, in_flight
    refused = [r for r in results if r["outcome"] == "refused"]
    assert not refused, refused
    bad = [r for r in others if r["outcome"] != "ok"]
    assert not bad, bad
    assert sum(1 for r in results if r["t0"] > t_kill[1]) >= total - kill_after - 2, "too few after the kill"

    crash = g.wait_records("worker exited unexpectedly; restarting", 1, policy="web")
    assert crash[0].get("pid") == str(old), crash
    g.wait_records("worker started", 2, policy="web")
    new = g.worker_for("web")
    assert new != old and pid_alive(new) and new in g.children(), (old, new, g.children())
    assert not pid_alive(old)
    ok_lines = g.connections(policy="web", result="ok")
    assert len(ok_lines) >= total - 1 - len(in_flight), len(ok_lines)


# ------------------------------------------------------------------------------- 6: SIGHUP changed

def test_sighup_changed_policy_keeps_established_connections(lab, tls_server, plain_client, gateway,
                                                             gateway_dir):
    n, nbytes = 10, 64 * KiB
    tls_server("good", "198.19.0.10")
    tls_server("good", "198.19.0.14")
    ca = ca_of(gateway_dir)
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca)})
    old, port = g.worker_for("web"), g.listen_port("web")
    # 10 slow talkers: 64 KiB each, in 10 pieces over 3 s, so most bytes cross the reload.
    wait_old = plain_client("198.19.0.10", 80, nbytes=nbytes, connections=n, send_over=3.0, timeout=30,
                            background=True)
    wait_established(lab, port, old, n)
    (g.policies / "web.toml").write_text(
        gateway_policy(["198.19.0.10/32", "198.19.0.14/32"], ca, connect_timeout="4s"))
    g.hup()
    (rel,) = g.wait_records("reloaded", 1)
    assert (rel.get("changed"), rel.get("added"), rel.get("removed")) == ("web", "", ""), rel
    new = g.worker_for("web")
    assert new != old and new in g.children(), (old, new, g.children())
    assert pid_alive(old), "the old worker left before its connections finished"

    # New connections go to the new worker: 198.19.0.14 exists only in the new policy, and
    # while it is held open `ss` shows it owned by the new pid.
    wait_new = plain_client("198.19.0.14", 80, nbytes=4 * KiB, hold=1.5, timeout=20, background=True)
    seen = wait_established(lab, port, new, 1)
    assert seen.get(old, 0) <= n, "the old worker accepted a connection after the reload: %r" % seen
    (r,) = wait_new()
    assert_intact(r, 4 * KiB)

    results = wait_old()
    assert len(results) == n
    for r in results:
        assert_intact(r, nbytes)
        # Established before the SIGHUP (checked above) and still talking ~3 s later.
        assert r["recv_end_s"] >= 2.5, r

    (drained,) = g.wait_records("old worker finished draining", 1, timeout=20, policy="web")
    assert drained.get("pid") == str(old), drained
    assert not pid_alive(old)
    recs = g.connections(policy="web")
    assert sum(1 for r in recs if r.get("dst") == "198.19.0.10:80" and r.get("result") == "ok") == n, recs
    assert [r for r in recs if r.get("result") != "ok"] == [], recs
    assert any(r.get("dst") == "198.19.0.14:80" and r.get("result") == "ok" for r in recs), recs
    # The old worker logged its 10 connections before the supervisor saw it exit.
    lines = g.log().splitlines()
    drained_at = next(i for i, l in enumerate(lines) if "old worker finished draining" in l)
    closed_before = [l for l in lines[:drained_at] if "connection closed" in l and "dst=198.19.0.10:80" in l]
    assert len(closed_before) == n, g.log()


# ------------------------------------------------------------------------------- 7: SIGHUP add/remove

def test_sighup_adds_and_removes_policies(lab, tls_server, plain_client, gateway, gateway_dir):
    for ip in ("198.19.0.10", "198.19.0.11", "198.19.0.12"):
        tls_server("good", ip)
    ca = ca_of(gateway_dir)
    g = gateway({"keep": gateway_policy(["198.19.0.10/32"], ca),
                 "gone": gateway_policy(["198.19.0.11/32"], ca)})
    keep_pid, gone_pid = g.worker_for("keep"), g.worker_for("gone")
    (r,) = plain_client("198.19.0.11", 80, nbytes=KiB, timeout=20)
    assert_intact(r, KiB)
    # Not intercepted yet: forwarded to 198.19.0.12:80, where nothing listens.
    (r,) = plain_client("198.19.0.12", 80, nbytes=KiB, timeout=20)
    assert r["error"] and "refused" in r["error"].lower(), r
    assert "dst_new_v4" not in g.table()

    (g.policies / "gone.toml").unlink()
    (g.policies / "new.toml").write_text(gateway_policy(["198.19.0.12/32"], ca))
    (g.policies / "new.toml").chmod(0o644)
    g.hup()
    (rel,) = g.wait_records("reloaded", 1)
    assert (rel.get("added"), rel.get("changed"), rel.get("removed")) == ("new", "", "gone"), rel

    table = g.table()
    assert rule_lines(table, "@dst_new_v4", "tcp dport 80", "redirect to :%d" % g.listen_port("new")), table
    assert "gone" not in table and "198.19.0.11" not in table, table
    assert g.worker_for("keep") == keep_pid and pid_alive(keep_pid)
    (r,) = plain_client("198.19.0.12", 80, nbytes=KiB, timeout=20)
    assert_intact(r, KiB)
    g.wait_records("connection closed", 1, policy="new", result="ok", dst="198.19.0.12:80")
    # The removed destination is no longer intercepted: straight to :80, refused there.
    (r,) = plain_client("198.19.0.11", 80, nbytes=KiB, timeout=20)
    assert r["error"] and "refused" in r["error"].lower(), r
    (drained,) = g.wait_records("old worker finished draining", 1, policy="gone")
    assert drained.get("pid") == str(gone_pid)
    assert not pid_alive(gone_pid)
    assert sorted(g.children()) == sorted([keep_pid, g.worker_for("new")])
    (r,) = plain_client("198.19.0.10", 80, nbytes=KiB, timeout=20)
    assert_intact(r, KiB)


# ------------------------------------------------------------------------------- 8: SIGTERM

def test_sigterm_drains_and_leaves_nothing(lab, tls_server, plain_client, gateway, gateway_dir):
    tls_server("good", "198.19.0.10")
    tls_server("good", "2001:2:0:1::10")
    ca = ca_of(gateway_dir)
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca),
                 "web6": gateway_policy(["2001:2:0:1::10/128"], ca)})
    workers = g.children()
    assert sorted(workers) == sorted(g.worker_pids()) and len(workers) == 2, (workers, g.log())
    # One connection in flight through the stop: it is drained, not cut.
    inflight = plain_client("198.19.0.10", 80, nbytes=16 * KiB, send_over=1.5, timeout=20, background=True)
    wait_established(lab, g.listen_port("web"), g.worker_for("web"), 1)
    g.proc.send_signal(signal.SIGTERM)
    (r,) = inflight()
    assert_intact(r, 16 * KiB)
    assert g.proc.wait(timeout=30) == 0, g.log()
    assert "gateway stopped" in g.log(), g.log()
    assert g.table() is None, g.table()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(pid_alive(p) for p in workers):
        time.sleep(0.05)
    assert not [p for p in [g.proc.pid] + workers if pid_alive(p)]
    assert tlsgate_pids_in_gw(lab) == [], tlsgate_pids_in_gw(lab)


# ------------------------------------------------------------------------------- 9: privileges

def test_privileges_of_supervisor_and_workers(lab, tls_server, gateway, gateway_dir, tlsgate_account):
    # The fixture waited for each worker's "worker listening" line: a worker drops what is
    # left of its privileges itself, right after exec and before it accepts.
    ca = ca_of(gateway_dir)
    g = gateway({"a": gateway_policy(["198.19.0.10/32"], ca), "b": gateway_policy(["198.19.0.11/32"], ca)})
    sup = proc_status(g.proc.pid)
    uids = sup["Uid"].split()
    assert len(uids) == 4 and all(u == str(tlsgate_account.pw_uid) for u in uids), sup["Uid"]
    assert all(x != "0" for x in sup["Gid"].split()), sup["Gid"]
    assert (sup["CapEff"], sup["CapPrm"], sup["CapAmb"]) == (GATEWAY_CAPS, GATEWAY_CAPS, NET_ADMIN_ONLY), sup
    workers = g.children()
    assert len(workers) == 2 and sorted(workers) == sorted(g.worker_pids()), (workers, g.log())
    for pid in workers:
        st = proc_status(pid)
        assert all(u != "0" for u in st["Uid"].split()) and len(st["Uid"].split()) == 4, st["Uid"]
        assert all(x != "0" for x in st["Gid"].split()), st["Gid"]
        assert (st["CapEff"], st["CapPrm"], st["CapAmb"]) == (NO_CAPS,) * 3, (pid, st)
        assert st["NoNewPrivs"] == "1", (pid, st)
    # Spawned with an empty ambient set, a worker holds no capability even before it drops
    # them (it checks at its first instruction and says so); and it is not dumpable, so
    # another process of the same uid cannot ptrace it or read its memory.
    listening = g.records("worker listening")
    assert len(listening) == 2, g.log()
    for rec in listening:
        assert rec.get("inherited_capabilities") == "none", rec
        assert rec.get("dumpable") == "false", rec


# ------------------------------------------------------------------------------- 10, 11: broken config

BROKEN_POLICY = '[match]\nnetworks = ["198.19.0.10/33"]\nport = 80\n'   # error on line 2


def test_broken_config_at_start(lab, gateway, gateway_dir):
    assert lab.run(lab.gw, ["nft", "list", "table", "inet", "tlsgate"], check=False).returncode != 0
    ca = ca_of(gateway_dir)
    g = gateway({"fine": gateway_policy(["198.19.0.11/32"], ca), "bad": BROKEN_POLICY}, wait=False)
    assert g.proc.wait(timeout=30) == 2, g.log()
    out = g.log()
    assert re.search(r"(?m)(^|[\s/])bad\.toml:2: \S.*", out), out
    assert "198.19.0.10/33" in out, out
    assert "gateway started" not in out and "worker started" not in out, out
    assert g.table() is None
    assert tlsgate_pids_in_gw(lab) == []


def test_broken_config_at_reload_changes_nothing(lab, tls_server, plain_client, gateway, gateway_dir):
    tls_server("good", "198.19.0.10")
    ca = ca_of(gateway_dir)
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca)})
    workers, table = g.children(), g.table()
    assert workers and table
    (g.policies / "web.toml").write_text(BROKEN_POLICY)
    g.hup()
    g.wait_log("reload refused: the running configuration stays")
    assert re.search(r"web\.toml:2: .*198\.19\.0\.10/33", g.log()), g.log()
    assert "reloaded" not in g.log().replace("reload refused", ""), g.log()
    assert g.proc.poll() is None
    assert g.children() == workers and g.worker_pids() == workers, (workers, g.children(), g.log())
    assert g.table() == table
    (r,) = plain_client("198.19.0.10", 80, nbytes=8 * KiB, timeout=20)
    assert_intact(r, 8 * KiB)
    g.wait_records("connection closed", 1, policy="web", result="ok")
    # And the supervisor is not wedged: the repaired file reloads (nothing changed).
    (g.policies / "web.toml").write_text(gateway_policy(["198.19.0.10/32"], ca))
    g.hup()
    (rel,) = g.wait_records("reloaded", 1)
    assert (rel.get("added"), rel.get("changed"), rel.get("removed")) == ("", "", ""), rel
    assert g.children() == workers


def test_unknown_key_at_start_is_reported_with_a_suggestion(lab, gateway, gateway_dir):
    g = gateway({"bad": "[match]\nnetworks = [\"198.19.0.10/32\"]\nport = 80\n[upstream]\nport = 443\nservr_name = \"x\"\n"},
                wait=False)
    assert g.proc.wait(timeout=30) == 2, g.log()
    assert 'bad.toml:6: unknown key "servr_name" (did you mean "server_name"?)' in g.log(), g.log()
    assert g.table() is None


# ------------------------------------------------------------------------------- 12: root without user

def test_root_without_user_is_refused(lab, gateway, gateway_dir):
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca_of(gateway_dir))}, user=None, wait=False)
    rc = g.proc.wait(timeout=30)
    out = g.log()
    assert rc == 2, out   # a configuration problem
    assert "refusing to run as root" in out, out
    # It says how to run properly: the user key (in this config file), or systemd's
    # ambient capability, and the debugging override.
    assert 'user = "tlsgate"' in out and str(g.config) in out, out
    assert "AmbientCapabilities=CAP_NET_ADMIN" in out and "--allow-root" in out, out
    assert g.table() is None
    assert "worker started" not in out and tlsgate_pids_in_gw(lab) == []


# ------------------------------------------------------------------------------- readiness and reload

def run_stream_in_background(lab, host, total):
    """STREAM from the client namespace; returns a function that waits and returns its records."""
    client = _popen(lab.exec_argv(lab.client, [PY, "-c", STREAM, host, str(total)]),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def finish(timeout=120):
        try:
            out, err = client.communicate(timeout=timeout)
        finally:
            _stop_process(client)
        return [json.loads(l) for l in out.decode().splitlines() if l.strip()]
    return finish


def test_reload_whose_new_worker_fails_before_ready_keeps_the_old_one_serving(lab, tls_server, gateway,
                                                                               gateway_dir):
    # The realistic trigger: an upgrade installs a tlsgate binary that cannot start (here a
    # script that exits 1) and the operator sends SIGHUP. The config validates (the
    # supervisor checks it with its own, already loaded code), the spawn succeeds, and the
    # new worker exits before it reports ready. The old worker must keep serving: no
    # connection refused or lost, the reload logged as failed with the worker's exit.
    total = 150
    tls_server("good", "198.19.0.10")
    tls_server("good", "198.19.0.14")
    ca = ca_of(gateway_dir)
    binary = gateway_dir / "bin" / "tlsgate"
    binary.parent.mkdir()
    binary.parent.chmod(0o755)
    import shutil
    from conftest import TLSGATE_BIN
    shutil.copy(TLSGATE_BIN, binary)
    binary.chmod(0o755)
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca)}, binary=binary)
    old = g.worker_for("web")
    finish = run_stream_in_background(lab, "198.19.0.10", total)
    time.sleep(1.0)
    # The broken upgrade: replaced by rename, as a package manager does.
    broken = gateway_dir / "bin" / "tlsgate.new"
    broken.write_text("#!/bin/sh\necho 'tlsgate: cannot start (broken upgrade)' >&2\nexit 1\n")
    broken.chmod(0o755)
    os.rename(binary, binary.with_name("tlsgate.good"))
    os.rename(broken, binary)
    (gateway_dir / "policies" / "web.toml").write_text(gateway_policy(["198.19.0.10/32", "198.19.0.14/32"], ca))
    g.hup()
    failed = g.wait_records("reload failed", 1, policy="web")
    assert failed[0].get("reason") == "exit status 1", failed
    line = g.wait_records("reloaded", 1)[-1]
    assert line.get("failed") == "web" and line.get("changed") == "web", line
    results = finish()
    assert len(results) == total, results[-3:]
    bad = [r for r in results if r["outcome"] != "ok"]
    assert not bad, bad
    assert pid_alive(old) and g.worker_for("web") != old
    assert "old worker finished draining" not in g.log()
    assert "worker exited unexpectedly" not in g.log(), g.log()
    # The old policy is still the one in force: 198.19.0.14 is not intercepted.
    assert "198.19.0.14" not in (g.table() or ""), g.table()
    # The binary repaired, the next SIGHUP replaces the worker once the new one is ready.
    os.rename(binary.with_name("tlsgate.good"), binary)
    g.hup()
    g.wait_records("reloaded", 2)
    assert g.records("reloaded")[-1].get("failed") is None, g.records("reloaded")[-1]
    new = g.worker_for("web")
    assert new != old
    g.wait_log("old worker finished draining", timeout=30)
    assert "198.19.0.14" in (g.table() or ""), g.table()
    ready = [r for r in g.records("worker ready") if r.get("pid") == str(new)]
    assert ready, g.log()


def test_sighup_after_a_ca_file_changed_replaces_the_worker(lab, tls_server, plain_client, gateway, gateway_dir):
    # The policy text is the same; only the CA bundle it names has new contents (here the
    # same CA with a comment appended, as when a distrusted CA is removed from a bundle).
    tls_server("good", "198.19.0.10")
    ca = ca_of(gateway_dir)
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca)})
    old = g.worker_for("web")
    g.hup()
    g.wait_records("reloaded", 1)
    assert g.records("reloaded")[-1].get("changed") in (None, ""), g.log()
    assert g.worker_for("web") == old
    ca.write_text(ca.read_text() + "# bundle updated\n")
    g.hup()
    g.wait_records("reloaded", 2)
    assert g.records("reloaded")[-1].get("changed") == "web", g.log()
    new = g.worker_for("web")
    assert new != old
    g.wait_log("old worker finished draining", timeout=30)
    r = plain_client("198.19.0.10", 80, nbytes=1024, timeout=20)
    assert_intact(r[0], 1024)


def test_a_fifo_policy_is_refused_by_check_and_reload_without_hanging(lab, tls_server, gateway, gateway_dir):
    tls_server("good", "198.19.0.10")
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca_of(gateway_dir))})
    old = g.worker_for("web")
    fifo = gateway_dir / "policies" / "evil.toml"
    os.mkfifo(fifo, 0o644)
    from conftest import TLSGATE_BIN
    r = subprocess.run([str(TLSGATE_BIN), "check", "--config", str(gateway_dir / "tlsgate.toml")],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0, r
    assert "evil.toml: cannot read: is a FIFO, not a regular file" in r.stdout + r.stderr, r
    t0 = time.monotonic()
    g.hup()
    g.wait_log("reload refused", timeout=20)
    assert time.monotonic() - t0 < 10
    assert "evil.toml: cannot read: is a FIFO, not a regular file" in g.log(), g.log()
    assert g.worker_for("web") == old and pid_alive(old)


# ------------------------------------------------------------------------------- seccomp

def test_seccomp_filter_kills_a_forbidden_syscall(lab):
    # `tlsgate seccomp-selftest` (a diagnostic, not reachable from the network) demotes
    # itself as a worker does, installs the workers' filter and calls kill(parent, 0).
    from conftest import TLSGATE_BIN
    r = subprocess.run([str(TLSGATE_BIN), "seccomp-selftest"], capture_output=True, text=True, timeout=20)
    assert r.returncode == -signal.SIGSYS, (r.returncode, r.stderr)
    assert "filter installed" in r.stderr and "FAILED" not in r.stderr, r.stderr


def test_worker_killed_by_sigsys_is_restarted_with_nothing_refused(lab, tls_server, gateway, gateway_dir):
    # What the supervisor sees when the filter kills a worker: the worker dies of SIGSYS.
    # The same signal is sent here from outside (the worker has no way to be made to make
    # a forbidden call: that is the point), under a stream of connections.
    total = 150
    tls_server("good", "198.19.0.10")
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca_of(gateway_dir))})
    assert all(r.get("seccomp") == "on" for r in g.records("worker listening")), g.log()
    old = g.worker_for("web")
    finish = run_stream_in_background(lab, "198.19.0.10", total)
    time.sleep(1.0)
    os.kill(old, signal.SIGSYS)
    results = finish()
    assert len(results) == total, results[-3:]
    assert not [r for r in results if r["outcome"] == "refused"], results
    # A connection inside the worker at that instant may die with it; the client is sequential.
    assert len([r for r in results if r["outcome"] != "ok"]) <= 1, [r for r in results if r["outcome"] != "ok"]
    crash = g.wait_records("worker exited unexpectedly; restarting", 1, policy="web")
    assert crash[0].get("status") == "killed by signal %d" % signal.SIGSYS, crash
    g.wait_records("worker ready", 2, policy="web")
    assert g.worker_for("web") != old and pid_alive(g.worker_for("web"))


# ------------------------------------------------------------------------------- supervisor killed, local mode

def test_workers_exit_when_the_supervisor_dies_and_a_stale_table_is_replaced(lab, tls_server, plain_client, gateway,
                                                                              gateway_dir):
    tls_server("good", "198.19.0.10")
    ca = ca_of(gateway_dir)
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca)})
    workers = g.children()
    assert workers
    g.proc.send_signal(signal.SIGKILL)
    g.proc.wait(timeout=10)
    # The control channel closed: every worker drains (nothing open here) and exits.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(pid_alive(p) for p in workers):
        time.sleep(0.1)
    assert not any(pid_alive(p) for p in workers), workers
    # SIGKILL left the table behind; the next start replaces it and works.
    assert g.table() is not None
    g2 = gateway({"web": gateway_policy(["198.19.0.10/32"], ca)})
    assert "replacing a stale nftables table" in g2.log(), g2.log()
    (r,) = plain_client("198.19.0.10", 80, nbytes=KiB, timeout=20)
    assert_intact(r, KiB)
    assert g2.stop() == 0
    assert g2.table() is None


def test_local_mode_upgrades_the_gateways_own_connections(lab, tls_server, gateway, gateway_dir):
    tls_server("good", "198.19.0.10")
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca_of(gateway_dir))}, mode="local")
    table = g.table()
    # Neither the supervisor's nor the workers' own connections are redirected.
    own = sorted({pwd.getpwnam("tlsgate").pw_uid, pwd.getpwnam("tlsgate-worker").pw_uid})
    assert table and "hook output" in table and "meta skuid != { %d, %d }" % tuple(own) in table, table
    r = lab.run(lab.gw, [PY, PLAIN_CLIENT, "198.19.0.10", "80", "--bytes", "4096", "--timeout", "20"], timeout=40)
    res = json.loads(r.stdout.splitlines()[0])
    assert res["error"] is None and res["recv_sha256"] == res["sent_sha256"], (res, g.log())
    (rec,) = g.wait_records("connection closed", 1, policy="web")
    assert_ok_record(rec, "198.19.0.10:80", "198.19.0.10:443")
