"""``python -m frappe_mpesa credential|certificate``: Safaricom certificates and Security Credentials,
for operators.

	python -m frappe_mpesa certificate FILE                     # what the certificate is
	python -m frappe_mpesa credential FILE                      # asks for the initiator password
	printf '%s\\n' "$PASSWORD" | python -m frappe_mpesa credential --password-stdin FILE

Both refuse what the C core refuses (not a certificate; a key that is not RSA, under 2048 bits or
with a public exponent that is not odd and at least 65537) with one line on stderr and exit
status 2. The password is read without echo from the terminal, or from the first line of standard
input with --password-stdin; it is never printed, and only the credential goes to stdout.
"""

import argparse
import datetime
import getpass
import os
import sys

from frappe_mpesa import daraja

MAX_CERTIFICATE_BYTES = 64 * 1024  # the core refuses more; reading stops just past it
EXIT_REFUSED = 2


class Refused(Exception):
	"""What the operator is told, on one line, before exit status 2."""


def read_certificate(path):
	"""The file's bytes, at most one past what the core accepts (so /dev/zero cannot hang us)."""
	try:
		with open(path, "rb") as f:
			return f.read(MAX_CERTIFICATE_BYTES + 1)
	except OSError as error:
		raise Refused(f"{path}: {error.strerror or error}") from None


def refusal(error, path):
	"""A ValidationError as one line that names the file or the password."""
	text = str(error)
	field = getattr(error, "field", "")
	if text.startswith(f"{field}: "):
		text = text[len(field) + 2 :]
	subject = path if field == "certificate" else field.replace("_", " ")
	return f"{subject}: {text}"


def describe(path):
	"""The certificate's info dict; Refused when it cannot make a Security Credential."""
	certificate = read_certificate(path)
	try:
		return certificate, daraja.certificate_info(certificate)
	except daraja.ValidationError as error:
		raise Refused(refusal(error, path)) from None


def read_password(from_stdin):
	"""The initiator password: the first line of stdin, or typed at the terminal without echo."""
	if from_stdin:
		line = sys.stdin.readline()
		if not line:
			raise Refused("no password on standard input")
		return line[:-2] if line.endswith("\r\n") else line.removesuffix("\n")
	try:
		os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
	except OSError:
		raise Refused("no terminal to read the password from; use --password-stdin") from None
	try:
		return getpass.getpass("Initiator password: ")
	except EOFError:
		raise Refused("no password given") from None


def run(prog, main, argv):
	"""Run main(argv); a Refused becomes one line on stderr and exit status 2, Ctrl-C status 130."""
	try:
		return main(argv)
	except Refused as error:
		print(f"{prog}: {error}", file=sys.stderr)
		return EXIT_REFUSED
	except KeyboardInterrupt:
		print(file=sys.stderr)
		return 130


def credential(argv):
	parser = argparse.ArgumentParser(
		prog="python -m frappe_mpesa credential",
		description="Print the Security Credential for an initiator password: the password encrypted "
		"under the certificate's public key, as Daraja's B2C, B2B, reversal, status and balance "
		"requests carry it.",
	)
	parser.add_argument("certificate", help="Safaricom's public key certificate, PEM or DER")
	parser.add_argument(
		"--password-stdin",
		action="store_true",
		help="read the password from the first line of standard input instead of the terminal",
	)
	args = parser.parse_args(argv)
	certificate, _ = describe(args.certificate)  # a bad certificate is refused before the password
	password = read_password(args.password_stdin)
	try:
		print(daraja.security_credential(certificate, password))
	except daraja.ValidationError as error:
		raise Refused(refusal(error, args.certificate)) from None
	return 0


def certificate(argv):
	parser = argparse.ArgumentParser(
		prog="python -m frappe_mpesa certificate",
		description="Show what a certificate is, and whether it can make a Security Credential.",
	)
	parser.add_argument("certificate", help="a public key certificate, PEM or DER")
	args = parser.parse_args(argv)
	_, info = describe(args.certificate)
	now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
	not_after = info["not_after"] or "unreadable"
	if info["not_after"] and info["not_after"] < now:
		not_after += " (expired: Daraja does not check certificate dates)"
	facts = {
		"subject": info["subject"],
		"issuer": info["issuer"],
		"key": f"{info['key_type']} {info['key_bits']}-bit",
		"SHA-256 fingerprint": info["fingerprint_sha256"],
		"not before": info["not_before"] or "unreadable",
		"not after": not_after,
	}
	for name, value in facts.items():
		print(f"{name + ':':21}{value}")
	return 0


def credential_main(argv=None):
	return run("credential", credential, argv)


def certificate_main(argv=None):
	return run("certificate", certificate, argv)
