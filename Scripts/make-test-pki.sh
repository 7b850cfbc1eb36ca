#!/usr/bin/env bash
# The one test PKI of tlsgate (demo, integration tests, matrix, bench), openssl CLI only.
#
# Usage: Scripts/make-test-pki.sh OUTDIR
#
# Every certificate is issued with `openssl ca` over a small database per CA, with explicit
# -startdate/-enddate, so that CRLs and OCSP responses can be made. EC P-256 everywhere
# except rsa1024. OUTDIR gets:
#   root.pem root.key                    trusted test root "tlsgate test root" (the policies' `trust`)
#   intermediate.pem intermediate.key    issued by root (pathlen 0); issues every leaf below
#   NAME.pem NAME.key NAME-chain.pem     leaf; NAME-chain.pem = leaf + intermediate (what servers serve)
#     good        DNS:good.test, IP:198.19.0.10, IP:2001:2:0:1::10     valid now
#     wrongname   DNS:other.test (CN other.test)
#     expired     DNS:good.test, valid 2020-01-01 .. 2021-01-01
#     notyet      DNS:good.test, starts in two years
#     wild        DNS:*.wild.test
#     ipsan       IP:198.19.0.16 only (its CN is not a host name)
#     revoked     DNS:good.test, revoked (keyCompromise) in the intermediate's CRL and OCSP
#     stapled     DNS:good.test, "good" in its OCSP response
#     sha1        DNS:good.test, signed with ECDSA-SHA1
#     rsa1024     DNS:good.test, RSA 1024-bit key (signature SHA-256)
#     clientonly  DNS:good.test, extendedKeyUsage = clientAuth only
#     client      the gateway's client certificate for mTLS (clientAuth), key mode 600
#   client-ca.pem                        intermediate + root (a server's CA file for client certificates)
#   selfsigned.pem/.key, -chain.pem      self-signed, SAN as good; chain = the certificate alone
#   untrusted-root.pem untrusted-intermediate.pem (+ keys)   a hierarchy nobody trusts
#   untrusted.pem/.key                   SAN as good, issued by untrusted-intermediate;
#     untrusted-chain.pem                  leaf + untrusted-intermediate ("unable to get local issuer certificate")
#     untrusted-withroot-chain.pem         leaf + untrusted-intermediate + untrusted-root
#                                          ("self-signed certificate in certificate chain")
#   crlfsan.pem/.key, -chain.pem         self-signed, DNS SAN "evil.test" CR LF and a forged log line
#   deepca1.pem deepca2.pem, deep.pem/.key, deep-chain.pem
#                                        DNS:good.test under root > deepca1 > deepca2 (chain = leaf + both CAs)
#   crl.pem                              the intermediate's current CRL (revoked listed)
#   crl-expired.pem                      a CRL whose nextUpdate passed (2020-01-02)
#   ocsp-stapled.der, ocsp-revoked.der   OCSP responses signed by the intermediate, valid 1 day
#   ocsp-badsigner.der                   "good" for stapled, signed by wrongname (not a responder)
#   ocsp-unknown.der                     "unknown" for stapled
#
# Checks every verdict the tests rely on with `openssl verify` before writing OUTDIR/.complete.
# Idempotent: an OUTDIR holding .complete is left as it is.
set -euo pipefail
if [ $# -ne 1 ]; then
  sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
out=$1
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ -f "$out/.complete" ]; then
  echo "make-test-pki.sh: $out already complete"
  exit 0
fi
cd "$out"

IPSAN=198.19.0.16
SAN_GOOD="DNS:good.test,IP:198.19.0.10,IP:2001:2:0:1:0:0:0:10"

stamp() { date -u -d "$1" +%Y%m%d%H%M%SZ; }
NOW_MINUS=$(stamp '-1 day')
IN_ONE_YEAR=$(stamp '+1 year')       # leaves: valid from yesterday for a year
IN_TWO_YEARS=$(stamp '+2 years')
IN_THREE_YEARS=$(stamp '+3 years')
CA_START=20190101000000Z; CA_END=20450101000000Z

quiet() { "$@" >/dev/null 2>"$out/last-error.txt" || { echo "make-test-pki.sh: failed: $*" >&2; cat "$out/last-error.txt" >&2; exit 1; }; }

