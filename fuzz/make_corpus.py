"""Write the seed corpora and the JSON dictionary the fuzz harnesses start from.

	python fuzz/make_corpus.py OUT

OUT/callbacks/: every recorded callback under tests/data/callbacks, parsed as the kind its name says
and as every other kind, as bytes and as str; a few malformed bodies; verify_callback cases.
OUT/certificates/: every certificate and key under frappe_mpesa/sandbox/certs, as PEM and as DER, and
certificates the fuzzer would hardly reach by mutation (EC, Ed25519, DSA, 512-bit and e=3 RSA keys, dates
in 1950 and 9999, odd names), made with the cryptography package when it is installed.
OUT/callbacks.dict: the JSON keys and short string values of the recorded callbacks, for -dict=.
The input formats are in inputs.py.
"""

import base64
import datetime
import hashlib
import json
import re
import sys
from pathlib import Path

from inputs import KINDS, SECRET, callback_input, certificate_input, verify_input

ROOT = Path(__file__).resolve().parent.parent
CALLBACKS = ROOT / "tests" / "data" / "callbacks"
CERTS = ROOT / "frappe_mpesa" / "sandbox" / "certs"
# Which kind a recorded callback is, by the start of its file name.
KIND_OF = {
	"stk_": "stk",
	"c2b_validation": "c2b_validation",
	"c2b_confirmation": "c2b_confirmation",
	"timeout": "timeout",
	"pull_": "pull",
}
MALFORMED = [
	b"",
	b"{}",
	b"[]",
	b"null",
	b'{"Body":{"stkCallback":{}}}',
	b'{"Body":{"stkCallback":{"ResultCode":0,"CallbackMetadata":{"Item":[{"Name":"Amount"}]}}}}',
	b'{"Result":{"ResultParameters":{"ResultParameter":{"Key":"A","Value":1e999}}}}',
	b'{"TransAmount":"-0.00","TransTime":"20191122063845","TransID":"\\ud800"}',
	b'{"a":"\\u0000","b":-0,"c":1.5e-400,"d":123456789012345678901234567890}',
	b"[" * 70 + b"]" * 70,
	b'{"a":' * 70 + b"1" + b"}" * 70,
	b'{"a":"\xff\xfe"}',
	b'\xef\xbb\xbf{"a":1}',
	b'{"a":1,"a":2}',
]
SAFARICOM = "196.201.214.200,196.201.214.206,196.201.213.0/24,196.201.212.127/32"
VERIFY_CASES = [
	("196.201.214.200", SECRET, SAFARICOM),
	("196.201.213.114", SECRET, SAFARICOM),
	("::ffff:196.201.214.200", SECRET, SAFARICOM),
	("2001:db8:1:2::abcd", SECRET, "2001:db8::1/128,2001:db8:1:2::/64"),
	("196.201.214.200", SECRET, "::ffff:196.201.214.0/120"),
	("10.0.0.127", SECRET, "10.0.0.0/25"),
	("::1", SECRET, "::/0"),
	("196.201.214.200", SECRET, ""),
	("196.201.214.200", "wrong", SAFARICOM),
	("not an ip", SECRET, "nope/33"),
]


def kind_of(name):
	for prefix, kind in KIND_OF.items():
		if name.startswith(prefix):
			return kind
	return "result"


def write(directory, data):
	"""Store one input under its SHA-1, as libFuzzer names corpus files."""
	(directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def callback_seeds(out):
	directory = out / "callbacks"
	directory.mkdir(parents=True, exist_ok=True)
	samples = sorted(CALLBACKS.glob("*.json"))
	for path in samples:
		body = path.read_bytes()
		own = kind_of(path.stem)
		write(directory, callback_input(own, body))
		write(directory, bytes([KINDS.index(own) | 3 << 3]) + body)  # the same body as str
		for kind in KINDS:
			if kind != own:
				write(directory, callback_input(kind, body))
	for body in MALFORMED:
		for kind in KINDS:
			write(directory, callback_input(kind, body))
	for remote, given, allowlist in VERIFY_CASES:
		for form in range(4):
			write(directory, verify_input(remote, given, allowlist, form))
		write(directory, verify_input(remote, given, allowlist, 2, given_bytes=True))
	return len(samples)


def dictionary(out):
	"""JSON keys and short values of the samples, quoted as libFuzzer dictionaries want them."""
	words = set()

	def walk(node):
		if isinstance(node, dict):
			for key, value in node.items():
				words.add(json.dumps(key))
				walk(value)
		elif isinstance(node, list):
			for value in node:
				walk(value)
		elif isinstance(node, str) and len(node) <= 32:
			words.add(json.dumps(node))

	for path in sorted(CALLBACKS.glob("*.json")):
		walk(json.loads(path.read_bytes()))
	lines = []
	for word in sorted(words):
		escaped = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else f"\\x{ord(c):02x}" for c in word)
		lines.append(f'"{escaped}"')
	(out / "callbacks.dict").write_text("\n".join(lines) + "\n")
	return len(lines)


