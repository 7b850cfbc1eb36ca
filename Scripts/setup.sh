#!/usr/bin/env bash
# Installs everything tlsgate's build, tests, lab and demo need on Debian 12.
# Idempotent: a second run installs nothing and exits 0.
set -euo pipefail

PACKAGES=(
  libssl-dev        # the TLS library tlsgate links (OpenSSL 3)
  libcap-dev        # capabilities instead of root
  libseccomp-dev    # the workers' syscall allow-list
  pkg-config        # finds both of the above
  openssl           # the test PKI and test TLS servers
  nftables          # interception rules
  conntrack         # clears flows a dead run redirected (tlsgate run, at start)
  iproute2          # network namespaces for the lab
  nginx-light       # a real TLS server for the demo
  curl              # a real plain-HTTP client for the demo
  wget              # a second real HTTP client (Tests/integration/test_real_clients.py)
  binutils          # readelf/strip for the Debian package (Scripts/package-deb.sh)
  python3           # the integration test harness
  python3-pytest    # runs the integration tests
  procps            # ps/pgrep-free checks read /proc, but keep ps for operators
  # Real servers and clients for the protocol-upgrade (starttls) tests. Each test starts
  # its own instance with its own config and data dir in the lab; never a system service.
  postfix           # SMTP with STARTTLS
  dovecot-imapd     # IMAP with STARTTLS
  dovecot-pop3d     # POP3 with STLS
  slapd             # LDAP with StartTLS
  ldap-utils        # ldapsearch
  postgresql        # PostgreSQL (SSLRequest)
  mariadb-server    # MySQL protocol (CLIENT_SSL)
  mariadb-client    # the mariadb command-line client
  libnginx-mod-stream # nginx stream TLS with ALPN postgresql: the direct-TLS PostgreSQL test server
  keepalived        # VRRP for the HA pair (Scripts/ha-lab.sh, Tests/integration/test_ha.py); never the system service
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: missing packages: ${missing[*]}; run as root (or with sudo) to install them" >&2
    exit 1
  fi
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # No package may start (or fail to start) its service during the install: the tests run
  # their own instances. A policy-rc.d that says 101 blocks every invoke-rc.d start; one
  # that was already there (containers ship one) is left as it was.
  own_policy_rc=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# tlsgate setup.sh: no service starts during apt install\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy_rc=1
  fi
  trap '[ "$own_policy_rc" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  # Answers for the packages that would ask: postfix unconfigured, slapd without a database.
  debconf-set-selections <<'SEL'
postfix postfix/main_mailer_type select No configuration
postfix postfix/mailname string tlsgate-lab.invalid
slapd slapd/no_configuration boolean true
SEL
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # nginx is started by hand in the lab; never leave the distribution's instance running
  for unit in nginx postfix dovecot slapd postgresql mariadb keepalived; do
    if systemctl is-active --quiet "$unit" 2>/dev/null; then systemctl stop "$unit" || true; fi
  done
fi

# The workers' own system account (worker_user's default in tlsgate.toml): no login, no home.
# The gateway's tests and a gateway installed from this clone run their workers as it.
if ! getent passwd tlsgate-worker >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: the account tlsgate-worker is missing; run as root (or with sudo) to create it" >&2
    exit 1
  fi
  echo "setup.sh: creating the system account tlsgate-worker"
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin tlsgate-worker
fi

if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
  echo "setup.sh: note: swift is at /opt/swift/usr/bin; add it to PATH" >&2
fi
echo "setup.sh: all dependencies present"
