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
  iproute2          # network namespaces for the lab
  nginx-light       # a real TLS server for the demo
  curl              # a real plain-HTTP client for the demo
  wget              # a second real HTTP client (Tests/integration/test_real_clients.py)
  binutils          # readelf/strip for the Debian package (Scripts/package-deb.sh)
  python3           # the integration test harness
  python3-pytest    # runs the integration tests
  procps            # ps/pgrep-free checks read /proc, but keep ps for operators
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
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # nginx is started by hand in the lab; never leave the distribution's instance running
  if systemctl is-active --quiet nginx 2>/dev/null; then systemctl stop nginx || true; fi
fi

if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
  echo "setup.sh: note: swift is at /opt/swift/usr/bin; add it to PATH" >&2
fi
echo "setup.sh: all dependencies present"
