"""The operator-facing surface of `tlsgate`: check, rules, probe, and the README's
reference tables checked against the binary (so the two cannot drift).

Tests that need root (a private mount or network namespace, the lab) say so through
conftest's `unavailable` (skipped locally, failed under CI); the README checks need
only the binary.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import (REPO, TLSGATE_BIN, _require_root, _require_worker, gateway_policy, policy_toml,
                      unavailable)

README = REPO / "README.md"


def tlsgate(*args, timeout=30, **kw):
    return subprocess.run([str(TLSGATE_BIN)] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, **kw)


def write_policy(folder, name, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ("%s.toml" % name)).write_text(text)


LDAP_POLICY = ('[match]\nnetworks = ["198.19.0.2/32"]\nport = 389\n\n'
               '[upstream]\nport = 636\nserver_name = "ldap.test"\non_failure = "http-502"\n')


def in_private_etc(script, setup):
    """Runs `sh -c script` in a private mount namespace whose /etc is an overlay of the
    real one (writes land in a scratch folder, the host's /etc is never touched);
    `setup(upper)` fills the overlay's upper folder first."""
    _require_root()
    if shutil.which("unshare") is None:
        unavailable("needs unshare (util-linux)")
    scratch = Path(tempfile.mkdtemp(prefix="tlsgate-etc-"))
    try:
        upper, work = scratch / "upper", scratch / "work"
        upper.mkdir()
        work.mkdir()
        setup(upper)
        mount = "mount -t overlay overlay -o lowerdir=/etc,upperdir=%s,workdir=%s /etc" % (upper, work)
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               "%s && %s" % (mount, script)], capture_output=True, text=True, timeout=30)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# --------------------------------------------------------------------------- check

def test_check_without_arguments_reads_the_default_config_as_root():
    _require_worker()
    # No /etc/tlsgate/tlsgate.toml: one clear error naming the file and what to do, exit 2.
    missing = in_private_etc("rm -f /etc/tlsgate/tlsgate.toml; exec %s check" % TLSGATE_BIN, lambda upper: None)
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "/etc/tlsgate/tlsgate.toml: no such file" in missing.stderr, missing.stderr
    assert "--config FILE" in missing.stderr and "tlsgate check DIR" in missing.stderr, missing.stderr
    assert "Usage" not in missing.stderr and "USAGE" not in missing.stderr, missing.stderr

    # With one: checked like --config /etc/tlsgate/tlsgate.toml, policies included.
    def install(upper):
        etc = upper / "tlsgate"
        write_policy(etc / "policies", "ldap", LDAP_POLICY)
        (etc / "tlsgate.toml").write_text('policies = "policies"\n[intercept]\nfrom = ["198.18.0.0/24"]\n')

    found = in_private_etc("exec %s check" % TLSGATE_BIN, install)
    assert found.returncode == 0, found.stdout + found.stderr
    assert "config /etc/tlsgate/tlsgate.toml: mode redirect" in found.stdout, found.stdout
    assert "1 policy OK" in found.stdout, found.stdout
    assert "/etc/tlsgate/policies/ldap.toml:8: warning: on_failure" in found.stderr, found.stderr


