"""The embedded Daraja sandbox, driven with the standard library's HTTP client only."""

import base64
import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

import frappe_mpesa
from frappe_mpesa.sandbox import (
	CA_FILE,
	DEFAULT_CONSUMER_KEY,
	DEFAULT_CONSUMER_SECRET,
	DEFAULT_PASSKEY,
	DEFAULT_SHORTCODE,
	MPESA_TEST_CERT_DER,
	MPESA_TEST_CERT_PEM,
	MPESA_TEST_KEY,
	SERVER_CERT,
	SERVER_KEY,
	STK_OUTCOMES,
	UNTRUSTED_CA_FILE,
	CallbackReceiver,
	Sandbox,
)

OAUTH = "/oauth/v1/generate"
TOKEN_URL = OAUTH + "?grant_type=client_credentials"
STK_PUSH = "/mpesa/stkpush/v1/processrequest"
STK_QUERY = "/mpesa/stkpushquery/v1/query"
CUSTOMER = "254708374149"
NAIROBI = timezone(timedelta(hours=3))
TRUST = ssl.create_default_context(cafile=CA_FILE)


class Response:
	"""Status, headers, raw body and parsed JSON (None if the body is not JSON) of one response."""

	def __init__(self, response):
		self.status = response.status
		self.headers = response.headers
		self.body = response.read()
		try:
			self.json = json.loads(self.body)
		except ValueError:
			self.json = None


def call(sb, method, path, body=None, headers=(), connection=None):
	"""One request, on a new connection unless one is given."""
	conn = connection or http.client.HTTPSConnection(sb.host, sb.port, context=TRUST, timeout=5)
	data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
	try:
		conn.request(method, path, body=data, headers={"Content-Type": "application/json", **dict(headers)})
		return Response(conn.getresponse())
	finally:
		if connection is None:
			conn.close()


