"""Local HTTPS simulator of Safaricom's Daraja API, standard library only.

It answers like Daraja: OAuth tokens, STK push and STK query, the ``{"requestId", "errorCode",
"errorMessage"}`` envelope with the HTTP status taken from the code's prefix, and the STK callback POSTed
to the CallBackURL ``callback_delay`` seconds after the push.

Wrong consumer key or secret: HTTP 400 with ``{"resultCode": "999991", "resultDesc": "Invalid client id
passed"}`` (Daraja answers 400 "Bad Request - Invalid Credentials", with that body or none). A token is
valid for ``token_ttl`` seconds and issuing one does not revoke the others.

The STK outcome is chosen by the push's PhoneNumber (``STK_OUTCOMES``):

=============  ==========  ===================================================================
PhoneNumber    ResultCode  ResultDesc
=============  ==========  ===================================================================
254700000001   1           The balance is insufficient for the transaction.
254700001032   1032        Request cancelled by user
254700001037   1037        DS timeout user cannot be reached
254700002001   2001        The initiator information is invalid.  (wrong PIN)
254700000017   17          Rule limited.  (same amount to the same customer within 2 minutes)
254700001001   1001        Unable to lock subscriber, a transaction is already in process ...
254700001019   1019        Transaction has expired
any other      0           The service request is processed successfully.
=============  ==========  ===================================================================

Only a successful callback carries ``CallbackMetadata``, whose Balance item has no Value, as Daraja's
does. A transaction is "pending" until its callback is dispatched, then "final"; STK query answers
HTTP 500 "The transaction is being processed" while it is pending.

Faults (``Sandbox.fault``) disturb matching requests; the first installed fault whose path matches
(or is ``"*"``) applies, and ``times=N`` removes it after N requests. ``FAULT_MODES`` lists the modes.

Control endpoints, which need no token and are never recorded or faulted, let another process drive
a sandbox: ``GET /__sandbox__/stats``, ``POST /__sandbox__/fault``, ``POST /__sandbox__/reset``.

A new Daraja API is one ``@json_api`` handler plus one line in ``ROUTES``.
"""

import base64
import binascii
import functools
import hmac
import http.client
import itertools
import json
import re
import secrets
import socket
import ssl
import string
import struct
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, namedtuple
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from frappe_mpesa.sandbox.service import CA_FILE, Handler, HttpsService

DEFAULT_CONSUMER_KEY = "frappeMpesaSandboxConsumerKey"
DEFAULT_CONSUMER_SECRET = "frappeMpesaSandboxConsumerSecret"
# Safaricom's public sandbox shortcode and passkey.
DEFAULT_SHORTCODE = "174379"
DEFAULT_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"

STK_SUCCESS = (0, "The service request is processed successfully.")
STK_OUTCOMES = {
	"254700000001": (1, "The balance is insufficient for the transaction."),
	"254700001032": (1032, "Request cancelled by user"),
	"254700001037": (1037, "DS timeout user cannot be reached"),
	"254700002001": (2001, "The initiator information is invalid."),
	"254700000017": (17, "Rule limited."),
	"254700001001": (
		1001,
		"Unable to lock subscriber, a transaction is already in process for the current subscriber",
	),
	"254700001019": (1019, "Transaction has expired"),
}

OAUTH_PATH = "/oauth/v1/generate"
STK_PUSH_PATH = "/mpesa/stkpush/v1/processrequest"
STK_QUERY_PATH = "/mpesa/stkpushquery/v1/query"
CONTROL_PREFIX = "/__sandbox__/"

NAIROBI = timezone(timedelta(hours=3), "EAT")
TIMESTAMP_TOLERANCE = 300
CALLBACK_TIMEOUT = 5
OVERSIZE_BYTES = 2 * 1024 * 1024
MALFORMED_BODY = b'{"access_token": "abc",'
BAD_CLIENT_BODY = {"resultCode": "999991", "resultDesc": "Invalid client id passed"}
STK_ACCEPTED = "Success. Request accepted for processing"
BANNED_URL_WORDS = ("mpesa", "m-pesa", "safaricom", "exe", "exec", "cmd", "sql", "query")
PENDING, FINAL = "pending", "final"

INVALID_TOKEN = ("404.001.03", "Invalid Access Token")
INVALID_JSON = ("400.002.05", "Invalid JSON payload")
RESOURCE_NOT_FOUND = ("404.001.01", "Resource not found")
METHOD_NOT_ALLOWED = ("405.001", "Method Not Allowed")