def test_check_reports_an_unknown_account_as_run_does_as_root(tmp_path):
    _require_worker()
    _require_root()
    write_policy(tmp_path / "policies", "ldap", LDAP_POLICY.replace('on_failure = "http-502"\n', ""))
    config = tmp_path / "tlsgate.toml"
    config.write_text('policies = "policies"\nuser = "nosuchuser"\n[intercept]\nfrom = ["198.18.0.0/24"]\n')
    expected = ('%s:2: user "nosuchuser": no account named "nosuchuser": create it '
                '(useradd --system --no-create-home --shell /usr/sbin/nologin nosuchuser) or name another account' % config)
    check = tlsgate("check", "--config", config)
    assert check.returncode == 2, check.stdout + check.stderr
    assert check.stderr.splitlines() == [expected, "1 error(s) in 1 file(s)"], check.stderr
    # `run` refuses it with the same line, before touching anything (own network namespace
    # all the same, so a regression cannot install rules on this host).
    run = subprocess.run(["unshare", "--net", str(TLSGATE_BIN), "run", "--config", str(config)],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.splitlines()[0] == expected, run.stderr


def test_check_warns_about_http_502_on_a_non_http_port(tmp_path):
    _require_worker()
    write_policy(tmp_path, "ldap", LDAP_POLICY)
    r = tlsgate("check", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr == ('%s/ldap.toml:8: warning: on_failure = "http-502" answers with an HTTP page, but match '
                        'port 389 is not an HTTP port (80, 3128, 8000, 8008, 8080, 8888): its clients cannot read '
                        'it; use "close" or "reset"\n' % tmp_path), r.stderr
    write_policy(tmp_path, "ldap", LDAP_POLICY.replace("port = 389", "port = 8080"))
    r = tlsgate("check", tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stdout + r.stderr


# --------------------------------------------------------------------------- rules

def test_rules_prints_the_script_run_applies(lab, gateway, gateway_dir, pki):
    """`rules` prints what the supervisor gives `nft -f -` (logged at debug as `rules
    applied ruleset=...`), byte for byte but for the kernel-picked listen ports."""
    policies = {
        "web": gateway_policy(["198.19.0.10/32", "2001:2:0:1::10/128"], gateway_dir / "root.pem", deny_direct=True),
        "ldap": gateway_policy(["198.19.0.11/32"], gateway_dir / "root.pem", port=389, upstream_port=636),
    }
    g = gateway(policies, args=("--log-format", "json", "--log-level", "debug"), wait=False)
    g.wait_log("gateway started")
    applied = [json.loads(l)["ruleset"] for l in g.log().splitlines()
               if l.startswith("{") and json.loads(l).get("msg") == "rules applied"]
    assert len(applied) == 1, g.log()
    printed = lab.run(lab.gw, [TLSGATE_BIN, "rules", "--config", g.config], check=False)
    assert printed.returncode == 0, printed.stdout + printed.stderr

    def ports_blank(script):
        return re.sub(r"redirect to :\d+", "redirect to :PORT", script)

    def declarations(script):
        # Without the in-place preamble, which depends on the tables present at the time.
        return [l for l in ports_blank(script).splitlines() if not l.startswith(("flush ", "delete "))]

    assert declarations(printed.stdout) == declarations(applied[0]), (printed.stdout, applied[0])
    # The tables exist now: the script updates them in place and never deletes one (that
    # would unregister their hooks under live traffic).
    lines = printed.stdout.splitlines()
    assert lines[1] == "flush table inet tlsgate", printed.stdout
    assert "flush set inet tlsgate dst_web_v4" in lines and "flush table inet tlsgate_guard" in lines, printed.stdout
    assert not any(l.startswith("delete table") for l in lines), printed.stdout
    # And it is a script nft accepts as it is.
    dry = lab.run(lab.gw, ["nft", "-c", "-f", "-"], input=printed.stdout, check=False)
    assert dry.returncode == 0, dry.stderr


# --------------------------------------------------------------------------- probe

def test_probe_says_a_worker_would_refuse_a_destination_outside_the_policy(lab, pki, tls_server, tmp_path):
    _require_worker()
    tls_server("good", "198.19.0.10")
    policy = tmp_path / "narrow.toml"
    policy.write_text(policy_toml(["198.19.0.11/32"], pki / "root.pem"))
    r = lab.run(lab.gw, [TLSGATE_BIN, "probe", "--policy", policy, "--address", "198.19.0.10"], check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "check destination: REFUSED: 198.19.0.10 is not in the policy's networks (destination_not_in_policy)" \
        in r.stdout, r.stdout
    assert "verdict: ACCEPTED" not in r.stdout, r.stdout
    assert ("verdict: REFUSED: a worker would refuse this destination: 198.19.0.10 is not in the policy's "
            "networks (destination_not_in_policy)") in r.stdout, r.stdout
    # Inside the policy the same server is accepted.
    policy.write_text(policy_toml(["198.19.0.10/32"], pki / "root.pem"))
    ok = lab.run(lab.gw, [TLSGATE_BIN, "probe", "--policy", policy, "--address", "198.19.0.10"], check=False)
    assert ok.returncode == 0 and "verdict: ACCEPTED" in ok.stdout and "check destination" not in ok.stdout, ok.stdout


def test_probe_prints_one_clean_reason_for_a_refused_connection(lab, pki, tmp_path):
    _require_worker()
    policy = tmp_path / "mqtt.toml"
    policy.write_text(policy_toml(["198.19.0.10/32"], pki / "root.pem", port=1883, upstream_port=8883))
    r = lab.run(lab.gw, [TLSGATE_BIN, "probe", "--policy", policy], check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert "check connect: FAILED: 198.19.0.10:8883 refused the connection (connect_refused)" in lines, r.stdout
    assert lines[-1] == "verdict: REFUSED: 198.19.0.10:8883 refused the connection", r.stdout
    assert "errno" not in r.stdout and "error set" not in r.stdout, r.stdout


def test_probe_usage_errors_show_probes_usage(tmp_path):
    _require_worker()
    policy = tmp_path / "two.toml"
    policy.write_text(policy_toml(["198.19.0.10/32", "198.19.0.11/32"], "system"))
    r = tlsgate("probe", "--policy", policy)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Error: the policy covers more than one address: give --address IP" in r.stderr, r.stderr
    assert "Usage: tlsgate probe --policy <file>" in r.stderr, r.stderr
    assert "tlsgate <subcommand>" not in r.stderr and "See 'tlsgate probe --help'" in r.stderr, r.stderr
    bad = tlsgate("probe", "--policy", policy, "--address", "not-an-ip")
    assert bad.returncode == 2 and "Usage: tlsgate probe" in bad.stderr, bad.stderr


# --------------------------------------------------------------------------- README against the binary

def readme_section(title):
    text = README.read_text()
    start = text.index("\n## " + title)
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


def table_rows(section):
    """Cells of each body row of every markdown table in section (header and rule left out)."""
    rows = []
    for line in section.splitlines():
        if not line.startswith("|") or set(line.replace("|", "").strip()) <= set("- "):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        rows.append([c.replace("\\|", "|") for c in cells])
    return [r for r in rows if r[0] not in ("command", "key", "signal", "field", "reason", "target", "word",
                                            "`[intercept] mode`")]


def readme_commands():
    """Each command of the README's command table: (words after `tlsgate`, options shown)."""
    out = []
    for cells in table_rows(readme_section("Commands").split("### Signals")[0]):
        for code in re.findall(r"`([^`]+)`", cells[0]):
            tokens = code.split()
            assert tokens[0] == "tlsgate", code
            path = []
            for token in tokens[1:]:
                if not re.fullmatch(r"[a-z]+", token):
                    break
                path.append(token)
            options = re.findall(r"--[a-z][a-z-]*", code)
            out.append((code, path, options))
    return out


def test_readme_commands_run_with_help():
    _require_worker()
    commands = readme_commands()
    assert len(commands) >= 7, commands
    subcommands = {p[0] for _, p, _ in commands if p and p[0] != "help"}
    assert {"run", "check", "rules", "probe"} <= subcommands, commands
    for code, path, options in commands:
        if path == ["help"]:
            for sub in sorted(subcommands):
                r = tlsgate("help", sub)
                assert r.returncode == 0 and ("USAGE: tlsgate %s" % sub) in r.stdout, (code, sub, r.stdout + r.stderr)
            continue
        if not path:
            for option in options:
                r = tlsgate(option)
                assert r.returncode == 0 and r.stdout.strip(), (code, r.stdout + r.stderr)
            continue
        r = tlsgate(*(path + ["--help"]))
        # ArgumentParser answers --help with exit 0 even for an unknown subcommand: the
        # usage line must be the command's own.
        assert r.returncode == 0, (code, r.stdout + r.stderr)
        assert ("USAGE: tlsgate %s" % " ".join(path)) in r.stdout, (code, r.stdout)
        for option in options:
            assert option in r.stdout, "README shows %s for `%s` but its --help does not:\n%s" % (option, code, r.stdout)


def reference_keys(title):
    """[(section or None, key, default cell)] of the README's key table under `## title`."""
    keys = []
    for cells in table_rows(readme_section(title)):
        section = None
        for code in re.findall(r"`([^`]+)`", cells[0]):
            m = re.fullmatch(r"(?:\[([a-z_]+)\] )?([a-z_]+)", code)
            assert m, "cannot read the key cell %r" % cells[0]
            section = m.group(1) or section
            keys.append((section, m.group(2), cells[1]))
    return keys


PIN = "sha256/" + "A" * 43 + "="
# Values for keys whose README default is not a TOML literal (required, none, —, OpenSSL's),
# or whose default alone would not make a valid file; and other keys a key needs.
POLICY_SAMPLES = {
    ("match", "networks"): '["198.19.0.10/32"]',
    ("match", "hosts"): '["good.test"]',
    ("match", "port"): "80",
    ("upstream", "port"): "443",
    ("upstream", "server_name"): '"good.test"',
    ("upstream", "allowed_names"): '["good.test"]',
    ("upstream", "starttls"): '"smtp"',
    ("upstream", "ehlo_name"): '"gw.lab.test"',
    ("tls", "accepted_names"): '["other.test"]',
    ("tls", "pins"): '["%s"]' % PIN,
    ("tls", "crl"): '"crl.pem"',
    ("tls", "max_version"): '"1.3"',
    ("tls", "ciphers"): '"ECDHE+AESGCM"',
    ("tls", "ciphersuites"): '"TLS_AES_256_GCM_SHA384"',
    ("tls", "groups"): '"X25519:P-256"',
    ("tls", "signature_algorithms"): '"ECDSA+SHA256"',
    ("tls", "alpn"): '["http/1.1"]',
    ("tls", "client_certificate"): '"client.pem"',
    ("tls", "client_key"): '"client.key"',
}
POLICY_COMPANIONS = {
    ("upstream", "allowed_names"): {("upstream", "server_name"): '"http-host"'},
    ("upstream", "host_header_timeout"): {("upstream", "server_name"): '"http-host"',
                                          ("upstream", "allowed_names"): '["good.test"]'},
    ("upstream", "max_header_bytes"): {("upstream", "server_name"): '"http-host"',
                                       ("upstream", "allowed_names"): '["good.test"]'},
    ("upstream", "ehlo_name"): {("upstream", "starttls"): '"smtp"'},
    ("tls", "pin_only"): {("tls", "pins"): '["%s"]' % PIN},
    ("tls", "client_certificate"): {("tls", "client_key"): '"client.key"'},
    ("tls", "client_key"): {("tls", "client_certificate"): '"client.pem"'},
}
POLICY_BASE = {
    ("match", "networks"): '["198.19.0.10/32"]', ("match", "port"): "80",
    ("upstream", "port"): "443", ("upstream", "server_name"): '"good.test"',
}
CONFIG_SAMPLES = {
    (None, "policies"): '"policies"',
    (None, "user"): '"nobody"',
    ("intercept", "from"): '["198.18.0.0/24"]',
    ("intercept", "interfaces"): '["lan0"]',
    ("admin", "listen"): '"127.0.0.1:9464"',
}
CONFIG_BASE = {(None, "policies"): '"policies"', ("intercept", "from"): '["198.18.0.0/24"]'}


def toml_literal(cell):
    """The default cell as a TOML value, or None when it is not one (required, none, —)."""
    m = re.fullmatch(r"`([^`]+)`", cell.strip())
    if not m:
        return None
    value = m.group(1)
    if re.fullmatch(r'"[^"]*"|-?\d+|0x[0-9a-fA-F]+|true|false|\[[^\]]*\]', value):
        return value
    return None


def render_toml(entries):
    lines = ["%s = %s" % (k, v) for (s, k), v in entries.items() if s is None]
    for section in sorted({s for s, _ in entries if s is not None}):
        lines.append("[%s]" % section)
        lines += ["%s = %s" % (k, v) for (s, k), v in entries.items() if s == section]
    return "\n".join(lines) + "\n"


def real_pem_files(pki):
    """A client certificate, its key and a CRL, from the suite's PKI (Scripts/make-test-pki.sh)."""
    return {name: (pki / name).read_bytes() for name in ("client.pem", "client.key", "crl.pem")}


def check_key(kind, section, key, default, folder, pki):
    """Writes a valid file that sets section.key (README default, or a sample value) and
    runs `tlsgate check` on it; returns (ok, what check said)."""
    folder.mkdir(parents=True, exist_ok=True)
    samples, base = (POLICY_SAMPLES, POLICY_BASE) if kind == "policy" else (CONFIG_SAMPLES, CONFIG_BASE)
    value = samples.get((section, key)) or toml_literal(default)
    if value is None:
        return False, "no sample value for %s (add one to the test)" % key
    entries = dict(base)
    if kind == "policy":
        entries.update(POLICY_COMPANIONS.get((section, key), {}))
        # Real files: `check` has OpenSSL load them (a dry run of the worker's TLS context).
        for name, data in real_pem_files(pki).items():
            (folder / name).write_bytes(data)
        (folder / "client.key").chmod(0o600)
    entries[(section, key)] = value
    text = render_toml(entries)
    if kind == "policy":
        (folder / "p.toml").write_text(text)
        r = tlsgate("check", folder)
    else:
        (folder / "policies").mkdir(exist_ok=True)
        write_policy(folder / "policies", "p", render_toml(POLICY_BASE))
        (folder / "tlsgate.toml").write_text(text)
        r = tlsgate("check", "--config", folder / "tlsgate.toml")
    return r.returncode == 0 and "unknown key" not in r.stderr, "%s\n---\n%s%s" % (text, r.stdout, r.stderr)


def test_readme_reference_keys_are_accepted_by_check(tmp_path, pki):
    _require_worker()
    policy_keys = reference_keys("Policy files")
    config_keys = reference_keys("Global config")
    assert len(policy_keys) >= 25 and len(config_keys) >= 10, (policy_keys, config_keys)
    failures = []
    for n, (section, key, default) in enumerate(policy_keys):
        ok, said = check_key("policy", section, key, default, tmp_path / ("p%d" % n), pki)
        if not ok:
            failures.append("[%s] %s: %s" % (section, key, said))
    for n, (section, key, default) in enumerate(config_keys):
        ok, said = check_key("config", section, key, default, tmp_path / ("c%d" % n), pki)
        if not ok:
            failures.append("[%s] %s: %s" % (section, key, said))
    assert not failures, "README keys check does not accept:\n" + "\n".join(failures)


def test_readme_key_check_can_fail(tmp_path, pki):
    """The check above is not vacuous: a key the parser does not know is refused."""
    _require_worker()
    ok, said = check_key("policy", "tls", "not_a_key", '`"x"`', tmp_path / "p", pki)
    assert not ok and 'unknown key "not_a_key"' in said, said
    ok, said = check_key("config", "log", "not_a_key", "`1`", tmp_path / "c", pki)
    assert not ok and 'unknown key "not_a_key"' in said, said
    ok, said = check_key("policy", "tls", "mystery", "—", tmp_path / "q", pki)
    assert not ok and "no sample value" in said, said