def basic(key=DEFAULT_CONSUMER_KEY, secret=DEFAULT_CONSUMER_SECRET):
	"""Basic authorization header for a consumer key and secret."""
	return {"Authorization": "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()}


def bearer(sb):
	"""Authorization header with a freshly minted token."""
	return {"Authorization": "Bearer " + sb.issue_token()}


def timestamp(at=None):
	"""Daraja timestamp in Nairobi time."""
	return (at or datetime.now(NAIROBI)).strftime("%Y%m%d%H%M%S")


def lnm_credentials(shortcode=DEFAULT_SHORTCODE, ts=None, passkey=DEFAULT_PASSKEY):
	"""BusinessShortCode, Password and Timestamp as Lipa Na M-Pesa wants them."""
	ts = ts or timestamp()
	password = base64.b64encode(f"{shortcode}{passkey}{ts}".encode()).decode()
	return {"BusinessShortCode": shortcode, "Password": password, "Timestamp": ts}


def stk_body(callback_url="https://127.0.0.1:9/hooks/stk", phone=CUSTOMER, **overrides):
	"""A valid STK push body, with fields replaced by overrides."""
	body = {
		**lnm_credentials(),
		"TransactionType": "CustomerPayBillOnline",
		"Amount": "10",
		"PartyA": phone,
		"PartyB": DEFAULT_SHORTCODE,
		"PhoneNumber": phone,
		"CallBackURL": callback_url,
		"AccountReference": "INV-0001",
		"TransactionDesc": "Invoice",
	}
	body.update(overrides)
	return body


def push(sb, **fields):
	"""STK push with a valid token."""
	return call(sb, "POST", STK_PUSH, stk_body(**fields), bearer(sb))


def query(sb, checkout_request_id):
	"""STK query with a valid token."""
	body = {**lnm_credentials(), "CheckoutRequestID": checkout_request_id}
	return call(sb, "POST", STK_QUERY, body, bearer(sb))


def assert_envelope(response, status, code, message):
	"""The response is Daraja's error envelope."""
	assert response.status == status
	assert set(response.json) == {"requestId", "errorCode", "errorMessage"}
	assert (response.json["errorCode"], response.json["errorMessage"]) == (code, message)


def wait_until(predicate, timeout=5.0):
	"""Poll predicate until it is true; fail after timeout."""
	deadline = time.monotonic() + timeout
	while not predicate():
		assert time.monotonic() < deadline, "condition not met in time"
		time.sleep(0.01)


@pytest.fixture
def sb():
	"""A running sandbox with fast callbacks."""
	with Sandbox(callback_delay=0.01) as sandbox:
		yield sandbox


@pytest.fixture
def rx():
	"""A running callback receiver."""
	with CallbackReceiver() as receiver:
		yield receiver


def test_certificate_files_exist_and_match():
	for path in (CA_FILE, SERVER_CERT, SERVER_KEY, UNTRUSTED_CA_FILE, MPESA_TEST_CERT_PEM, MPESA_TEST_KEY):
		assert os.path.isabs(path) and os.path.getsize(path) > 0
	with open(MPESA_TEST_CERT_DER, "rb") as der, open(MPESA_TEST_CERT_PEM) as pem:
		assert ssl.DER_cert_to_PEM_cert(der.read()).strip() == pem.read().strip()


def test_token_issued_with_string_expires_in(sb):
	response = call(sb, "GET", TOKEN_URL, headers=basic())
	assert response.status == 200
	assert response.json["expires_in"] == "3599"
	assert re.fullmatch(r"[A-Za-z0-9]{28}", response.json["access_token"])
	token = {"Authorization": "Bearer " + response.json["access_token"]}
	assert call(sb, "POST", STK_PUSH, stk_body(), token).status == 200


@pytest.mark.parametrize(
	"path, headers, status, body",
	[
		(
			TOKEN_URL,
			basic(secret="wrong"),
			400,
			{"resultCode": "999991", "resultDesc": "Invalid client id passed"},
		),
		(
			TOKEN_URL,
			{"Authorization": "Basic !!!"},
			400,
			{"resultCode": "999991", "resultDesc": "Invalid client id passed"},
		),
		(OAUTH + "?grant_type=password", basic(), 400, ("400.008.02", "Invalid grant type passed")),
		(OAUTH, basic(), 400, ("400.008.02", "Invalid grant type passed")),
		(TOKEN_URL, {"Authorization": "Bearer abc"}, 400, ("400.008.01", "Invalid Authentication passed")),
		(TOKEN_URL, {}, 400, ("400.008.01", "Invalid Authentication passed")),
	],
)
def test_token_refused(sb, path, headers, status, body):
	response = call(sb, "GET", path, headers=headers)
	if isinstance(body, dict):
		assert (response.status, response.json) == (status, body)
	else:
		assert_envelope(response, status, *body)


@pytest.mark.parametrize("authorization", [None, "Bearer unknown", "Basic abc"])
def test_api_refuses_missing_or_unknown_token(sb, authorization):
	headers = {"Authorization": authorization} if authorization else {}
	assert_envelope(
		call(sb, "POST", STK_PUSH, stk_body(), headers), 404, "404.001.03", "Invalid Access Token"
	)


def test_expired_tokens_refused(sb):
	headers = bearer(sb)
	sb.expire_tokens()
	assert_envelope(
		call(sb, "POST", STK_PUSH, stk_body(), headers), 404, "404.001.03", "Invalid Access Token"
	)
	with Sandbox(token_ttl=0) as short_lived:
		assert_envelope(push(short_lived), 404, "404.001.03", "Invalid Access Token")


def test_stk_push_success_and_callback(sb, rx):
	response = push(sb, callback_url=rx.url + "/hooks/stk", Amount=25)
	assert response.status == 200
	accepted = "Success. Request accepted for processing"
	assert response.json["ResponseCode"] == "0"
	assert response.json["ResponseDescription"] == response.json["CustomerMessage"] == accepted
	assert re.fullmatch(r"\d{5}-\d{8}-1", response.json["MerchantRequestID"])
	assert re.fullmatch(r"ws_CO_\d{14}\d+", response.json["CheckoutRequestID"])

	(received,) = rx.wait(count=1, timeout=5)
	assert (received.method, received.path) == ("POST", "/hooks/stk")
	callback = received.json["Body"]["stkCallback"]
	assert callback["MerchantRequestID"] == response.json["MerchantRequestID"]
	assert callback["CheckoutRequestID"] == response.json["CheckoutRequestID"]
	assert (callback["ResultCode"], callback["ResultDesc"]) == (
		0,
		"The service request is processed successfully.",
	)
	items = callback["CallbackMetadata"]["Item"]
	assert [item["Name"] for item in items] == [
		"Amount",
		"MpesaReceiptNumber",
		"Balance",
		"TransactionDate",
		"PhoneNumber",
	]
	values = {item["Name"]: item.get("Value") for item in items}
	assert "Value" not in items[2]
	assert values["Amount"] == 25
	assert re.fullmatch(r"[A-Z0-9]{10}", values["MpesaReceiptNumber"])
	assert isinstance(values["TransactionDate"], int) and len(str(values["TransactionDate"])) == 14
	assert values["PhoneNumber"] == int(CUSTOMER)

	wait_until(lambda: sb.callbacks)
	assert sb.callbacks == [(rx.url + "/hooks/stk", received.json, 200)]
	assert sb.transactions == {response.json["CheckoutRequestID"]: "final"}


@pytest.mark.parametrize("phone, outcome", STK_OUTCOMES.items())
def test_stk_outcome_chosen_by_phone(sb, rx, phone, outcome):
	assert push(sb, callback_url=rx.url + "/hooks/stk", phone=phone).status == 200
	callback = rx.wait()[0].json["Body"]["stkCallback"]
	assert (callback["ResultCode"], callback["ResultDesc"]) == outcome
	assert "CallbackMetadata" not in callback


def test_stk_push_accepts_numbers_for_numeric_fields(sb):
	response = push(sb, Amount=1, PartyA=int(CUSTOMER), PhoneNumber=int(CUSTOMER), PartyB=174379)
	assert response.status == 200


def test_stk_push_refuses_wrong_password(sb):
	wrong = base64.b64encode(b"wrong").decode()
	assert_envelope(push(sb, Password=wrong), 500, "500.001.1001", "Wrong credentials")
	wrong_passkey = lnm_credentials(passkey="not-the-passkey")
	assert_envelope(push(sb, **wrong_passkey), 500, "500.001.1001", "Wrong credentials")


@pytest.mark.parametrize(
	"moment",
	[
		lambda: datetime.now(NAIROBI) - timedelta(minutes=6),
		lambda: datetime.now(NAIROBI) + timedelta(minutes=6),
		# UTC instead of Nairobi time: three hours off.
		lambda: datetime.now(timezone.utc),
	],
	ids=["stale", "future", "utc"],
)
def test_stk_push_refuses_timestamp_outside_five_minutes(sb, moment):
	fields = lnm_credentials(ts=timestamp(moment()))
	assert_envelope(push(sb, **fields), 400, "400.002.02", "Bad Request - Invalid Timestamp")


@pytest.mark.parametrize(
	"fields, field",
	[
		({"Timestamp": "20241399000000"}, "Timestamp"),
		({"Timestamp": "2024"}, "Timestamp"),
		({"BusinessShortCode": "1743"}, "BusinessShortCode"),
		({"Password": ""}, "Password"),
		({"PhoneNumber": "0708374149"}, "PhoneNumber"),
		({"PhoneNumber": "+254708374149"}, "PhoneNumber"),
		({"PhoneNumber": "254608374149"}, "PhoneNumber"),
		({"PartyA": "25470837414"}, "PartyA"),
		({"PartyB": "12"}, "PartyB"),
		({"Amount": "1.5"}, "Amount"),
		({"Amount": 0}, "Amount"),
		({"Amount": 10.0}, "Amount"),
		({"Amount": None}, "Amount"),
		({"TransactionType": "PayBill"}, "TransactionType"),
		({"AccountReference": "x" * 13}, "AccountReference"),
		({"AccountReference": ""}, "AccountReference"),
		({"TransactionDesc": "x" * 14}, "TransactionDesc"),
		({"CallBackURL": "ftp://example.com/hooks"}, "CallBackURL"),
		({"CallBackURL": " https://example.com/hooks"}, "CallBackURL"),
	],
)
def test_stk_push_refuses_invalid_field(sb, fields, field):
	assert_envelope(push(sb, **fields), 400, "400.002.02", f"Bad Request - Invalid {field}")


@pytest.mark.parametrize("word", ["mpesa", "M-PESA", "SAFARICOM", "exe", "Exec", "cmd", "sql", "Query"])
def test_stk_push_refuses_banned_callback_words(sb, word):
	response = push(sb, callback_url=f"https://example.com/{word}/stk")
	assert_envelope(response, 400, "400.002.02", "Bad Request - Invalid CallBackURL")


def test_transaction_desc_is_optional(sb):
	body = stk_body()
	del body["TransactionDesc"]
	assert call(sb, "POST", STK_PUSH, body, bearer(sb)).status == 200


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b""])
def test_body_must_be_a_json_object(sb, body):
	assert_envelope(call(sb, "POST", STK_PUSH, body, bearer(sb)), 400, "400.002.05", "Invalid JSON payload")


