#!/usr/bin/env bash
# Generates the integration tests' PKI with the openssl CLI (EC P-256, fast).
#
# Usage: Scripts/make-test-pki.sh OUTDIR
#
# Writes into OUTDIR:
#   root.pem root.key                    trusted test root CA  (the policies' `trust`)
#   intermediate.pem intermediate.key    intermediate CA signed by root
#   NAME.pem NAME.key NAME-chain.pem     leaves; NAME-chain.pem = leaf + its issuing intermediate
#     good        SAN DNS:good.test, IP:198.19.0.10, IP:2001:2:0:1::10   (root > intermediate)
#     wrongname   SAN DNS:other.test                                     (root > intermediate)
#     expired     SAN as good, valid 2020-01-01 .. 2021-01-01            (root > intermediate)
#     selfsigned  SAN as good, self-signed; chain = the cert alone
#     untrusted   SAN as good, from a second root that nobody trusts
#                 (untrusted-root > untrusted-intermediate); chain = leaf + untrusted
#                 intermediate, so a verifier trusting root.pem sees
#                 "unable to get local issuer certificate"
#   untrusted-root.pem untrusted-intermediate.pem (+ keys)
#
# Idempotent: if OUTDIR already holds a complete PKI (marker file .complete), does nothing.
set -euo pipefail

if [ $# -ne 1 ]; then
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
out=$1
mkdir -p "$out"
out=$(cd "$out" && pwd)

LEAVES=(good wrongname expired selfsigned untrusted)
complete=1
[ -f "$out/.complete" ] || complete=0
for f in root.pem root.key intermediate.pem intermediate.key; do [ -s "$out/$f" ] || complete=0; done
for n in "${LEAVES[@]}"; do
  for f in "$n.pem" "$n.key" "$n-chain.pem"; do [ -s "$out/$f" ] || complete=0; done
done
if [ "$complete" -eq 1 ]; then
  echo "make-test-pki.sh: $out already complete"
  exit 0
fi
rm -f "$out/.complete"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

SAN_GOOD="DNS:good.test,IP:198.19.0.10,IP:2001:2:0:1:0:0:0:10"

genkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; chmod 600 "$1"; }

cat >"$work/ext.cnf" <<'EOF'
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[int_ext]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[leaf_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = ${ENV::SAN}
EOF

# make_root NAME CN
make_root() {
  genkey "$out/$1.key"
  SAN=unused openssl req -x509 -new -key "$out/$1.key" -sha256 -days 3650 \
    -subj "/O=tlsgate tests/CN=$2" -config "$work/ext.cnf" -extensions ca_ext \
    -out "$out/$1.pem" 2>/dev/null
}

# make_int NAME CN ISSUER
make_int() {
  genkey "$out/$1.key"
  openssl req -new -key "$out/$1.key" -subj "/O=tlsgate tests/CN=$2" -out "$work/$1.csr"
  SAN=unused openssl x509 -req -in "$work/$1.csr" -CA "$out/$3.pem" -CAkey "$out/$3.key" \
    -CAcreateserial -CAserial "$work/$3.srl" -sha256 -days 3650 \
    -extfile "$work/ext.cnf" -extensions int_ext -out "$out/$1.pem" 2>/dev/null
}

# make_leaf NAME CN SAN ISSUER
make_leaf() {
  genkey "$out/$1.key"
  openssl req -new -key "$out/$1.key" -subj "/O=tlsgate tests/CN=$2" -out "$work/$1.csr"
  SAN=$3 openssl x509 -req -in "$work/$1.csr" -CA "$out/$4.pem" -CAkey "$out/$4.key" \
    -CAcreateserial -CAserial "$work/$4.srl" -sha256 -days 825 \
    -extfile "$work/ext.cnf" -extensions leaf_ext -out "$out/$1.pem" 2>/dev/null
  cat "$out/$1.pem" "$out/$4.pem" >"$out/$1-chain.pem"
}

make_root root "tlsgate test root"
make_int intermediate "tlsgate test intermediate" root
make_leaf good good.test "$SAN_GOOD" intermediate
make_leaf wrongname other.test "DNS:other.test" intermediate

# expired: `openssl ca` with explicit -startdate/-enddate in the past and a tiny CA db
mkdir -p "$work/cadb/new"
: >"$work/cadb/index.txt"
echo 1000 >"$work/cadb/serial"
cat >"$work/ca.cnf" <<EOF
[ca]
default_ca = test_ca
[test_ca]
dir = $work/cadb
database = \$dir/index.txt
new_certs_dir = \$dir/new
serial = \$dir/serial
certificate = $out/intermediate.pem
private_key = $out/intermediate.key
default_md = sha256
policy = pol_any
unique_subject = no
copy_extensions = none
[pol_any]
commonName = supplied
organizationName = optional
[leaf_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = $SAN_GOOD
EOF
genkey "$out/expired.key"
openssl req -new -key "$out/expired.key" -subj "/O=tlsgate tests/CN=good.test" -out "$work/expired.csr"
openssl ca -batch -config "$work/ca.cnf" -extensions leaf_ext -notext \
  -startdate 20200101000000Z -enddate 20210101000000Z \
  -in "$work/expired.csr" -out "$out/expired.pem" 2>/dev/null
cat "$out/expired.pem" "$out/intermediate.pem" >"$out/expired-chain.pem"

# selfsigned leaf for good.test
genkey "$out/selfsigned.key"
SAN=$SAN_GOOD openssl req -x509 -new -key "$out/selfsigned.key" -sha256 -days 825 \
  -subj "/O=tlsgate tests/CN=good.test" -config "$work/ext.cnf" -extensions leaf_ext \
  -out "$out/selfsigned.pem" 2>/dev/null
cp "$out/selfsigned.pem" "$out/selfsigned-chain.pem"

# untrusted: a second hierarchy nobody trusts
make_root untrusted-root "tlsgate UNTRUSTED test root"
make_int untrusted-intermediate "tlsgate UNTRUSTED test intermediate" untrusted-root
make_leaf untrusted good.test "$SAN_GOOD" untrusted-intermediate

# Self-check: the verdicts the tests rely on.
v() { openssl verify -CAfile "$out/root.pem" -untrusted "$out/intermediate.pem" "$@" 2>&1 || true; }
v -verify_hostname good.test "$out/good.pem" | grep -q ': OK' \
  || { echo "make-test-pki.sh: good does not verify" >&2; exit 1; }
v -verify_ip 198.19.0.10 "$out/good.pem" | grep -q ': OK' \
  || { echo "make-test-pki.sh: good does not verify for 198.19.0.10" >&2; exit 1; }
v -verify_hostname good.test "$out/wrongname.pem" | grep -qi 'hostname mismatch' \
  || { echo "make-test-pki.sh: wrongname does not fail on hostname" >&2; exit 1; }
v "$out/expired.pem" | grep -qi 'expired' \
  || { echo "make-test-pki.sh: expired is not expired" >&2; exit 1; }

touch "$out/.complete"
echo "make-test-pki.sh: test PKI written to $out"
