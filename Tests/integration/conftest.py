"""Fixtures for tlsgate's end-to-end tests in a three-namespace lab.

client ns (198.18.0.2, 2001:2::2) --> gw ns (runs `tlsgate worker`, nft redirect)
--> server ns (198.19.0.10..30, 2001:2:0:1::10..30, Python TLS echo servers).

Needs root (network namespaces + nftables) and the worker binary ($TLSGATE_BIN,
default <repo>/.build/debug/tlsgate). Without them the tests are skipped, except
under CI (env CI set), where they fail.
"""
import atexit
import itertools
import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import tempfile
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LAB_SH = REPO / "Scripts" / "lab.sh"
PKI_SH = REPO / "Scripts" / "make-test-pki.sh"
ECHO_SERVER = HERE / "tls_echo_server.py"
PLAIN_CLIENT = HERE / "plain_client.py"
PY = "/usr/bin/python3"
TLSGATE_BIN = Path(os.environ.get("TLSGATE_BIN", str(REPO / ".build" / "debug" / "tlsgate")))

IN_CI = bool(os.environ.get("CI"))

# Every process this harness starts, so teardown (even after Ctrl-C) can end it by PID.
_started = []


def unavailable(reason):
    """Skip locally, fail in CI: a missing requirement must never pass silently there."""
    if IN_CI:
        pytest.fail("requirement missing in CI: " + reason, pytrace=False)
    pytest.skip(reason)


