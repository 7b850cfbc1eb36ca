"""Destinations by name, tracked by DNS: a real (small, bounded) DNS server in the lab's
server namespace answers for `origin.test`; the gateway namespace's resolv.conf points at it
(/etc/netns/<gw>/resolv.conf, which `ip netns exec` mounts over /etc/resolv.conf). When the
record changes, the policy's nftables sets follow within the TTL (plus slack), in both
tables, without a new worker; a connection to the new address goes through the gateway
while one established to the old address keeps flowing; a name that starts failing keeps
its last addresses and says so once.

Needs root, network namespaces, nftables and the tlsgate binary (conftest.unavailable).
"""
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PY, _popen, _stop_process, gateway_policy
from test_admin import status_json, tlsgate
from test_gateway import set_elements

HERE = Path(__file__).resolve().parent
DNS_SERVER = HERE / "dns_server.py"
NAMESERVER = "198.19.0.29"
TTL = 2
SLACK = 3.0


@pytest.fixture
def dns(lab, tmp_path):
    """A DNS server on NAMESERVER:53 in the server namespace, its zone in a JSON file the
    test rewrites; the gw namespace's resolv.conf and hosts point at it alone."""
    zone = tmp_path / "zone.json"
    zone.write_text("{}")
    log = tmp_path / "dns-queries.log"
    proc = _popen(lab.exec_argv(lab.server, [PY, DNS_SERVER, "--bind", NAMESERVER, "--zone", zone,
                                             "--max-seconds", "240", "--log", log]),
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = proc.stdout.readline()
    assert b"ready" in line, (line, proc.stderr.read() if proc.poll() is not None else b"")
    etc = Path("/etc/netns") / lab.gw
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text("nameserver %s\noptions timeout:1 attempts:1\n" % NAMESERVER)
    (etc / "hosts").write_text("127.0.0.1 localhost\n")

    def set_zone(records):
        tmp = zone.with_suffix(".tmp")
        tmp.write_text(json.dumps(records))
        tmp.replace(zone)

    set_zone.queries = lambda: log.read_text().splitlines() if log.exists() else []
    yield set_zone
    _stop_process(proc)
    shutil.rmtree(etc, ignore_errors=True)


def wait_for(predicate, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def test_a_changed_record_moves_the_sets_and_the_worker_follows_without_a_restart(
        lab, tls_server, plain_client, gateway, gateway_dir, dns):
    old = tls_server("good", "198.19.0.21")
    new = tls_server("good", "198.19.0.22")
    dns({"origin.test": {"a": ["198.19.0.21"], "ttl": TTL}})
    policy = gateway_policy([], gateway_dir / "root.pem").replace("networks = []", 'hosts = ["origin.test"]')
    g = gateway({"named": policy}, extra='\n[dns]\nmin_refresh = "1s"\nmax_refresh = "1m"\n')
    assert set_elements(g.table(), "dst_named_v4") == {"198.19.0.21"}, g.table()
    assert "source=dns" in g.log() and "ttl=2s" in g.log(), g.log()
    workers = g.worker_pids("named")
    assert len(workers) == 1, g.log()

    # A connection to the old address that lasts across the change (10 pieces over 6 s).
    established = plain_client("198.19.0.21", nbytes=64 * 1024, send_over=6, timeout=30, background=True)
    time.sleep(1.0)
    dns({"origin.test": {"a": ["198.19.0.22"], "ttl": TTL}})
    changed_at = time.monotonic()
    moved = wait_for(lambda: set_elements(g.table(), "dst_named_v4") == {"198.19.0.22"}, TTL + SLACK)
    took = time.monotonic() - changed_at
    print("dns change followed in %.2f s (ttl %d s)" % (took, TTL))
    assert moved, "the set did not follow the record within %.0f s:\n%s\n%s" % (TTL + SLACK, g.table(), g.log())
    # The guard follows too: fail closed covers the new address at once.
    assert set_elements(g.guard(), "dst_named_v4") == {"198.19.0.22"}, g.guard()
    assert "destination sets updated" in g.log(), g.log()

    # A new connection to the new address is served by the same worker, over verified TLS.
    res = plain_client("198.19.0.22")[0]
    assert res["error"] is None and res["recv_sha256"] == res["sent_sha256"], res
    assert any(r.get("dst") == "198.19.0.22:80" and r.get("result") == "ok" for r in g.connections()), g.log()
    assert new.accepted(), "the server at the new address saw no connection"
    # The established one to the old address kept flowing to its end.
    (kept,) = established()
    assert kept["error"] is None and kept["recv_sha256"] == kept["sent_sha256"], kept
    assert old.accepted()
    assert g.worker_pids("named") == workers, "a new worker was started:\n" + g.log()
    assert g.children() == workers, g.children()
    g.wait_log("destinations updated")
    # And a new connection to the old address is no longer intercepted for this policy.
    assert "198.19.0.21" not in (g.table() or "")


def test_a_name_that_starts_failing_keeps_its_addresses_and_says_so_once(
        lab, tls_server, plain_client, gateway, gateway_dir, dns):
    tls_server("good", "198.19.0.22")
    dns({"origin.test": {"a": ["198.19.0.22"], "ttl": TTL}})
    policy = gateway_policy([], gateway_dir / "root.pem").replace("networks = []", 'hosts = ["origin.test"]')
    g = gateway({"named": policy}, extra='\n[dns]\nmin_refresh = "1s"\nmax_refresh = "1m"\n')
    assert set_elements(g.table(), "dst_named_v4") == {"198.19.0.22"}, g.table()
    for rcode, word in ((2, "SERVFAIL"), (3, "NXDOMAIN")):
        dns({"origin.test": {"a": ["198.19.0.23"], "ttl": TTL, "rcode": rcode}})
        asked = len(dns.queries())
        # Several refreshes (1 s, then 2 s back-off) while the name fails.
        assert wait_for(lambda: len(dns.queries()) >= asked + 4, TTL + 6), dns.queries()
        failed = g.records("dns refresh failed")
        assert len(failed) == 1, "logged %d times, not once:\n%s" % (len(failed), g.log())
        assert failed[0]["name"] == "origin.test" and failed[0]["kept"] == "198.19.0.22", failed
        assert set_elements(g.table(), "dst_named_v4") == {"198.19.0.22"}, g.table()
        assert set_elements(g.guard(), "dst_named_v4") == {"198.19.0.22"}, g.guard()
        res = plain_client("198.19.0.22")[0]
        assert res["error"] is None and res["recv_sha256"] == res["sent_sha256"], (word, res)
    assert "NXDOMAIN" in failed[0]["error"] or "SERVFAIL" in failed[0]["error"], failed
    # `tlsgate status` shows the name failing, with the addresses it keeps.
    hosts = status_json(g)["hosts"]
    assert [h["name"] for h in hosts] == ["origin.test"], hosts
    assert hosts[0]["addresses"] == ["198.19.0.22"] and hosts[0]["error"], hosts
    assert hosts[0]["consecutive_failures"] >= 2 and hosts[0]["failures"] >= hosts[0]["consecutive_failures"], hosts
    table = tlsgate(g, "status").stdout
    assert "origin.test  198.19.0.22" in table and "failing (" in table, table
    # Back: the name resolves again, and says so (in the log and in status).
    dns({"origin.test": {"a": ["198.19.0.22"], "ttl": TTL}})
    g.wait_log("dns refresh recovered", timeout=10)
    hosts = status_json(g)["hosts"]
    assert hosts[0].get("error") is None and hosts[0]["consecutive_failures"] == 0 and hosts[0]["ttl_seconds"] == TTL, hosts


def test_a_reload_follows_a_changed_record_without_a_new_worker(
        lab, tls_server, plain_client, gateway, gateway_dir, dns):
    tls_server("good", "198.19.0.21")
    tls_server("good", "198.19.0.23")
    # A long TTL: only the reload can see the change within this test. (Not neighbours:
    # auto-merge would show .21 and .22 as one range.)
    dns({"origin.test": {"a": ["198.19.0.21"], "ttl": 3600}})
    policy = gateway_policy([], gateway_dir / "root.pem").replace("networks = []", 'hosts = ["origin.test"]')
    g = gateway({"named": policy}, extra='\n[dns]\nmin_refresh = "1s"\nmax_refresh = "10m"\n')
    workers = g.worker_pids("named")
    dns({"origin.test": {"a": ["198.19.0.21", "198.19.0.23"], "ttl": 3600}})
    g.hup()
    g.wait_log("reloaded")
    assert wait_for(lambda: set_elements(g.table(), "dst_named_v4") == {"198.19.0.21", "198.19.0.23"}, 5), g.table()
    assert set_elements(g.guard(), "dst_named_v4") == {"198.19.0.21", "198.19.0.23"}, g.guard()
    g.wait_log("destinations updated")
    assert g.worker_pids("named") == workers, "a new worker was started:\n" + g.log()
    for address in ("198.19.0.21", "198.19.0.23"):
        res = plain_client(address)[0]
        assert res["error"] is None and res["recv_sha256"] == res["sent_sha256"], (address, res)
