"""The operator's view of a running gateway: `/metrics` and `/healthz` on the supervisor's
admin address (`[admin] listen`), `tlsgate status` and `tlsgate reload` over its control
socket (`[admin] control_socket`, inside the test's gateway_dir).

Real gateway (`tlsgate run` in the lab's gw namespace, root switching to "tlsgate"), real
TLS echo servers and plain-text clients; the metrics are read over HTTP from inside the gw
namespace. Needs root, network namespaces, nftables and the tlsgate binary: skipped
otherwise, failed under CI (conftest.unavailable).
"""
import json
import os
import re
import signal
import subprocess
import time

from conftest import PY, TLSGATE_BIN, gateway_policy, pid_alive

ADMIN = 'listen = "127.0.0.1:9464"\n'
FETCH = r'''
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen("http://127.0.0.1:9464" + sys.argv[1], timeout=5)
    print(r.status); sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); sys.stdout.write(e.read().decode())
'''


def fetch(lab, path):
    """(status, body) of GET path on the admin address, from inside the gw namespace."""
    r = lab.run(lab.gw, [PY, "-c", FETCH, path], timeout=20, check=False)
    assert r.returncode == 0, r.stderr
    status, _, body = r.stdout.partition("\n")
    return int(status), body


def metrics(lab):
    status, body = fetch(lab, "/metrics")
    assert status == 200, body
    values = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def wait_metrics(lab, expected, timeout=15.0):
    """Polls /metrics (bounded) until every expected series has its value (absent = 0)."""
    deadline = time.monotonic() + timeout
    while True:
        values = metrics(lab)
        wrong = {k: (values.get(k, 0.0), v) for k, v in expected.items() if values.get(k, 0.0) != v}
        if not wrong or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not wrong, "metric (seen, expected): %r" % wrong
    return values