def _stop_process(proc, term_timeout=5.0):
    """SIGTERM, then SIGKILL after term_timeout; by PID only."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout=term_timeout)
    except subprocess.TimeoutExpired:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
        return proc.wait(timeout=5)


def _stop_all_started():
    while _started:
        p = _started.pop()
        try:
            _stop_process(p, 3.0)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(_stop_all_started)


def _popen(argv, **kw):
    p = subprocess.Popen(argv, **kw)
    _started.append(p)
    return p


def pytest_configure(config):
    # SIGTERM (e.g. from a CI timeout) becomes KeyboardInterrupt, so pytest still runs
    # fixture teardown: lab down, nft table removed, processes stopped.
    def _on_term(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    try:
        signal.signal(signal.SIGTERM, _on_term)
    except ValueError:
        pass


# --------------------------------------------------------------------------- requirements

def _require_root():
    if os.geteuid() != 0:
        unavailable("needs root: network namespaces + nftables")
    for tool in ("ip", "nft", "openssl"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            unavailable("needs the `%s` tool (run Scripts/setup.sh)" % tool)


def _require_worker():
    if not TLSGATE_BIN.exists():
        unavailable("worker binary not found: %s (run `swift build`, or set TLSGATE_BIN)" % TLSGATE_BIN)
    try:
        r = subprocess.run([str(TLSGATE_BIN), "worker", "--help"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        unavailable("cannot run %s worker --help: %s" % (TLSGATE_BIN, e))
    helptext = (r.stdout + r.stderr).decode(errors="replace")
    # ArgumentParser answers `--help` with exit 0 even for an unknown subcommand, so also
    # require that the help is the worker's own (it documents --policy).
    if r.returncode != 0 or "--policy" not in helptext:
        unavailable("%s has no working `worker` subcommand (`worker --help` exited %d without "
                    "documenting --policy)" % (TLSGATE_BIN, r.returncode))


# --------------------------------------------------------------------------- lab

class Lab:
    def __init__(self, prefix):
        self.prefix = prefix
        self.client = prefix + "client"
        self.gw = prefix + "gw"
        self.server = prefix + "server"
        self.lan_if = prefix + "gl"      # gateway's LAN veth
        self.public_if = prefix + "gp"
        self.client_v4, self.gw_lan_v4 = "198.18.0.2", "198.18.0.1"
        self.client_v6, self.gw_lan_v6 = "2001:2::2", "2001:2::1"

    def exec_argv(self, ns, argv):
        return ["ip", "netns", "exec", ns] + [str(a) for a in argv]

    def run(self, ns, argv, timeout=30, check=True, **kw):
        return subprocess.run(self.exec_argv(ns, argv), timeout=timeout, check=check,
                              capture_output=True, text=True, **kw)


def _cleanup_stale_labs():
    """Remove labs left by earlier runs of this harness that died (prefix t<PID>-)."""
    try:
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return
    for pid in sorted({m.group(1) for m in re.finditer(r"^t(\d+)-(?:client|gw|server)\b", out, re.M)}):
        if not Path("/proc", pid).exists():
            subprocess.run(["bash", str(LAB_SH), "down", "--prefix", "t%s-" % pid],
                           capture_output=True, timeout=30)


@pytest.fixture(scope="session")
def lab():
    _require_root()
    _cleanup_stale_labs()
    prefix = "t%d-" % os.getpid()
    r = subprocess.run(["bash", str(LAB_SH), "up", "--prefix", prefix],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        subprocess.run(["bash", str(LAB_SH), "down", "--prefix", prefix], capture_output=True, timeout=60)
        pytest.fail("lab.sh up failed:\n%s%s" % (r.stdout, r.stderr), pytrace=False)
    try:
        yield Lab(prefix)
    finally:
        _stop_all_started()
        subprocess.run(["bash", str(LAB_SH), "down", "--prefix", prefix], capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    out = tmp_path_factory.mktemp("pki")
    r = subprocess.run(["bash", str(PKI_SH), str(out)], capture_output=True, text=True, timeout=180)
    if r.returncode != 0:
        pytest.fail("make-test-pki.sh failed:\n%s%s" % (r.stdout, r.stderr), pytrace=False)
    return out


@pytest.fixture(scope="session")
def worker_bin():
    _require_worker()
    return TLSGATE_BIN


_ports = itertools.count(20001)


@pytest.fixture
def listen_port():
    """A fresh worker listen port for each test (no TIME_WAIT interference)."""
    return next(_ports)


# --------------------------------------------------------------------------- TLS echo servers

class EchoServer:
    def __init__(self, proc, bind, port, accept_log):
        self.proc, self.bind, self.port, self.accept_log = proc, bind, port, Path(accept_log)

    def events(self):
        if not self.accept_log.exists():
            return []
        return [l.split() for l in self.accept_log.read_text().splitlines() if l.strip()]

    def accepted(self):
        return [e for e in self.events() if e[0] == "accept"]


def _wait_ready(proc, what, timeout=10.0):
    """Wait (bounded) for a child to print 'ready' on stdout."""
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            if b"ready" in buf:
                return
    err = proc.stderr.read().decode(errors="replace") if proc.poll() is not None else ""
    _stop_process(proc)
    pytest.fail("%s did not become ready within %.0fs: %s %s" % (what, timeout, buf.decode(errors="replace"), err),
                pytrace=False)


@pytest.fixture
def tls_server(lab, pki, tmp_path):
    """tls_server(leaf="good", bind="198.19.0.10", port=443, min_version="1.2",
    max_version="1.3", greeting="") -> EchoServer, stopped at teardown."""
    servers = []

    def start(leaf="good", bind="198.19.0.10", port=443, min_version="1.2", max_version="1.3", greeting=""):
        accept_log = tmp_path / ("server-%s-%s-%d.log" % (leaf, bind.replace(":", "_"), port))
        argv = [PY, ECHO_SERVER, "--cert", pki / ("%s-chain.pem" % leaf), "--key", pki / ("%s.key" % leaf),
                "--bind", bind, "--port", str(port), "--min-version", min_version,
                "--max-version", max_version, "--accept-log", accept_log, "--max-seconds", "300"]
        if greeting:
            argv += ["--greeting", greeting]
        proc = _popen(lab.exec_argv(lab.server, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _wait_ready(proc, "TLS echo server %s:%d (%s)" % (bind, port, leaf))
        s = EchoServer(proc, bind, port, accept_log)
        servers.append(s)
        return s

    yield start
    for s in servers:
        _stop_process(s.proc)


# --------------------------------------------------------------------------- nftables redirect

@pytest.fixture
def redirect(lab, tmp_path):
    """redirect(port, v4="198.19.0.0/24", v6="2001:2:0:1::/64", dport=80): installs table
    inet tlsgate_test in the gw namespace redirecting LAN traffic to :port. Removed at teardown."""
    installed = []

    def install(port, v4="198.19.0.0/24", v6="2001:2:0:1::/64", dport=80):
        rules = []
        if v4:
            rules.append('iifname "%s" ip daddr %s tcp dport %d redirect to :%d' % (lab.lan_if, v4, dport, port))
        if v6:
            rules.append('iifname "%s" ip6 daddr %s tcp dport %d redirect to :%d' % (lab.lan_if, v6, dport, port))
        conf = tmp_path / "redirect.nft"
        conf.write_text(
            "table inet tlsgate_test {}\n"
            "delete table inet tlsgate_test\n"
            "table inet tlsgate_test {\n"
            "  chain prerouting {\n"
            "    type nat hook prerouting priority dstnat; policy accept;\n"
            + "".join("    %s\n" % r for r in rules)
            + "  }\n}\n")
        r = lab.run(lab.gw, ["nft", "-f", conf], check=False)
        if r.returncode != 0:
            pytest.fail("nft -f failed: %s\n%s" % (r.stderr, conf.read_text()), pytrace=False)
        installed.append(True)

    yield install
    if installed:
        lab.run(lab.gw, ["nft", "delete", "table", "inet", "tlsgate_test"], check=False)


# --------------------------------------------------------------------------- worker

_KV = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_text_log_line(line):
    """'TS LEVEL message words key=value key="v a l" ...' -> dict (+ ts, level, msg)."""
    d = {}
    first = _KV.search(line)
    head = line[: first.start()] if first else line
    parts = head.split(None, 2)
    if len(parts) >= 1:
        d["ts"] = parts[0]
    if len(parts) >= 2:
        d["level"] = parts[1]
    if len(parts) >= 3:
        d["msg"] = parts[2].strip()
    for m in _KV.finditer(line):
        v = m.group(2)
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            v = re.sub(r'\\(.)', r'\1', v[1:-1])
        d[m.group(1)] = v
    return d


class Worker:
    def __init__(self, proc, log_path, log_format, listen, policy_path):
        self.proc, self.log_path, self.log_format = proc, Path(log_path), log_format
        self.listen, self.policy_path = listen, policy_path

    def log_text(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def records(self):
        out = []
        for line in self.log_text().splitlines():
            line = line.strip()
            if not line:
                continue
            if self.log_format == "json":
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    out.append({k: (v if isinstance(v, str) else json.dumps(v)) for k, v in rec.items()})
            else:
                out.append(parse_text_log_line(line))
        return out

    def connection_records(self):
        return [r for r in self.records() if "connection closed" in r.get("msg", "")]

    def wait_connections(self, n=1, timeout=15.0):
        """Wait (bounded) until n 'connection closed' lines were logged; returns them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            recs = self.connection_records()
            if len(recs) >= n:
                return recs
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        recs = self.connection_records()
        assert len(recs) >= n, ("expected %d 'connection closed' log lines, got %d (worker %s); log:\n%s"
                                % (n, len(recs), "exited %s" % self.proc.returncode
                                   if self.proc.poll() is not None else "running", self.log_text()))
        return recs

    def stop(self):
        return _stop_process(self.proc, term_timeout=10.0)