SHORTCODE = r"\d{5,7}"
PHONE = r"254[71]\d{8}"
NOT_BLANK = r"\S+"
# Lipa Na M-Pesa credentials, common to the STK push and query bodies.
LNM_FIELDS = {"BusinessShortCode": SHORTCODE, "Password": NOT_BLANK, "Timestamp": r"\d{14}"}
# An optional field is one whose pattern accepts the empty string.
STK_PUSH_FIELDS = {
	**LNM_FIELDS,
	"TransactionType": r"CustomerPayBillOnline|CustomerBuyGoodsOnline",
	"Amount": r"[1-9]\d*",
	"PartyA": PHONE,
	"PartyB": SHORTCODE,
	"PhoneNumber": PHONE,
	"CallBackURL": r"https?://[^/\s]+\S*",
	"AccountReference": r".{1,12}",
	"TransactionDesc": r".{0,13}",
}
STK_QUERY_FIELDS = {**LNM_FIELDS, "CheckoutRequestID": NOT_BLANK}

Reply = namedtuple("Reply", "status body")
Callback = namedtuple("Callback", "url payload result")


class DarajaError(Exception):
	"""An error answered with Daraja's envelope; the HTTP status is the code's prefix."""

	def __init__(self, code, message):
		super().__init__(f"{code} {message}")
		self.code = code
		self.message = message

	def reply(self):
		"""The error as a response."""
		return Reply(int(self.code.split(".")[0]), envelope(self.code, self.message))


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


def nairobi_now():
	"""Current time in Africa/Nairobi (UTC+3, no DST), whatever the host's time zone."""
	return datetime.now(NAIROBI)


def check_fields(body, schema):
	"""Check body against schema (field -> pattern) and return the values as text; numbers count as text."""
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
		values[name] = value
	return values


def check_callback_url(url):
	"""Refuse a callback URL containing a word Daraja bans, in any case."""
	lowered = url.lower()
	if any(word in lowered for word in BANNED_URL_WORDS):
		raise invalid("CallBackURL")


def check_credentials(sandbox, values):
	"""Check the Timestamp is Nairobi time within tolerance, then the Password for the configured passkey."""
	try:
		sent = datetime.strptime(values["Timestamp"], "%Y%m%d%H%M%S").replace(tzinfo=NAIROBI)
	except ValueError:
		raise invalid("Timestamp") from None
	if abs((sent - nairobi_now()).total_seconds()) > TIMESTAMP_TOLERANCE:
		raise invalid("Timestamp")
	expected = base64.b64encode(
		f"{values['BusinessShortCode']}{sandbox._passkey}{values['Timestamp']}".encode()
	)
	if not hmac.compare_digest(expected, values["Password"].encode()):
		raise DarajaError("500.001.1001", "Wrong credentials")


def json_api(handler):
	"""Make handler(sandbox, body) a Daraja API route: a valid Bearer token first, then a JSON object body."""

	@functools.wraps(handler)
	def route(sandbox, request):
		sandbox._check_token(request.header("Authorization"))
		if not isinstance(request.json, dict):
			raise DarajaError(*INVALID_JSON)
		return handler(sandbox, request.json)

	return route


def oauth(sandbox, request):
	"""OAuth client credentials grant: Basic key:secret in, a Bearer token out."""
	if request.query.get("grant_type") != "client_credentials":
		raise DarajaError("400.008.02", "Invalid grant type passed")
	scheme, _, encoded = (request.header("Authorization") or "").partition(" ")
	if scheme.lower() != "basic":
		raise DarajaError("400.008.01", "Invalid Authentication passed")
	try:
		client = base64.b64decode(encoded.strip(), validate=True)
	except binascii.Error:
		client = b""
	if not hmac.compare_digest(client, sandbox._client):
		return Reply(400, BAD_CLIENT_BODY)
	# Daraja sends expires_in as a string.
	return Reply(200, {"access_token": sandbox.issue_token(), "expires_in": str(sandbox.token_ttl)})


@json_api
def stk_push(sandbox, body):
	"""M-Pesa Express: accept the push and schedule its callback."""
	values = check_fields(body, STK_PUSH_FIELDS)
	check_callback_url(values["CallBackURL"])
	check_credentials(sandbox, values)
	transaction = sandbox._begin_stk(int(values["Amount"]), values["PhoneNumber"], values["CallBackURL"])
	return Reply(
		200,
		{
			"MerchantRequestID": transaction.merchant_request_id,
			"CheckoutRequestID": transaction.checkout_request_id,
			"ResponseCode": "0",
			"ResponseDescription": STK_ACCEPTED,
			"CustomerMessage": STK_ACCEPTED,
		},
	)


