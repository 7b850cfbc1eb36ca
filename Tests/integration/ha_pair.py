#!/usr/bin/python3
"""Two tlsgate gateways sharing the LAN's gateway address with keepalived (VRRP), in the lab
of Scripts/ha-lab.sh; used by Scripts/ha-demo.sh and Tests/integration/test_ha.py (Python 3
stdlib only, root).

Each gateway namespace runs `tlsgate run` (its own config folder) and keepalived (its own
config, pid files and log): one VRRP instance on the LAN interface holding 198.18.0.1 (the
clients' default gateway) and 198.19.0.1 (the server side's), gw1 priority 150, gw2 100,
VRRPv3 advertisements every 0.5 s; `track_script` runs Scripts/ha-check.sh every second,
so a dead tlsgate (or one without its table) sends the instance to FAULT and the address to
the other gateway; a LAN link that goes down does the same (keepalived tracks its interface).

The server namespace runs a TLS echo server on 198.19.0.10:443 (the test PKI) and a plain
listener on 198.19.0.10:80, the match port: it counts every connection and byte that reaches
it in clear, which must stay 0. The client namespace loops short connections to
198.19.0.10:80, i.e. through whichever gateway holds 198.18.0.1.

  ha_pair.py demo [--prefix P] [--scenario kill|link] [--tlsgate PATH]

Every process it starts is ended by PID; every wait is bounded.
"""
import argparse
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
HA_LAB = REPO / "Scripts" / "ha-lab.sh"
HA_CHECK = REPO / "Scripts" / "ha-check.sh"
PKI_SH = REPO / "Scripts" / "make-test-pki.sh"
ECHO_SERVER = HERE / "tls_echo_server.py"
PY = "/usr/bin/python3"
SERVER = "198.19.0.10"
LAN_VIP = "198.18.0.1"
PUBLIC_VIP = "198.19.0.1"
PUBLIC_ADDRESS = {1: "198.19.0.2", 2: "198.19.0.3"}
PRIORITY = {1: 150, 2: 100}

PLAIN_LISTENER = textwrap.dedent("""
    import socket, sys, threading, time
    host, port, log, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port)); s.listen(64); s.settimeout(0.5)
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    def drain(c, peer):
        c.settimeout(2); n = 0
        try:
            while True:
                b = c.recv(65536)
                if not b: break
                n += len(b)
        except OSError:
            pass
        with open(log, "a") as f: f.write("accept %s:%d bytes=%d\\n" % (peer[0], peer[1], n))
        c.close()
    while time.monotonic() < deadline:
        try:
            c, peer = s.accept()
        except socket.timeout:
            continue
        with open(log, "a") as f: f.write("accept %s:%d\\n" % peer[:2])
        threading.Thread(target=drain, args=(c, peer), daemon=True).start()
""")

CLIENT_LOOP = textwrap.dedent("""
    import json, socket, sys, time
    host, port, seconds, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
        t0 = time.monotonic(); rec = {"n": n, "t0": t0, "ok": False, "error": None}
        msg = b"ping %d\\n" % n
        try:
            s = socket.create_connection((host, port), timeout=0.5)
            s.settimeout(1.0)
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                b = s.recv(4096)
                if not b: break
                got += b
            s.close()
            rec["ok"] = got == msg
            if not rec["ok"]: rec["error"] = "short echo %r" % got
        except OSError as e:
            rec["error"] = type(e).__name__
        rec["t1"] = time.monotonic()
        print(json.dumps(rec), flush=True)
        time.sleep(interval)
""")


def keepalived_conf(prefix, index, check):
    return textwrap.dedent("""\
        global_defs {
            router_id tlsgate-gw%(i)d
            vrrp_version 3
            script_user root
            vrrp_garp_master_repeat 3
            vrrp_garp_master_delay 1
        }
        vrrp_script tlsgate_serving {
            script "%(script)s %(check)s"
            interval 1
            timeout 1
            fall 1
            rise 2
        }
        vrrp_instance lan {
            state BACKUP
            interface %(prefix)sgl
            virtual_router_id 51
            priority %(priority)d
            advert_int 0.5
            virtual_ipaddress {
                %(lan_vip)s/24 dev %(prefix)sgl
                %(public_vip)s/24 dev %(prefix)sgp
            }
            track_interface {
                %(prefix)sgp
            }
            track_script {
                tlsgate_serving
            }
        }
        """) % {"i": index, "prefix": prefix, "priority": PRIORITY[index], "script": HA_CHECK, "check": check,
                "lan_vip": LAN_VIP, "public_vip": PUBLIC_VIP}


def tlsgate_conf(control_socket):
    # Each gateway its own control socket: two on one host must not share /run/tlsgate's
    # (the second one would refuse to start).
    return ('policies = "policies"\nuser = "tlsgate"\n\n[intercept]\nmode = "redirect"\nfrom = ["198.18.0.0/24"]\n'
            'guard_file = ""\n\n[workers]\ndrain_timeout = "2s"\n\n[admin]\ncontrol_socket = "%s"\n' % control_socket)