@pytest.mark.parametrize("phone, result_code", [(CUSTOMER, "0"), ("254700001032", "1032")])
def test_stk_query_pending_then_final(rx, phone, result_code):
	with Sandbox(callback_delay=0.5) as sb:
		checkout_request_id = push(sb, callback_url=rx.url + "/hooks/stk", phone=phone).json[
			"CheckoutRequestID"
		]
		assert sb.transactions == {checkout_request_id: "pending"}
		pending = query(sb, checkout_request_id)
		assert_envelope(pending, 500, "500.001.1001", "The transaction is being processed")

		callback = rx.wait()[0].json["Body"]["stkCallback"]
		final = query(sb, checkout_request_id)
		assert final.status == 200
		assert final.json == {
			"ResponseCode": "0",
			"ResponseDescription": "The service request has been accepted successsfully",
			"MerchantRequestID": callback["MerchantRequestID"],
			"CheckoutRequestID": checkout_request_id,
			"ResultCode": result_code,
			"ResultDesc": callback["ResultDesc"],
		}
		assert sb.transactions == {checkout_request_id: "final"}


def test_stk_query_checks(sb):
	assert_envelope(
		query(sb, "ws_CO_000000000000000000"), 400, "400.002.02", "Bad Request - Invalid CheckoutRequestID"
	)
	body = {**lnm_credentials(passkey="wrong"), "CheckoutRequestID": "ws_CO_1"}
	assert_envelope(call(sb, "POST", STK_QUERY, body, bearer(sb)), 500, "500.001.1001", "Wrong credentials")