@json_api
def stk_query(sandbox, body):
	"""M-Pesa Express query: HTTP 500 while pending, then the outcome with ResultCode as a string."""
	values = check_fields(body, STK_QUERY_FIELDS)
	check_credentials(sandbox, values)
	transaction = sandbox._stk_transaction(values["CheckoutRequestID"])
	if transaction.state == PENDING:
		raise DarajaError("500.001.1001", "The transaction is being processed")
	return Reply(
		200,
		{
			"ResponseCode": "0",
			# Daraja's spelling.
			"ResponseDescription": "The service request has been accepted successsfully",
			"MerchantRequestID": transaction.merchant_request_id,
			"CheckoutRequestID": transaction.checkout_request_id,
			"ResultCode": str(transaction.result_code),
			"ResultDesc": transaction.result_desc,
		},
	)


def control_stats(sandbox, request):
	"""Request counts per path."""
	return Reply(200, {"counts": dict(Counter(recorded.path for recorded in sandbox.requests))})


def control_fault(sandbox, request):
	"""Install a fault from a JSON body {"path", "mode", "times", ...params}."""
	if not isinstance(request.json, dict):
		raise DarajaError(*INVALID_JSON)
	params = dict(request.json)
	try:
		sandbox.fault(params.pop("path"), params.pop("mode"), times=params.pop("times", None), **params)
	except (KeyError, ValueError) as error:
		raise DarajaError("400.002.02", f"Bad Request - Invalid fault: {error}") from None
	return Reply(200, {"status": "ok"})


def control_reset(sandbox, request):
	"""Forget requests, faults, tokens, transactions and callbacks."""
	sandbox.reset()
	return Reply(200, {"status": "ok"})


# path -> (method, handler(sandbox, request) -> Reply)
ROUTES = {
	OAUTH_PATH: ("GET", oauth),
	STK_PUSH_PATH: ("POST", stk_push),
	STK_QUERY_PATH: ("POST", stk_query),
}
CONTROL_ROUTES = {
	CONTROL_PREFIX + "stats": ("GET", control_stats),
	CONTROL_PREFIX + "fault": ("POST", control_fault),
	CONTROL_PREFIX + "reset": ("POST", control_reset),
}


def dispatch(routes, sandbox, request):
	"""Answer request from a route table; a DarajaError becomes its envelope."""
	try:
		if request.path not in routes:
			raise DarajaError(*RESOURCE_NOT_FOUND)
		method, handler = routes[request.path]
		if request.method != method:
			raise DarajaError(*METHOD_NOT_ALLOWED)
		return handler(sandbox, request)
	except DarajaError as error:
		return error.reply()


def fault_delay(params, answer):
	"""Wait ``seconds`` (default 1), then answer normally."""
	time.sleep(float(params.get("seconds", 1.0)))
	return answer()


def fault_status(params, answer):
	"""Answer ``status`` (default 503) with an envelope; ``code`` and ``message`` override its fields."""
	status = int(params.get("status", 503))
	code = params.get("code", f"{status}.001.01")
	return Reply(status, envelope(code, params.get("message", http.client.responses.get(status, "Error"))))


def fault_malformed(params, answer):
	"""HTTP 200 with truncated JSON."""
	return Reply(200, MALFORMED_BODY)


def fault_oversize(params, answer):
	"""HTTP 200 with a JSON body of exactly ``bytes`` bytes (default 2 MiB), announced by Content-Length."""
	size = max(int(params.get("bytes", OVERSIZE_BYTES)), 2)
	# Valid JSON, so only a size cap can stop a client from taking it.
	return Reply(200, b"{" + b" " * (size - 2) + b"}")


def fault_reset(params, answer):
	"""No answer: the connection is reset."""
	return None


def fault_invalid_token(params, answer):
	"""404.001.03 Invalid Access Token, whatever the token."""
	return DarajaError(*INVALID_TOKEN).reply()


def fault_token_expires_in(params, answer):
	"""Answer normally, with OAuth's ``expires_in`` replaced by ``value`` (default the number 3599)."""
	reply = answer()
	if isinstance(reply.body, dict) and "expires_in" in reply.body:
		reply.body["expires_in"] = params.get("value", 3599)
	return reply


# mode -> fault(params, answer) -> Reply, or None to reset the connection; answer() gives the normal reply.
FAULT_MODES = {
	"delay": fault_delay,
	"status": fault_status,
	"malformed": fault_malformed,
	"oversize": fault_oversize,
	"reset": fault_reset,
	"invalid_token": fault_invalid_token,
	"token_expires_in": fault_token_expires_in,
}


