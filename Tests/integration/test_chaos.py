"""Chaos under load, in the namespace lab: each scenario bounded in time, printing one line
of figures (`chaos <scenario>: key=value ...`). `Scripts/chaos.sh` runs this module with
`-s` so the lines show; `CHAOS_PROFILE=long` (`Scripts/chaos.sh --long`) scales it up. CI
runs the short profile with the rest of the suite (about 4 minutes: 97 s of them the 9,936
held connections, 80 s the soak). It was out of CI for a while: it showed intermittent
refusals after reloads and restarts, found to be the rules' delete-and-recreate transaction
and the dead run's conntrack entries (see README "Chaos").

Needs root, network namespaces and nftables (conftest: skipped elsewhere, failed under CI).
"""
import contextlib
import hashlib
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import textwrap
import time

import pytest

from conftest import PY, _popen, _stop_process, gateway_policy, pid_alive, unavailable
from test_fail_closed import plain_listener  # noqa: F401  (a fixture)
from test_real_clients import start_nginx

LONG = os.environ.get("CHAOS_PROFILE") == "long"
LOOPS = 64 if LONG else 16
HOLD_CONNECTIONS = 10000
SOAK_SHORT_SECONDS = 60

# N concurrent loops of short connections for D seconds; each request sends 1 KiB to the
# echo server through the gateway and checks it comes back whole. Prints one JSON object:
# counts and, for every request, [t0, t1, outcome] (CLOCK_MONOTONIC is system-wide, so
# comparable with the test's kill times).
LOAD = textwrap.dedent("""
    import json, socket, sys, threading, time
    host, loops, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    records, lock = [], threading.Lock()
    end = time.monotonic() + seconds
    def loop(n):
        i = 0
        while time.monotonic() < end:
            payload = bytes([(n + i) % 251]) * 1024
            i += 1
            t0 = time.monotonic()
            try:
                s = socket.create_connection((host, 80), timeout=10)
            except ConnectionRefusedError:
                out = "refused"
            except OSError:
                out = "failed"
            else:
                try:
                    s.settimeout(10)
                    s.sendall(payload)
                    # A real client: keeps its side open, closes once the echo is back.
                    got = b""
                    while len(got) < len(payload):
                        b = s.recv(65536)
                        if not b:
                            break
                        got += b
                    out = "ok" if got == payload else "failed"
                except OSError:
                    out = "failed"
                finally:
                    s.close()
            with lock:
                records.append([t0, time.monotonic(), out])
    threads = [threading.Thread(target=loop, args=(n,)) for n in range(loops)]
    for t in threads: t.start()
    for t in threads: t.join()
    print(json.dumps({"records": records}))
""")


def start_load(lab, host, loops, seconds):
    proc = _popen(lab.exec_argv(lab.client, [PY, "-c", LOAD, host, str(loops), str(seconds)]),
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def finish():
        try:
            out, err = proc.communicate(timeout=seconds + 60)
        finally:
            _stop_process(proc)
        assert out.strip(), err.decode(errors="replace")
        return json.loads(out)["records"]
    return finish


def counts(records):
    out = {"ok": 0, "refused": 0, "failed": 0}
    for _, _, outcome in records:
        out[outcome] += 1
    return out


def test_chaos_kill_9_worker_20_times_under_load(lab, tls_server, gateway, gateway_dir):
    kills = 20
    tls_server("good", "198.19.0.10")
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], gateway_dir / "root.pem")},
                extra='crash_limit = 1000\nrestart_delay = "0s"\nrestart_delay_max = "100ms"\n')
    finish = start_load(lab, "198.19.0.10", LOOPS, 4 + kills * 0.6)
    time.sleep(1.5)
    windows = []
    for k in range(kills):
        pid = g.worker_for("web")
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        windows.append((t0, time.monotonic()))
        g.wait_records("worker ready", k + 2, policy="web", timeout=20)
        time.sleep(0.4)
    records = finish()
    c = counts(records)
    lost = [r for r in records if r[2] == "failed"]
    in_flight = [r for r in records if any(r[0] <= b and r[1] >= a for a, b in windows)]
    lost_outside = [r for r in lost if not any(r[0] <= b and r[1] >= a for a, b in windows)]
    print("\nchaos kill-9-worker: kills=%d loops=%d requests=%d ok=%d refused=%d lost=%d in_flight_at_kills=%d"
          " lost_outside_kills=%d" % (kills, LOOPS, len(records), c["ok"], c["refused"], c["failed"],
                                     len(in_flight), len(lost_outside)))
    assert c["refused"] == 0, c
    assert not lost_outside, lost_outside
    assert c["failed"] <= len(in_flight), (c, len(in_flight))
    assert c["ok"] > 0


