#!/usr/bin/env bash
# A self-contained badssl-style PKI for Tests/integration/test_matrix.py (openssl CLI only).
#
# Usage: make-badssl-pki.sh OUTDIR [IP_SAN_ADDRESS]
#
# Independent of Scripts/make-test-pki.sh: its own root and intermediate, both issued with
# `openssl ca` (explicit -startdate/-enddate), and an intermediate CA database so that
# CRLs and OCSP responses can be made. EC P-256 everywhere except the RSA leaves.
#
# OUTDIR gets:
#   root.pem root.key                     the trusted root (the policies' `trust`)
#   intermediate.pem intermediate.key     issued by root; issues every leaf below
#   NAME.pem NAME.key NAME-chain.pem      leaf; chain = leaf + intermediate (served by the servers)
#     good        DNS:good.test                         valid now
#     expired     DNS:good.test                         2020-01-01 .. 2021-01-01
#     notyet      DNS:good.test                         starts in two years
#     wronghost   DNS:other.test
#     wild        DNS:*.wild.test
#     ipsan       IP:IP_SAN_ADDRESS only (CN is not a host name)
#     revoked     DNS:good.test, revoked (keyCompromise) in the intermediate's CRL and OCSP
#     stapled     DNS:good.test, "good" in its OCSP response
#     sha1        DNS:good.test, signed with ECDSA-SHA1
#     rsa1024     DNS:good.test, RSA 1024-bit key (signature SHA-256)
#     clientonly  DNS:good.test, extendedKeyUsage = clientAuth only
#     client      the gateway's client certificate for mTLS (clientAuth), key mode 600
#   selfsigned.pem/.key/-chain.pem        self-signed DNS:good.test
#   untrusted-root.pem/.key               a root nobody trusts; untrusted.pem/.key issued by it,
#                                         untrusted-chain.pem = leaf + that root
#   deep.pem/.key, deep-chain.pem         DNS:good.test under root > deepca1 > deepca2 (chain = leaf +
#                                         both CAs): 3 certificates above the leaf, root included
#   crl.pem                               the intermediate's current CRL (revoked listed)
#   crl-expired.pem                       a CRL whose nextUpdate passed (2020-01-02)
#   ocsp-stapled.der, ocsp-revoked.der    OCSP responses signed by the intermediate, 1 day
#   ocsp-badsigner.der                    "good" for stapled, signed by wronghost (not a responder)
#   ocsp-unknown.der                      "unknown" for stapled
#
# Checks every verdict with `openssl verify` before touching OUTDIR/.complete; idempotent.
set -euo pipefail
[ $# -ge 1 ] && [ $# -le 2 ] || { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
out=$1
ipsan=${2:-198.19.0.16}
mkdir -p "$out"
out=$(cd "$out" && pwd)
[ -f "$out/.complete" ] && exit 0
cd "$out"

stamp() { date -u -d "$1" +%Y%m%d%H%M%SZ; }
NOW_MINUS=$(stamp '-1 day')
IN_ONE_YEAR=$(stamp '+1 year')
IN_TWO_YEARS=$(stamp '+2 years')
IN_THREE_YEARS=$(stamp '+3 years')

quiet() { "$@" >/dev/null 2>"$out/last-error.txt" || { echo "make-badssl-pki.sh: failed: $*" >&2; cat "$out/last-error.txt" >&2; exit 1; }; }

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
commonName = supplied
organizationName = optional
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
  quiet openssl req -new -key "$name.key" -subj "/O=tlsgate matrix/CN=$cn" -out "$name.csr"
  printf '%b\n' "$ext" > "$name.ext"
  quiet openssl ca -batch -notext -config "db-$db/ca.cnf" -in "$name.csr" -out "$name.pem" \
    -extfile "$name.ext" -startdate "$start" -enddate "$end" "$@"
  rm -f "$name.csr" "$name.ext"
}

# --- root (self-signed through `openssl ca -selfsign`) and intermediate
ca_db root root.pem root.key
ec_key root.key
quiet openssl req -new -key root.key -subj "/O=tlsgate matrix/CN=tlsgate matrix root" -out root.csr
quiet openssl ca -batch -notext -selfsign -config db-root/ca.cnf -keyfile root.key -in root.csr -out root.pem \
  -extensions root_ext -startdate 20190101000000Z -enddate 20450101000000Z
