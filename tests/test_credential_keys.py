"""Which certificate keys may make a Security Credential: RSA of at least 2048 bits with an odd
public exponent of at least 65537, nothing else. Certificates are made here with the openssl
command; exponents openssl refuses to generate (1, 0, negative, even) are written into the DER of a
good certificate (its signature no longer matches, which the core never checks)."""

import base64
import pathlib
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding

from frappe_mpesa import daraja

PASSWORD = "Initiator-Pass-42"
SAFARICOM = pathlib.Path(__file__).resolve().parents[2] / "shared" / "certs"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def openssl_certificate(directory, name, *newkey):
	"""A self-signed DER certificate made by `openssl req`; returns (certificate, private key PEM)."""
	key, cert = directory / f"{name}.key", directory / f"{name}.der"
	subprocess.run(
		[
			"openssl",
			"req",
			"-x509",
			"-nodes",
			"-days",
			"30",
			"-subj",
			f"/CN=frappe-mpesa test {name}",
			"-newkey",
			*newkey,
			"-keyout",
			key,
			"-outform",
			"DER",
			"-out",
			cert,
		],
		check=True,
		capture_output=True,
	)
	return cert.read_bytes(), key.read_bytes()


def tlv(data, at):
	"""(tag, start of content, end of content) of the DER element at offset `at`."""
	tag, first = data[at], data[at + 1]
	if first < 0x80:
		return tag, at + 2, at + 2 + first
	n = first & 0x7F
	length = int.from_bytes(data[at + 2 : at + 2 + n], "big")
	return tag, at + 2 + n, at + 2 + n + length


def encode(tag, content):
	n = len(content)
	if n < 0x80:
		return bytes([tag, n]) + content
	size = n.to_bytes((n.bit_length() + 7) // 8, "big")
	return bytes([tag, 0x80 | len(size)]) + size + content


def children(data, start, end):
	while start < end:
		tag, body, stop = tlv(data, start)
		yield tag, data[start:stop], data[body:stop]
		start = stop


def with_exponent(der, e, negative_modulus=False):
	"""The certificate with its RSA public exponent replaced by e (any integer), lengths fixed;
	with negative_modulus, the modulus's leading zero byte dropped, which makes it negative."""
	_, body, end = tlv(der, 0)
	tbs, *rest = [whole for _, whole, _ in children(der, body, end)]
	_, tbs_body, tbs_end = tlv(tbs, 0)
	fields = [whole for _, whole, _ in children(tbs, tbs_body, tbs_end)]
	spki = fields[6]  # version, serial, signature, issuer, validity, subject, subjectPublicKeyInfo
	algorithm, bits = [whole for _, whole, _ in children(spki, *tlv(spki, 0)[1:])]
	_, bits_body, bits_end = tlv(bits, 0)
	rsa = bits[bits_body + 1 : bits_end]  # after the unused-bits byte
	n, _ = [whole for _, whole, _ in children(rsa, *tlv(rsa, 0)[1:])]
	if negative_modulus:
		_, n_body, n_end = tlv(n, 0)
		assert n[n_body] == 0 and n[n_body + 1] & 0x80
		n = encode(0x02, n[n_body + 1 : n_end])
	exponent = encode(0x02, e.to_bytes(max(1, (e.bit_length() + 8) // 8), "big", signed=True))
	rsa = encode(0x30, n + exponent)
	fields[6] = encode(0x30, algorithm + encode(0x03, b"\x00" + rsa))
	return encode(0x30, encode(0x30, b"".join(fields)) + b"".join(rest))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
	directory = tmp_path_factory.mktemp("certificates")
	good, good_key = openssl_certificate(directory, "good", "rsa:2048")
	certs = {
		"good": good,
		"e=3": openssl_certificate(directory, "e3", "rsa:2048", "-pkeyopt", "rsa_keygen_pubexp:3")[0],
		"1024-bit": openssl_certificate(directory, "rsa1024", "rsa:1024")[0],
		"2047-bit": openssl_certificate(directory, "rsa2047", "rsa:2047")[0],
		"EC": openssl_certificate(directory, "ec", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")[0],
	}
	for e in (1, 0, -1, -65537, 65535, 65536, 65538, 65539, 2**64 + 1, 2**70):
		certs[f"e={e}"] = with_exponent(good, e)
	certs["negative modulus"] = with_exponent(good, 65537, negative_modulus=True)
	return certs, serialization.load_pem_private_key(good_key, password=None)


REFUSED = {
	"e=1": "public exponent 1;",
	"e=0": "public exponent 0;",
	"e=-1": "public exponent -1;",
	"e=-65537": "public exponent -65537;",
	"e=3": "public exponent 3;",
	"e=65535": "public exponent 65535;",
	"e=65536": "public exponent 65536;",
	"e=65538": "public exponent 65538;",
	f"e={2**70}": "a 71-bit even public exponent;",
	"1024-bit": "holds a 1024-bit RSA key; at least 2048 bits are needed",
	"2047-bit": "holds a 2047-bit RSA key",
	"EC": "must hold an RSA key, not EC",
	"negative modulus": "holds a malformed RSA public key",
}


def test_the_tweaked_certificates_hold_the_exponent_written(made):
	"""The DER rewrite above really produces what the refusals are about."""
	from cryptography import x509

	certs, _ = made
	assert with_exponent(certs["good"], 65537) == certs["good"]
	key = x509.load_der_x509_certificate(certs["e=65539"]).public_key()
	assert key.public_numbers().e == 65539 and key.key_size == 2048


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_weak_keys_make_no_credential(made, name):
	certs, _ = made
	with pytest.raises(daraja.ValidationError) as caught:
		daraja.security_credential(certs[name], PASSWORD)
	assert caught.value.field == "certificate"
	assert REFUSED[name] in str(caught.value)
	assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_weak_keys_are_not_described_as_usable(made, name):
	certs, _ = made
	with pytest.raises(daraja.ValidationError) as caught:
		daraja.certificate_info(certs[name])
	assert caught.value.field == "certificate"
	assert REFUSED[name] in str(caught.value)


def test_exponent_one_is_refused_even_after_a_good_key_was_cached(made):
	"""With e=1 the 'credential' is the padded password in clear: never produced."""
	certs, private_key = made
	credential = daraja.security_credential(certs["good"], PASSWORD)
	assert private_key.decrypt(base64.b64decode(credential), padding.PKCS1v15()).decode() == PASSWORD
	for _ in range(2):
		with pytest.raises(daraja.ValidationError):
			daraja.security_credential(certs["e=1"], PASSWORD)


@pytest.mark.parametrize("name", ["good", "e=65539", f"e={2**64 + 1}"])
def test_strong_keys_make_credentials(made, name):
	certs, _ = made
	info = daraja.certificate_info(certs[name])
	assert (info["key_type"], info["key_bits"]) == ("RSA", 2048)
	assert len(base64.b64decode(daraja.security_credential(certs[name], PASSWORD))) == 256


@pytest.mark.parametrize("name", ["sandbox.cer", "production.cer"])
def test_safaricoms_certificates_are_accepted(name):
	path = SAFARICOM / name
	if not path.exists():
		pytest.skip(f"Safaricom's {name} is not beside the checkout")
	assert daraja.certificate_info(path.read_bytes())["key_bits"] == 2048
	assert len(daraja.security_credential(path.read_bytes(), PASSWORD)) == 344