def policy(ca):
    return ('[match]\nnetworks = ["%s/32"]\nport = 80\n\n[upstream]\nport = 443\nserver_name = "good.test"\n'
            'connect_timeout = "3s"\n\n[tls]\ntrust = "%s"\n' % (SERVER, ca))


class Pair:
    """The HA lab and everything running in it. `stop()` ends it all (by PID) and removes
    the namespaces, configs and pid files."""

    def __init__(self, prefix, tlsgate, workdir=None):
        self.prefix, self.tlsgate = prefix, str(tlsgate)
        self.work = Path(workdir or tempfile.mkdtemp(prefix="tlsgate-ha-%s" % prefix, dir="/tmp"))
        self.work.chmod(0o755)
        self.procs = []          # (name, Popen), ended in reverse order
        self.gateways = {}       # index -> Popen of `tlsgate run`
        self.logs = {}

    # -- plumbing
    def ns(self, name):
        return self.prefix + name

    def argv(self, ns, argv):
        return ["ip", "netns", "exec", self.ns(ns)] + [str(a) for a in argv]

    def run(self, ns, argv, timeout=20, check=True):
        return subprocess.run(self.argv(ns, argv), capture_output=True, text=True, timeout=timeout, check=check)

    def popen(self, name, ns, argv, log=None, **kw):
        out = open(log, "ab") if log else subprocess.DEVNULL
        try:
            p = subprocess.Popen(self.argv(ns, argv), stdin=subprocess.DEVNULL, stdout=kw.pop("stdout", out),
                                 stderr=subprocess.STDOUT if log else subprocess.DEVNULL, **kw)
        finally:
            if log:
                out.close()
        self.procs.append((name, p))
        if log:
            self.logs[name] = Path(log)
        return p

    def up(self):
        r = subprocess.run(["bash", str(HA_LAB), "up", "--prefix", self.prefix], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise RuntimeError("ha-lab.sh up failed:\n" + r.stdout + r.stderr)

    def stop(self):
        for name, p in reversed(self.procs):
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=5)
                except ProcessLookupError:
                    pass
        self.procs = []
        subprocess.run(["bash", str(HA_LAB), "down", "--prefix", self.prefix], capture_output=True, timeout=60)
        shutil.rmtree(self.work, ignore_errors=True)

    # -- the pieces
    def start_server(self, pki):
        accept_log = self.work / "echo-accept.log"
        echo = self.popen("echo", "server", [PY, ECHO_SERVER, "--cert", Path(pki) / "good-chain.pem", "--key",
                                             Path(pki) / "good.key", "--bind", SERVER, "--port", "443",
                                             "--accept-log", accept_log, "--max-seconds", "600"],
                          stdout=subprocess.PIPE)
        wait_line(echo, "TLS echo server")
        self.echo_log = accept_log
        self.plain_log = self.work / "plain-80.log"
        plain = self.popen("plain", "server", [PY, "-c", PLAIN_LISTENER, SERVER, "80", self.plain_log, "600"],
                           stdout=subprocess.PIPE)
        wait_line(plain, "plain listener")

    def start_gateway(self, index, pki):
        root = self.work / ("gw%d" % index)
        (root / "policies").mkdir(parents=True)
        shutil.copy(Path(pki) / "root.pem", root / "root.pem")
        (root / "tlsgate.toml").write_text(tlsgate_conf(root / "control.sock"))
        (root / "policies" / "ha.toml").write_text(policy(root / "root.pem"))
        for p in (root, root / "policies"):
            p.chmod(0o755)
        for f in (root / "root.pem", root / "tlsgate.toml", root / "policies" / "ha.toml"):
            f.chmod(0o644)
        log = root / "tlsgate.log"
        p = self.popen("tlsgate-gw%d" % index, "gw%d" % index, [self.tlsgate, "run", "--config", root / "tlsgate.toml"],
                       log=log)
        (root / "tlsgate.pid").write_text("%d\n" % p.pid)
        self.gateways[index] = p
        wait_for(lambda: "gateway started" in log.read_text(errors="replace"), 30,
                 lambda: "gw%d: tlsgate did not start:\n%s" % (index, log.read_text(errors="replace")),
                 alive=p)
        return p

    def start_keepalived(self, index):
        root = self.work / ("gw%d" % index)
        conf = root / "keepalived.conf"
        # The check the README recommends: `tlsgate status` through this gateway's control socket.
        conf.write_text(keepalived_conf(self.prefix, index, "--config %s %s" % (root / "tlsgate.toml", self.tlsgate)))
        self.popen("keepalived-gw%d" % index, "gw%d" % index,
                   ["keepalived", "--dont-fork", "--log-console", "--log-detail", "--vrrp", "--use-file", conf,
                    "--pid", root / "keepalived.pid", "--vrrp_pid", root / "vrrp.pid"],
                   log=root / "keepalived.log")

    def holder(self):
        """The gateway index holding the LAN virtual address, or None."""
        for index in (1, 2):
            r = self.run("gw%d" % index, ["ip", "-4", "-o", "addr", "show", "dev", self.prefix + "gl"], check=False)
            if " %s/" % LAN_VIP in r.stdout:
                return index
        return None

    def start_pair(self, pki):
        self.start_server(pki)
        for index in (1, 2):
            self.start_gateway(index, pki)
        for index in (1, 2):
            self.start_keepalived(index)
        wait_for(lambda: self.holder() == 1, 15, lambda: "gw1 never became MASTER:\n" + self.log("keepalived-gw1"))

    def client_loop(self, seconds, interval=0.05):
        return self.popen("client-loop", "client", [PY, "-c", CLIENT_LOOP, SERVER, "80", seconds, interval],
                          stdout=subprocess.PIPE, text=True)

    def log(self, name):
        path = self.logs.get(name)
        return path.read_text(errors="replace") if path and path.exists() else ""

    def plain_seen(self):
        """Connections (and bytes) that reached the server's match port in clear."""
        return self.plain_log.read_text().splitlines() if self.plain_log.exists() else []

    def upstream_peers(self):
        """The gateway addresses the TLS server saw connections from, in order."""
        out = []
        for line in (self.echo_log.read_text().splitlines() if self.echo_log.exists() else []):
            parts = line.split()
            if parts and parts[0] == "accept":
                out.append(parts[1].rsplit(":", 1)[0])
        return out

    # -- the failover
    def failover(self, scenario, before=3.0, after=7.0):
        """Runs the client loop, breaks the MASTER (gw1) after `before` seconds — kill -9 of
        its tlsgate, or its LAN link down — and returns the measurements."""
        assert self.holder() == 1
        loop = self.client_loop(before + after)
        time.sleep(before)
        t_break = time.monotonic()
        if scenario == "kill":
            gw = self.gateways[1]
            gw.send_signal(signal.SIGKILL)
            gw.wait(timeout=10)
        elif scenario == "link":
            self.run("gw1", ["ip", "link", "set", self.prefix + "gl", "down"])
        else:
            raise ValueError(scenario)
        out, _ = loop.communicate(timeout=before + after + 30)
        records = [json.loads(l) for l in out.splitlines() if l.strip()]
        ok_before = [r for r in records if r["ok"] and r["t1"] < t_break]
        ok_after = [r for r in records if r["ok"] and r["t0"] >= t_break]
        failed = [r for r in records if not r["ok"]]
        switch = (min(r["t1"] for r in ok_after) - t_break) if ok_after else None
        return {
            "scenario": scenario, "attempts": len(records), "ok_before": len(ok_before), "ok_after": len(ok_after),
            "failed": len(failed), "switch_s": switch, "holder": self.holder(),
            "plain_seen": self.plain_seen(), "peers": self.upstream_peers(),
        }