rm -f root.csr
ec_key intermediate.key
quiet openssl req -new -key intermediate.key -subj "/O=tlsgate matrix/CN=tlsgate matrix intermediate" -out intermediate.csr
quiet openssl ca -batch -notext -config db-root/ca.cnf -in intermediate.csr -out intermediate.pem \
  -extensions int_ext -startdate 20190101000000Z -enddate 20450101000000Z
rm -f intermediate.csr
ca_db int intermediate.pem intermediate.key

LEAF='basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always'
SERVER="$LEAF\nextendedKeyUsage = serverAuth"

leaf() { # NAME CN SAN [START END [ca args]]
  local name=$1 cn=$2 san=$3 start=${4:-$NOW_MINUS} end=${5:-$IN_ONE_YEAR}
  shift $(( $# < 5 ? $# : 5 ))
  [ -f "$name.key" ] || ec_key "$name.key"
  issue int "$name" "$cn" "$SERVER\nsubjectAltName = $san" "$start" "$end" "$@"
  cat "$name.pem" intermediate.pem > "$name-chain.pem"
}

leaf good      good.test   DNS:good.test
leaf expired   good.test   DNS:good.test 20200101000000Z 20210101000000Z
leaf notyet    good.test   DNS:good.test "$IN_TWO_YEARS" "$IN_THREE_YEARS"
leaf wronghost other.test  DNS:other.test
leaf wild      "*.wild.test" 'DNS:*.wild.test'
leaf ipsan     "matrix ip-san leaf" "IP:$ipsan"
leaf revoked   good.test   DNS:good.test
leaf stapled   good.test   DNS:good.test
leaf sha1      good.test   DNS:good.test "$NOW_MINUS" "$IN_ONE_YEAR" -md sha1
rsa_key rsa1024.key 1024
leaf rsa1024   good.test   DNS:good.test
ec_key clientonly.key
issue int clientonly good.test "$LEAF\nextendedKeyUsage = clientAuth\nsubjectAltName = DNS:good.test" "$NOW_MINUS" "$IN_ONE_YEAR"
cat clientonly.pem intermediate.pem > clientonly-chain.pem
ec_key client.key
issue int client "tlsgate matrix client" "$LEAF\nextendedKeyUsage = clientAuth" "$NOW_MINUS" "$IN_ONE_YEAR"
cat client.pem intermediate.pem > client-chain.pem

# --- a longer chain for verify_depth: root > deepca1 > deepca2 > deep (served with both CAs)
CA_EXT='basicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always'
ec_key deepca1.key
issue root deepca1 "tlsgate matrix deep CA 1" "$CA_EXT" 20190101000000Z 20450101000000Z
ca_db deep1 deepca1.pem deepca1.key
ec_key deepca2.key
issue deep1 deepca2 "tlsgate matrix deep CA 2" "$CA_EXT" 20190101000000Z 20450101000000Z
ca_db deep2 deepca2.pem deepca2.key
ec_key deep.key
issue deep2 deep good.test "$SERVER\nsubjectAltName = DNS:good.test" "$NOW_MINUS" "$IN_ONE_YEAR"
cat deep.pem deepca2.pem deepca1.pem > deep-chain.pem

# --- self-signed leaf, and a whole hierarchy nobody trusts
ec_key selfsigned.key
ca_db self selfsigned.pem selfsigned.key
quiet openssl req -new -key selfsigned.key -subj "/O=tlsgate matrix/CN=good.test" -out selfsigned.csr
printf '%b\n' "basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\nsubjectAltName = DNS:good.test" > selfsigned.ext
quiet openssl ca -batch -notext -selfsign -config db-self/ca.cnf -keyfile selfsigned.key -in selfsigned.csr \
  -out selfsigned.pem -extfile selfsigned.ext -startdate "$NOW_MINUS" -enddate "$IN_ONE_YEAR"
rm -f selfsigned.csr selfsigned.ext
cp selfsigned.pem selfsigned-chain.pem

ca_db untrusted untrusted-root.pem untrusted-root.key
ec_key untrusted-root.key
quiet openssl req -new -key untrusted-root.key -subj "/O=tlsgate matrix/CN=tlsgate matrix UNTRUSTED root" -out untrusted-root.csr
quiet openssl ca -batch -notext -selfsign -config db-untrusted/ca.cnf -keyfile untrusted-root.key -in untrusted-root.csr \
  -out untrusted-root.pem -extensions root_ext -startdate 20190101000000Z -enddate 20450101000000Z
rm -f untrusted-root.csr
ec_key untrusted.key
issue untrusted untrusted good.test "$SERVER\nsubjectAltName = DNS:good.test" "$NOW_MINUS" "$IN_ONE_YEAR"
cat untrusted.pem untrusted-root.pem > untrusted-chain.pem

# --- revocation: CRLs and OCSP responses from the intermediate
quiet openssl ca -batch -config db-int/ca.cnf -revoke revoked.pem -crl_reason keyCompromise
quiet openssl ca -batch -config db-int/ca.cnf -gencrl -crlexts crl_ext -out crl.pem
quiet openssl ca -batch -config db-int/ca.cnf -gencrl -crlexts crl_ext \
  -crl_lastupdate 20200101000000Z -crl_nextupdate 20200102000000Z -out crl-expired.pem
for name in stapled revoked; do
  quiet openssl ocsp -index db-int/index.txt -CA intermediate.pem -rsigner intermediate.pem -rkey intermediate.key \
    -issuer intermediate.pem -cert "$name.pem" -ndays 1 -respout "ocsp-$name.der"
done
# Bad staples for "stapled": signed by a certificate that is neither the issuer nor a
# delegated OCSP signer, and "unknown" (answered from an empty index).
quiet openssl ocsp -index db-int/index.txt -CA intermediate.pem -rsigner wronghost.pem -rkey wronghost.key \
  -issuer intermediate.pem -cert stapled.pem -ndays 1 -respout ocsp-badsigner.der
: > empty-index.txt
quiet openssl ocsp -index empty-index.txt -CA intermediate.pem -rsigner intermediate.pem -rkey intermediate.key \
  -issuer intermediate.pem -cert stapled.pem -ndays 1 -respout ocsp-unknown.der
chmod 600 ./*.key
rm -f last-error.txt

# --- self-check: the verdict each case relies on
fail=0
expect() { # WANT  openssl-verify-args...
  local want=$1; shift
  local got
  got=$(openssl verify -CAfile root.pem "$@" 2>&1 || true)
  if ! grep -qiF -- "$want" <<<"$got"; then
    echo "make-badssl-pki.sh: self-check: wanted \"$want\" from openssl verify $*, got: $got" >&2
    fail=1
  fi
}
U="-untrusted intermediate.pem"
# shellcheck disable=SC2086
{
expect ": OK" $U -purpose sslserver -verify_hostname good.test good.pem
expect "unable to get local issuer certificate" -verify_hostname good.test good.pem
expect "certificate has expired" $U expired.pem
expect "certificate is not yet valid" $U notyet.pem
expect "hostname mismatch" $U -verify_hostname good.test wronghost.pem
expect ": OK" $U -verify_hostname a.wild.test wild.pem
expect "hostname mismatch" $U -verify_hostname a.b.wild.test wild.pem
expect ": OK" $U -verify_ip "$ipsan" ipsan.pem
expect "hostname mismatch" $U -verify_hostname good.test ipsan.pem
expect "self-signed certificate" -verify_hostname good.test selfsigned.pem
expect "self-signed certificate in certificate chain" -untrusted untrusted-root.pem untrusted.pem
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
openssl ocsp -respin ocsp-stapled.der -resp_text -noverify 2>/dev/null | grep -q "Cert Status: good" \
  || { echo "make-badssl-pki.sh: self-check: ocsp-stapled.der is not 'good'" >&2; fail=1; }
openssl ocsp -respin ocsp-revoked.der -resp_text -noverify 2>/dev/null | grep -q "Cert Status: revoked" \
  || { echo "make-badssl-pki.sh: self-check: ocsp-revoked.der is not 'revoked'" >&2; fail=1; }
openssl ocsp -respin ocsp-unknown.der -resp_text -noverify 2>/dev/null | grep -q "Cert Status: unknown" \
  || { echo "make-badssl-pki.sh: self-check: ocsp-unknown.der is not 'unknown'" >&2; fail=1; }
[ "$fail" -eq 0 ] || exit 1
touch .complete
echo "make-badssl-pki.sh: matrix PKI written to $out"
