#!/usr/bin/env bash
# Builds the Debian package tlsgate_VERSION_ARCH.deb from this repository, offline, with
# dpkg-deb:
#   /usr/bin/tlsgate                      release build, Swift runtime linked statically
#                                         (--static-swift-stdlib: no /opt/swift at run time)
#   /lib/systemd/system/tlsgate.service   the unit (runs as "tlsgate": CAP_NET_ADMIN, and
#                                         CAP_SETUID/SETGID/KILL to run workers as tlsgate-worker)
#   /lib/systemd/system/tlsgate-guard.service  restores the fail-closed guard at boot (enabled)
#   /etc/tlsgate/tlsgate.toml             conffile: Scripts/tlsgate.example.toml, policies in
#   /etc/tlsgate/policies/*.toml          conffiles: the example policies (documentation
#                                         address ranges only: they intercept nothing real)
#   /usr/share/man/man8/tlsgate.8.gz      generated from the commands' --help
#   /usr/share/doc/tlsgate/               README, copyright
# postinst creates the system accounts "tlsgate" (the supervisor) and "tlsgate-worker" (the
# workers, worker_user's default), both kept on remove and purge, enables only
# tlsgate-guard.service and starts nothing: edit /etc/tlsgate, run `tlsgate check`, then
# `systemctl enable --now tlsgate`.
# Depends: the shared libraries the binary links (found with dpkg -S), nftables, conntrack, iproute2.
#
# Usage: Scripts/package-deb.sh [--out DIR] [--binary FILE]
#   --out DIR      where the .deb goes (default: the repository's folder)
#   --binary FILE  package this binary instead of building (it must not need /opt/swift)
# Prints the path of the .deb on its last line.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$repo
binary=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "package-deb.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

for tool in dpkg-deb dpkg-shlibdeps readelf gzip; do
  command -v "$tool" >/dev/null 2>&1 || [ "$tool" = dpkg-shlibdeps ] || {
    echo "package-deb.sh: $tool is missing (run Scripts/setup.sh)" >&2; exit 1; }
done

if [ -z "$binary" ]; then
  if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH=/opt/swift/usr/bin:$PATH
  fi
  (cd "$repo" && swift build -c release --static-swift-stdlib --product tlsgate >&2)
  binary=$(cd "$repo" && swift build -c release --static-swift-stdlib --show-bin-path)/tlsgate
fi
[ -x "$binary" ] || { echo "package-deb.sh: no binary at $binary" >&2; exit 1; }

# The package must run without the Swift toolchain.
if readelf -d "$binary" | grep 'Shared library: \[libswift\|Shared library: \[libFoundation' >/dev/null; then
  echo "package-deb.sh: $binary links the Swift runtime dynamically; build it with --static-swift-stdlib" >&2
  exit 1
fi

version=$("$binary" --version | sed -n 1p)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d /tmp/tlsgate-deb.XXXXXX)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
install -d "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/tlsgate/policies" \
  "$root/usr/share/man/man8" "$root/usr/share/doc/tlsgate"

install -m 0755 "$binary" "$root/usr/bin/tlsgate"
strip --strip-unneeded "$root/usr/bin/tlsgate" 2>/dev/null || true
for unit in tlsgate.service tlsgate-guard.service; do
  sed -e 's#/usr/local/bin/tlsgate#/usr/bin/tlsgate#g' "$repo/Scripts/$unit" > "$root/lib/systemd/system/$unit"
  chmod 0644 "$root/lib/systemd/system/$unit"