def wait_line(proc, what, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (what, proc.returncode))
        r, _, _ = select.select([proc.stdout], [], [], 0.2)
        if r and b"ready" in proc.stdout.readline():
            return
    raise RuntimeError("%s not ready within %ds" % (what, timeout))


def wait_for(predicate, timeout, message, alive=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if alive is not None and alive.poll() is not None:
            break
        time.sleep(0.1)
    if not predicate():
        raise RuntimeError(message())


def demo(args):
    if os.geteuid() != 0:
        print("ha_pair.py: needs root (network namespaces, nftables, keepalived)", file=sys.stderr)
        return 1
    pair = Pair(args.prefix, args.tlsgate)
    try:
        pair.up()
        pki = pair.work / "pki"
        subprocess.run(["bash", str(PKI_SH), str(pki)], check=True, capture_output=True, timeout=60)
        pair.start_pair(pki)
        print("ha-demo: gw1 is MASTER (holds %s); client loops through it" % LAN_VIP)
        result = pair.failover(args.scenario)
        what = "kill -9 of gw1's tlsgate" if args.scenario == "kill" else "gw1's LAN link down"
        switch = "%.2f s" % result["switch_s"] if result["switch_s"] is not None else "never"
        print("ha-demo: %s: new connections flow through gw%s after %s (attempts=%d ok_before=%d ok_after=%d "
              "failed=%d); plain-text connections at the server's port 80: %d"
              % (what, result["holder"], switch, result["attempts"], result["ok_before"], result["ok_after"],
                 result["failed"], len(result["plain_seen"])))
        good = (result["switch_s"] is not None and result["switch_s"] <= 3.0 and not result["plain_seen"]
                and result["holder"] == 2)
        return 0 if good else 1
    finally:
        pair.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo")
    d.add_argument("--prefix", default="thd-")
    d.add_argument("--scenario", choices=["kill", "link"], default="kill")
    d.add_argument("--tlsgate", default=os.environ.get("TLSGATE_BIN", str(REPO / ".build" / "debug" / "tlsgate")))
    args = ap.parse_args()
    return demo(args)


if __name__ == "__main__":
    sys.exit(main())
