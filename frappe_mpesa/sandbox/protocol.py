"""What every simulated Daraja API shares: the error envelope, field validation, ids and Nairobi time.

A route handler gets ``(sandbox, request)`` and returns a ``Reply``, or raises ``DarajaError``, which
the dispatcher turns into Daraja's ``{"requestId", "errorCode", "errorMessage"}`` envelope with the HTTP
status taken from the code's prefix.
"""

import functools
import re
import secrets
import string
from collections import namedtuple
from datetime import datetime, timedelta, timezone

NAIROBI = timezone(timedelta(hours=3), "EAT")

INVALID_TOKEN = ("404.001.03", "Invalid Access Token")
INVALID_JSON = ("400.002.05", "Invalid JSON payload")
RESOURCE_NOT_FOUND = ("404.001.01", "Resource not found")
METHOD_NOT_ALLOWED = ("405.001", "Method Not Allowed")

# Daraja refuses callback URLs containing these words, in any case.
BANNED_URL_WORDS = ("mpesa", "m-pesa", "safaricom", "exe", "exec", "cmd", "sql", "query")

# Field patterns, matched in full against the value as text; numbers count as their decimal text.
SHORTCODE = r"\d{5,7}"
PHONE = r"254[71]\d{8}"
NOT_BLANK = r"\S+"
AMOUNT = r"[1-9]\d*"
URL = r"https?://[^/\s]+\S*"
IDENTIFIER = r"[A-Za-z0-9_.-]{1,64}"
REMARKS = r".{2,100}"
OCCASION = r".{0,100}"
DATE_TIME = r"\d{4}-\d{2}-\d{2} \d{1,2}:\d{2}:\d{2}"

Reply = namedtuple("Reply", "status body chunked", defaults=(False,))


class DarajaError(Exception):
	"""An error answered with Daraja's envelope; the HTTP status is the code's prefix."""

	def __init__(self, code, message):
		super().__init__(f"{code} {message}")
		self.code = code
		self.message = message

	def reply(self):
		"""The error as a response."""
		return Reply(int(self.code.split(".")[0]), envelope(self.code, self.message))


def optional(pattern):
	"""pattern, or nothing: an optional field is one whose pattern accepts the empty string."""
	return f"(?:{pattern})?"


def invalid(field):
	"""Daraja's error for a missing or malformed field."""
	return DarajaError("400.002.02", f"Bad Request - Invalid {field}")


def envelope(code, message):
	"""Daraja's error body."""
	return {"requestId": request_id(), "errorCode": code, "errorMessage": message}


def random_text(alphabet, length):
	"""Random characters from alphabet."""
	return "".join(secrets.choice(alphabet) for _ in range(length))


def digits(count):
	"""Random decimal digits."""
	return random_text(string.digits, count)


def request_id():
	"""A Daraja-style request id, e.g. 16813-15905133-1."""
	return f"{digits(5)}-{digits(8)}-1"


def conversation_id():
	"""A Daraja ConversationID, e.g. AG_20191219_00005797af5d7d75f652."""
	return f"AG_{nairobi_now():%Y%m%d}_{secrets.token_hex(10)}"


def receipt():
	"""An M-Pesa receipt (TransactionID, TransID, MpesaReceiptNumber): 10 uppercase letters and digits."""
	return random_text(string.ascii_uppercase + string.digits, 10)


def no_receipt():
	"""The TransactionID of a failed request: three letters and zeros, e.g. MAS0000000."""
	return random_text(string.ascii_uppercase, 3) + "0" * 7


def nairobi_now():
	"""Current time in Africa/Nairobi (UTC+3, no DST), whatever the host's time zone, to the second."""
	return datetime.now(NAIROBI).replace(microsecond=0)


def timestamp(moment):
	"""Daraja's 14-digit time, YYYYMMDDHHmmss."""
	return moment.strftime("%Y%m%d%H%M%S")


def check_fields(body, schema):
	"""Check body against schema (field -> pattern) and return the values as text; numbers count as text.

	Every field named ``...URL`` is a callback URL, also refused when it holds a banned word.
	"""
	values = {}
	for name, pattern in schema.items():
		value = body.get(name)
		if value is None:
			value = ""
		elif isinstance(value, int) and not isinstance(value, bool):
			value = str(value)
		# ASCII: \d must not accept other scripts' digits.
		if not isinstance(value, str) or not re.fullmatch(pattern, value, re.ASCII):
			raise invalid(name)
		if name.endswith("URL") and any(word in value.lower() for word in BANNED_URL_WORDS):
			raise invalid(name)
		values[name] = value
	return values


def json_api(handler):
	"""Make handler(sandbox, body) a Daraja API route: a valid Bearer token first, then a JSON object body."""

	@functools.wraps(handler)
	def route(sandbox, request):
		sandbox._check_token(request.header("Authorization"))
		if not isinstance(request.json, dict):
			raise DarajaError(*INVALID_JSON)
		return handler(sandbox, request.json)

	return route
