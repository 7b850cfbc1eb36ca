"""The Debian package: Scripts/package-deb.sh builds it (release, Swift runtime linked
statically), `dpkg -i` installs it on this machine, the installed binary checks the
installed config, the unit verifies, and `dpkg --purge` removes it again (the accounts stay).

Needs root and dpkg (a Debian machine, as CI is). It installs into the real system, so it
refuses to run where a tlsgate package is already installed.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, unavailable


def run(argv, timeout=120, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kw)


def test_package_builds_installs_checks_and_purges(tmp_path):
    if os.geteuid() != 0:
        unavailable("needs root: installs the package with dpkg -i")
    if shutil.which("dpkg-deb") is None:
        unavailable("needs dpkg-deb (a Debian machine)")
    if run(["dpkg-query", "-W", "-f=${Status}", "tlsgate"]).stdout.startswith("install ok"):
        unavailable("a tlsgate package is installed on this machine; this test installs and purges its own")
    build = run(["bash", REPO / "Scripts" / "package-deb.sh", "--out", tmp_path], timeout=1500)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    deb = Path(build.stdout.strip().splitlines()[-1])
    assert deb.exists() and deb.name.endswith(".deb"), build.stdout
    info = run(["dpkg-deb", "-f", deb, "Package", "Depends"]).stdout
    assert "Package: tlsgate" in info and "libssl3" in info and "nftables" in info and "conntrack" in info, info
    listing = run(["dpkg-deb", "-c", deb]).stdout
    for path in ("./usr/bin/tlsgate", "./lib/systemd/system/tlsgate.service", "./etc/tlsgate/tlsgate.toml",
                 "./usr/share/man/man8/tlsgate.8.gz", "./etc/tlsgate/policies/http-example.toml",
                 "./usr/lib/tlsgate/ha-check.sh"):
        assert path in listing, listing
    try:
        inst = run(["dpkg", "-i", deb], timeout=300)
        assert inst.returncode == 0, inst.stdout + inst.stderr
        assert run(["getent", "passwd", "tlsgate"]).returncode == 0
        # The workers' account (worker_user's default): a system account, no login, no home.
        worker = run(["getent", "passwd", "tlsgate-worker"])
        assert worker.returncode == 0, "postinst must create tlsgate-worker"
        fields = worker.stdout.strip().split(":")
        assert fields[6] == "/usr/sbin/nologin" and fields[5] == "/nonexistent", fields
        assert int(fields[2]) != int(run(["id", "-u", "tlsgate"]).stdout), fields
        assert not Path("/nonexistent").exists()
        needed = run(["readelf", "-d", "/usr/bin/tlsgate"]).stdout
        assert "libswift" not in needed and "libFoundation" not in needed, needed
        # Runs without the toolchain: no /opt/swift on the library path.
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LD_LIBRARY_PATH": ""}
        check = run(["/usr/bin/tlsgate", "check", "--config", "/etc/tlsgate/tlsgate.toml"], env=env)
        assert check.returncode == 0, check.stdout + check.stderr
        shipped = len(list((REPO / "Policies").glob("*.toml")))
        assert "%d policies OK" % shipped in check.stdout, check.stdout
        conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", "tlsgate"]).stdout
        assert "/etc/tlsgate/tlsgate.toml" in conffiles, conffiles
        if shutil.which("systemd-analyze"):
            verify = run(["systemd-analyze", "verify", "/lib/systemd/system/tlsgate.service"])
            assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        purge = run(["dpkg", "--purge", "tlsgate"], timeout=300)
    assert purge.returncode == 0, purge.stdout + purge.stderr
    assert not Path("/usr/bin/tlsgate").exists() and not Path("/etc/tlsgate").exists()
    assert run(["getent", "passwd", "tlsgate"]).returncode == 0, "the account is kept on purge"
    assert run(["getent", "passwd", "tlsgate-worker"]).returncode == 0, "the workers' account is kept on purge"
