"""Fuzz harness (atheris): certificate_info and security_credential on fuzzed PEM and DER.

	python fuzz/fuzz_certificates.py [libFuzzer options] CORPUS_DIR...   # make fuzz runs it
	python fuzz/fuzz_certificates.py REPRODUCER                          # replay one input

A ValidationError is the expected answer to a bad input. Any other exception, a crash, a sanitizer
report, a hang or a wrong answer is a finding:

- certificate_info returns a dict with the key's size in "key_bits";
- security_credential returns base64 text that decodes to exactly one RSA block of that key.
"""

import base64
import binascii
import sys

import atheris
from inputs import certificate_call

from frappe_mpesa import daraja


def check_info(info):
	assert type(info) is dict, f"certificate_info returned {type(info).__name__}"
	assert type(info.get("key_bits")) is int, f"key_bits is {info.get('key_bits')!r}"


def check_credential(credential, info):
	assert type(credential) is str, f"security_credential returned {type(credential).__name__}"
	try:
		block = base64.b64decode(credential, validate=True)
	except binascii.Error as error:
		raise AssertionError(f"the credential is not base64: {error}") from None
	if info is not None:
		size = (info["key_bits"] + 7) // 8
		assert len(block) == size, f"{len(block)}-byte credential for a {info['key_bits']}-bit key"


def test_one_input(data):
	call = certificate_call(data)
	if call is None:
		return
	certificate, password = call
	info = None
	try:
		info = daraja.certificate_info(certificate)
	except daraja.ValidationError:
		pass
	else:
		check_info(info)
	if password is None:
		return
	try:
		credential = daraja.security_credential(certificate, password)
	except daraja.ValidationError:
		return
	check_credential(credential, info)


def main():
	atheris.Setup(sys.argv, test_one_input)
	atheris.Fuzz()


if __name__ == "__main__":
	main()
