#!/usr/bin/env bash
# Throwaway certificates for a local TLS etcd, made with the system's openssl:
#
#   scripts/make-certs.sh DIR
#
# writes into DIR (created if needed; files already there are kept):
#   ca.crt, ca.key          a CA that exists only on this machine
#   server.crt, server.key  etcd's certificate, for 127.0.0.1, ::1 and localhost only (clientAuth too:
#                           etcd 3.4 dials itself with it for its HTTP gateway)
#   client.crt, client.key  a client certificate with CN=app: with --client-cert-auth, etcd takes the CN
#                           as the user name when a request carries no password login
#
# `scripts/etcd.sh up --secure` and the tests' secure etcd use it. Never use these certificates for anything
# but a local etcd: the CA key sits next to them, unencrypted.
set -euo pipefail

dir=${1:?usage: $0 DIR}
days=3650
command -v openssl >/dev/null 2>&1 ||
  { echo "make-certs.sh: error: openssl is missing; install it (Debian: sudo apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"
[ -s ca.crt ] && [ -s server.crt ] && [ -s client.crt ] && exit 0

# P-256 keys: quick to make, and every TLS stack (Go's in etcd, rustls here) accepts them.
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# sign NAME CN EXTENSIONS: a certificate for NAME.key, signed by the CA.
sign() {
  printf '%b' "$3" >"$1.ext"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

umask 077
key ca.key
openssl req -x509 -new -key ca.key -subj "/CN=etcd-by-example local CA" -days "$days" -out ca.crt 2>/dev/null
key server.key
sign server etcd "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n"
key client.key
sign client app "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n"
rm -f ca.srl
chmod 644 ./*.crt