def policy_toml(networks, trust, port=80, upstream_port=443, server_name="good.test",
                connect_timeout="2s", min_version="1.2", extra="", upstream_extra=""):
    """A worker policy; `extra` goes at the end of [tls], `upstream_extra` at the end of [upstream]."""
    nets = ", ".join('"%s"' % n for n in networks)
    return ('[match]\nnetworks = [%s]\nport = %d\n\n'
            '[upstream]\nport = %d\nserver_name = "%s"\nconnect_timeout = "%s"\n%s\n'
            '[tls]\ntrust = "%s"\nmin_version = "%s"\n%s'
            % (nets, port, upstream_port, server_name, connect_timeout, upstream_extra, trust, min_version, extra))


@pytest.fixture
def worker(lab, pki, worker_bin, tmp_path, request):
    """worker(port, networks=["198.19.0.10/32"], listen_host="0.0.0.0", log_format="text",
    policy_name="test", **policy_kwargs) -> Worker started in the gw namespace; stopped at
    teardown (SIGTERM, then SIGKILL). Its stderr goes to a file, shown when a test fails."""
    workers = []

    def start(port, networks=("198.19.0.10/32",), listen_host="0.0.0.0", log_format="text",
              policy_name="test", log_level="info", **policy_kwargs):
        policy = tmp_path / ("%s.toml" % policy_name)
        policy.write_text(policy_toml(list(networks), pki / "root.pem", **policy_kwargs))
        listen = ("[%s]:%d" % (listen_host, port)) if ":" in listen_host else ("%s:%d" % (listen_host, port))
        log_path = tmp_path / ("worker-%d.log" % port)
        argv = [worker_bin, "worker", "--policy", policy, "--listen", listen,
                "--log-format", log_format, "--log-level", log_level]
        logf = open(log_path, "wb")
        try:
            proc = _popen(lab.exec_argv(lab.gw, argv), stdin=subprocess.DEVNULL,
                          stdout=logf, stderr=subprocess.STDOUT)
        finally:
            logf.close()
        w = Worker(proc, log_path, log_format, listen, policy)
        workers.append(w)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if "worker listening" in w.log_text():
                break
            if proc.poll() is not None:
                pytest.fail("worker exited %s before listening: %s\nlog:\n%s"
                            % (proc.returncode, " ".join(shlex.quote(str(a)) for a in argv), w.log_text()),
                            pytrace=False)
            time.sleep(0.1)
        else:
            pytest.fail("worker did not log 'worker listening' within 20s; log:\n" + w.log_text(), pytrace=False)
        return w

    yield start
    for w in workers:
        w.stop()
        # Attach the log to the test report (shown on failure).
        request.node.add_report_section("teardown", "worker log %s" % w.listen, w.log_text())


