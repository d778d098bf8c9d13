"""Payment links: a signed, expiring token naming one document, and how a large amount is split.

Plain Python (no Frappe import). A token is ``<payload>.<signature>``: the payload is the
URL-safe base64 of "doctype|name|expires|nonce", the signature an HMAC-SHA256 of it with the
site's secret, truncated to 128 bits. ``verify`` checks the signature in constant time before it
reads anything, then the expiry; replay and rate limits are the caller's, keyed by the nonce.
"""

import base64
import hashlib
import hmac
import secrets

SIGNATURE_BYTES = 16


class LinkError(ValueError):
	"""A token that is malformed, tampered with or expired; the message says which."""


def _b64(data):
	return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text):
	return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret, payload):
	if not secret or len(secret) < 32:
		raise LinkError("the site's link secret is missing or shorter than 32 bytes")
	return hmac.new(secret, payload.encode(), hashlib.sha256).digest()[:SIGNATURE_BYTES]


def sign(secret, doctype, name, expires, nonce=None):
	"""A token for ``doctype`` ``name`` valid until ``expires`` (a Unix time, whole seconds)."""
	for what, value in (("doctype", doctype), ("name", name)):
		if not value or "|" in value:
			raise LinkError(f"{what}: must be non-empty and free of '|'")
	nonce = nonce or secrets.token_urlsafe(12)
	payload = _b64(f"{doctype}|{name}|{int(expires)}|{nonce}".encode())
	return f"{payload}.{_b64(_signature(secret, payload))}"


def verify(secret, token, now):
	"""(doctype, name, expires, nonce) of a valid token at Unix time ``now``; LinkError otherwise."""
	if not isinstance(token, str) or len(token) > 1024 or token.count(".") != 1:
		raise LinkError("the link is malformed")
	payload, signature = token.split(".")
	try:
		given = _unb64(signature)
	except (ValueError, TypeError):
		raise LinkError("the link is malformed") from None
	if not hmac.compare_digest(given, _signature(secret, payload)):
		raise LinkError("the link's signature does not match")
	try:
		doctype, name, expires, nonce = _unb64(payload).decode().split("|")
		expires = int(expires)
	except (ValueError, UnicodeDecodeError):
		raise LinkError("the link is malformed") from None
	if now >= expires:
		raise LinkError("the link has expired")
	return doctype, name, expires, nonce


def split_amount(amount, limit):
	"""Whole-shilling parts of ``amount``, none above ``limit``, as even as possible (largest
	first): 250,001 at a 150,000 limit is [125,001, 125,000]."""
	amount, limit = int(amount), int(limit)
	if amount <= 0 or limit <= 0:
		raise ValueError("amount and limit must be positive")
	parts = -(-amount // limit)
	base, extra = divmod(amount, parts)
	return [base + 1] * extra + [base] * (parts - extra)