BROKEN = '[match]\nnetworks = ["198.19.0.10/33"]\nport = 80\n'


def test_chaos_sighup_50_times_under_load_alternating_valid_and_invalid(lab, tls_server, gateway, gateway_dir):
    hups = 50
    tls_server("good", "198.19.0.10")
    ca = gateway_dir / "root.pem"
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca)})
    policy = gateway_dir / "policies" / "web.toml"
    finish = start_load(lab, "198.19.0.10", LOOPS, 3 + hups * 0.5)
    time.sleep(1.0)
    valid = invalid = 0
    t_start = time.monotonic()
    for i in range(hups):
        if i % 2 == 0:
            # A real change each time: a new worker must take over.
            policy.write_text(gateway_policy(["198.19.0.10/32"], ca, connect_timeout="%ds" % (4 + (i // 2) % 2)))
            valid += 1
            g.hup()
            g.wait_records("reloaded", valid, timeout=30)
        else:
            policy.write_text(BROKEN)
            invalid += 1
            g.hup()
            g.wait_records("reload refused", invalid, timeout=30)
        time.sleep(0.2)
    elapsed = time.monotonic() - t_start
    # The policy is valid again at the end (the last SIGHUP was a broken one: nothing changed).
    records = finish()
    c = counts(records)
    started = len(g.worker_pids("web"))
    failed_reloads = [r for r in g.records("reloaded") if r.get("failed")]
    print("\nchaos sighup-50: hups=%d valid=%d invalid=%d seconds=%.1f loops=%d requests=%d ok=%d refused=%d"
          " dropped=%d workers_started=%d failed_reloads=%d"
          % (hups, valid, invalid, elapsed, LOOPS, len(records), c["ok"], c["refused"], c["failed"], started,
             len(failed_reloads)))
    assert c["refused"] == 0, c
    assert c["failed"] == 0, [r for r in records if r[2] != "ok"][:5]
    assert not failed_reloads, failed_reloads
    assert started == valid + 1, (started, valid)
    assert pid_alive(g.worker_for("web"))


def test_chaos_kill_9_supervisor_under_load(lab, tls_server, plain_listener, gateway, gateway_dir):
    tls_server("good", "198.19.0.10")
    listener = plain_listener("198.19.0.10")   # what would receive clear text
    ca = gateway_dir / "root.pem"
    g = gateway({"web": gateway_policy(["198.19.0.10/32"], ca)})
    workers = g.children()
    finish = start_load(lab, "198.19.0.10", LOOPS, 6)
    time.sleep(2.0)
    t_kill = time.monotonic()
    g.proc.send_signal(signal.SIGKILL)
    g.proc.wait(timeout=10)
    deadline = t_kill + 10
    while time.monotonic() < deadline and any(pid_alive(p) for p in workers):
        time.sleep(0.01)
    workers_gone_ms = (time.monotonic() - t_kill) * 1000
    records = finish()
    after = [r for r in records if r[0] > t_kill + workers_gone_ms / 1000]
    c_after = counts(after)
    clear = listener.accepted()
    # The next start replaces the stale tables and serves again.
    g2 = gateway({"web": gateway_policy(["198.19.0.10/32"], ca)})
    stale_replaced = "replacing a stale nftables table" in g2.log()
    again = counts(start_load(lab, "198.19.0.10", 4, 2)())
    print("\nchaos kill-9-supervisor: loops=%d workers_exit_ms=%d requests_after=%d ok_after=%d refused_after=%d"
          " failed_after=%d clear_text_at_server=%d stale_replaced=%s after_restart_ok=%d after_restart_bad=%d"
          % (LOOPS, workers_gone_ms, len(after), c_after["ok"], c_after["refused"], c_after["failed"], len(clear),
             stale_replaced, again["ok"], again["refused"] + again["failed"]))
    assert not any(pid_alive(p) for p in workers), workers
    assert workers_gone_ms <= 1000, workers_gone_ms
    assert clear == [], clear
    assert c_after["ok"] == 0, c_after
    assert stale_replaced, g2.log()
    assert again["ok"] > 0 and again["refused"] + again["failed"] == 0, again


# A TLS server that resets every connection in the middle of the stream: after the
# handshake and the first bytes it closes with SO_LINGER 0 (a TCP reset). The linger is set
# on the TLS socket: wrap_socket takes the descriptor over and leaves `c` detached (an
# earlier version set it on `c`, got EBADF, never reset, and closed with a FIN once its
# traceback was written; with stderr a pipe nobody read, the threads then blocked after
# ~190 tracebacks and held their connections open: README Limits had it as an open question).
RESETTING_SERVER = textwrap.dedent("""
    import socket, ssl, sys, threading, time
    cert, key, bind, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((bind, port)); s.listen(256); s.settimeout(0.5)
    print("ready", flush=True)
    def serve(c):
        t = c
        try:
            c.settimeout(5)
            t = ctx.wrap_socket(c, server_side=True)
            t.recv(100)
            t.sendall(b"partial answer")
        except OSError:
            pass
        t.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00")
        t.close()
    end = time.monotonic() + 300
    while time.monotonic() < end:
        try:
            c, _ = s.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve, args=(c,), daemon=True).start()
""")

# N connections, `concurrency` at a time, each one fault: "hole" (the server never
# answers: the gateway's connect times out), "upstream-rst" (the server resets mid-stream),
# "client-rst" (the client resets mid-stream). Prints {"done": N, "errors": [...]}.
FAULT_CLIENT = textwrap.dedent("""
    import json, socket, sys, threading, time
    mode, host, total, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    done, errors, slow, lock = [0], [], [0], threading.Lock()
    def one():
        t0 = time.monotonic()
        s = socket.socket(); s.settimeout(10)
        try:
            s.connect((host, 80))
            s.sendall(b"q" * 200)
            if mode == "client-rst":
                got = b""
                while len(got) < 200:
                    b = s.recv(200)
                    if not b:
                        raise OSError("closed before the echo")
                    got += b
                s.sendall(b"r" * 4096)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00")
            else:
                while s.recv(4096):
                    pass
        except OSError as e:
            if mode == "client-rst":
                with lock: errors.append(str(e))
        finally:
            s.close()
            with lock:
                done[0] += 1
                slow[0] += time.monotonic() - t0 > 5
    def worker(n):
        for _ in range(n):
            one()
    per = [total // concurrency + (1 if i < total % concurrency else 0) for i in range(concurrency)]
    ts = [threading.Thread(target=worker, args=(n,)) for n in per]
    [t.start() for t in ts]; [t.join() for t in ts]
    print(json.dumps({"done": done[0], "errors": errors[:5], "slow": slow[0]}))
""")


def worker_usage(pid):
    """(open descriptors, RSS in KiB) of a process."""
    fds = len(os.listdir("/proc/%d/fd" % pid))
    rss = 0
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return fds, rss


def settled_usage(pid, baseline_fds, timeout=15.0):
    """The usage once the descriptors are back to the baseline (or the timeout)."""
    deadline = time.monotonic() + timeout
    usage = worker_usage(pid)
    while usage[0] > baseline_fds and time.monotonic() < deadline:
        time.sleep(0.2)
        usage = worker_usage(pid)
    return usage


def tcp_out_resets(lab, ns):
    """The namespace's TCP resets sent so far (Tcp: OutRsts of /proc/net/snmp)."""
    lines = [l.split() for l in lab.run(ns, ["cat", "/proc/net/snmp"]).stdout.splitlines() if l.startswith("Tcp:")]
    return int(lines[1][lines[0].index("OutRsts")])


def test_chaos_faults_leak_no_descriptors_or_memory(lab, pki, tls_server, gateway, gateway_dir, tmp_path):
    rounds = int(os.environ.get("CHAOS_FAULT_ROUNDS", 1000 if LONG else 300))
    tls_server("good", "198.19.0.10")
    # Its stderr goes to a file, checked empty at the end: a test server that fails must show.
    server_err = tmp_path / "resetting-server.err"
    with open(server_err, "wb") as errf:
        resetting = _popen(lab.exec_argv(lab.server, [PY, "-c", RESETTING_SERVER, pki / "good-chain.pem",
                                                      pki / "good.key", "198.19.0.24", "8443"]),
                           stdout=subprocess.PIPE, stderr=errf)
    try:
        assert resetting.stdout.readline().strip() == b"ready", server_err.read_text(errors="replace")
        ca = gateway_dir / "root.pem"
        g = gateway({
            "echo": gateway_policy(["198.19.0.10/32"], ca),
            # 198.19.0.41 is on the server's link but nobody has it: ARP fails, nothing answers.
            "hole": gateway_policy(["198.19.0.41/32"], ca, connect_timeout="1s"),
            "rst": gateway_policy(["198.19.0.24/32"], ca, upstream_port=8443),
        })
        cases = (("client-rst", "198.19.0.10", "echo"), ("hole", "198.19.0.41", "hole"),
                 ("upstream-rst", "198.19.0.24", "rst"))
        figures = []
        for mode, host, policy in cases:
            pid = g.worker_for(policy)

            def run(total):
                r = lab.run(lab.client, [PY, "-c", FAULT_CLIENT, mode, host, str(total), "20"],
                            timeout=240, check=False)
                assert r.returncode == 0, r.stderr
                return json.loads(r.stdout)
            run(20)   # warm-up: the worker's lazily made descriptors and pools exist now
            time.sleep(1.0)
            before = worker_usage(pid)
            resets_before = tcp_out_resets(lab, lab.server)
            out = run(rounds)
            # The server namespace's resets: each upstream-rst connection must really be reset.
            resets = tcp_out_resets(lab, lab.server) - resets_before
            assert out["done"] == rounds and not out["errors"], out
            # `slow`: connections the client had to give up on after 10 s.
            assert out["slow"] == 0, (mode, out)
            after = settled_usage(pid, before[0])
            figures.append("%s: rounds=%d slow=%d%s fds=%d->%d rss_kib=%d->%d" % (
                mode, rounds, out["slow"], " server_resets=%d" % resets if mode == "upstream-rst" else "",
                before[0], after[0], before[1], after[1]))
            if mode == "upstream-rst":
                assert resets >= rounds, (resets, rounds)
            assert after[0] <= before[0], (mode, before, after)
            # Memory: allow allocator noise, not growth per connection.
            assert after[1] - before[1] <= 16 * 1024, (mode, before, after)
            assert pid == g.worker_for(policy), "the worker was restarted: %s" % g.log()
        print("\nchaos faults: " + " ".join(figures))
        assert server_err.read_text(errors="replace") == ""
    finally:
        _stop_process(resetting)


def test_chaos_bulk_each_way_through_one_connection(lab, tls_server, plain_client, gateway, gateway_dir):
    size = (1 << 30) if LONG else (64 << 20)
    tls_server("good", "198.19.0.10")
    gateway({"web": gateway_policy(["198.19.0.10/32"], gateway_dir / "root.pem")})
    t0 = time.monotonic()
    res = plain_client("198.19.0.10", nbytes=size, timeout=600 if LONG else 120)[0]
    seconds = time.monotonic() - t0
    print("\nchaos bulk: bytes_each_way=%d seconds=%.1f MiB_per_s_each_way=%.1f sha256_ok=%s"
          % (size, seconds, size / (1 << 20) / seconds, res["recv_sha256"] == res["sent_sha256"]))
    assert res["error"] is None, res
    assert res["recv_len"] == size and res["recv_sha256"] == res["sent_sha256"], res


# --------------------------------------------------------------------------- many connections, soak

HOLD_CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hold_client.py")
SOAK_CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "soak_client.py")
NGINX_ADDR, NGINX_PORT = "198.19.0.10", 8446
KA_BODY = "0123456789" * 10
BIG_SIZE = 4 << 20


def big_file_bytes():
    """The /big page: 4 MiB of a known pattern (the soak's bulk answers are compared with it)."""
    return bytes(range(256)) * (BIG_SIZE // 256)


@pytest.fixture(scope="module")
def chaos_nginx(lab, pki, tmp_path_factory):
    """nginx in the server namespace on 198.19.0.10:8446 (TLS, good.test), sized for 10,000+
    held keep-alive connections: /ka (100 bytes), /big (4 MiB), /upload (a body sink, 204)."""
    if shutil.which("nginx") is None and shutil.which("nginx", path="/usr/sbin") is None:
        unavailable("needs `nginx` (run Scripts/setup.sh)")
    run = tmp_path_factory.mktemp("chaos-nginx")
    (run / "www").mkdir()
    (run / "tmp").mkdir()
    (run / "www" / "big").write_bytes(big_file_bytes())
    conf = run / "nginx.conf"
    conf.write_text("""
user root;
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 19000; }}
http {{
  access_log off;
  client_body_temp_path {run}/tmp; proxy_temp_path {run}/tmp; fastcgi_temp_path {run}/tmp;
  uwsgi_temp_path {run}/tmp; scgi_temp_path {run}/tmp;
  default_type application/octet-stream;
  keepalive_timeout 900s;
  keepalive_requests 10000000;
  server {{
    listen {addr}:{port} ssl backlog=4096;
    ssl_certificate {pki}/good-chain.pem; ssl_certificate_key {pki}/good.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    root {run}/www;
    location = /ka {{ return 200 "{body}"; }}
    location = /upload {{ client_max_body_size 0; return 204; }}
  }}
}}
""".format(run=run, pki=pki, addr=NGINX_ADDR, port=NGINX_PORT, body=KA_BODY))
    proc = start_nginx(lab, conf, NGINX_ADDR, NGINX_PORT)
    yield proc
    _stop_process(proc)


@contextlib.contextmanager
def raised_nofile(n):
    """RLIMIT_NOFILE of this process (so of the gateway, its workers and the clients it
    starts meanwhile) raised to n if it may (CAP_SYS_RESOURCE), else to its hard limit;
    restored after. Yields the limit set."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(n, old[0]), max(n, old[1])))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (old[1], old[1]))
    try:
        yield resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


def read_json_line(proc, timeout):
    """The next stdout line of proc as JSON (bounded)."""
    r, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if r else b""
    assert line.strip(), "no answer within %.0fs: %s" % (timeout, proc.stderr.read1().decode(errors="replace")
                                                        if proc.poll() is not None else "still running")
    return json.loads(line)


def hold(lab, count, timeout):
    """hold_client in the client namespace: returns (its first report, close()); close()
    closes every connection and returns its final report."""
    proc = _popen(lab.exec_argv(lab.client, [PY, HOLD_CLIENT, NGINX_ADDR, "80", str(count), "--expect", KA_BODY,
                                             "--timeout", str(timeout), "--hold-max", str(timeout + 120)]),
                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = read_json_line(proc, timeout + 30)

    def close():
        try:
            proc.stdin.write(b"close\n")
            proc.stdin.flush()
            return read_json_line(proc, 60)
        finally:
            _stop_process(proc)
    return first, close


def netstat_counter(lab, ns, name):
    """A TcpExt counter of the namespace (/proc/net/netstat), e.g. ListenOverflows."""
    lines = [l.split() for l in lab.run(ns, ["cat", "/proc/net/netstat"]).stdout.splitlines()
             if l.startswith("TcpExt:")]
    return int(lines[1][lines[0].index(name)])


def test_chaos_many_concurrent_connections_through_one_worker(lab, chaos_nginx, gateway, gateway_dir):
    target = int(os.environ.get("CHAOS_HOLD_CONNECTIONS", HOLD_CONNECTIONS))
    with raised_nofile(2 * target + 4096) as nofile:
        # The worker holds two sockets per relayed connection: where the descriptor limit
        # cannot be raised (no CAP_SYS_RESOURCE), as many as fit below it.
        count = min(target, (nofile - 128) // 2)
        if count < min(target, 2000):
            unavailable("RLIMIT_NOFILE %d cannot be raised (no CAP_SYS_RESOURCE): too few for %d connections"
                        % (nofile, min(target, 2000)))
        g = gateway({"web": gateway_policy(["%s/32" % NGINX_ADDR], gateway_dir / "root.pem", upstream_port=NGINX_PORT,
                                           extra="\n[limits]\nmax_connections = %d\n" % count)})
        pid = g.worker_for("web")
        # The worker's accept queue (ss: Send-Q of the listening socket) is the supervisor's
        # 4096, not NIO's default 128 (which overflowed under this scenario's connects).
        port = g.listen_port("web")
        listening = lab.run(lab.gw, ["ss", "-Hltn", "sport = :%d" % port]).stdout.split()
        warm, close = hold(lab, 50, 60)            # warm-up: lazily made pools and descriptors
        assert close()["closed"] == 50 and warm["ok"] == 50, warm
        time.sleep(1.0)
        before = worker_usage(pid)
        overflows = netstat_counter(lab, lab.gw, "ListenOverflows")
        first, close = hold(lab, count, 240)
        held = worker_usage(pid)
        overflows = netstat_counter(lab, lab.gw, "ListenOverflows") - overflows
        time.sleep(2.0)
        last = close()
        after = settled_usage(pid, before[0], timeout=60)
        # glibc keeps the freed memory (RSS stays near the peak): a second round must reuse
        # it, not grow (a leak of the ~24 KiB per connection would show at once).
        again = count if LONG else min(count, 2000)
        second, close = hold(lab, again, 240)
        held2 = worker_usage(pid)
        close()
        after2 = settled_usage(pid, before[0], timeout=60)
    per_conn = (held[1] - before[1]) / max(first["ok"], 1)
    print("\nchaos %d-connections: target=%d nofile=%d backlog=%s ok=%d refused=%d failed=%d open_seconds=%.1f"
          " listen_overflows=%d dropped_while_held=%d worker_fds=%d->%d->%d worker_rss_kib=%d->%d->%d"
          " rss_per_connection_kib=%.1f; again %d: ok=%d worker_fds=%d->%d worker_rss_kib=%d->%d"
          % (count, target, nofile, listening[2], first["ok"], first["refused"], first["failed"],
             first["open_seconds"], overflows, last["dropped_while_held"], before[0], held[0], after[0], before[1],
             held[1], after[1], per_conn, again, second["ok"], held2[0], after2[0], held2[1], after2[1]))
    assert int(listening[2]) >= 1024, listening
    assert first["ok"] == count and first["refused"] == 0 and first["failed"] == 0, first
    # At most 256 connects are pending at a time: the queue never overflows.
    assert overflows == 0, overflows
    assert last["dropped_while_held"] == 0 and last["closed"] == count, last
    assert held[0] >= before[0] + 2 * count, (before, held)      # a client and an upstream socket each
    assert after[0] <= before[0], (before, after)
    assert second["ok"] == again and after2[0] <= before[0], (second, before, after2)
    assert max(held2[1], after2[1]) <= max(held[1], after[1]) + 8 * 1024, (held, after, held2, after2)
    # Every connection ended and was logged (the worker's bookkeeping lags the sockets).
    g.wait_records("connection closed", 50 + count + again, timeout=60, policy="web")
    assert pid == g.worker_for("web"), "the worker was restarted: %s" % g.log()


def rss_kib(pid):
    return worker_usage(pid)[1]


def median(values):
    v = sorted(values)
    return (v[len(v) // 2] + v[(len(v) - 1) // 2]) / 2


def flat(series, warmup):
    """The soak's criterion: after the warm-up samples, the median of the last third is at
    most 10 % (or 2 MiB, whichever is more) above the median of the first third. Returns
    (first-third median, last-third median, flat?)."""
    s = series[warmup:]
    third = max(len(s) // 3, 1)
    first, last = median(s[:third]), median(s[-third:])
    return first, last, last <= first + max(first * 0.10, 2048)


def test_chaos_soak_mixed_load_rss_flat(lab, chaos_nginx, gateway, gateway_dir):
    seconds, interval, warmup = (600, 10, 6) if LONG else (SOAK_SHORT_SECONDS, 10, 1)
    g = gateway({"web": gateway_policy(["%s/32" % NGINX_ADDR], gateway_dir / "root.pem", upstream_port=NGINX_PORT)})
    sup, pid = g.proc.pid, g.worker_for("web")
    proc = _popen(lab.exec_argv(lab.client, [PY, SOAK_CLIENT, NGINX_ADDR, "80", str(seconds), "--ka-body", KA_BODY,
                                             "--big-sha256", hashlib.sha256(big_file_bytes()).hexdigest(),
                                             "--big-size", str(BIG_SIZE)]),
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    samples = []      # (seconds, supervisor RSS KiB, worker RSS KiB)
    while proc.poll() is None and time.monotonic() - t0 < seconds + 0.5:
        samples.append((time.monotonic() - t0, rss_kib(sup), rss_kib(pid)))
        time.sleep(max(0.0, t0 + len(samples) * interval - time.monotonic()))
    out, err = proc.communicate(timeout=120)
    _stop_process(proc)
    assert out.strip(), err.decode(errors="replace")
    res = json.loads(out)
    sup_first, sup_last, sup_flat = flat([s[1] for s in samples], warmup)
    w_first, w_last, w_flat = flat([s[2] for s in samples], warmup)
    print("\nchaos soak: seconds=%d requests=%s refused=%d failed=%d reconnects=%d" % (
        seconds, "/".join("%s:%d" % kv for kv in res["requests"].items()), res["refused"], res["failed"],
        res["reconnects"]))
    print("chaos soak rss_kib (t supervisor worker): " + " ".join("%d:%d:%d" % s for s in samples))
    print("chaos soak flat: supervisor %d->%d %s, worker %d->%d %s (last-third median vs first-third median after"
          " %d s warm-up, at most +10%% or +2 MiB)" % (sup_first, sup_last, sup_flat, w_first, w_last, w_flat,
                                                      warmup * interval))
    assert res["refused"] == 0 and res["failed"] == 0, res
    assert all(n > 0 for n in res["requests"].values()), res
    assert len(samples) >= seconds // interval, samples
    assert sup_flat and w_flat, samples
    assert pid == g.worker_for("web"), "the worker was restarted: %s" % g.log()
