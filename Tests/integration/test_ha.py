"""An HA pair: two gateways share the LAN's gateway address with keepalived (VRRP), each
running `tlsgate run` (Tests/integration/ha_pair.py, in the lab of Scripts/ha-lab.sh).

A client loops short connections through the virtual address to a server's match port.
When the MASTER's tlsgate is killed with SIGKILL, or its LAN link goes down, new connections
flow through the other gateway within 3 s (the switch time is printed), and a plain-text
listener on the server's match port sees nothing: no byte is forwarded in clear during the
switch. A MASTER whose tlsgate is dead but which still holds the address rejects (TCP
reset), never forwards.

Needs root, network namespaces, nftables, keepalived and the tlsgate binary
(conftest.unavailable: skipped locally without them, failed under CI).
"""
import os
import shutil
import signal
import subprocess
import textwrap
import time

import pytest

from conftest import PY, TLSGATE_BIN, _require_root, _require_worker, unavailable
from ha_pair import SERVER, Pair

SWITCH_LIMIT_S = 3.0


@pytest.fixture
def pair(pki, tlsgate_account, request):
    _require_root()
    _require_worker()
    if shutil.which("keepalived") is None and not os.path.exists("/usr/sbin/keepalived"):
        unavailable("needs keepalived (run Scripts/setup.sh)")
    p = Pair("h%d-" % os.getpid(), TLSGATE_BIN)
    try:
        p.up()
        p.start_pair(pki)
        yield p
    finally:
        for name in sorted(p.logs):
            request.node.add_report_section("teardown", name, p.log(name)[-6000:])
        p.stop()
    assert not [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
                if ns.startswith(p.prefix)], "namespaces left behind"


def check(result, scenario):
    print("ha %s: switch %.2f s to gw%s; attempts=%d ok_before=%d ok_after=%d failed=%d plain_seen=%d"
          % (scenario, result["switch_s"] or -1, result["holder"], result["attempts"], result["ok_before"],
             result["ok_after"], result["failed"], len(result["plain_seen"])))
    assert result["ok_before"] > 0, result
    assert result["switch_s"] is not None, "no connection succeeded after the failure: %r" % result
    assert result["switch_s"] <= SWITCH_LIMIT_S, result
    assert result["holder"] == 2, result
    # Before: the TLS server saw the MASTER's public address; after: the other gateway's.
    assert result["peers"][0] == "198.19.0.2" and result["peers"][-1] == "198.19.0.3", result["peers"]
    # Nothing reached the server's match port in clear, during the switch or ever.
    assert result["plain_seen"] == [], result["plain_seen"]


def test_kill_9_of_the_masters_tlsgate_moves_new_connections_to_the_other_gateway(pair):
    result = pair.failover("kill")
    check(result, "kill -9")
    assert "Entering MASTER STATE" in pair.log("keepalived-gw2"), pair.log("keepalived-gw2")


def test_the_masters_lan_link_going_down_moves_new_connections_to_the_other_gateway(pair):
    result = pair.failover("link")
    check(result, "link down")


CONNECT = textwrap.dedent("""
    import json, socket, sys
    try:
        s = socket.create_connection((sys.argv[1], 80), timeout=2)
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        s.settimeout(2)
        out = "connected, read %d bytes" % len(s.recv(100))
    except ConnectionRefusedError:
        out = "refused"
    except ConnectionResetError:
        out = "reset"
    except OSError as e:
        out = type(e).__name__
    print(out)
""")


def test_a_master_whose_tlsgate_died_still_rejects_while_it_holds_the_address(pair):
    # Hold the address on gw1 whatever happens: the other keepalived stops, gw1's is frozen.
    for name, proc in pair.procs:
        if name == "keepalived-gw2":
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
    # keepalived runs a parent and a VRRP child (the one that runs the track script): both.
    frozen = [dict(pair.procs)["keepalived-gw1"].pid, int((pair.work / "gw1" / "vrrp.pid").read_text())]
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        gw = pair.gateways[1]
        gw.send_signal(signal.SIGKILL)
        gw.wait(timeout=10)
        time.sleep(0.5)
        assert pair.holder() == 1
        outcomes = [pair.run("client", [PY, "-c", CONNECT, SERVER]).stdout.strip() for _ in range(5)]
        assert all(o == "refused" for o in outcomes), outcomes
        time.sleep(0.5)
        assert pair.plain_seen() == [], pair.plain_seen()
        # What holds: the dead gateway's tables stay in force (its redirect now points at a
        # closed port, hence the reset; the guard rejects whatever is not redirected).
        guard = pair.run("gw1", ["nft", "list", "table", "inet", "tlsgate_guard"]).stdout
        assert "reject with tcp reset" in guard, guard
        assert "redirect to" in pair.run("gw1", ["nft", "list", "table", "inet", "tlsgate"]).stdout
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
