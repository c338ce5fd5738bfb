#!/usr/bin/env bash
# Generates the TEST certificates of broker/mosquitto.conf's TLS listener into a folder:
#   ca.crt ca.key            a test certificate authority
#   server.crt server.key    signed by it: CN=localhost, subjectAltName DNS:localhost, IP:127.0.0.1
#   client.crt client.key    a client certificate signed by the same CA
#   wrong-ca.crt wrong-ca.key  an unrelated CA, for tests that must be refused
# Keys are EC P-256, unencrypted and world-readable. For tests and local trials only; never for a real deployment.
# Existing files are kept (delete the folder to regenerate). MosquittoTestKit does the same in Swift.
#
# usage: scripts/make-certs.sh DIRECTORY      (e.g. broker/certs for docker-compose)
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 DIRECTORY" >&2
    exit 2
fi
if ! command -v openssl >/dev/null 2>&1; then
    echo "error: openssl not found. Install it: apt-get install openssl (Debian/Ubuntu), brew install openssl (macOS)" >&2
    exit 1
fi

out=$1
mkdir -p "$out"
cd "$out"
if [ -s ca.crt ] && [ -s server.crt ] && [ -s server.key ] && [ -s client.crt ] && [ -s client.key ] && [ -s wrong-ca.crt ]; then
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# A self-signed CA: $1 = file prefix, $2 = common name.
new_ca() {
    new_key "$1.key"
    cat >"$work/$1.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = $2
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    openssl req -x509 -new -config "$work/$1.cnf" -extensions v3_ca -key "$1.key" -days 3650 -out "$1.crt"
}

# A certificate signed by ca: $1 = file prefix, $2 = common name, $3 = extensions.
new_signed() {
    new_key "$1.key"
    printf '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = %s\n' "$2" >"$work/$1.cnf"
    printf '%b\n' "$3" >"$work/$1.ext"
    openssl req -new -config "$work/$1.cnf" -key "$1.key" -out "$work/$1.csr"
    openssl x509 -req -in "$work/$1.csr" -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
        -days 825 -extfile "$work/$1.ext" -out "$1.crt" 2>/dev/null
}

new_ca ca "swift-handoff test CA"
new_signed server localhost \
    "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost, IP:127.0.0.1"
new_signed client "swift-handoff test client" \
    "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature, keyEncipherment\nextendedKeyUsage = clientAuth"
new_ca wrong-ca "swift-handoff WRONG test CA"
# Test keys only: left readable so that a container's mosquitto user can read a mounted server.key.
chmod 644 ./*.crt ./*.key
