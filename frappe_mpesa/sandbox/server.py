"""Local HTTPS simulator of Safaricom's Daraja API, standard library only (plus the ``openssl`` command).

It answers like Daraja: OAuth tokens; STK push and query; C2B URL registration (v2, and v1) and
simulation; B2C (v3), B2B, tax remittance, transaction status, account balance and reversal; dynamic QR;
pull registration and query. Errors use the ``{"requestId", "errorCode", "errorMessage"}`` envelope with
the HTTP status taken from the code's prefix; a missing or malformed field is 400.002.02 "Bad Request -
Invalid <Field>". Every API but OAuth needs a live Bearer token.

Wrong consumer key or secret: HTTP 400 with ``{"resultCode": "999991", "resultDesc": "Invalid client id
passed"}`` (Daraja answers 400 "Bad Request - Invalid Credentials", with that body or none). A token is
valid for ``token_ttl`` seconds and issuing one does not revoke the others.

Callbacks go out ``callback_delay`` seconds after the request and are recorded in ``callbacks``:

- STK: the callback to the CallBackURL, outcome chosen by PhoneNumber (``STK_OUTCOMES``, else 0). Only a
  success carries ``CallbackMetadata``, whose Balance item has no Value, as Daraja's does. A transaction
  is "pending" until its callback is dispatched, then "final" (``transactions``); STK query answers HTTP
  500 "The transaction is being processed" while it is pending.
- C2B simulate: when URLs are registered for the ShortCode, the validation body to the ValidationURL
  first if ``c2b_validation`` (a ResultCode other than 0 rejects the payment: no confirmation; no usable
  answer: the registered ResponseType decides), then the confirmation to the ConfirmationURL. MSISDN as
  ``msisdn_style`` says: "plain", "masked" (25470****149) or "hashed" (hex SHA-256, Daraja since 2024).
- Initiator APIs (B2C, B2B, tax, status, balance, reversal): ``{"Result": {...}}`` to the ResultURL.
  The SecurityCredential is decrypted with ``MPESA_TEST_KEY`` by ``openssl``; a wrong initiator name,
  password, padding or certificate still gets the synchronous acceptance, then ResultCode 2001. B2C and
  B2B outcomes come from ``B2C_OUTCOMES`` / ``B2B_OUTCOMES`` keyed by PartyB; ``QUEUE_TIMEOUT`` there
  means no result but a notification of the same shape to the QueueTimeOutURL. Failures carry only the
  base Result fields and ReferenceData. Status and reversal look the transaction up among the
  sandbox's own payments (``payments``); reversal answers R000001 for a second reversal and R000002 for
  an unknown TransactionID. Each request is kept in ``results`` by ConversationID.

Payments move balances in the sandbox's books (``balances``), which account balance reports. ``quirks``
(``QUIRKS``) makes callbacks look like Daraja's odder ones: "strings_as_numbers", "numbers_as_strings",
"single_parameter" (one object instead of a list) and "value_missing" (some items without a Value).

Faults (``Sandbox.fault``) disturb matching requests; the first installed fault whose path matches
(or is ``"*"``) applies, and ``times=N`` removes it after N requests. ``FAULT_MODES`` lists the modes.

Control endpoints, which need no token and are never recorded or faulted, let another process drive
a sandbox: ``GET /__sandbox__/stats``, ``POST /__sandbox__/fault``, ``POST /__sandbox__/quirks``,
``POST /__sandbox__/reset``.

A new Daraja API is one ``@json_api`` handler plus one line in ``ROUTES``. See README.md for the tables.
"""

import base64
import binascii
import copy
import functools
import hmac
import http.client
import itertools
import json
import random
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
from datetime import datetime