def pem_to_der(pem):
	"""The DER bytes of each PEM block in pem."""
	blocks = re.findall(rb"-----BEGIN [^-]+-----(.*?)-----END", pem, re.DOTALL)
	return [base64.b64decode(b"".join(block.split())) for block in blocks]


def generated_certificates():
	"""DER certificates with keys and fields the test certificates lack; [] without cryptography."""
	try:
		from cryptography import x509
		from cryptography.hazmat.primitives import hashes, serialization
		from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
		from cryptography.x509.oid import NameOID
	except ImportError:
		print("make_corpus: cryptography is not installed: no generated certificates", file=sys.stderr)
		return []
	signer = ec.generate_private_key(ec.SECP256R1())

	def certificate(key, name="frappe-mpesa fuzz seed", start=(2020, 1, 1), end=(2040, 1, 1)):
		subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
		builder = (
			x509.CertificateBuilder()
			.subject_name(subject)
			.issuer_name(subject)
			.public_key(key)
			.serial_number(1)
			.not_valid_before(datetime.datetime(*start))
			.not_valid_after(datetime.datetime(*end))
		)
		return builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

	small_rsa = rsa.RSAPublicNumbers(65537, (1 << 511) | 0xF1).public_key()  # refused: under 2048 bits
	# refused: exponent 3 (one byte from 1, 0 or an even exponent, for the fuzzer to reach)
	exponent_3 = rsa.RSAPublicNumbers(3, (1 << 2047) | 0xF1).public_key()
	return [
		certificate(signer.public_key()),
		certificate(ed25519.Ed25519PrivateKey.generate().public_key()),
		certificate(dsa.generate_private_key(1024).public_key()),
		certificate(small_rsa),
		certificate(exponent_3),
		certificate(
			rsa.generate_private_key(65537, 1024).public_key(), start=(1950, 1, 1), end=(9999, 12, 31)
		),
		certificate(signer.public_key(), name="\u00e9\u0000\u202e" * 10),
	]


def der_to_pem(der):
	lines = [base64.b64encode(der[i : i + 48]) for i in range(0, len(der), 48)]
	return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"


def certificate_seeds(out):
	directory = out / "certificates"
	directory.mkdir(parents=True, exist_ok=True)
	files = sorted(p for p in CERTS.iterdir() if p.suffix in (".pem", ".cer", ".key"))
	for path in files:
		data = path.read_bytes()
		for der in [data] if path.suffix == ".cer" else [data, *pem_to_der(data)]:
			write(directory, certificate_input(der))
			write(directory, certificate_input(der, password_index=0))
			write(directory, certificate_input(der, password_index=3, form=1))
		if path.suffix != ".cer":
			write(directory, certificate_input(data, password_index=2, form=3))
	generated = generated_certificates()
	for der in generated:
		write(directory, certificate_input(der, password_index=0))
		write(directory, certificate_input(der_to_pem(der), password_index=0))
	return len(files), len(generated)


def main(argv):
	if len(argv) != 2:
		print("usage: python fuzz/make_corpus.py OUT", file=sys.stderr)
		return 2
	out = Path(argv[1])
	samples = callback_seeds(out)
	words = dictionary(out)
	files, generated = certificate_seeds(out)
	print(
		f"seeds: {samples} recorded callbacks, {files} certificate files and {generated} generated "
		f"certificates, {words} dictionary words"
	)
	return 0


if __name__ == "__main__":
	sys.exit(main(sys.argv))