def test_failed_callback_delivery_is_recorded(sb):
	push(sb, callback_url="https://127.0.0.1:1/hooks/stk")
	wait_until(lambda: sb.callbacks)
	(url, payload, result) = sb.callbacks[0]
	assert url == "https://127.0.0.1:1/hooks/stk"
	assert payload["Body"]["stkCallback"]["ResultCode"] == 0
	assert isinstance(result, str) and "refused" in result.lower()


def test_stop_cancels_pending_callbacks(rx):
	with Sandbox(callback_delay=0.2) as sb:
		push(sb, callback_url=rx.url + "/hooks/stk")
	time.sleep(0.3)
	assert rx.received == []


def test_unknown_path_and_wrong_method(sb):
	assert_envelope(
		call(sb, "POST", "/mpesa/nothing/v1/here", {}, bearer(sb)), 404, "404.001.01", "Resource not found"
	)
	assert_envelope(call(sb, "GET", STK_PUSH, headers=bearer(sb)), 405, "405.001", "Method Not Allowed")
	assert_envelope(call(sb, "POST", TOKEN_URL, headers=basic()), 405, "405.001", "Method Not Allowed")


def test_requests_recorded_and_counted(sb):
	call(sb, "GET", TOKEN_URL, headers=basic())
	call(sb, "GET", TOKEN_URL, headers=basic())
	push(sb)
	assert sb.count() == 3
	assert sb.count(OAUTH) == 2
	assert sb.count(STK_PUSH, method="POST") == 1
	assert sb.count(STK_PUSH, method="GET") == 0
	first, _, last = sb.requests
	assert (first.method, first.path, first.query) == ("GET", OAUTH, {"grant_type": "client_credentials"})
	assert first.headers["Authorization"].startswith("Basic ")
	assert last.json == json.loads(last.body) and last.json["PhoneNumber"] == CUSTOMER
	assert first.time <= last.time