from frappe_mpesa.sandbox import apis
from frappe_mpesa.sandbox.books import COMPLETED, UTILITY, Ledger
from frappe_mpesa.sandbox.payloads import (
	B2B_OUTCOMES,
	B2C_OUTCOMES,
	FINAL,
	MSISDN_STYLES,
	PENDING,
	QUEUE_TIMEOUT,
	QUIRKS,
	STK_OUTCOMES,
	STK_SUCCESS,
	Initiated,
	c2b_payload,
	check_quirks,
	customer_payment,
	dress,
	initiator_result,
	pull_entry,
	stk_callback_payload,
	validation_verdict,
)
from frappe_mpesa.sandbox.protocol import (
	AMOUNT,
	INVALID_JSON,
	INVALID_TOKEN,
	METHOD_NOT_ALLOWED,
	NAIROBI,
	NOT_BLANK,
	PHONE,
	RESOURCE_NOT_FOUND,
	SHORTCODE,
	URL,
	DarajaError,
	Reply,
	check_fields,
	conversation_id,
	digits,
	envelope,
	invalid,
	json_api,
	nairobi_now,
	random_text,
	request_id,
)
from frappe_mpesa.sandbox.service import CA_FILE, Handler, HttpsService

__all__ = [
	"B2B_OUTCOMES",
	"B2C_OUTCOMES",
	"DEFAULT_CONSUMER_KEY",
	"DEFAULT_CONSUMER_SECRET",
	"DEFAULT_INITIATOR_NAME",
	"DEFAULT_INITIATOR_PASSWORD",
	"DEFAULT_PASSKEY",
	"DEFAULT_SHORTCODE",
	"FAULT_MODES",
	"MSISDN_STYLES",
	"QUEUE_TIMEOUT",
	"QUIRKS",
	"STK_OUTCOMES",
	"STK_SUCCESS",
	"Sandbox",
]

DEFAULT_CONSUMER_KEY = "frappeMpesaSandboxConsumerKey"
DEFAULT_CONSUMER_SECRET = "frappeMpesaSandboxConsumerSecret"
# Safaricom's public sandbox shortcode, passkey and initiator.
DEFAULT_SHORTCODE = "174379"
DEFAULT_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
DEFAULT_INITIATOR_NAME = "testapi"
DEFAULT_INITIATOR_PASSWORD = "Safaricom999!*!"

OAUTH_PATH = "/oauth/v1/generate"
STK_PUSH_PATH = "/mpesa/stkpush/v1/processrequest"
STK_QUERY_PATH = "/mpesa/stkpushquery/v1/query"
CONTROL_PREFIX = "/__sandbox__/"

TIMESTAMP_TOLERANCE = 300
CALLBACK_TIMEOUT = 5
# Callback answers are read up to this size, enough for any acknowledgement.
CALLBACK_ANSWER_BYTES = 64 * 1024
OVERSIZE_BYTES = 2 * 1024 * 1024
MALFORMED_BODY = b'{"access_token": "abc",'
BAD_CLIENT_BODY = {"resultCode": "999991", "resultDesc": "Invalid client id passed"}
STK_ACCEPTED = "Success. Request accepted for processing"
DUPLICATE_ORIGINATOR = ("500.002.1001", "Duplicate OriginatorConversationID")
URLS_REGISTERED = ("500.003.1001", "Urls are already registered")

# Lipa Na M-Pesa credentials, common to the STK push and query bodies.
LNM_FIELDS = {"BusinessShortCode": SHORTCODE, "Password": NOT_BLANK, "Timestamp": r"\d{14}"}
# An optional field is one whose pattern accepts the empty string.
STK_PUSH_FIELDS = {
	**LNM_FIELDS,
	"TransactionType": r"CustomerPayBillOnline|CustomerBuyGoodsOnline",
	"Amount": AMOUNT,
	"PartyA": PHONE,
	"PartyB": SHORTCODE,
	"PhoneNumber": PHONE,
	"CallBackURL": URL,
	"AccountReference": r".{1,12}",
	"TransactionDesc": r".{0,13}",
}
STK_QUERY_FIELDS = {**LNM_FIELDS, "CheckoutRequestID": NOT_BLANK}

Callback = namedtuple("Callback", "url payload result")


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
	check_credentials(sandbox, values)
	transaction = sandbox._begin_stk(values)
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


def control_body(request):
	"""The JSON object body of a control request, as a copy."""
	if not isinstance(request.json, dict):
		raise DarajaError(*INVALID_JSON)
	return dict(request.json)


