#!/usr/bin/env bash
# Regenerate every test certificate and key of the Daraja sandbox, in this directory.
#
#   ca.pem, ca.key                  test CA the sandbox's clients trust
#   server.pem, server.key          TLS certificate for localhost, 127.0.0.1 and ::1, signed by the test CA
#   untrusted_ca.pem                an unrelated CA, for "wrong CA" tests (its key is thrown away)
#   mpesa_test_cert.pem, .cer       stand-in for Safaricom's public key certificate (PEM and DER)
#   mpesa_test_key.pem              its private key, so tests can decrypt a Security Credential
#
# TEST ONLY: these keys are public. Never use them in production.
set -euo pipefail

cd "$(dirname "$0")"
days=7300
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# openssl chatters on stderr even when it succeeds: show its output only when it fails.
quiet() {
	local out
	if ! out=$("$@" 2>&1); then
		printf '%s\n' "$out" >&2
		return 1
	fi
}

# Self-signed CA; the key usage makes strict X.509 verifiers accept it as an issuer.
make_ca() {
	local cn=$1 cert=$2 key=$3
	quiet openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$days" \
		-subj "/O=frappe_mpesa/CN=$cn" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" \
		-keyout "$key" -out "$cert"
}

make_ca "frappe-mpesa-sandbox Test CA TEST ONLY" ca.pem ca.key
make_ca "frappe-mpesa-sandbox Untrusted CA TEST ONLY" untrusted_ca.pem "$work/untrusted_ca.key"

quiet openssl req -new -newkey rsa:2048 -nodes -sha256 \
	-subj "/O=frappe_mpesa/CN=localhost" \
	-keyout server.key -out "$work/server.csr"
cat >"$work/server.ext" <<'EXT'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EXT
quiet openssl x509 -req -sha256 -days "$days" -in "$work/server.csr" \
	-CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
	-extfile "$work/server.ext" -out server.pem

quiet openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$days" \
	-subj "/CN=frappe-mpesa-sandbox-apicrypt TEST ONLY" \
	-keyout mpesa_test_key.pem -out mpesa_test_cert.pem
quiet openssl x509 -in mpesa_test_cert.pem -outform DER -out mpesa_test_cert.cer

chmod 644 ./*.pem ./*.key ./*.cer
openssl verify -CAfile ca.pem server.pem >/dev/null
echo "test certificates written to $(pwd)"
