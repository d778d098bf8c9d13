"""How a fuzzer's bytes become one call into the C core; shared by the harnesses and make_corpus.py.

Both formats start with one selector byte and carry the payload after it, so that a seed is a
recorded sample with one byte in front and the mutations stay close to real inputs.

Callbacks (fuzz_callbacks.py), selector ``s``:

- ``s & 7`` in 0..5: ``parse_callback(body, KINDS[s & 7])``; ``(s >> 3) & 3`` picks the body's
  type: bytes, bytearray, memoryview, or str (decoded with surrogateescape, so lone surrogates occur).
- ``s & 7`` in 6..7: ``verify_callback(SECRET, given, remote_addr, allowlist)``; the payload is
  ``remote_addr \\n given \\n allowlist``; ``(s >> 3) & 3`` picks the allowlist's form: None, the
  text itself, a list of its comma-separated entries, or a generator of them; ``s & 0x20`` sends
  ``given`` as bytes instead of str.

Certificates (fuzz_certificates.py), selector ``s``, payload the certificate (PEM or DER):

- ``certificate_info(certificate)`` always;
- ``s & 1``: ``security_credential(certificate, PASSWORDS[(s >> 1) & 3])`` too;
- ``(s >> 3) & 3`` picks the certificate's type: bytes, bytearray, memoryview, or str.
"""

KINDS = ("stk", "c2b_validation", "c2b_confirmation", "result", "timeout", "pull")
VERIFY = 6
SECRET = "k3J9x-Qq_2mVbWn8R7tY0uZpLs4HdFgAeCi6oN1xT5w"
# Normal, empty (refused), the longest a 2048-bit key takes (245 bytes), one byte too many.
PASSWORDS = ("Safaricom999!*!", "", "p" * 245, "p" * 246)


def as_type(payload, form):
	"""payload (bytes) as bytes, bytearray, memoryview or str, by form 0..3."""
	if form == 1:
		return bytearray(payload)
	if form == 2:
		return memoryview(payload)
	if form == 3:
		return payload.decode("utf-8", "surrogateescape")
	return payload


def text(payload):
	"""payload as str; invalid UTF-8 becomes lone surrogates, which the C core must refuse cleanly."""
	return payload.decode("utf-8", "surrogateescape")


def callback_call(data):
	"""(function name, args) for one callback input; None for an empty input."""
	if not data:
		return None
	selector, payload = data[0], data[1:]
	form = (selector >> 3) & 3
	if selector & 7 < VERIFY:
		return "parse_callback", (as_type(payload, form), KINDS[selector & 7])
	remote, _, rest = payload.partition(b"\n")
	given, _, allowlist = rest.partition(b"\n")
	entries = [text(e) for e in allowlist.split(b",")]
	allowlist = (None, text(allowlist), entries, (e for e in entries))[form]
	given = given if selector & 0x20 else text(given)
	return "verify_callback", (SECRET, given, text(remote), allowlist)


def callback_input(kind, body):
	"""The input that parses body (bytes) as a callback of kind."""
	return bytes([KINDS.index(kind)]) + body


def verify_input(remote, given, allowlist, form=1, given_bytes=False):
	"""The input that verifies a callback from remote with secret given against allowlist (all str)."""
	selector = VERIFY | form << 3 | (0x20 if given_bytes else 0)
	return bytes([selector]) + f"{remote}\n{given}\n{allowlist}".encode()


def certificate_call(data):
	"""(certificate, password or None) for one certificate input; None for an empty input."""
	if not data:
		return None
	selector, payload = data[0], data[1:]
	password = PASSWORDS[(selector >> 1) & 3] if selector & 1 else None
	return as_type(payload, (selector >> 3) & 3), password


def certificate_input(certificate, password_index=None, form=0):
	"""The input that reads certificate (bytes), and makes a credential with PASSWORDS[password_index]."""
	selector = form << 3
	if password_index is not None:
		selector |= 1 | password_index << 1
	return bytes([selector]) + certificate