def test_reset_forgets_everything(sb):
	headers = bearer(sb)
	push(sb)
	sb.fault("*", "status", status=503)
	sb.reset()
	assert (sb.requests, sb.transactions, sb.callbacks) == ([], {}, [])
	assert_envelope(
		call(sb, "POST", STK_PUSH, stk_body(), headers), 404, "404.001.03", "Invalid Access Token"
	)


def test_keep_alive_reuses_the_connection(sb):
	conn = http.client.HTTPSConnection(sb.host, sb.port, context=TRUST, timeout=5)
	try:
		assert call(sb, "GET", TOKEN_URL, headers=basic(), connection=conn).status == 200
		first_socket = conn.sock
		assert call(sb, "POST", STK_PUSH, stk_body(), bearer(sb), connection=conn).status == 200
		assert conn.sock is first_socket
	finally:
		conn.close()


def test_stop_closes_idle_connections():
	sb = Sandbox().start()
	conn = http.client.HTTPSConnection(sb.host, sb.port, context=TRUST, timeout=5)
	try:
		assert call(sb, "GET", TOKEN_URL, headers=basic(), connection=conn).status == 200
		sb.stop()
		with pytest.raises((ConnectionError, ssl.SSLError)):
			call(sb, "GET", TOKEN_URL, headers=basic(), connection=conn)
	finally:
		conn.close()


def test_untrusted_ca_fails_verification(sb):
	conn = http.client.HTTPSConnection(
		sb.host, sb.port, context=ssl.create_default_context(cafile=UNTRUSTED_CA_FILE), timeout=5
	)
	with pytest.raises(ssl.SSLCertVerificationError):
		conn.request("GET", TOKEN_URL)
	conn.close()


def test_fault_delay(sb):
	sb.fault(OAUTH, "delay", seconds=0.3)
	started = time.monotonic()
	response = call(sb, "GET", TOKEN_URL, headers=basic())
	assert time.monotonic() - started >= 0.3
	assert response.status == 200 and response.json["expires_in"] == "3599"


def test_fault_status(sb):
	sb.fault(STK_PUSH, "status", status=503)
	assert_envelope(push(sb), 503, "503.001.01", "Service Unavailable")
	sb.fault(OAUTH, "status", status=500, code="500.003.02", message="Spike arrest violation")
	assert_envelope(call(sb, "GET", TOKEN_URL, headers=basic()), 500, "500.003.02", "Spike arrest violation")


def test_fault_malformed(sb):
	sb.fault(OAUTH, "malformed")
	response = call(sb, "GET", TOKEN_URL, headers=basic())
	assert response.status == 200
	assert response.body.startswith(b'{"access_token"') and response.json is None


def test_fault_oversize(sb):
	sb.fault(OAUTH, "oversize", times=1)
	response = call(sb, "GET", TOKEN_URL, headers=basic())
	assert response.status == 200
	assert int(response.headers["Content-Length"]) == len(response.body) == 2 * 1024 * 1024
	sb.fault(OAUTH, "oversize", bytes=1000)
	assert len(call(sb, "GET", TOKEN_URL, headers=basic()).body) == 1000


