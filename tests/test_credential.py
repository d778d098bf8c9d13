"""Security Credential: RSA PKCS#1 v1.5 under the certificate's key, checked with an
independent implementation (the cryptography package) and the sandbox's test private key."""

import base64
import pathlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from frappe_mpesa import daraja
from frappe_mpesa.sandbox import MPESA_TEST_CERT_DER, MPESA_TEST_CERT_PEM, MPESA_TEST_KEY, SERVER_CERT

PASSWORD = "Safaricom999!*!"
PEM = pathlib.Path(MPESA_TEST_CERT_PEM).read_bytes()
DER = pathlib.Path(MPESA_TEST_CERT_DER).read_bytes()
PRIVATE_KEY = serialization.load_pem_private_key(pathlib.Path(MPESA_TEST_KEY).read_bytes(), password=None)


def decrypt(credential):
	return PRIVATE_KEY.decrypt(base64.b64decode(credential, validate=True), padding.PKCS1v15()).decode()


@pytest.mark.parametrize("certificate", [PEM, PEM.decode(), DER, bytearray(DER), memoryview(PEM)])
def test_decrypts_to_the_password_with_pkcs1_v15(certificate):
	credential = daraja.security_credential(certificate, PASSWORD)
	assert len(credential) == 344
	assert decrypt(credential) == PASSWORD


def test_output_is_randomised_per_call():
	assert daraja.security_credential(PEM, PASSWORD) != daraja.security_credential(PEM, PASSWORD)


def test_is_not_oaep():
	credential = base64.b64decode(daraja.security_credential(DER, PASSWORD))
	with pytest.raises(ValueError):
		PRIVATE_KEY.decrypt(
			credential, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
		)


@pytest.mark.parametrize("password", ["a", "p@ss#&%$word", "ñandú-パス", "x" * 245])
def test_any_password_round_trips(password):
	assert decrypt(daraja.security_credential(PEM, password)) == password


@pytest.mark.parametrize(
	"certificate",
	[
		b"",
		b"not a certificate",
		b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
		PEM[:200],
		DER[:-10],
		DER + b"trailing",
		b"\x30\x82\xff\xff" + b"\x00" * 64,
		pathlib.Path(MPESA_TEST_KEY).read_bytes(),
		b"x" * (70 * 1024),
		12345,
		None,
	],
)
def test_garbage_certificates_are_validation_errors(certificate):
	with pytest.raises(daraja.ValidationError) as caught:
		daraja.security_credential(certificate, PASSWORD)
	assert caught.value.field == "certificate"


def test_a_bad_certificate_leaves_no_stale_openssl_error_behind():
	with pytest.raises(daraja.ValidationError):
		daraja.security_credential(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", PASSWORD)
	assert decrypt(daraja.security_credential(PEM, PASSWORD)) == PASSWORD


@pytest.mark.parametrize("password", ["", "x" * 246, None, b"bytes"])
def test_bad_passwords_are_refused(password):
	with pytest.raises(daraja.ValidationError) as caught:
		daraja.security_credential(PEM, password)
	assert caught.value.field == "initiator_password"


def test_safaricoms_expired_certificates_are_accepted():
	"""Validity dates are not checked: Safaricom's current keys sit in long-expired certificates."""
	info = daraja.certificate_info(PEM)
	expired = pathlib.Path(__file__).resolve().parents[2] / "shared" / "certs" / "sandbox.cer"
	if not expired.exists():
		pytest.skip("Safaricom's published sandbox.cer is not beside the checkout")
	assert info["key_bits"] == 2048
	real = daraja.certificate_info(expired.read_bytes())
	assert real["not_after"].startswith("2016-")
	assert len(daraja.security_credential(expired.read_bytes(), PASSWORD)) == 344


def test_certificate_info_describes_the_certificate():
	pem_info = daraja.certificate_info(PEM)
	assert pem_info == daraja.certificate_info(DER)
	assert "TEST ONLY" in pem_info["subject"]
	assert pem_info["key_type"] == "RSA" and pem_info["key_bits"] == 2048
	assert len(pem_info["fingerprint_sha256"].split(":")) == 32
	assert pem_info["not_before"] < pem_info["not_after"]


def test_several_certificates_share_the_cache_without_mixing_keys():
	server = pathlib.Path(SERVER_CERT).read_bytes()
	for _ in range(3):
		assert decrypt(daraja.security_credential(PEM, PASSWORD)) == PASSWORD
		daraja.security_credential(server, PASSWORD)