@dataclass
class _Fault:
	"""An installed fault; ``times`` is how many more requests it applies to, None for all."""

	path: str
	mode: str
	times: int | None
	params: dict


@dataclass
class _StkTransaction:
	"""An STK push the sandbox accepted."""

	merchant_request_id: str
	checkout_request_id: str
	amount: int
	phone: str
	callback_url: str
	result_code: int
	result_desc: str
	state: str = PENDING


def stk_callback_payload(transaction):
	"""The body Daraja POSTs to the CallBackURL once the customer has answered."""
	callback = {
		"MerchantRequestID": transaction.merchant_request_id,
		"CheckoutRequestID": transaction.checkout_request_id,
		"ResultCode": transaction.result_code,
		"ResultDesc": transaction.result_desc,
	}
	if transaction.result_code == 0:
		receipt = random_text(string.ascii_uppercase + string.digits, 10)
		callback["CallbackMetadata"] = {
			"Item": [
				{"Name": "Amount", "Value": transaction.amount},
				{"Name": "MpesaReceiptNumber", "Value": receipt},
				{"Name": "Balance"},
				{"Name": "TransactionDate", "Value": int(nairobi_now().strftime("%Y%m%d%H%M%S"))},
				{"Name": "PhoneNumber", "Value": int(transaction.phone)},
			]
		}
	return {"Body": {"stkCallback": callback}}


class _DarajaHandler(Handler):
	"""Routes every method through the sandbox; control paths bypass recording and faults."""

	def serve(self):
		"""Answer one request, or reset the connection when a fault says so."""
		request = self.receive()
		sandbox = self.server.service
		if request.path.startswith(CONTROL_PREFIX):
			reply = dispatch(CONTROL_ROUTES, sandbox, request)
		else:
			reply = sandbox._answer(request)
		if reply is None:
			self.reset_connection()
		else:
			self.reply(reply.status, reply.body)

	do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = serve

	def reset_connection(self):
		"""Close with SO_LINGER 0, so the client gets a TCP RST instead of a response."""
		self.close_connection = True
		self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
		# The socket's descriptor is only released once the buffered reader on it is closed too.
		self.rfile.close()
		self.connection.close()


