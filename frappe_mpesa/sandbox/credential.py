"""The SecurityCredential check, done with the ``openssl`` command line, independently of the C core.

A credential is the initiator password encrypted with the public key of ``MPESA_TEST_CERT_PEM``,
PKCS#1 v1.5 padding, then base64. Anything that does not decrypt to the password with
``MPESA_TEST_KEY`` (another key, OAEP padding, bad base64) is wrong, as Daraja would find it.
"""

import base64
import binascii
import functools
import hmac
import subprocess

from frappe_mpesa.sandbox.protocol import DarajaError
from frappe_mpesa.sandbox.service import MPESA_TEST_KEY, logger

OPENSSL_TIMEOUT = 10


@functools.lru_cache(maxsize=256)
def decrypt(credential, key_file=MPESA_TEST_KEY):
	"""The plaintext of a base64 credential, or None when it does not decrypt; cached, as credentials are
	made once and reused."""
	try:
		ciphertext = base64.b64decode(credential, validate=True)
	except binascii.Error:
		return None
	command = ["openssl", "pkeyutl", "-decrypt", "-inkey", key_file, "-pkeyopt", "rsa_padding_mode:pkcs1"]
	try:
		done = subprocess.run(
			command, input=ciphertext, capture_output=True, timeout=OPENSSL_TIMEOUT, check=False
		)
	except (OSError, subprocess.TimeoutExpired) as error:
		# No answer is not a wrong credential: refuse the request rather than guess, and say why.
		logger.error("cannot run openssl to check a SecurityCredential: %s", error)
		raise DarajaError("500.003.1001", "Internal Server Error") from error
	return done.stdout if done.returncode == 0 else None


def credential_matches(credential, password):
	"""Whether the credential decrypts to password."""
	plaintext = decrypt(credential)
	return plaintext is not None and hmac.compare_digest(plaintext, password.encode())
