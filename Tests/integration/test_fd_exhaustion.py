"""A worker out of file descriptors pauses accepting instead of spinning or crashing,
says so once, and serves the queued connections when descriptors come back.
Needs root (network namespaces, nftables, prlimit on another process)."""
import socket
import subprocess
import textwrap
import time


def _cpu_seconds(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(subprocess.check_output(["getconf", "CLK_TCK"]).strip())


CLIENT = textwrap.dedent("""
    import socket, sys, time
    socks = []
    for i in range(60):
        s = socket.create_connection(("198.19.0.10", 80), timeout=5)
        s.sendall(b"x")
        socks.append(s)
    time.sleep(4)                 # the worker is out of descriptors for part of them
    for s in socks[:20]:          # give descriptors back
        s.settimeout(5)
        assert s.recv(10) == b"x"
        s.close()
    late = 0
    for s in socks[20:]:          # each one served frees room for the next queued one
        s.settimeout(10)
        if s.recv(10) == b"x":
            late += 1
        s.close()
    print(late)
""")


def test_descriptor_exhaustion_pauses_accepting(lab, tls_server, worker, redirect, listen_port):
    tls_server("good", "198.19.0.10")
    w = worker(listen_port, networks=["198.19.0.10/32"], connect_timeout="30s")
    pid = w.proc.pid
    # About 26 relayed connections fit in 64 descriptors (two each, plus the worker's own).
    subprocess.run(["prlimit", "--pid", str(pid), "--nofile=64:64"], check=True, timeout=10)
    redirect(listen_port)
    cpu_before = _cpu_seconds(pid)
    started = time.monotonic()
    r = lab.run(lab.client, ["/usr/bin/python3", "-c", CLIENT], timeout=90)
    elapsed = time.monotonic() - started
    cpu = _cpu_seconds(pid) - cpu_before
    # Every connection was served in the end, the queued ones included.
    assert r.stdout.strip() == "40", r.stdout + r.stderr
    assert w.proc.poll() is None, "worker died"
    log = w.log_text()
    assert log.count("cannot accept: out of file descriptors") == 1, log
    assert "accepting again" in log, log
    # Paused, not spinning: well under a core for the seconds it was starved.
    assert cpu < 0.5 * elapsed, "worker used %.1fs CPU in %.1fs" % (cpu, elapsed)