def control_fault(sandbox, request):
	"""Install a fault from a JSON body {"path", "mode", "times", ...params}."""
	params = control_body(request)
	try:
		sandbox.fault(params.pop("path"), params.pop("mode"), times=params.pop("times", None), **params)
	except (KeyError, ValueError) as error:
		raise DarajaError("400.002.02", f"Bad Request - Invalid fault: {error}") from None
	return Reply(200, {"status": "ok"})


def control_quirks(sandbox, request):
	"""Replace the quirks from a JSON body {"quirks": [names]}."""
	quirks = control_body(request).get("quirks")
	try:
		if not isinstance(quirks, list):
			raise TypeError("quirks must be a list of names")
		sandbox.quirks = quirks
	except (TypeError, ValueError) as error:
		raise DarajaError("400.002.02", f"Bad Request - Invalid quirks: {error}") from None
	return Reply(200, {"status": "ok"})


def control_reset(sandbox, request):
	"""Forget requests, faults, tokens, transactions, payments, registrations and callbacks."""
	sandbox.reset()
	return Reply(200, {"status": "ok"})


# path -> (method, handler(sandbox, request) -> Reply)
ROUTES = {
	OAUTH_PATH: ("GET", oauth),
	STK_PUSH_PATH: ("POST", stk_push),
	STK_QUERY_PATH: ("POST", stk_query),
	"/mpesa/c2b/v1/registerurl": ("POST", apis.c2b_register_v1),
	"/mpesa/c2b/v2/registerurl": ("POST", apis.c2b_register_v2),
	"/mpesa/c2b/v1/simulate": ("POST", apis.c2b_simulate),
	"/mpesa/c2b/v2/simulate": ("POST", apis.c2b_simulate),
	"/mpesa/b2c/v3/paymentrequest": ("POST", apis.b2c_payment),
	"/mpesa/b2b/v1/paymentrequest": ("POST", apis.b2b_payment),
	"/mpesa/b2b/v1/remittax": ("POST", apis.tax_remittance),
	"/mpesa/transactionstatus/v1/query": ("POST", apis.transaction_status),
	"/mpesa/accountbalance/v1/query": ("POST", apis.account_balance),
	"/mpesa/reversal/v1/request": ("POST", apis.reversal),
	"/mpesa/qrcode/v1/generate": ("POST", apis.dynamic_qr),
	"/pulltransactions/v1/register": ("POST", apis.pull_register),
	"/pulltransactions/v1/query": ("POST", apis.pull_query),
}
CONTROL_ROUTES = {
	CONTROL_PREFIX + "stats": ("GET", control_stats),
	CONTROL_PREFIX + "fault": ("POST", control_fault),
	CONTROL_PREFIX + "quirks": ("POST", control_quirks),
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
	"""Answer ``status`` (default 503) with an envelope; ``code`` and ``message`` override its fields,
	and ``empty=True`` sends no body at all."""
	status = int(params.get("status", 503))
	if params.get("empty"):
		return Reply(status, b"")
	code = params.get("code", f"{status}.001.01")
	return Reply(status, envelope(code, params.get("message", http.client.responses.get(status, "Error"))))


def fault_malformed(params, answer):
	"""HTTP 200 with truncated JSON."""
	return Reply(200, MALFORMED_BODY)


def fault_oversize(params, answer):
	"""HTTP 200 with a JSON body of exactly ``bytes`` bytes (default 2 MiB), announced by Content-Length,
	or with ``chunked=True`` streamed in chunks without it."""
	size = max(int(params.get("bytes", OVERSIZE_BYTES)), 2)
	# Valid JSON, so only a size cap can stop a client from taking it.
	return Reply(200, b"{" + b" " * (size - 2) + b"}", chunked=bool(params.get("chunked", False)))


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


def fault_random(params, answer):
	"""With probability ``rate`` (default 0.1), drawn from a generator seeded with ``seed`` (default
	0) when the fault is installed, apply mode ``then`` (default "status") with the other params;
	otherwise answer normally. Every request first waits ``wait`` seconds (default 0). ``processed=True`` handles the request first and then applies
	``then`` (e.g. "reset": the payment is made but its answer is lost)."""
	rng = params.setdefault("_rng", random.Random(params.get("seed", 0)))
	if params.get("wait"):
		time.sleep(float(params["wait"]))
	if rng.random() >= float(params.get("rate", 0.1)):
		return answer()
	mode = params.get("then", "status")
	if mode not in FAULT_MODES or mode == "random":
		mode = "status"
	if params.get("processed"):
		reply = answer()
		return FAULT_MODES[mode](params, lambda: reply)
	return FAULT_MODES[mode](params, answer)


# mode -> fault(params, answer) -> Reply, or None to reset the connection; answer() gives the normal reply.
FAULT_MODES = {
	"random": fault_random,
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
	shortcode: str = ""
	command: str = ""
	account_reference: str = ""
	state: str = PENDING
	receipt: str = ""


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
			self.reply(reply.status, reply.body, reply.chunked)
		if not request.path.startswith(CONTROL_PREFIX):
			sandbox._handled(request, time.time() - request.time)

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
		initiator_name=DEFAULT_INITIATOR_NAME,
		initiator_password=DEFAULT_INITIATOR_PASSWORD,
		c2b_v2_product=True,
		c2b_register_once=False,
		c2b_validation=False,
		msisdn_style="hashed",
		quirks=(),
		pull_page_size=None,
		payout_charge=None,
	):
		super().__init__(host, port)
		if msisdn_style not in MSISDN_STYLES:
			raise ValueError(f"unknown msisdn_style {msisdn_style!r}; known: {', '.join(MSISDN_STYLES)}")
		self.ca_file = CA_FILE
		self.callback_delay = callback_delay
		self.token_ttl = token_ttl
		self.initiator_name = initiator_name
		self.c2b_v2_product = c2b_v2_product
		self.c2b_register_once = c2b_register_once
		self.c2b_validation = c2b_validation
		self.msisdn_style = msisdn_style
		self.pull_page_size = pull_page_size
		# What each B2C, B2B and tax result reports as charged (DebitPartyCharges); None: nothing.
		self.payout_charge = payout_charge
		self._quirks = check_quirks(quirks)
		self._client = f"{consumer_key}:{consumer_secret}".encode()
		self._passkey = passkey
		self._initiator_password = initiator_password
		# No proxy: callbacks go to the URL as given, as Daraja's would.
		self._callback_opener = urllib.request.build_opener(
			urllib.request.ProxyHandler({}),
			urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=callback_ca_file)),
		)
		self._lock = threading.Lock()
		self._requests = []
		self._handling = []
		self._faults = []
		self._tokens = {}
		self._callbacks = []
		self._timers = {}
		self._sequence = itertools.count()
		self._forget()

	def _forget(self):
		"""Start the simulated world afresh: no transactions, payments, results or registrations."""
		self._transactions = {}
		self._results = {}
		self._originators = set()
		self._c2b_urls = {}
		self._pull_registrations = {}
		self._ledger = Ledger()

	@property
	def requests(self):
		"""Recorded requests (``RecordedRequest``), oldest first; control requests are not recorded."""
		with self._lock:
			return list(self._requests)

	@property
	def handling_times(self):
		"""(path, arrival time, seconds from the request's arrival to its reply written) per recorded
		request: the sandbox's own share of a call, which a caller's timings may leave out."""
		with self._lock:
			return list(self._handling)

	def _handled(self, request, seconds):
		with self._lock:
			self._handling.append((request.path, request.time, seconds))

	@property
	def callbacks(self):
		"""Sent callbacks as (url, payload, HTTP status or error text), in the order they completed."""
		with self._lock:
			return list(self._callbacks)

	@property
	def transactions(self):
		"""STK pushes: CheckoutRequestID -> "pending" or "final"."""
		with self._lock:
			return {key: transaction.state for key, transaction in self._transactions.items()}

	@property
	def results(self):
		"""Initiator requests by ConversationID: api, OriginatorConversationID, request (the validated
		fields), credential_valid, state ("pending" or "final"), and the url and payload sent."""
		with self._lock:
			return {
				key: {
					"api": request.api,
					"OriginatorConversationID": request.originator_conversation_id,
					"request": dict(request.values),
					"credential_valid": request.credential_valid,
					"state": request.state,
					"url": request.url,
					"payload": copy.deepcopy(request.payload),
				}
				for key, request in self._results.items()
			}

	@property
	def payments(self):
		"""Payments by receipt (STK, C2B, B2C, B2B, tax), each a dict with kind, amount, parties, state..."""
		with self._lock:
			return {key: payment.public() for key, payment in self._ledger.payments.items()}

	@property
	def balances(self):
		"""The organisation's accounts: name -> Decimal balance."""
		with self._lock:
			return dict(self._ledger.balances)

	@property
	def c2b_urls(self):
		"""Registered C2B URLs: ShortCode -> {"ResponseType", "ConfirmationURL", "ValidationURL"}."""
		with self._lock:
			return {key: dict(urls) for key, urls in self._c2b_urls.items()}

	@property
	def pull_registrations(self):
		"""Pull registrations: ShortCode -> {"NominatedNumber", "CallBackURL"}."""
		with self._lock:
			return {key: dict(entry) for key, entry in self._pull_registrations.items()}

	@property
	def quirks(self):
		"""The quirks applied to callbacks, a frozenset of names from ``QUIRKS``."""
		return self._quirks

	@quirks.setter
	def quirks(self, names):
		"""Replace the quirks; ValueError for an unknown name or a contradiction."""
		self._quirks = check_quirks(names)

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
		"""Forget requests, faults, tokens, transactions, payments, registrations and callbacks, and cancel
		callbacks not yet sent; the configuration (quirks included) stays."""
		self._cancel_callbacks()
		with self._lock:
			self._requests.clear()
			self._handling.clear()
			self._faults.clear()
			self._tokens.clear()
			self._callbacks.clear()
			self._forget()

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

	def _schedule(self, key, function, *args):
		"""Run function(*args) in a timer thread after callback_delay; call with the lock held."""
		timer = threading.Timer(self.callback_delay, self._run_scheduled, (key, function, args))
		timer.daemon = True
		self._timers[key] = timer
		timer.start()

	def _run_scheduled(self, key, function, args):
		"""Timer thread: run function unless its timer was cancelled meanwhile."""
		with self._lock:
			if self._timers.pop(key, None) is None:
				return
		function(*args)

	def _begin_stk(self, values):
		"""Record a pending STK transaction, schedule its callback, and return a copy of it."""
		result_code, result_desc = STK_OUTCOMES.get(values["PhoneNumber"], STK_SUCCESS)
		with self._lock:
			# The sequence number keeps ids unique however many pushes arrive in one second.
			checkout_request_id = f"ws_CO_{nairobi_now():%d%m%Y%H%M%S}{digits(4)}{next(self._sequence):06d}"
			transaction = _StkTransaction(
				request_id(),
				checkout_request_id,
				int(values["Amount"]),
				values["PhoneNumber"],
				values["CallBackURL"],
				result_code,
				result_desc,
				values["PartyB"],
				values["TransactionType"],
				values["AccountReference"],
			)
			self._transactions[checkout_request_id] = transaction
			self._schedule(("stk", checkout_request_id), self._send_stk_callback, checkout_request_id)
			return replace(transaction)

	def _stk_transaction(self, checkout_request_id):
		"""A copy of the transaction, or Invalid CheckoutRequestID."""
		with self._lock:
			transaction = self._transactions.get(checkout_request_id)
			if transaction is None:
				raise invalid("CheckoutRequestID")
			return replace(transaction)

	def _send_stk_callback(self, checkout_request_id):
		"""Make the transaction final, book a successful payment, then POST the callback."""
		with self._lock:
			transaction = self._transactions.get(checkout_request_id)
			if transaction is None:
				return
			transaction.state = FINAL
			if transaction.result_code == 0:
				payment = customer_payment(
					"stk",
					transaction.command,
					transaction.amount,
					transaction.phone,
					transaction.shortcode,
					transaction.account_reference,
					(transaction.checkout_request_id, transaction.merchant_request_id),
				)
				transaction.receipt = payment.receipt
				self._ledger.record(payment)
			payload = dress(stk_callback_payload(transaction), self._quirks)
		self._deliver(transaction.callback_url, payload)

	def _register_c2b(self, values):
		"""Keep a shortcode's C2B URLs; with c2b_register_once, a second registration is refused."""
		with self._lock:
			if self.c2b_register_once and values["ShortCode"] in self._c2b_urls:
				raise DarajaError(*URLS_REGISTERED)
			urls = ("ResponseType", "ConfirmationURL", "ValidationURL")
			self._c2b_urls[values["ShortCode"]] = {name: values[name] for name in urls}

	def _begin_c2b(self, values, originator):
		"""Schedule a simulated customer payment."""
		with self._lock:
			self._schedule(("c2b", originator), self._complete_c2b, values, originator)

	def _complete_c2b(self, values, originator):
		"""Validate the payment if asked to, book it, then confirm it to the registered URLs."""
		payment = customer_payment(
			"c2b",
			values["CommandID"],
			int(values["Amount"]),
			values["Msisdn"],
			values["ShortCode"],
			values["BillRefNumber"],
			("", originator),
		)
		with self._lock:
			urls = self._c2b_urls.get(values["ShortCode"])
		third_party_id = ""
		if urls is not None and self.c2b_validation:
			validation = dress(c2b_payload(payment, self.msisdn_style), self._quirks)
			status, answer = self._deliver(urls["ValidationURL"], validation)
			payment.state, third_party_id = validation_verdict(status, answer, urls["ResponseType"])
		with self._lock:
			self._ledger.record(payment)
			balance = f"{self._ledger.balances[UTILITY]:.2f}"
		if urls is not None and payment.state == COMPLETED:
			confirmation = c2b_payload(payment, self.msisdn_style, balance, third_party_id)
			self._deliver(urls["ConfirmationURL"], dress(confirmation, self._quirks))

	def _register_pull(self, values):
		"""Register a shortcode for pull queries; False when it already was."""
		with self._lock:
			if values["ShortCode"] in self._pull_registrations:
				return False
			entry = {"NominatedNumber": values["NominatedNumber"], "CallBackURL": values["CallBackURL"]}
			self._pull_registrations[values["ShortCode"]] = entry
			return True

	def _paid_in(self, shortcode, start, end):
		"""Customer payments to shortcode in the window, as pull query entries."""
		with self._lock:
			return [pull_entry(payment) for payment in self._ledger.paid_in(shortcode, start, end)]

	def _begin_initiator(self, api, values, credential_valid):
		"""Keep an accepted initiator request and schedule its result; (ConversationID,
		OriginatorConversationID). A reused OriginatorConversationID is refused."""
		given = values.get("OriginatorConversationID")
		with self._lock:
			if given in self._originators:
				raise DarajaError(*DUPLICATE_ORIGINATOR)
			if given:
				self._originators.add(given)
			request = Initiated(api, conversation_id(), given or request_id(), values, credential_valid)
			self._results[request.conversation_id] = request
			self._schedule(("result", request.conversation_id), self._send_result, request)
			return request.conversation_id, request.originator_conversation_id

	def _send_result(self, request):
		"""Work out the request's result, moving money on success, then POST it."""
		with self._lock:
			url, payload = initiator_result(self._ledger, request, self.payout_charge)
			request.state, request.url, request.payload = FINAL, url, dress(payload, self._quirks)
		self._deliver(url, request.payload)

	def _deliver(self, url, payload):
		"""POST payload and record the callback; (HTTP status or error text, the JSON answer or None)."""
		result, answer = self._post_callback(url, payload)
		with self._lock:
			self._callbacks.append(Callback(url, payload, result))
		return result, answer

	def _post_callback(self, url, payload):
		"""POST payload as JSON; (HTTP status, or the error text when no response came; parsed answer)."""
		request = urllib.request.Request(
			url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
		)
		try:
			with self._callback_opener.open(request, timeout=CALLBACK_TIMEOUT) as response:
				body = response.read(CALLBACK_ANSWER_BYTES)
				status = response.status
		except urllib.error.HTTPError as error:
			error.close()
			return error.code, None
		except (OSError, ValueError) as error:
			return f"{type(error).__name__}: {error}", None
		try:
			return status, json.loads(body)
		except ValueError:
			return status, None

	def _cancel_callbacks(self):
		"""Cancel every scheduled callback."""
		with self._lock:
			timers = list(self._timers.values())
			self._timers.clear()
		for timer in timers:
			timer.cancel()