def wait_health(lab, code, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        status, body = fetch(lab, "/healthz")
        if status == code or time.monotonic() > deadline:
            return status, body
        time.sleep(0.1)


def tlsgate(g, *args, timeout=120):
    return subprocess.run([str(TLSGATE_BIN), *args, "--config", str(g.config)], capture_output=True, text=True,
                          timeout=timeout)


def status_json(g):
    r = tlsgate(g, "status", "--json")
    assert r.returncode in (0, 3), r.stderr
    return json.loads(r.stdout)


def ca(gateway_dir):
    return gateway_dir / "root.pem"


def test_metrics_follow_a_known_sequence(lab, tls_server, plain_client, gateway, gateway_dir, redirect):
    tls_server("good", "198.19.0.10")
    tls_server("wrongname", "198.19.0.11")
    g = gateway({"web": gateway_policy(["198.19.0.10/32", "198.19.0.11/32"], ca(gateway_dir))}, admin=ADMIN)
    p = 'policy="web"'
    before = wait_metrics(lab, {"tlsgate_worker_ready{%s}" % p: 1, "tlsgate_rules_applied": 1,
                                "tlsgate_config_reload_generation": 0, "tlsgate_config_last_reload_successful": 1})
    assert before.get("tlsgate_connections_accepted_total{%s}" % p, 0) == 0, before
    status, body = fetch(lab, "/healthz")
    assert (status, body) == (200, "ok\n")

    # 1: a good connection (full handshake), 2: the same again (resumes the session).
    (r1,) = plain_client("198.19.0.10", 80, nbytes=1000)
    (r2,) = plain_client("198.19.0.10", 80, nbytes=3000)
    assert r1["error"] is None and r2["error"] is None, (r1, r2)
    # 3: a server whose certificate names another host: refused by verification.
    plain_client("198.19.0.11", 80, nbytes=100)
    # 4: redirected to the policy's port but not one of its destinations.
    redirect(g.listen_port("web"), v4="198.19.0.20/32", v6=None)
    plain_client("198.19.0.20", 80, nbytes=100)
    recs = g.wait_records("connection closed", 4, policy="web")
    assert [r.get("resumed") for r in recs[:2]] == ["false", "true"], recs
    assert [r.get("reason") for r in recs] == ["completed", "completed", "tls_verify_failed",
                                               "destination_not_in_policy"], recs

    values = wait_metrics(lab, {
        "tlsgate_connections_accepted_total{%s}" % p: 4,
        'tlsgate_connections_completed_total{%s,reason="completed"}' % p: 2,
        'tlsgate_connections_failed_total{%s,reason="tls_verify_failed"}' % p: 1,
        'tlsgate_connections_refused_total{%s,reason="destination_not_in_policy"}' % p: 1,
        'tlsgate_tls_handshakes_total{%s,session="full"}' % p: 1,
        'tlsgate_tls_handshakes_total{%s,session="resumed"}' % p: 1,
        'tlsgate_relayed_bytes_total{%s,direction="up"}' % p: 4000,
        'tlsgate_relayed_bytes_total{%s,direction="down"}' % p: 4000,
        "tlsgate_connections_active{%s}" % p: 0,
        "tlsgate_connection_duration_seconds_count{%s}" % p: 4,
        "tlsgate_upstream_connect_duration_seconds_count{%s}" % p: 3,
        "tlsgate_tls_handshake_duration_seconds_count{%s}" % p: 2,
        "tlsgate_worker_restarts_total{%s}" % p: 0,
    })
    # Nothing else moved: no other reason was counted.
    others = {k: v for k, v in values.items()
              if re.match(r"tlsgate_connections_(completed|failed|refused)_total", k) and v
              and not any(w in k for w in ('"completed"', '"tls_verify_failed"', '"destination_not_in_policy"'))}
    assert others == {}, others
    # Histogram buckets are cumulative and end with +Inf = count.
    assert values['tlsgate_connection_duration_seconds_bucket{%s,le="+Inf"}' % p] == 4, values


def test_counters_survive_a_restart_and_healthz_follows_readiness(lab, tls_server, plain_client, gateway,
                                                                   gateway_dir):
    tls_server("good", "198.19.0.10")
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca(gateway_dir))}, admin=ADMIN,
                extra='restart_delay = "3s"\n')
    plain_client("198.19.0.10", 80, nbytes=500, connections=2)
    p = 'policy="web"'
    wait_metrics(lab, {"tlsgate_connections_accepted_total{%s}" % p: 2})
    old = g.worker_for("web")
    os.kill(old, signal.SIGKILL)
    # The policy has no ready worker until the delayed restart.
    status, body = wait_health(lab, 503, timeout=5)
    assert status == 503 and "policy web: no ready worker" in body, (status, body)
    wait_metrics(lab, {"tlsgate_worker_ready{%s}" % p: 0})
    st = status_json(g)
    assert st["ready"] is False and st["policies"][0]["state"] == "starting", st
    r = tlsgate(g, "status")
    assert r.returncode == 3, r.stdout + r.stderr
    assert "ready: no (policy web: no ready worker)" in r.stdout, r.stdout

    status, body = wait_health(lab, 200, timeout=15)
    assert (status, body) == (200, "ok\n"), body
    new = g.worker_for("web")
    assert new != old
    g.wait_workers_listening([new])
    plain_client("198.19.0.10", 80, nbytes=500)
    # 2 counted before the restart + 1 by the new worker, which started from 0.
    wait_metrics(lab, {"tlsgate_connections_accepted_total{%s}" % p: 3,
                       'tlsgate_connections_completed_total{%s,reason="completed"}' % p: 3,
                       "tlsgate_worker_restarts_total{%s}" % p: 1, "tlsgate_worker_ready{%s}" % p: 1})


