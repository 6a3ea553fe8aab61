#!/usr/bin/env bash
# Throw-away TLS material for tests (never committed): scripts/certs.sh DIR
#
#   DIR/ca.pem, ca.key              a self-signed test CA
#   DIR/server.pem, server.key      a server certificate signed by it: CN=127.0.0.1,
#                                   subjectAltName IP:127.0.0.1 only (so "localhost" is a wrong
#                                   host name), extendedKeyUsage serverAuth; the key is an
#                                   unencrypted PKCS#8 PEM, mode 600 (PostgreSQL insists)
#   DIR/other-ca.pem, other-ca.key  a second, unrelated CA (the "untrusted CA" case)
#
# RSA 2048, valid for 2 days. Does nothing when DIR/ca.pem exists; ca.pem is written last, so
# a run that failed half-way is redone. Prints nothing on success.
set -euo pipefail

DIR="${1:?usage: scripts/certs.sh DIR}"
[[ -f "$DIR/ca.pem" ]] && exit 0
mkdir -p "$DIR"
tmp="$(mktemp -d "$DIR/.certs.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

quiet() {
  # openssl chatters on stderr (key generation progress, "subject=..."): show it only on failure.
  "$@" 2>"$tmp/stderr" || { echo "certs.sh: $1 failed:" >&2; cat "$tmp/stderr" >&2; exit 1; }
}

cat > "$tmp/openssl.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
CNF

new_key() {
  # An unencrypted PKCS#8 RSA key, owner-only from its first byte.
  (umask 077 && quiet openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1")
}

new_ca() {
  new_key "$tmp/$1.key"
  quiet openssl req -config "$tmp/openssl.cnf" -x509 -new -key "$tmp/$1.key" -sha256 -days 2 \
    -subj "/CN=$2" -extensions ca_ext -out "$tmp/$1.pem"
}

new_ca ca "certificate-consumer test CA"
new_ca other-ca "certificate-consumer unrelated test CA"

new_key "$tmp/server.key"
quiet openssl req -config "$tmp/openssl.cnf" -new -key "$tmp/server.key" -subj "/CN=127.0.0.1" \
  -out "$tmp/server.csr"
quiet openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
  -set_serial "0x$(openssl rand -hex 16)" -sha256 -days 2 \
  -extfile "$tmp/openssl.cnf" -extensions server_ext -out "$tmp/server.pem"

chmod 600 "$tmp/ca.key" "$tmp/other-ca.key" "$tmp/server.key"
chmod 644 "$tmp/ca.pem" "$tmp/other-ca.pem" "$tmp/server.pem"
for f in other-ca.key other-ca.pem server.key server.pem ca.key ca.pem; do
  mv -f "$tmp/$f" "$DIR/$f"
done