done
sed -e 's#^policies = .*#policies = "/etc/tlsgate/policies"#' "$repo/Scripts/tlsgate.example.toml" > "$root/etc/tlsgate/tlsgate.toml"
chmod 0644 "$root/etc/tlsgate/tlsgate.toml"
for f in "$repo"/Policies/*.toml; do install -m 0644 "$f" "$root/etc/tlsgate/policies/"; done
install -m 0644 "$repo/README.md" "$root/usr/share/doc/tlsgate/README.md"
install -D -m 0755 "$repo/Scripts/ha-check.sh" "$root/usr/lib/tlsgate/ha-check.sh"   # keepalived's track script
cat > "$root/usr/share/doc/tlsgate/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: tlsgate
Files: *
Copyright: the tlsgate developers
License: see the project repository
EOF

# A man page from the commands' own --help (so it cannot drift from the binary).
{
  echo ".TH TLSGATE 8 \"$(date -u +%Y-%m-%d)\" \"tlsgate $version\" \"System Administration\""
  echo ".SH NAME"
  echo "tlsgate \\- transparent egress TLS-upgrade gateway"
  for sub in "" run check rules probe; do
    if [ -z "$sub" ]; then echo ".SH SYNOPSIS"; else echo ".SH COMMAND: ${sub^^}"; fi
    echo ".nf"
    "$binary" $sub --help 2>&1 | sed -e 's/\\/\\\\/g' -e 's/^\./\\\&./'
    echo ".fi"
  done
  echo ".SH FILES"
  echo "/etc/tlsgate/tlsgate.toml, /etc/tlsgate/policies/*.toml, /usr/share/doc/tlsgate/README.md"
} | gzip -9n > "$root/usr/share/man/man8/tlsgate.8.gz"

# Runtime dependencies: the package owning each shared library the binary needs.
deps="" seen=" "
for lib in $(readelf -d "$binary" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
  # (no early exit in these pipelines: under pipefail a SIGPIPE'd writer would fail them)
  path=$(ldconfig -p | awk -v l="$lib" '$1 == l && !found { found = $NF } END { print found }')
  [ -n "$path" ] || { echo "package-deb.sh: cannot find $lib" >&2; exit 1; }
  pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | sed -n '1s/:.*//p') || true
  [ -n "$pkg" ] || pkg=$(dpkg -S "$path" 2>/dev/null | sed -n '1s/:.*//p') || true
  [ -n "$pkg" ] || { echo "package-deb.sh: no Debian package owns $path" >&2; exit 1; }
  case "$seen" in *" $pkg "*) ;; *) seen="$seen$pkg "; deps="${deps:+$deps, }$pkg" ;; esac
done
deps="$deps, nftables, conntrack, iproute2, adduser"

installed_kib=$(du -sk "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<EOF
Package: tlsgate
Version: $version
Architecture: $arch
Maintainer: tlsgate developers <tlsgate@localhost>
Installed-Size: $installed_kib
Depends: $deps
Section: net
Priority: optional
Description: transparent egress TLS-upgrade gateway
 Intercepts plain-text connections from a LAN with nftables and re-opens each one
 as verified TLS to the server's TLS port, under a policy per destination. Fails
 closed: while it is stopped, LAN traffic to its destinations is rejected.
EOF
find "$root/etc" -type f | sed "s#^$root##" | sort > "$root/DEBIAN/conffiles"

cat > "$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if ! getent passwd tlsgate >/dev/null; then
    adduser --system --group --no-create-home --home /nonexistent --shell /usr/sbin/nologin tlsgate >/dev/null
  fi
  # The workers' own account (worker_user's default), apart from the supervisor's.
  if ! getent passwd tlsgate-worker >/dev/null; then
    adduser --system --group --no-create-home --home /nonexistent --shell /usr/sbin/nologin tlsgate-worker >/dev/null
  fi
  # The fail-closed guard comes back at every boot (once the gateway has saved one).
  if command -v deb-systemd-helper >/dev/null 2>&1; then
    deb-systemd-helper enable tlsgate-guard.service >/dev/null 2>&1 || true
  fi
  if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
fi
exit 0
EOF
cat > "$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
  systemctl stop tlsgate.service >/dev/null 2>&1 || true
fi
exit 0
EOF
cat > "$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
# The accounts "tlsgate" and "tlsgate-worker" are kept on remove and purge (files may
# still belong to them).
if [ "$1" = purge ]; then
  if command -v deb-systemd-helper >/dev/null 2>&1; then
    deb-systemd-helper purge tlsgate-guard.service >/dev/null 2>&1 || true
  fi
  rm -rf /var/lib/tlsgate
fi
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
exit 0
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

deb="$out/tlsgate_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >&2
echo "$deb"
