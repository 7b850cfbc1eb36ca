#!/usr/bin/env bash
# Extra certificates for the verification matrix, signed by the test intermediate of
# Scripts/make-test-pki.sh (BASE) through a small `openssl ca` database, so that CRLs
# and OCSP responses can be made for them.
#
# Usage: make-matrix-pki.sh BASE OUTDIR
set -euo pipefail
base=$1; out=$2
mkdir -p "$out/ca/new"
cd "$out"
[ -f .complete ] && exit 0
: > ca/index.txt
echo 1000 > ca/serial
echo 1000 > ca/crlnumber
cat > ca.cnf <<CNF
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = $out/ca
database = \$dir/index.txt
new_certs_dir = \$dir/new
serial = \$dir/serial
crlnumber = \$dir/crlnumber
default_md = sha256
policy = policy_any
default_days = 365
default_crl_days = 30
unique_subject = no
[ policy_any ]
commonName = supplied
CNF

ca_sign() { # name ext-lines [extra openssl ca args...]
  local name=$1 ext=$2; shift 2
  printf '%b\n' "$ext" > "$name.ext"
  openssl ca -batch -notext -config ca.cnf -cert "$base/intermediate.pem" -keyfile "$base/intermediate.key" \
    -in "$name.csr" -out "$name.pem" -extfile "$name.ext" "$@" 2>/dev/null
  cat "$name.pem" "$base/intermediate.pem" > "$name-chain.pem"
}
ec_csr() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$1" 2>/dev/null; }

server_ext='basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth'
ec_csr wild;     ca_sign wild     "$server_ext\nsubjectAltName=DNS:*.wild.test"
ec_csr ipsan;    ca_sign ipsan    "$server_ext\nsubjectAltName=IP:198.19.0.20"
ec_csr noeku;    ca_sign noeku    "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\nsubjectAltName=DNS:good.test"
ec_csr notyet;   ca_sign notyet   "$server_ext\nsubjectAltName=DNS:good.test" -startdate 20350101000000Z -enddate 20360101000000Z
ec_csr sha1;     ca_sign sha1     "$server_ext\nsubjectAltName=DNS:good.test" -md sha1
openssl req -newkey rsa:1024 -nodes -keyout rsa1024.key -out rsa1024.csr -subj "/CN=rsa1024" 2>/dev/null
ca_sign rsa1024 "$server_ext\nsubjectAltName=DNS:good.test"
ec_csr revoked;  ca_sign revoked  "$server_ext\nsubjectAltName=DNS:good.test"
ec_csr stapled;  ca_sign stapled  "$server_ext\nsubjectAltName=DNS:good.test"
ec_csr client;   ca_sign client   "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth"
chmod 600 client.key

openssl ca -batch -config ca.cnf -cert "$base/intermediate.pem" -keyfile "$base/intermediate.key" -revoke revoked.pem 2>/dev/null
# CRLs from the intermediate: a current one, and one whose nextUpdate has passed.
openssl ca -batch -config ca.cnf -cert "$base/intermediate.pem" -keyfile "$base/intermediate.key" -gencrl -out crl.pem 2>/dev/null
openssl ca -batch -config ca.cnf -cert "$base/intermediate.pem" -keyfile "$base/intermediate.key" -gencrl \
  -crl_lastupdate 20200101000000Z -crl_nextupdate 20200102000000Z -out crl-expired.pem 2>/dev/null
# OCSP responses, signed by the intermediate (the issuer), valid for a day.
for name in stapled revoked; do
  openssl ocsp -index ca/index.txt -rsigner "$base/intermediate.pem" -rkey "$base/intermediate.key" \
    -CA "$base/intermediate.pem" -issuer "$base/intermediate.pem" -cert "$name.pem" -ndays 1 \
    -respout "ocsp-$name.der" >/dev/null 2>&1
done
# The client CA file for the mTLS server: the chain that issued client.pem.
cat "$base/intermediate.pem" "$base/root.pem" > client-ca.pem
touch .complete