class Sandbox(HttpsService):
	"""The Daraja simulator; see the module docstring for its behaviour."""

	handler_class = _DarajaHandler

	def __init__(
		self,
		host="127.0.0.1",
		port=0,
		*,
		consumer_key=DEFAULT_CONSUMER_KEY,
		consumer_secret=DEFAULT_CONSUMER_SECRET,
		passkey=DEFAULT_PASSKEY,
		callback_delay=0.2,
		token_ttl=3599,
		callback_ca_file=CA_FILE,
	):
		super().__init__(host, port)
		self.ca_file = CA_FILE
		self.callback_delay = callback_delay
		self.token_ttl = token_ttl
		self._client = f"{consumer_key}:{consumer_secret}".encode()
		self._passkey = passkey
		# No proxy: callbacks go to the URL as given, as Daraja's would.
		self._callback_opener = urllib.request.build_opener(
			urllib.request.ProxyHandler({}),
			urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=callback_ca_file)),
		)
		self._lock = threading.Lock()
		self._requests = []
		self._faults = []
		self._tokens = {}
		self._transactions = {}
		self._callbacks = []
		self._timers = {}
		self._sequence = itertools.count()

	@property
	def requests(self):
		"""Recorded requests (``RecordedRequest``), oldest first; control requests are not recorded."""
		with self._lock:
			return list(self._requests)

	@property
	def callbacks(self):
		"""Sent callbacks as (url, payload, HTTP status or error text), in the order they completed."""
		with self._lock:
			return list(self._callbacks)

	@property
	def transactions(self):
		"""CheckoutRequestID -> "pending" or "final"."""
		with self._lock:
			return {key: transaction.state for key, transaction in self._transactions.items()}

	def count(self, path=None, method=None):
		"""Number of recorded requests, optionally only to ``path`` (no query string) or with ``method``."""
		return sum(
			1
			for recorded in self.requests
			if (path is None or recorded.path == path) and (method is None or recorded.method == method)
		)

	def fault(self, path, mode, *, times=None, **params):
		"""Disturb requests to ``path`` (``"*"``: all) with ``mode``; ``times=N``: the next N only."""
		if mode not in FAULT_MODES:
			raise ValueError(f"unknown fault mode {mode!r}; known: {', '.join(FAULT_MODES)}")
		if times is not None and (not isinstance(times, int) or isinstance(times, bool) or times < 1):
			raise ValueError(f"times must be a positive integer or None, not {times!r}")
		with self._lock:
			self._faults.append(_Fault(path, mode, times, params))

	def clear_faults(self):
		"""Remove every fault."""
		with self._lock:
			self._faults.clear()

	def issue_token(self):
		"""Mint a valid access token, as the OAuth endpoint does."""
		token = random_text(string.ascii_letters + string.digits, 28)
		with self._lock:
			self._tokens[token] = time.monotonic() + self.token_ttl
		return token

	def expire_tokens(self):
		"""Invalidate every issued token."""
		with self._lock:
			self._tokens.clear()

	def reset(self):
		"""Forget requests, faults, tokens, transactions and callbacks, and cancel callbacks not yet sent."""
		self._cancel_callbacks()
		with self._lock:
			self._requests.clear()
			self._faults.clear()
			self._tokens.clear()
			self._transactions.clear()
			self._callbacks.clear()

	def stop(self):
		"""Stop serving and cancel callbacks not yet sent."""
		super().stop()
		self._cancel_callbacks()

	def _answer(self, request):
		"""Record a Daraja request and answer it, through the first matching fault if any."""
		with self._lock:
			self._requests.append(request)
			fault = self._take_fault(request.path)
		answer = functools.partial(dispatch, ROUTES, self, request)
		return answer() if fault is None else FAULT_MODES[fault.mode](fault.params, answer)

	def _take_fault(self, path):
		"""The first fault for path, counting one use of it; call with the lock held."""
		for fault in self._faults:
			if fault.path in (path, "*"):
				if fault.times is not None:
					fault.times -= 1
					if fault.times == 0:
						self._faults.remove(fault)
				return fault
		return None

	def _check_token(self, authorization):
		"""Raise Invalid Access Token unless the header carries a live Bearer token."""
		scheme, _, token = (authorization or "").partition(" ")
		with self._lock:
			expiry = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
		if expiry is None or expiry <= time.monotonic():
			raise DarajaError(*INVALID_TOKEN)

	def _begin_stk(self, amount, phone, callback_url):
		"""Record a pending STK transaction, schedule its callback, and return a copy of it."""
		result_code, result_desc = STK_OUTCOMES.get(phone, STK_SUCCESS)
		with self._lock:
			# The sequence number keeps ids unique however many pushes arrive in one second.
			checkout_request_id = f"ws_CO_{nairobi_now():%d%m%Y%H%M%S}{digits(4)}{next(self._sequence):06d}"
			transaction = _StkTransaction(
				request_id(), checkout_request_id, amount, phone, callback_url, result_code, result_desc
			)
			self._transactions[checkout_request_id] = transaction
			timer = threading.Timer(self.callback_delay, self._send_stk_callback, (checkout_request_id,))
			timer.daemon = True
			self._timers[checkout_request_id] = timer
			timer.start()
			return replace(transaction)

	def _stk_transaction(self, checkout_request_id):
		"""A copy of the transaction, or Invalid CheckoutRequestID."""
		with self._lock:
			transaction = self._transactions.get(checkout_request_id)
			if transaction is None:
				raise invalid("CheckoutRequestID")
			return replace(transaction)

	def _send_stk_callback(self, checkout_request_id):
		"""Timer thread: make the transaction final, then POST its callback and record the result."""
		with self._lock:
			self._timers.pop(checkout_request_id, None)
			transaction = self._transactions.get(checkout_request_id)
			if transaction is None:
				return
			transaction.state = FINAL
			payload = stk_callback_payload(transaction)
		result = self._post_callback(transaction.callback_url, payload)
		with self._lock:
			self._callbacks.append(Callback(transaction.callback_url, payload, result))

	def _post_callback(self, url, payload):
		"""POST payload as JSON; the HTTP status, or the error text when no response came."""
		request = urllib.request.Request(
			url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
		)
		try:
			with self._callback_opener.open(request, timeout=CALLBACK_TIMEOUT) as response:
				return response.status
		except urllib.error.HTTPError as error:
			error.close()
			return error.code
		except (OSError, ValueError) as error:
			return f"{type(error).__name__}: {error}"

	def _cancel_callbacks(self):
		"""Cancel every scheduled callback."""
		with self._lock:
			timers = list(self._timers.values())
			self._timers.clear()
		for timer in timers:
			timer.cancel()
