"""Redaction for anything written to a log or a log-like record: secrets removed, phones masked.

Plain Python (no Frappe import). Used for Integration Request-style records, the callback log,
and error messages that quote Daraja's answers.
"""

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from frappe_mpesa.urls import SECRET_PARAM

REDACTED = "********"

# Keys whose values are secrets wherever they appear (compared without case, '_' or '-').
SECRET_KEYS = frozenset(
	{
		"authorization",
		"password",
		"securitycredential",
		"accesstoken",
		"token",
		"passkey",
		"onlinepasskey",
		"consumersecret",
		"initiatorpassword",
		"callbacksecret",
		"secret",
	}
)
# Keys whose values hold a phone number, alone or inside text ("2547... - NAME").
PHONE_KEYS = frozenset(
	{
		"msisdn",
		"phone",
		"phonenumber",
		"partya",
		"partyb",
		"receiverpartypublicname",
		"debitpartyname",
		"creditpartyname",
		"nominatednumber",
		"requester",
		"sender",
	}
)
# 9 to 15 digits, optionally after '+': long enough to be a phone, too short to be a hash.
_PHONE = re.compile(r"(?<![0-9A-Za-z])\+?\d{9,15}(?![0-9A-Za-z])")


def _norm(key):
	return re.sub(r"[_\-\s]", "", str(key)).lower()


def mask_phone(value):
	"""2547XXXXXXXX -> 25470****149 style: the first 5 and last 3 digits stay, as Daraja masks."""
	if value is None:
		return value
	text = str(value)

	def mask(match):
		digits = match.group(0)
		plus = "+" if digits.startswith("+") else ""
		digits = digits.lstrip("+")
		return plus + digits[:5] + "*" * (len(digits) - 8) + digits[-3:]

	return _PHONE.sub(mask, text)


def redact_url(url):
	"""The URL with its callback secret replaced, so a logged URL can't be replayed."""
	try:
		parts = urlsplit(url)
	except ValueError:
		return REDACTED
	if not parts.query:
		return url
	query = [
		(key, REDACTED if key == SECRET_PARAM or _norm(key) in SECRET_KEYS else value)
		for key, value in parse_qsl(parts.query, keep_blank_values=True)
	]
	return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


def redact(value, key=None):
	"""A copy of a JSON-like value with secrets replaced and phone numbers masked.

	Handles Daraja's {"Name"/"Key": ..., "Value": ...} items, where the key is in the item.
	"""
	norm = _norm(key) if key is not None else ""
	if norm in SECRET_KEYS:
		return REDACTED if value not in (None, "") else value
	if isinstance(value, dict):
		label = value.get("Name", value.get("Key"))
		if label is not None and "Value" in value:
			redacted_value = redact(value["Value"], label)
			return {**{k: redact(v, k) for k, v in value.items() if k != "Value"}, "Value": redacted_value}
		return {k: redact(v, k) for k, v in value.items()}
	if isinstance(value, list | tuple):
		if len(value) == 2 and isinstance(value[0], str) and not isinstance(value[1], dict | list | tuple):
			# A (key, value) pair, as a parsed result's list of parameters can hold them.
			# Redacted as the pair's own key says, and as the list's key says.
			return [redact(value[0], key), redact(redact(value[1], value[0]), key)]
		return [redact(item, key) for item in value]
	if isinstance(value, str):
		if value.startswith(("https://", "http://")):
			return redact_url(value)
		if norm in PHONE_KEYS:
			return mask_phone(value)
		return value
	if isinstance(value, int) and not isinstance(value, bool) and norm in PHONE_KEYS:
		return mask_phone(value)
	return value


# ---- bodies nothing has parsed ---------------------------------------------------------

# Nesting the C core accepts in a callback body (DR_MAX_DEPTH): deeper is refused, never parsed.
MAX_SHOWN_DEPTH = 32
# Characters of a refused body kept for reading.
MAX_SHOWN_TEXT = 4096
# A string (possibly cut off unterminated) or a bare literal.
_VALUE = r'(?:"(?:[^"\\]|\\.)*"?|[^\s,\]}"]+)'
# "Key": value, and Daraja's items {"Name"/"Key": "Key", "Value": value}.
_MEMBER = re.compile(r'"((?:[^"\\]|\\.){1,64})"(\s*:\s*)(' + _VALUE + ")")
_ITEM = re.compile(r'("(?:Name|Key)"\s*:\s*"((?:[^"\\]|\\.){1,64})"\s*,\s*"Value"\s*:\s*)(' + _VALUE + ")")
_SECRET_QUERY = re.compile(r"([?&]%s=)[^&\"'\s\\]*" % re.escape(SECRET_PARAM))


def nesting_within(text, limit=MAX_SHOWN_DEPTH):
	"""True iff JSON-like ``text`` never nests arrays/objects deeper than ``limit``.

	One pass, no recursion: brackets inside strings are skipped, so a body this accepts can be
	given to a recursive parser without risk; it says nothing about the body being valid JSON.
	"""
	depth = 0
	in_string = escaped = False
	for char in text:
		if in_string:
			if escaped:
				escaped = False
			elif char == "\\":
				escaped = True
			elif char == '"':
				in_string = False
		elif char == '"':
			in_string = True
		elif char in "[{":
			depth += 1
			if depth > limit:
				return False
		elif char in "]}":
			depth -= 1
	return True


def loads_shallow(body, limit=MAX_SHOWN_DEPTH):
	"""JSON ``body`` (bytes or str) parsed only if it nests at most ``limit`` deep; ValueError otherwise."""
	import json

	text = body.decode("utf-8") if isinstance(body, bytes) else body
	if not nesting_within(text, limit):
		raise ValueError(f"nested deeper than {limit} levels")
	try:
		return json.loads(text)
	except RecursionError:  # unreachable after the depth check; kept so no caller ever sees it
		raise ValueError("nested too deep") from None


def redact_text(text, limit=MAX_SHOWN_TEXT):
	"""A body that could not be parsed, made fit to keep: values of members and items named like
	secrets replaced, the callback secret in URLs replaced, phone numbers masked, and the result
	cut to ``limit`` characters (after redacting, so a cut never reveals part of a secret)."""

	def member(match):
		if _norm(match.group(1)) in SECRET_KEYS and match.group(3) not in ('""', "null"):
			return f'"{match.group(1)}"{match.group(2)}"{REDACTED}"'
		return match.group(0)

	def item(match):
		if _norm(match.group(2)) in SECRET_KEYS and match.group(3) not in ('""', "null"):
			return f'{match.group(1)}"{REDACTED}"'
		return match.group(0)

	text = _ITEM.sub(item, _MEMBER.sub(member, text))
	text = mask_phone(_SECRET_QUERY.sub(lambda m: m.group(1) + REDACTED, text))
	if len(text) > limit:
		return text[:limit] + f"\n... ({len(text) - limit} more characters not kept)"
	return text