# --------------------------------------------------------------------------- client

@pytest.fixture
def plain_client(lab):
    """plain_client(host, port=80, nbytes=1024, connections=1, timeout=30, expect_prefix=None,
    read_delay=0, hold=0, send_over=0, background=False, half_close=False) -> list of result dicts (one per
    connection), run in the client namespace. The client keeps its side open and closes once the whole echo
    is back, as real clients do; half_close=True (or hold) half-closes after sending, for the tests about
    half-close. background=True returns a callable that waits for the results."""

    def run(host, port=80, nbytes=1024, connections=1, timeout=30.0, expect_prefix=None, read_delay=0.0,
            hold=0.0, send_over=0.0, background=False, half_close=False):
        argv = [PY, PLAIN_CLIENT, host, str(port), "--bytes", str(nbytes),
                "--connections", str(connections), "--timeout", str(timeout),
                "--read-delay", str(read_delay), "--hold", str(hold)]
        if half_close:
            argv.append("--half-close")
        if send_over:
            argv += ["--send-over", str(send_over)]
        if expect_prefix is not None:
            argv += ["--expect-prefix", expect_prefix]
        if background:
            proc = _popen(lab.exec_argv(lab.client, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)

            def wait():
                try:
                    out, err = proc.communicate(timeout=timeout + 15)
                except subprocess.TimeoutExpired:
                    _stop_process(proc)
                    raise AssertionError("plain_client in background did not finish")
                assert proc.returncode == 0, "plain_client failed (%d): %s" % (proc.returncode, err)
                res = [json.loads(l) for l in out.splitlines() if l.strip()]
                assert len(res) == connections, out + err
                return res

            return wait
        r = lab.run(lab.client, argv, timeout=timeout + 15, check=False)
        assert r.returncode == 0, "plain_client failed (%d): %s" % (r.returncode, r.stderr)
        res = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
        assert len(res) == connections, r.stdout + r.stderr
        return res

    return run


# --------------------------------------------------------------------------- gateway (`tlsgate run`)
#
# The supervisor in the gw namespace, started as root and switching to the account
# "tlsgate" (CAP_NET_ADMIN; CAP_SETUID/SETGID/KILL to run its workers as "tlsgate-worker"). Used by test_gateway.py, test_fail_closed.py, test_chaos.py.

GATEWAY_ACCOUNT = "tlsgate"
# The account the workers run as (worker_user's default), apart from the supervisor's.
WORKER_ACCOUNT = "tlsgate-worker"


def _system_account(name):
    """The system account `name`; created if missing (and left: it is part of an
    installation, like the ones Scripts/setup.sh and Scripts/demo.sh create)."""
    import pwd
    _require_root()
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    r = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", name], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        unavailable("cannot create the account %s: %s" % (name, r.stderr.strip()))
    return pwd.getpwnam(name)


@pytest.fixture(scope="session")
def tlsgate_account():
    """The system account the gateway switches to."""
    return _system_account(GATEWAY_ACCOUNT)


@pytest.fixture(scope="session")
def worker_account():
    """The system account the gateway's workers run as (worker_user's default)."""
    return _system_account(WORKER_ACCOUNT)


def gateway_policy(networks, ca, port=80, upstream_port=443, server_name="good.test", connect_timeout="3s",
                   deny_direct=False, extra=""):
    """A policy file's text for `tlsgate run` (one [match], [upstream], [tls], [firewall])."""
    nets = ", ".join('"%s"' % n for n in networks)
    return ('[match]\nnetworks = [%s]\nport = %d\n\n'
            '[upstream]\nport = %d\nserver_name = "%s"\nconnect_timeout = "%s"\n\n'
            '[tls]\ntrust = "%s"\n\n'
            '[firewall]\ndeny_direct = %s\n%s'
            % (nets, port, upstream_port, server_name, connect_timeout, ca,
               "true" if deny_direct else "false", extra))


def pid_alive(pid):
    """True if pid is a live (non-zombie) process."""
    try:
        text = Path("/proc/%d/stat" % pid).read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # "pid (comm) S ...": the state follows the last ')'.
    return text[text.rindex(")") + 2] != "Z"


def proc_status(pid):
    fields = {}
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


class Gateway:
    """A running (or exited) `tlsgate run` and its log (stderr, workers' lines included)."""

    def __init__(self, lab, proc, log_path, root, log_format="text"):
        self.lab, self.proc, self.log_path, self.root = lab, proc, Path(log_path), root
        self.log_format = log_format
        self.policies = root / "policies"
        self.config = root / "tlsgate.toml"
        self.control_socket = root / "control.sock"

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def records(self, msg=None):
        """Parsed log lines (text format), optionally only those whose message starts with msg."""
        recs = [parse_text_log_line(l) for l in self.log().splitlines() if l.strip()]
        if msg is not None:
            recs = [r for r in recs if r.get("msg", "").startswith(msg)]
        return recs

    def wait_log(self, text, timeout=20.0, count=1):
        """Wait (bounded) until the log contains text count times."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log().count(text) >= count:
                return
            if self.proc.poll() is not None and self.log().count(text) < count:
                break
            time.sleep(0.05)
        if self.log().count(text) >= count:
            return
        raise AssertionError("gateway log never said %r (x%d) within %.0fs; exit %s; log:\n%s"
                             % (text, count, timeout, self.proc.poll(), self.log()))

    def wait_records(self, msg, count, timeout=20.0, **match):
        """Wait (bounded) for count log records with message msg and the given key=values."""
        deadline = time.monotonic() + timeout
        while True:
            recs = [r for r in self.records(msg) if all(r.get(k) == v for k, v in match.items())]
            if len(recs) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(recs) >= count, ("expected %d %r lines with %r, got %d; log:\n%s"
                                    % (count, msg, match, len(recs), self.log()))
        return recs

    def connections(self, **match):
        return [r for r in self.records("connection closed") if all(r.get(k) == v for k, v in match.items())]

    def listen_port(self, policy):
        recs = [r for r in self.records("policy listening") if r.get("policy") == policy]
        return int(recs[-1]["listen_port"]) if recs else None

    def worker_pids(self, policy=None):
        """Every worker pid the supervisor logged as started (for policy), oldest first."""
        return [int(r["pid"]) for r in self.records("worker started")
                if policy is None or r.get("policy") == policy]

    def worker_for(self, policy):
        pids = self.worker_pids(policy)
        return pids[-1] if pids else None

    def wait_workers_listening(self, pids=None, timeout=20.0):
        """Wait (bounded) until each worker (default: every one started) logged
        `worker listening ... pid=PID`, i.e. has dropped its privileges and accepts."""
        pids = set(self.worker_pids() if pids is None else pids)
        deadline = time.monotonic() + timeout
        while True:
            ready = {int(r["pid"]) for r in self.records("worker listening") if r.get("pid", "").isdigit()}
            if pids <= ready or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert pids <= ready, "workers %r never logged 'worker listening'; log:\n%s" % (sorted(pids - ready),
                                                                                        self.log())

    def children(self):
        """The supervisor's live worker processes, from /proc (its other short-lived
        children, e.g. the `nft` it runs to apply the rules, are left out)."""
        pid = self.proc.pid
        out = set()
        for task in Path("/proc/%d/task" % pid).glob("*") if Path("/proc/%d" % pid).exists() else []:
            try:
                out.update(int(p) for p in (task / "children").read_text().split())
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass
        return sorted(p for p in out if pid_alive(p) and _is_worker(p))

    def table(self, name="tlsgate"):
        """`nft list table inet NAME` in the gw namespace (default: the interception table;
        "tlsgate_guard" for the fail-closed guard), or None if there is none."""
        r = self.lab.run(self.lab.gw, ["nft", "list", "table", "inet", name], check=False)
        return r.stdout if r.returncode == 0 else None

    def guard(self):
        return self.table("tlsgate_guard")

    def hup(self):
        self.proc.send_signal(signal.SIGHUP)

    def stop(self, timeout=20.0):
        return _stop_process(self.proc, timeout)


def _is_worker(pid):
    try:
        argv = Path("/proc/%d/cmdline" % pid).read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return len(argv) > 1 and argv[0].endswith(b"tlsgate") and argv[1] == b"worker"


def _is_tlsgate(pid):
    try:
        return b"tlsgate" in Path("/proc/%d/cmdline" % pid).read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.fixture
def gateway_dir(tmp_path, pki, tlsgate_account, worker_account):
    """A 0755 folder the unprivileged gateway and workers (their own account) can read: root.pem (the test CA)
    and policies/. Removed at teardown."""
    _require_worker()
    root = Path(tempfile.mkdtemp(prefix="tlsgate-gw-%d-" % os.getpid(), dir="/tmp"))
    (root / "policies").mkdir()
    shutil.copy(pki / "root.pem", root / "root.pem")
    for p in (root, root / "policies"):
        p.chmod(0o755)
    (root / "root.pem").chmod(0o644)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def gateway(lab, gateway_dir, request):
    """gateway(policies={name: toml}, mode="redirect", user="tlsgate", extra="", wait=True,
    args=(), from_=("198.18.0.0/24", "2001:2::/64"), drain_timeout="10s", admin="", worker_user=None,
    wrapper=()) -> Gateway running
    `tlsgate run` in the gw namespace (stderr to a file, attached to the report).
    `extra` is appended to the config after the [workers] table, `intercept_extra` to [intercept],
    `admin` to the [admin] table, which always sets control_socket inside gateway_dir (so gateways
    of parallel runs never share /run/tlsgate/control.sock; `Gateway.control_socket`).
    `binary` runs another copy of tlsgate (the supervisor spawns its workers from that path).
    `worker_user` adds that top-level key (default: not written, i.e. "tlsgate-worker");
    `wrapper` is prepended to the command (e.g. setpriv, to start it as the unit would).
    Teardown on every path: SIGTERM (then SIGKILL) the supervisor, SIGKILL any worker it
    left, delete the inet tlsgate table and the TPROXY routing rules."""
    running = []

    def start(policies, mode="redirect", user=GATEWAY_ACCOUNT, extra="", wait=True, args=(),
              from_=("198.18.0.0/24", "2001:2::/64"), drain_timeout="10s", intercept_extra="", binary=None,
              admin="", worker_user=None, wrapper=()):
        for name, text in policies.items():
            (gateway_dir / "policies" / ("%s.toml" % name)).write_text(text)
        for f in (gateway_dir / "policies").iterdir():
            f.chmod(0o644)
        user_line = 'user = "%s"\n' % user if user else ""
        if worker_user is not None:
            user_line += 'worker_user = "%s"\n' % worker_user
        (gateway_dir / "tlsgate.toml").write_text(
            'policies = "policies"\n%s\n[intercept]\nmode = "%s"\nfrom = [%s]\n%s\n'
            '[workers]\ndrain_timeout = "%s"\n%s\n[admin]\ncontrol_socket = "%s"\n%s'
            % (user_line, mode, ", ".join('"%s"' % f for f in from_), intercept_extra, drain_timeout, extra,
               gateway_dir / "control.sock", admin))
        (gateway_dir / "tlsgate.toml").chmod(0o644)
        log_path = gateway_dir / ("gateway-%d.log" % len(running))
        with open(log_path, "wb") as logf:
            proc = _popen(lab.exec_argv(lab.gw, list(wrapper) + [binary or TLSGATE_BIN, "run", "--config",
                                                                  gateway_dir / "tlsgate.toml"] + list(args)),
                          stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
        g = Gateway(lab, proc, log_path, gateway_dir)
        running.append(g)
        if wait:
            # The supervisor logs "gateway started" once every worker reported ready; each
            # worker logs "worker listening" once it has dropped its privileges.
            g.wait_log("gateway started")
            g.wait_workers_listening()
        return g

    yield start
    for i, g in enumerate(running):
        g.stop()
        for pid in g.worker_pids():
            if pid_alive(pid) and _is_tlsgate(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        request.node.add_report_section("teardown", "gateway log %d" % i, g.log())
    lab.run(lab.gw, ["nft", "delete", "table", "inet", "tlsgate"], check=False)
    # The fail-closed guard outlives a stopped gateway by design; the next test starts clean.
    lab.run(lab.gw, ["nft", "delete", "table", "inet", "tlsgate_guard"], check=False)
    for fam in ("-4", "-6"):
        for _ in range(4):  # bounded: at most a few leftover rules
            r = lab.run(lab.gw, ["ip", fam, "rule", "del", "fwmark", "0x746c", "lookup", "7468"], check=False)
            if r.returncode != 0:
                break
        lab.run(lab.gw, ["ip", fam, "route", "flush", "table", "7468"], check=False)