ec_key() { quiet openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; chmod 600 "$1"; }
rsa_key() { quiet openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:$2" -out "$1"; chmod 600 "$1"; }

# ca_db NAME CERT KEY: an `openssl ca` configuration over its own database.
ca_db() {
  mkdir -p "db-$1/new"
  : > "db-$1/index.txt"
  printf '%s\n' "$(openssl rand -hex 8)" > "db-$1/serial"
  echo 1000 > "db-$1/crlnumber"
  cat > "db-$1/ca.cnf" <<CNF
[ca]
default_ca = this_ca
[this_ca]
dir = $out/db-$1
database = \$dir/index.txt
new_certs_dir = \$dir/new
serial = \$dir/serial
crlnumber = \$dir/crlnumber
certificate = $out/$2
private_key = $out/$3
default_md = sha256
default_crl_days = 30
policy = pol_any
unique_subject = no
copy_extensions = none
email_in_dn = no
[pol_any]
organizationName = optional
commonName = supplied
[root_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[int_ext]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[crl_ext]
authorityKeyIdentifier = keyid:always
CNF
}

# issue DB NAME CN EXTFILE-LINES START END [more openssl ca args]
issue() {
  local db=$1 name=$2 cn=$3 ext=$4 start=$5 end=$6; shift 6
  quiet openssl req -new -key "$name.key" -subj "/O=tlsgate tests/CN=$cn" -out "$name.csr"
  printf '%b\n' "$ext" > "$name.ext"
  quiet openssl ca -batch -notext -config "db-$db/ca.cnf" -in "$name.csr" -out "$name.pem" \
    -extfile "$name.ext" -startdate "$start" -enddate "$end" "$@"
  rm -f "$name.csr" "$name.ext"
}

# self_root NAME CN: a self-signed CA through `openssl ca -selfsign`, with its own database.
self_root() {
  ca_db "$1" "$1.pem" "$1.key"
  ec_key "$1.key"
  quiet openssl req -new -key "$1.key" -subj "/O=tlsgate tests/CN=$2" -out "$1.csr"
  quiet openssl ca -batch -notext -selfsign -config "db-$1/ca.cnf" -keyfile "$1.key" -in "$1.csr" -out "$1.pem" \
    -extensions root_ext -startdate "$CA_START" -enddate "$CA_END"
  rm -f "$1.csr"
}

# sub_ca ISSUER-DB NAME CN EXTENSIONS: a CA issued by ISSUER-DB, with its own database.
sub_ca() {
  ec_key "$2.key"
  issue "$1" "$2" "$3" "$4" "$CA_START" "$CA_END"
  ca_db "$2" "$2.pem" "$2.key"
}

INT_EXT='basicConstraints = critical,CA:TRUE,pathlen:0\nkeyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always'
CA_EXT='basicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always'
LEAF='basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always'
SERVER="$LEAF\nextendedKeyUsage = serverAuth"

# --- root and intermediate
self_root root "tlsgate test root"
sub_ca root intermediate "tlsgate test intermediate" "$INT_EXT"

# leaf NAME CN SAN [START END [ca args]]: issued by the intermediate, chain = leaf + intermediate
leaf() {
  local name=$1 cn=$2 san=$3 start=${4:-$NOW_MINUS} end=${5:-$IN_ONE_YEAR}
  shift $(( $# < 5 ? $# : 5 ))
  [ -f "$name.key" ] || ec_key "$name.key"
  issue intermediate "$name" "$cn" "$SERVER\nsubjectAltName = $san" "$start" "$end" "$@"
  cat "$name.pem" intermediate.pem > "$name-chain.pem"
}

leaf good      good.test   "$SAN_GOOD"
leaf wrongname other.test  DNS:other.test
leaf expired   good.test   DNS:good.test 20200101000000Z 20210101000000Z
leaf notyet    good.test   DNS:good.test "$IN_TWO_YEARS" "$IN_THREE_YEARS"
leaf wild      "*.wild.test" 'DNS:*.wild.test'
leaf ipsan     "tlsgate ip-san leaf" "IP:$IPSAN"
leaf revoked   good.test   DNS:good.test
leaf stapled   good.test   DNS:good.test
leaf sha1      good.test   DNS:good.test "$NOW_MINUS" "$IN_ONE_YEAR" -md sha1
rsa_key rsa1024.key 1024
leaf rsa1024   good.test   DNS:good.test
ec_key clientonly.key
issue intermediate clientonly good.test "$LEAF\nextendedKeyUsage = clientAuth\nsubjectAltName = DNS:good.test" \
  "$NOW_MINUS" "$IN_ONE_YEAR"
cat clientonly.pem intermediate.pem > clientonly-chain.pem
ec_key client.key
issue intermediate client "tlsgate test client" "$LEAF\nextendedKeyUsage = clientAuth" "$NOW_MINUS" "$IN_ONE_YEAR"
cat client.pem intermediate.pem > client-chain.pem
cat intermediate.pem root.pem > client-ca.pem

# --- a longer chain for verify_depth: root > deepca1 > deepca2 > deep (served with both CAs)
sub_ca root deepca1 "tlsgate test deep CA 1" "$CA_EXT"
sub_ca deepca1 deepca2 "tlsgate test deep CA 2" "$CA_EXT"
ec_key deep.key
issue deepca2 deep good.test "$SERVER\nsubjectAltName = DNS:good.test" "$NOW_MINUS" "$IN_ONE_YEAR"
cat deep.pem deepca2.pem deepca1.pem > deep-chain.pem

# --- self-signed leaf, and a whole hierarchy nobody trusts
ec_key selfsigned.key
ca_db selfsigned selfsigned.pem selfsigned.key
quiet openssl req -new -key selfsigned.key -subj "/O=tlsgate tests/CN=good.test" -out selfsigned.csr
printf '%b\n' "$SERVER\nsubjectAltName = $SAN_GOOD" | grep -v authorityKeyIdentifier > selfsigned.ext
quiet openssl ca -batch -notext -selfsign -config db-selfsigned/ca.cnf -keyfile selfsigned.key -in selfsigned.csr \
  -out selfsigned.pem -extfile selfsigned.ext -startdate "$NOW_MINUS" -enddate "$IN_ONE_YEAR"
rm -f selfsigned.csr selfsigned.ext
cp selfsigned.pem selfsigned-chain.pem

# crlfsan: self-signed, its DNS SAN holds CR LF and a forged log line after them (OpenSSL's
# config reader turns the unquoted \r\n into the two bytes): test_logs.py's FORGED.
ec_key crlfsan.key
cat > crlfsan.cnf <<'CNF'
[leaf_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = @alt
[alt]
DNS.1 = evil.test\r\n2026-01-01T00:00:00.000Z info connection closed policy=forged result=ok
CNF
quiet openssl req -x509 -new -key crlfsan.key -subj "/CN=evil.test" -days 30 -config crlfsan.cnf \
  -extensions leaf_ext -out crlfsan.pem
rm -f crlfsan.cnf
cp crlfsan.pem crlfsan-chain.pem

self_root untrusted-root "tlsgate UNTRUSTED test root"
sub_ca untrusted-root untrusted-intermediate "tlsgate UNTRUSTED test intermediate" "$INT_EXT"
ec_key untrusted.key
issue untrusted-intermediate untrusted good.test "$SERVER\nsubjectAltName = $SAN_GOOD" "$NOW_MINUS" "$IN_ONE_YEAR"
cat untrusted.pem untrusted-intermediate.pem > untrusted-chain.pem
cat untrusted.pem untrusted-intermediate.pem untrusted-root.pem > untrusted-withroot-chain.pem

# --- revocation: CRLs and OCSP responses from the intermediate
quiet openssl ca -batch -config db-intermediate/ca.cnf -revoke revoked.pem -crl_reason keyCompromise
quiet openssl ca -batch -config db-intermediate/ca.cnf -gencrl -crlexts crl_ext -out crl.pem
quiet openssl ca -batch -config db-intermediate/ca.cnf -gencrl -crlexts crl_ext \
  -crl_lastupdate 20200101000000Z -crl_nextupdate 20200102000000Z -out crl-expired.pem
for name in stapled revoked; do
  quiet openssl ocsp -index db-intermediate/index.txt -CA intermediate.pem -rsigner intermediate.pem \
    -rkey intermediate.key -issuer intermediate.pem -cert "$name.pem" -ndays 1 -respout "ocsp-$name.der"
done
# Bad staples for "stapled": signed by a certificate that is neither the issuer nor a
# delegated OCSP signer, and "unknown" (answered from an empty index).
quiet openssl ocsp -index db-intermediate/index.txt -CA intermediate.pem -rsigner wrongname.pem -rkey wrongname.key \
  -issuer intermediate.pem -cert stapled.pem -ndays 1 -respout ocsp-badsigner.der
: > empty-index.txt
quiet openssl ocsp -index empty-index.txt -CA intermediate.pem -rsigner intermediate.pem -rkey intermediate.key \
  -issuer intermediate.pem -cert stapled.pem -ndays 1 -respout ocsp-unknown.der
chmod 600 ./*.key
rm -f last-error.txt empty-index.txt

# --- self-check: the verdict each test relies on
fail=0
expect() { # WANT  openssl-verify-args...
  local want=$1; shift
  local got
  got=$(openssl verify -CAfile root.pem "$@" 2>&1 || true)
  if ! grep -qiF -- "$want" <<<"$got"; then
    echo "make-test-pki.sh: self-check: wanted \"$want\" from openssl verify $*, got: $got" >&2
    fail=1
  fi
}
U="-untrusted intermediate.pem"
# shellcheck disable=SC2086
{
expect ": OK" $U -purpose sslserver -verify_hostname good.test good.pem
expect ": OK" $U -verify_ip 198.19.0.10 good.pem
expect ": OK" $U -verify_ip 2001:2:0:1::10 good.pem
expect "unable to get local issuer certificate" -verify_hostname good.test good.pem
expect "certificate has expired" $U expired.pem
expect "certificate is not yet valid" $U notyet.pem
expect "hostname mismatch" $U -verify_hostname good.test wrongname.pem
expect "IP address mismatch" $U -verify_ip 198.19.0.14 wrongname.pem
expect ": OK" $U -verify_hostname a.wild.test wild.pem
expect "hostname mismatch" $U -verify_hostname a.b.wild.test wild.pem
expect "hostname mismatch" $U -verify_hostname wild.test wild.pem
expect ": OK" $U -verify_ip "$IPSAN" ipsan.pem
expect "hostname mismatch" $U -verify_hostname good.test ipsan.pem
expect "self-signed certificate" -verify_hostname good.test selfsigned.pem
expect "unable to get local issuer certificate" -untrusted untrusted-intermediate.pem untrusted.pem
expect "self-signed certificate in certificate chain" -untrusted untrusted-withroot-chain.pem untrusted.pem
expect "certificate revoked" $U -crl_check -CRLfile crl.pem revoked.pem
expect ": OK" $U -crl_check -CRLfile crl.pem good.pem
expect "CRL has expired" $U -crl_check -CRLfile crl-expired.pem good.pem
expect "certificate purpose" $U -purpose sslserver clientonly.pem
expect ": OK" $U -purpose sslclient client.pem
expect "too weak" $U -auth_level 1 sha1.pem
expect ": OK" -untrusted deep-chain.pem -verify_depth 2 -verify_hostname good.test deep.pem
expect "certificate chain too long" -untrusted deep-chain.pem -verify_depth 1 deep.pem
expect "too weak" $U -auth_level 2 rsa1024.pem
}
openssl x509 -in crlfsan.pem -noout -ext subjectAltName | grep -q $'evil.test\r$' \
  || { echo "make-test-pki.sh: self-check: crlfsan.pem lacks its CR LF" >&2; fail=1; }
openssl ocsp -respin ocsp-stapled.der -resp_text -noverify 2>/dev/null | grep -q "Cert Status: good" \
  || { echo "make-test-pki.sh: self-check: ocsp-stapled.der is not 'good'" >&2; fail=1; }
openssl ocsp -respin ocsp-revoked.der -resp_text -noverify 2>/dev/null | grep -q "Cert Status: revoked" \
  || { echo "make-test-pki.sh: self-check: ocsp-revoked.der is not 'revoked'" >&2; fail=1; }
openssl ocsp -respin ocsp-unknown.der -resp_text -noverify 2>/dev/null | grep -q "Cert Status: unknown" \
  || { echo "make-test-pki.sh: self-check: ocsp-unknown.der is not 'unknown'" >&2; fail=1; }
[ "$fail" -eq 0 ] || exit 1
touch .complete
echo "make-test-pki.sh: test PKI written to $out"