def test_status_table_and_json(lab, tls_server, plain_client, gateway, gateway_dir):
    tls_server("good", "198.19.0.10")
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca(gateway_dir)),
                 "api": gateway_policy(["198.19.0.12/32"], ca(gateway_dir), port=8080)})
    sock = g.control_socket
    st_mode = os.stat(sock).st_mode
    assert oct(st_mode & 0o777) == "0o600", oct(st_mode)
    assert os.stat(sock).st_uid == __import__("pwd").getpwnam("tlsgate").pw_uid
    # A held connection shows as active.
    wait = plain_client("198.19.0.10", 80, nbytes=100, hold=4, background=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        st = status_json(g)
        web = [x for x in st["policies"] if x["name"] == "web"][0]
        if web["active_connections"] == 1:
            break
        time.sleep(0.2)
    assert st["pid"] == g.proc.pid or pid_alive(st["pid"]), st
    assert st["state"] == "running" and st["ready"] is True and st["rules_applied"] is True, st
    assert [x["name"] for x in st["policies"]] == ["api", "web"], st
    assert web["active_connections"] == 1, st
    assert web["state"] == "ready" and web["listen_port"] == g.listen_port("web") and web["match_port"] == 80, web
    assert [(w["pid"], w["state"]) for w in web["workers"]] == [(g.worker_for("web"), "serving")], web
    assert web["restarts"] == 0 and web["workers"][0]["uptime_seconds"] > 0, web
    assert st["reload"]["last_result"] == "none" and st["reload"]["generation"] == 0, st
    wait()

    r = tlsgate(g, "status")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("gateway pid "), r.stdout
    assert "ready: yes" in lines and "rules applied: yes" in lines, r.stdout
    assert "last reload: none, generation 0" in lines, r.stdout
    header = [l for l in lines if l.startswith("POLICY")][0].split()
    assert header == ["POLICY", "STATE", "MATCH", "LISTEN", "PID", "WORKER", "UPTIME", "RESTARTS", "ACTIVE"]
    rows = {l.split()[0]: l.split() for l in lines[lines.index([l for l in lines if l.startswith("POLICY")][0]) + 1:]}
    assert rows["web"][:6] == ["web", "ready", "80", str(g.listen_port("web")), str(g.worker_for("web")), "serving"]
    assert rows["api"][:6] == ["api", "ready", "8080", str(g.listen_port("api")), str(g.worker_for("api")), "serving"]


def test_reload_good_broken_and_no_gateway(lab, tls_server, plain_client, gateway, gateway_dir):
    tls_server("good", "198.19.0.10")
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca(gateway_dir))}, admin=ADMIN)
    first = g.worker_for("web")

    # A good change: a new worker, exit 0 once it is live.
    (g.policies / "web.toml").write_text(gateway_policy(["198.19.0.10/32"], ca(gateway_dir), connect_timeout="4s"))
    r = tlsgate(g, "reload")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "reloaded: the new configuration is live (generation 1): changed web" in r.stdout, r.stdout
    st = status_json(g)
    web = st["policies"][0]
    serving = [w["pid"] for w in web["workers"] if w["state"] == "serving"]
    assert serving and serving[0] != first and serving[0] == g.worker_for("web"), st
    assert st["reload"]["last_result"] == "live" and st["reload"]["generation"] == 1, st
    wait_metrics(lab, {"tlsgate_config_reload_generation": 1, "tlsgate_config_last_reload_successful": 1})
    second = serving[0]

    # A broken policy: exit 2 with its file:line error; the running worker keeps serving.
    (g.policies / "web.toml").write_text(gateway_policy(["198.19.0.10/32"], ca(gateway_dir))
                                         + '\n[limits]\nmax_connections = "many"\n')
    r = tlsgate(g, "reload")
    assert r.returncode == 2, r.stdout + r.stderr
    assert re.search(r"policies/web\.toml:\d+: .*max_connections", r.stderr), r.stderr
    assert "refused: fix the errors above; the running configuration stays" in r.stderr, r.stderr
    st = status_json(g)
    assert st["reload"]["last_result"] == "refused" and st["reload"]["generation"] == 1, st
    assert any("web.toml" in e for e in st["reload"]["errors"]), st
    assert [w["pid"] for w in st["policies"][0]["workers"] if w["state"] != "leaving"] == [second], st
    wait_metrics(lab, {"tlsgate_config_last_reload_successful": 0})
    (res,) = plain_client("198.19.0.10", 80, nbytes=2000)
    assert res["error"] is None and res["recv_len"] == 2000, res

    # SIGHUP still reloads (same path): the fixed policy goes live again.
    (g.policies / "web.toml").write_text(gateway_policy(["198.19.0.10/32"], ca(gateway_dir)))
    g.hup()
    g.wait_log("reloaded", count=2)
    wait_metrics(lab, {"tlsgate_config_reload_generation": 2, "tlsgate_config_last_reload_successful": 1})

    # No gateway: a clear error and a non-zero exit.
    g.stop()
    r = tlsgate(g, "reload", timeout=30)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "no gateway is running" in r.stderr, r.stderr
    r = tlsgate(g, "status", timeout=30)
    assert r.returncode == 1 and "no gateway is running" in r.stderr, r.stderr


def test_stale_control_socket_is_replaced_and_a_live_one_refused(lab, tls_server, gateway, gateway_dir):
    tls_server("good", "198.19.0.10")
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca(gateway_dir))})
    # A second gateway with the same control socket is refused (the first still answers).
    r = subprocess.run(lab.exec_argv(lab.gw, [str(TLSGATE_BIN), "run", "--config", str(g.config)]),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "another tlsgate answers on the control socket" in r.stderr, r.stderr
    assert tlsgate(g, "status").returncode == 0
    # Killed: its socket file stays behind, stale; the next start replaces it.
    g.proc.send_signal(signal.SIGKILL)
    g.proc.wait(timeout=10)
    assert g.control_socket.exists()
    g2 = gateway({})
    assert tlsgate(g2, "status").returncode == 0