def test_fault_reset(sb):
	sb.fault(STK_PUSH, "reset")
	with pytest.raises((ConnectionError, ssl.SSLError)):
		push(sb)
	assert sb.count(STK_PUSH) == 1
	assert call(sb, "GET", TOKEN_URL, headers=basic()).status == 200


def test_fault_invalid_token(sb):
	sb.fault(STK_PUSH, "invalid_token")
	assert_envelope(push(sb), 404, "404.001.03", "Invalid Access Token")


@pytest.mark.parametrize("value", [3599, "60"])
def test_fault_token_expires_in(sb, value):
	sb.fault(OAUTH, "token_expires_in", value=value)
	assert call(sb, "GET", TOKEN_URL, headers=basic()).json["expires_in"] == value


def test_fault_times_applies_once_then_clears(sb):
	sb.fault(OAUTH, "status", times=1, status=503)
	assert call(sb, "GET", TOKEN_URL, headers=basic()).status == 503
	assert call(sb, "GET", TOKEN_URL, headers=basic()).status == 200
	sb.fault("*", "status", status=502)
	assert call(sb, "GET", TOKEN_URL, headers=basic()).status == 502
	assert push(sb).status == 502
	sb.clear_faults()
	assert push(sb).status == 200


def test_fault_arguments_checked(sb):
	with pytest.raises(ValueError):
		sb.fault(OAUTH, "explode")
	with pytest.raises(ValueError):
		sb.fault(OAUTH, "delay", times=0)


def test_control_endpoints(sb):
	call(sb, "GET", TOKEN_URL, headers=basic())
	push(sb)
	stats = call(sb, "GET", "/__sandbox__/stats")
	assert (stats.status, stats.json) == (200, {"counts": {OAUTH: 1, STK_PUSH: 1}})

	fault = {"path": OAUTH, "mode": "status", "times": 1, "status": 503}
	assert call(sb, "POST", "/__sandbox__/fault", fault).status == 200
	assert call(sb, "GET", TOKEN_URL, headers=basic()).status == 503
	assert call(sb, "GET", TOKEN_URL, headers=basic()).status == 200
	assert call(sb, "POST", "/__sandbox__/fault", {"path": OAUTH, "mode": "explode"}).status == 400
	assert call(sb, "POST", "/__sandbox__/fault", {"mode": "reset"}).status == 400

	# Control requests bypass faults and are not counted.
	sb.fault("*", "reset")
	assert call(sb, "POST", "/__sandbox__/reset").status == 200
	assert sb.count() == 0
	assert call(sb, "GET", "/__sandbox__/stats").json == {"counts": {}}


def test_cli_serves_until_interrupted():
	# The child must import this same checkout, installed or not.
	root = os.path.dirname(os.path.dirname(frappe_mpesa.__file__))
	env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
	process = subprocess.Popen(
		[sys.executable, "-m", "frappe_mpesa", "sandbox", "--port", "0"],
		stdout=subprocess.PIPE,
		stderr=subprocess.PIPE,
		text=True,
		env=env,
	)
	try:
		facts = {}
		for line in process.stdout:
			if line.startswith("Daraja sandbox running"):
				break
			name, _, value = line.partition(":")
			facts[name] = value.strip()
		assert facts["CA file to trust"] == CA_FILE
		assert facts["consumer key"] == DEFAULT_CONSUMER_KEY
		assert facts["passkey"] == DEFAULT_PASSKEY
		host, port = facts["base URL"].removeprefix("https://").rsplit(":", 1)
		conn = http.client.HTTPSConnection(host, int(port), context=TRUST, timeout=5)
		conn.request("GET", TOKEN_URL, headers=basic())
		assert conn.getresponse().status == 200
		conn.close()
		process.send_signal(signal.SIGINT)
		assert process.wait(timeout=5) == 0
		assert "Traceback" not in process.stderr.read()
	finally:
		process.kill()
		process.wait()
		process.stdout.close()
		process.stderr.close()
