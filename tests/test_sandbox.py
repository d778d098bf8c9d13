"""The embedded Daraja sandbox, driven with the standard library's HTTP client only."""

import base64
import hashlib
import http.client
import json
import os
import re
import signal
import ssl
import struct
import subprocess
import sys
import time
import zlib
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

import frappe_mpesa
from frappe_mpesa.sandbox import (
	B2B_OUTCOMES,
	B2C_OUTCOMES,
	CA_FILE,
	DEFAULT_CONSUMER_KEY,
	DEFAULT_CONSUMER_SECRET,
	DEFAULT_INITIATOR_NAME,
	DEFAULT_INITIATOR_PASSWORD,
	DEFAULT_PASSKEY,
	DEFAULT_SHORTCODE,
	MPESA_TEST_CERT_DER,
	MPESA_TEST_CERT_PEM,
	MPESA_TEST_KEY,
	QUEUE_TIMEOUT,
	QUIRKS,
	SERVER_CERT,
	SERVER_KEY,
	STK_OUTCOMES,
	UNTRUSTED_CA_FILE,
	CallbackReceiver,
	Sandbox,
	cli,
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


def test_fault_random_is_seeded_and_applies_its_mode_at_the_rate(sb):
	def pattern(seed):
		sb.clear_faults()
		sb.fault(OAUTH, "random", rate=0.3, seed=seed, status=503)
		return [call(sb, "GET", TOKEN_URL, headers=basic()).status for _ in range(40)]

	first = pattern(5)
	assert set(first) == {200, 503}
	assert 4 <= first.count(503) <= 20
	assert pattern(5) == first, "the same seed, the same requests disturbed"
	assert pattern(6) != first
	sb.clear_faults()
	sb.fault(OAUTH, "random", rate=0.0)
	assert {call(sb, "GET", TOKEN_URL, headers=basic()).status for _ in range(5)} == {200}


def test_fault_random_processed_reset_handles_the_request_then_drops_the_answer(sb):
	sb.fault(STK_PUSH, "random", rate=1.0, then="reset", processed=True)
	with pytest.raises((ConnectionError, ssl.SSLError)):
		push(sb)
	assert sb.count(STK_PUSH) == 1
	assert len(sb.transactions) == 1, "the push was taken before its answer was lost"


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


def test_cli_refuses_contradictory_quirks(capsys):
	assert cli.main(["--port", "0", "--quirk", "strings_as_numbers", "--quirk", "numbers_as_strings"]) == 2
	assert "exclude each other" in capsys.readouterr().err


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
		assert facts["initiator name"] == DEFAULT_INITIATOR_NAME
		assert facts["initiator password"] == DEFAULT_INITIATOR_PASSWORD
		assert facts["credential certificate"] == MPESA_TEST_CERT_PEM
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


# ---- Connections and chunked answers --------------------------------------------------------------


def test_connection_ids_match_on_keep_alive_and_differ_across_connections(sb):
	first = http.client.HTTPSConnection(sb.host, sb.port, context=TRUST, timeout=5)
	second = http.client.HTTPSConnection(sb.host, sb.port, context=TRUST, timeout=5)
	try:
		for conn in (first, first, second, first):
			call(sb, "GET", TOKEN_URL, headers=basic(), connection=conn)
	finally:
		first.close()
		second.close()
	call(sb, "GET", TOKEN_URL, headers=basic())
	ids = [recorded.connection for recorded in sb.requests]
	assert ids[0] == ids[1] == ids[3]
	assert len({ids[0], ids[2], ids[4]}) == 3


def test_fault_oversize_chunked_has_no_content_length(sb):
	sb.fault(OAUTH, "oversize", bytes=300_000, chunked=True)
	response = call(sb, "GET", TOKEN_URL, headers=basic())
	assert response.status == 200
	assert response.headers["Transfer-Encoding"] == "chunked"
	assert response.headers["Content-Length"] is None
	assert len(response.body) == 300_000 and json.loads(response.body) == {}


def test_fault_oversize_chunked_from_control_endpoint(sb):
	fault = {"path": OAUTH, "mode": "oversize", "bytes": 1000, "chunked": True}
	assert call(sb, "POST", "/__sandbox__/fault", fault).status == 200
	response = call(sb, "GET", TOKEN_URL, headers=basic())
	assert response.headers["Transfer-Encoding"] == "chunked" and len(response.body) == 1000


# ---- The APIs beyond M-Pesa Express ---------------------------------------------------------------

C2B_REGISTER_V1 = "/mpesa/c2b/v1/registerurl"
C2B_REGISTER_V2 = "/mpesa/c2b/v2/registerurl"
C2B_SIMULATE = "/mpesa/c2b/v1/simulate"
B2C = "/mpesa/b2c/v3/paymentrequest"
B2B = "/mpesa/b2b/v1/paymentrequest"
TAX = "/mpesa/b2b/v1/remittax"
STATUS = "/mpesa/transactionstatus/v1/query"
BALANCE = "/mpesa/accountbalance/v1/query"
REVERSAL = "/mpesa/reversal/v1/request"
QR = "/mpesa/qrcode/v1/generate"
PULL_REGISTER = "/pulltransactions/v1/register"
PULL_QUERY = "/pulltransactions/v1/query"
NEW_PATHS = [C2B_REGISTER_V1, C2B_REGISTER_V2, C2B_SIMULATE, B2C, B2B, TAX, STATUS, BALANCE, REVERSAL, QR]
NEW_PATHS += [PULL_REGISTER, PULL_QUERY]
ORG = "600000"
ACCEPTED = "Accept the service request successfully."
SUCCESS = "The service request is processed successfully."
NOWHERE = "https://127.0.0.1:9"
BASE_RESULT_KEYS = {
	"ResultType",
	"ResultCode",
	"ResultDesc",
	"OriginatorConversationID",
	"ConversationID",
	"TransactionID",
	"ReferenceData",
}


def encrypt(password, padding="pkcs1"):
	"""A SecurityCredential made by the openssl command line with the test certificate."""
	command = ["openssl", "pkeyutl", "-encrypt", "-certin", "-inkey", MPESA_TEST_CERT_PEM]
	command += ["-pkeyopt", f"rsa_padding_mode:{padding}"]
	done = subprocess.run(command, input=password.encode(), capture_output=True, check=True)
	return base64.b64encode(done.stdout).decode()


@pytest.fixture(scope="module")
def credential():
	"""A good SecurityCredential for the default initiator."""
	return encrypt(DEFAULT_INITIATOR_PASSWORD)


@pytest.fixture(scope="module")
def shared():
	"""One sandbox for the tests that leave nothing behind: refused requests."""
	with Sandbox(callback_delay=0.01) as sandbox:
		yield sandbox


def result_urls(url=NOWHERE):
	"""The result and queue timeout URLs under a receiver's URL."""
	return {"QueueTimeOutURL": url + "/hooks/timeout", "ResultURL": url + "/hooks/result"}


def initiator(credential, url=NOWHERE, name_field="Initiator"):
	"""Who asks, with which credential, where the result goes, and why."""
	return {
		name_field: DEFAULT_INITIATOR_NAME,
		"SecurityCredential": credential,
		**result_urls(url),
		"Remarks": "Test",
	}


def valid_body(path, credential="credential", url=NOWHERE):
	"""A valid request body for path."""
	b2b = {"SenderIdentifierType": "4", "RecieverIdentifierType": "4", "Amount": 100, "PartyA": ORG}
	bodies = {
		C2B_REGISTER_V1: {
			"ShortCode": ORG,
			"ResponseType": "Completed",
			"ConfirmationURL": url + "/c2b/confirmation",
			"ValidationURL": url + "/c2b/validation",
		},
		C2B_SIMULATE: {
			"ShortCode": ORG,
			"CommandID": "CustomerPayBillOnline",
			"Amount": 5,
			"Msisdn": CUSTOMER,
			"BillRefNumber": "INV-0001",
		},
		B2C: {
			"OriginatorConversationID": f"b2c-{time.monotonic_ns()}",
			**initiator(credential, url, "InitiatorName"),
			"CommandID": "BusinessPayment",
			"Amount": 10,
			"PartyA": ORG,
			"PartyB": CUSTOMER,
			"Occassion": "June",
		},
		B2B: {
			**initiator(credential, url),
			"CommandID": "BusinessPayBill",
			**b2b,
			"PartyB": "600001",
			"AccountReference": "ACC-1",
			"Requester": CUSTOMER,
		},
		TAX: {
			**initiator(credential, url),
			"CommandID": "PayTaxToKRA",
			**b2b,
			"PartyB": "572572",
			"AccountReference": "353353",
		},
		STATUS: {
			**initiator(credential, url),
			"CommandID": "TransactionStatusQuery",
			"TransactionID": "NLJ41HAY6Q",
			"PartyA": ORG,
			"IdentifierType": "4",
		},
		BALANCE: {
			**initiator(credential, url),
			"CommandID": "AccountBalance",
			"PartyA": ORG,
			"IdentifierType": "4",
		},
		REVERSAL: {
			**initiator(credential, url),
			"CommandID": "TransactionReversal",
			"TransactionID": "NLJ41HAY6Q",
			"Amount": 5,
			"ReceiverParty": ORG,
			"RecieverIdentifierType": "11",
		},
		QR: {
			"MerchantName": "Shop",
			"RefNo": "INV-0001",
			"Amount": 10,
			"TrxCode": "BG",
			"CPI": "373132",
			"Size": "300",
		},
		PULL_REGISTER: {
			"ShortCode": ORG,
			"RequestType": "Pull",
			"NominatedNumber": CUSTOMER,
			"CallBackURL": url + "/pull",
		},
		PULL_QUERY: {
			"ShortCode": ORG,
			"StartDate": "2020-01-01 00:00:00",
			"EndDate": "2099-12-31 23:59:59",
			"OffSetValue": "0",
		},
	}
	bodies[C2B_REGISTER_V2] = bodies[C2B_REGISTER_V1]
	return dict(bodies[path])


def post(sb, path, body):
	"""POST body to path with a valid token."""
	return call(sb, "POST", path, body, bearer(sb))


def result_of(rx, path="/hooks/result", count=1):
	"""The Result of the count-th callback to path."""
	return rx.wait(count=count, timeout=5, path=path)[count - 1].json["Result"]


def parameters(result):
	"""ResultParameters as a dict; a key without Value maps to a missing marker."""
	items = result["ResultParameters"]["ResultParameter"]
	return {item["Key"]: item.get("Value", "<missing>") for item in items}


def register_c2b(sb, url, **overrides):
	"""Register the C2B URLs of ORG under url."""
	return post(sb, C2B_REGISTER_V1, {**valid_body(C2B_REGISTER_V1, url=url), **overrides})


def simulate(sb, **overrides):
	"""Simulate a customer paying ORG."""
	return post(sb, C2B_SIMULATE, {**valid_body(C2B_SIMULATE), **overrides})


def initiate(sb, path, credential, url, **overrides):
	"""An initiator request; its synchronous answer."""
	return post(sb, path, {**valid_body(path, credential, url), **overrides})


@pytest.mark.parametrize("path", NEW_PATHS)
def test_new_apis_need_a_token_and_are_recorded(shared, path):
	shared.reset()
	response = call(shared, "POST", path, valid_body(path))
	assert_envelope(response, 404, "404.001.03", "Invalid Access Token")
	assert_envelope(post(shared, path, b"not json"), 400, "400.002.05", "Invalid JSON payload")
	assert shared.count(path) == 2
	assert_envelope(call(shared, "GET", path, headers=bearer(shared)), 405, "405.001", "Method Not Allowed")


@pytest.mark.parametrize(
	"path, overrides, field",
	[
		(C2B_REGISTER_V1, {"ShortCode": "12"}, "ShortCode"),
		(C2B_REGISTER_V1, {"ResponseType": "completed"}, "ResponseType"),
		(C2B_REGISTER_V2, {"ConfirmationURL": "ftp://example.com/c"}, "ConfirmationURL"),
		(C2B_REGISTER_V1, {"ValidationURL": "https://example.com/mpesa/v"}, "ValidationURL"),
		(C2B_SIMULATE, {"CommandID": "PayBill"}, "CommandID"),
		(C2B_SIMULATE, {"Amount": 0}, "Amount"),
		(C2B_SIMULATE, {"Msisdn": "0708374149"}, "Msisdn"),
		(C2B_SIMULATE, {"BillRefNumber": "x" * 21}, "BillRefNumber"),
		(B2C, {"OriginatorConversationID": None}, "OriginatorConversationID"),
		(B2C, {"InitiatorName": ""}, "InitiatorName"),
		(B2C, {"SecurityCredential": None}, "SecurityCredential"),
		(B2C, {"CommandID": "BusinessPayBill"}, "CommandID"),
		(B2C, {"Amount": 10.5}, "Amount"),
		(B2C, {"PartyA": "60000000"}, "PartyA"),
		(B2C, {"PartyB": "+254708374149"}, "PartyB"),
		(B2C, {"Remarks": "x"}, "Remarks"),
		(B2C, {"Remarks": "x" * 101}, "Remarks"),
		(B2C, {"ResultURL": "https://example.com/Safaricom/result"}, "ResultURL"),
		(B2C, {"QueueTimeOutURL": None}, "QueueTimeOutURL"),
		(B2C, {"Occassion": "x" * 101}, "Occassion"),
		(B2B, {"CommandID": "BusinessPayment"}, "CommandID"),
		(B2B, {"SenderIdentifierType": "1"}, "SenderIdentifierType"),
		(B2B, {"RecieverIdentifierType": None}, "RecieverIdentifierType"),
		(B2B, {"PartyB": CUSTOMER}, "PartyB"),
		(B2B, {"AccountReference": None}, "AccountReference"),
		(B2B, {"AccountReference": "x" * 14}, "AccountReference"),
		(B2B, {"Requester": "0708374149"}, "Requester"),
		(TAX, {"PartyB": "600001"}, "PartyB"),
		(TAX, {"CommandID": "BusinessPayBill"}, "CommandID"),
		(TAX, {"AccountReference": None}, "AccountReference"),
		(STATUS, {"TransactionID": None}, "TransactionID"),
		(STATUS, {"IdentifierType": "3"}, "IdentifierType"),
		(STATUS, {"IdentifierType": "1"}, "PartyA"),
		(STATUS, {"PartyA": CUSTOMER}, "PartyA"),
		(STATUS, {"CommandID": "AccountBalance"}, "CommandID"),
		(BALANCE, {"PartyA": None}, "PartyA"),
		(BALANCE, {"Initiator": None}, "Initiator"),
		(REVERSAL, {"TransactionID": None}, "TransactionID"),
		(REVERSAL, {"ReceiverParty": "1"}, "ReceiverParty"),
		(REVERSAL, {"RecieverIdentifierType": "3"}, "RecieverIdentifierType"),
		(REVERSAL, {"Amount": "-5"}, "Amount"),
		(QR, {"TrxCode": "XX"}, "TrxCode"),
		(QR, {"CPI": "12"}, "CPI"),
		(QR, {"MerchantName": ""}, "MerchantName"),
		(QR, {"Size": "x"}, "Size"),
		(PULL_REGISTER, {"RequestType": "Push"}, "RequestType"),
		(PULL_REGISTER, {"NominatedNumber": "708374149"}, "NominatedNumber"),
		(PULL_REGISTER, {"CallBackURL": "https://example.com/cmd"}, "CallBackURL"),
		(PULL_QUERY, {"StartDate": "2020-08-04"}, "StartDate"),
		(PULL_QUERY, {"EndDate": "2020-13-04 08:36:00"}, "EndDate"),
		(PULL_QUERY, {"OffSetValue": "a"}, "OffSetValue"),
	],
)
def test_new_apis_refuse_invalid_fields(shared, path, overrides, field):
	body = {**valid_body(path), **overrides}
	assert_envelope(post(shared, path, body), 400, "400.002.02", f"Bad Request - Invalid {field}")


def test_optional_fields_may_be_left_out(shared):
	cases = [
		(B2C, "Occassion"),
		(B2B, "Requester"),
		(STATUS, "Occasion"),
		(QR, "Size"),
		(C2B_SIMULATE, "BillRefNumber"),
		(PULL_QUERY, "OffSetValue"),
	]
	for path, field in cases:
		body = valid_body(path, "not-a-credential")
		body.pop(field, None)
		assert post(shared, path, body).status == 200, path
	buy_goods = {**valid_body(B2B), "CommandID": "BusinessBuyGoods", "AccountReference": ""}
	assert post(shared, B2B, buy_goods).status == 200
	by_conversation = {
		**valid_body(STATUS),
		"TransactionID": "",
		"OriginalConversationID": "AG_20240101_00001",
	}
	assert post(shared, STATUS, by_conversation).status == 200
	by_phone = {**valid_body(STATUS), "PartyA": CUSTOMER, "IdentifierType": "1"}
	assert post(shared, STATUS, by_phone).status == 200


# ---- C2B ------------------------------------------------------------------------------------------


def test_c2b_register_v2_and_v1(sb, rx):
	for path in (C2B_REGISTER_V2, C2B_REGISTER_V1):
		response = register_c2b(sb, rx.url)
		assert response.status == 200
		assert set(response.json) == {"OriginatorCoversationID", "ResponseCode", "ResponseDescription"}
		assert (response.json["ResponseCode"], response.json["ResponseDescription"]) == ("0", "Success")
		assert re.fullmatch(r"\d{5}-\d{8}-1", response.json["OriginatorCoversationID"])
	assert sb.c2b_urls == {
		ORG: {
			"ResponseType": "Completed",
			"ConfirmationURL": rx.url + "/c2b/confirmation",
			"ValidationURL": rx.url + "/c2b/validation",
		}
	}


def test_c2b_register_without_v2_product_falls_back_to_v1(rx):
	with Sandbox(c2b_v2_product=False) as sb:
		body = valid_body(C2B_REGISTER_V2, url=rx.url)
		response = post(sb, C2B_REGISTER_V2, body)
		assert_envelope(response, 401, "401.003.01", "No apiproduct match found")
		assert sb.c2b_urls == {}
		assert post(sb, C2B_REGISTER_V1, body).status == 200
		assert list(sb.c2b_urls) == [ORG]


def test_c2b_register_once(rx):
	with Sandbox(c2b_register_once=True) as sb:
		assert register_c2b(sb, rx.url).status == 200
		assert_envelope(register_c2b(sb, rx.url), 500, "500.003.1001", "Urls are already registered")
		assert register_c2b(sb, rx.url, ShortCode="600001").status == 200


@pytest.mark.parametrize(
	"style, msisdn",
	[
		("plain", CUSTOMER),
		("masked", "25470****149"),
		("hashed", hashlib.sha256(CUSTOMER.encode()).hexdigest()),
	],
)
def test_c2b_simulate_confirms_to_the_registered_url(rx, style, msisdn):
	with Sandbox(callback_delay=0.01, msisdn_style=style) as sb:
		register_c2b(sb, rx.url)
		response = simulate(sb)
		assert response.status == 200
		assert response.json["ResponseDescription"] == ACCEPTED
		assert response.json["ResponseCode"] == "0" and "OriginatorCoversationID" in response.json
		(received,) = rx.wait(path="/c2b/confirmation")
		confirmation = received.json
		assert list(confirmation) == [
			"TransactionType",
			"TransID",
			"TransTime",
			"TransAmount",
			"BusinessShortCode",
			"BillRefNumber",
			"InvoiceNumber",
			"OrgAccountBalance",
			"ThirdPartyTransID",
			"MSISDN",
			"FirstName",
			"MiddleName",
			"LastName",
		]
		assert confirmation["TransactionType"] == "Pay Bill"
		assert re.fullmatch(r"[A-Z0-9]{10}", confirmation["TransID"])
		moment = datetime.strptime(confirmation["TransTime"], "%Y%m%d%H%M%S").replace(tzinfo=NAIROBI)
		assert abs((moment - datetime.now(NAIROBI)).total_seconds()) < 5
		assert (confirmation["TransAmount"], confirmation["OrgAccountBalance"]) == ("5.00", "228042.00")
		assert (confirmation["BusinessShortCode"], confirmation["BillRefNumber"]) == (ORG, "INV-0001")
		assert confirmation["MSISDN"] == msisdn
		assert (confirmation["FirstName"], confirmation["MiddleName"], confirmation["LastName"]) == (
			"JOHN",
			"",
			"DOE",
		)
		assert rx.received == [received]
		payment = sb.payments[confirmation["TransID"]]
		assert (payment["kind"], payment["amount"], payment["state"]) == ("c2b", 5, "completed")
		assert sb.balances["Utility Account"] == Decimal("228042.00")


def test_c2b_buy_goods_without_registration_is_still_paid(sb, rx):
	assert simulate(sb, CommandID="CustomerBuyGoodsOnline", BillRefNumber=None).status == 200
	wait_until(lambda: sb.payments)
	assert rx.received == [] and sb.callbacks == []
	register_c2b(sb, rx.url)
	simulate(sb, CommandID="CustomerBuyGoodsOnline", BillRefNumber=None)
	confirmation = rx.wait(path="/c2b/confirmation")[0].json
	assert (confirmation["TransactionType"], confirmation["BillRefNumber"]) == ("Buy Goods", "")


def test_c2b_validation_accepts_then_confirms(rx):
	with Sandbox(callback_delay=0.01, c2b_validation=True) as sb:
		register_c2b(sb, rx.url)
		simulate(sb)
		validation, confirmation = (received.json for received in rx.wait(count=2))
		assert rx.received[0].path == "/c2b/validation"
		assert validation["OrgAccountBalance"] == "" and validation["TransID"] == confirmation["TransID"]
		assert confirmation["OrgAccountBalance"] == "228042.00"


class _RejectingHandler(CallbackReceiver.handler_class):
	"""Rejects payments validated at /reject; acknowledges everything else."""

	def do_POST(self):
		"""Record the callback, then answer it."""
		self.server.service._record(self.receive())
		if self.path == "/reject":
			self.reply(200, {"ResultCode": "C2B00012", "ResultDesc": "Rejected"})
		else:
			self.reply(200, {"ResultCode": "0", "ResultDesc": "Accepted"})


class RejectingReceiver(CallbackReceiver):
	"""A merchant whose /reject validation URL rejects every payment."""

	handler_class = _RejectingHandler


def test_c2b_validation_rejection_stops_the_confirmation():
	with Sandbox(callback_delay=0.01, c2b_validation=True) as sb, RejectingReceiver() as merchant:
		register_c2b(sb, merchant.url, ValidationURL=merchant.url + "/reject")
		simulate(sb)
		wait_until(lambda: sb.payments)
		(received,) = merchant.wait(path="/reject")
		(payment,) = sb.payments.values()
		assert payment["state"] == "rejected" and payment["receipt"] == received.json["TransID"]
		time.sleep(0.05)
		assert [request.path for request in merchant.received] == ["/reject"]
		assert sb.balances["Utility Account"] == Decimal("228037.00")
		# Not a payment: invisible to pull queries.
		assert post(sb, PULL_QUERY, valid_body(PULL_QUERY)).json["Response"] == [[]]


@pytest.mark.parametrize("response_type, state", [("Completed", "completed"), ("Cancelled", "cancelled")])
def test_c2b_unreachable_validation_follows_response_type(rx, response_type, state):
	with Sandbox(callback_delay=0.01, c2b_validation=True) as sb:
		register_c2b(sb, rx.url, ValidationURL=NOWHERE + "/c2b/validation", ResponseType=response_type)
		simulate(sb)
		wait_until(lambda: sb.payments)
		assert [payment["state"] for payment in sb.payments.values()] == [state]
		if state == "completed":
			rx.wait(path="/c2b/confirmation")
		else:
			time.sleep(0.05)
			assert rx.received == []


# ---- Pull -----------------------------------------------------------------------------------------


def test_pull_register_then_again(sb):
	first = post(sb, PULL_REGISTER, valid_body(PULL_REGISTER))
	assert first.status == 200
	assert set(first.json) == {"ResponseRefID", "ResponseStatus", "ShortCode", "ResponseDescription"}
	assert (first.json["ResponseStatus"], first.json["ShortCode"]) == ("1000", ORG)
	assert first.json["ResponseDescription"] == "Shortcode registered successfully"
	assert post(sb, PULL_REGISTER, valid_body(PULL_REGISTER)).json["ResponseStatus"] == "1001"
	assert sb.pull_registrations == {ORG: {"NominatedNumber": CUSTOMER, "CallBackURL": NOWHERE + "/pull"}}


def test_pull_query_lists_the_simulated_payments_in_the_window(sb):
	for amount in (5, 7):
		simulate(sb, Amount=amount)
	simulate(sb, ShortCode="600001")
	push(sb, Amount=3, PartyB=ORG)
	wait_until(lambda: len(sb.payments) == 4)
	response = post(sb, PULL_QUERY, valid_body(PULL_QUERY))
	assert response.status == 200
	assert (response.json["ResponseCode"], response.json["ResponseMessage"]) == ("1000", "Success")
	(entries,) = response.json["Response"]
	assert sorted(entry["amount"] for entry in entries) == ["3.0", "5.0", "7.0"]
	entry = next(entry for entry in entries if entry["amount"] == "5.0")
	assert set(entry) == {
		"transactionId",
		"trxDate",
		"msisdn",
		"sender",
		"transactiontype",
		"billreference",
		"amount",
		"organizationname",
	}
	assert entry["transactionId"] in sb.payments
	assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000\+03:00", entry["trxDate"])
	assert (entry["msisdn"], entry["transactiontype"], entry["billreference"]) == (
		int(CUSTOMER),
		"c2b-pay-bill-debit",
		"INV-0001",
	)
	later = post(sb, PULL_QUERY, {**valid_body(PULL_QUERY), "OffSetValue": "2"}).json["Response"][0]
	assert later == entries[2:]
	past = {**valid_body(PULL_QUERY), "EndDate": "2021-01-01 00:00:00"}
	assert post(sb, PULL_QUERY, past).json["Response"] == [[]]


# ---- Dynamic QR -----------------------------------------------------------------------------------


def png_chunks(data):
	"""(type, data) of each chunk of a PNG, CRCs checked."""
	assert data[:8] == b"\x89PNG\r\n\x1a\n"
	chunks, offset = [], 8
	while offset < len(data):
		(length,) = struct.unpack(">I", data[offset : offset + 4])
		kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
		assert struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])[0] == zlib.crc32(
			kind + body
		)
		chunks.append((kind, body))
		offset += 12 + length
	return chunks


def test_dynamic_qr_is_a_png(sb):
	response = post(sb, QR, valid_body(QR))
	assert response.status == 200
	assert response.json["ResponseCode"] == "00"
	assert response.json["ResponseDescription"] == SUCCESS
	assert re.fullmatch(r"\d{5}-\d{8}-1", response.json["RequestID"])
	chunks = png_chunks(base64.b64decode(response.json["QRCode"], validate=True))
	assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
	width, height, depth, colour = struct.unpack(">IIBB", chunks[0][1][:10])
	assert width == height and 250 <= width <= 300 and (depth, colour) == (1, 0)
	assert len(zlib.decompress(chunks[1][1])) == height * (1 + (width + 7) // 8)


# ---- Initiator APIs -------------------------------------------------------------------------------


def assert_accepted(response, originator=None):
	"""The synchronous answer of every initiator API."""
	assert response.status == 200
	assert set(response.json) == {
		"ConversationID",
		"OriginatorConversationID",
		"ResponseCode",
		"ResponseDescription",
	}
	assert re.fullmatch(r"AG_\d{8}_[0-9a-f]{20}", response.json["ConversationID"])
	assert response.json["OriginatorConversationID"] == originator or (
		originator is None and re.fullmatch(r"\d{5}-\d{8}-1", response.json["OriginatorConversationID"])
	)
	assert (response.json["ResponseCode"], response.json["ResponseDescription"]) == ("0", ACCEPTED)


def assert_result_base(result, response, code, description):
	"""A Result's base fields match the synchronous answer."""
	assert (result["ResultType"], result["ResultCode"], result["ResultDesc"]) == (0, code, description)
	assert result["ConversationID"] == response.json["ConversationID"]
	assert result["OriginatorConversationID"] == response.json["OriginatorConversationID"]
	assert re.fullmatch(r"[A-Z0-9]{10}", result["TransactionID"])


def test_b2c_success_result(sb, rx, credential):
	body = valid_body(B2C, credential, rx.url)
	response = post(sb, B2C, body)
	assert_accepted(response, body["OriginatorConversationID"])
	result = result_of(rx)
	assert_result_base(result, response, 0, SUCCESS)
	values = parameters(result)
	assert list(values) == [
		"TransactionAmount",
		"TransactionReceipt",
		"B2CRecipientIsRegisteredCustomer",
		"B2CChargesPaidAccountAvailableFunds",
		"ReceiverPartyPublicName",
		"TransactionCompletedDateTime",
		"B2CUtilityAccountAvailableFunds",
		"B2CWorkingAccountAvailableFunds",
	]
	assert values["TransactionAmount"] == 10 and values["TransactionReceipt"] == result["TransactionID"]
	assert values["B2CRecipientIsRegisteredCustomer"] == "Y"
	assert values["ReceiverPartyPublicName"] == f"{CUSTOMER} - JOHN DOE"
	assert re.fullmatch(r"\d\d\.\d\d\.\d{4} \d\d:\d\d:\d\d", values["TransactionCompletedDateTime"])
	assert values["B2CUtilityAccountAvailableFunds"] == 228027.0
	assert values["B2CWorkingAccountAvailableFunds"] == 700000.0
	assert values["B2CChargesPaidAccountAvailableFunds"] == -1540.0
	assert result["ReferenceData"] == {
		"ReferenceItem": {"Key": "QueueTimeoutURL", "Value": rx.url + "/hooks/timeout"}
	}
	assert sb.payments[result["TransactionID"]]["kind"] == "b2c"
	entry = sb.results[response.json["ConversationID"]]
	assert (entry["api"], entry["state"], entry["credential_valid"]) == ("b2c", "final", True)
	assert (entry["url"], entry["payload"]) == (rx.url + "/hooks/result", {"Result": result})
	assert entry["request"]["PartyB"] == CUSTOMER


def test_b2c_duplicate_originator_conversation_id(sb, credential):
	body = valid_body(B2C, credential)
	assert post(sb, B2C, body).status == 200
	response = post(sb, B2C, body)
	assert_envelope(response, 500, "500.002.1001", "Duplicate OriginatorConversationID")
	assert len(sb.results) == 1


@pytest.mark.parametrize(
	"make, name",
	[
		(lambda: encrypt("wrong password"), DEFAULT_INITIATOR_NAME),
		(lambda: encrypt(DEFAULT_INITIATOR_PASSWORD, padding="oaep"), DEFAULT_INITIATOR_NAME),
		(lambda: "bm90IGEgY3JlZGVudGlhbA==", DEFAULT_INITIATOR_NAME),
		(lambda: "not-base64!", DEFAULT_INITIATOR_NAME),
		(None, "someone"),
	],
	ids=["wrong-password", "oaep", "not-rsa", "not-base64", "wrong-name"],
)
def test_wrong_initiator_is_accepted_then_fails_with_2001(sb, rx, credential, make, name):
	body = {**valid_body(B2C, make() if make else credential, rx.url), "InitiatorName": name}
	response = post(sb, B2C, body)
	assert_accepted(response, body["OriginatorConversationID"])
	result = result_of(rx)
	assert (result["ResultCode"], result["ResultDesc"]) == (2001, "The initiator information is invalid.")
	assert set(result) == BASE_RESULT_KEYS
	assert re.fullmatch(r"[A-Z]{3}0{7}", result["TransactionID"])
	assert sb.payments == {}


def test_initiator_configuration(rx):
	password = "Another#Pass1"
	with Sandbox(callback_delay=0.01, initiator_name="apiop", initiator_password=password) as sb:
		body = {**valid_body(BALANCE, encrypt(password), rx.url), "Initiator": "apiop"}
		assert_accepted(post(sb, BALANCE, body))
		assert result_of(rx)["ResultCode"] == 0


@pytest.mark.parametrize("phone, outcome", [(p, o) for p, o in B2C_OUTCOMES.items() if o != QUEUE_TIMEOUT])
def test_b2c_outcome_chosen_by_phone(sb, rx, credential, phone, outcome):
	response = initiate(sb, B2C, credential, rx.url, PartyB=phone)
	result = result_of(rx)
	assert_result_base(result, response, *outcome)
	assert set(result) == BASE_RESULT_KEYS
	assert sb.payments == {}


def test_b2c_queue_timeout_goes_to_the_queue_timeout_url(sb, rx, credential):
	(phone,) = [phone for phone, outcome in B2C_OUTCOMES.items() if outcome == QUEUE_TIMEOUT]
	response = initiate(sb, B2C, credential, rx.url, PartyB=phone)
	result = result_of(rx, "/hooks/timeout")
	assert_result_base(result, response, *QUEUE_TIMEOUT)
	time.sleep(0.05)
	assert [request.path for request in rx.received] == ["/hooks/timeout"]
	assert sb.results[response.json["ConversationID"]]["url"] == rx.url + "/hooks/timeout"


@pytest.mark.parametrize("path", [B2B, TAX])
def test_b2b_and_tax_success_result(sb, rx, credential, path):
	response = initiate(sb, path, credential, rx.url)
	assert_accepted(response)
	result = result_of(rx)
	assert_result_base(result, response, 0, SUCCESS)
	values = parameters(result)
	assert list(values) == [
		"DebitAccountBalance",
		"Amount",
		"DebitPartyAffectedAccountBalance",
		"TransCompletedTime",
		"DebitPartyCharges",
		"ReceiverPartyPublicName",
		"Currency",
		"InitiatorAccountCurrentBalance",
	]
	balance = "{Amount={CurrencyCode=KES, MinimumAmount=69990000, BasicAmount=699900.00}}"
	assert values["DebitAccountBalance"] == values["InitiatorAccountCurrentBalance"] == balance
	assert values["Amount"] == "100.00" and values["Currency"] == "KES"
	assert values["DebitPartyAffectedAccountBalance"] == "Working Account|KES|699900.00|699900.00|0.00|0.00"
	assert re.fullmatch(r"\d{14}", values["TransCompletedTime"])
	public = "572572 - Kenya Revenue Authority" if path == TAX else "600001 - Sandbox Organization"
	assert values["ReceiverPartyPublicName"] == public
	reference = "353353" if path == TAX else "ACC-1"
	assert result["ReferenceData"]["ReferenceItem"] == [
		{"Key": "BillReferenceNumber", "Value": reference},
		{"Key": "QueueTimeoutURL", "Value": rx.url + "/hooks/timeout"},
	]


@pytest.mark.parametrize("party, outcome", B2B_OUTCOMES.items())
def test_b2b_outcome_chosen_by_party_b(sb, rx, credential, party, outcome):
	response = initiate(sb, B2B, credential, rx.url, PartyB=party)
	path = "/hooks/timeout" if outcome == QUEUE_TIMEOUT else "/hooks/result"
	result = result_of(rx, path)
	assert_result_base(result, response, *outcome)
	assert set(result) == BASE_RESULT_KEYS


def test_account_balance_result(sb, rx, credential):
	response = initiate(sb, BALANCE, credential, rx.url)
	result = result_of(rx)
	assert_result_base(result, response, 0, SUCCESS)
	values = parameters(result)
	assert values["AccountBalance"] == (
		"Working Account|KES|700000.00|700000.00|0.00|0.00&Float Account|KES|0.00|0.00|0.00|0.00"
		"&Utility Account|KES|228037.00|228037.00|0.00|0.00&Charges Paid Account|KES|-1540.00|-1540.00|0.00|0.00"
		"&Organization Settlement Account|KES|0.00|0.00|0.00|0.00"
	)
	assert isinstance(values["BOCompletedTime"], int) and len(str(values["BOCompletedTime"])) == 14


def test_transaction_status_finds_the_sandbox_payments(sb, rx, credential):
	payout = initiate(sb, B2C, credential, rx.url)
	receipt = result_of(rx)["TransactionID"]
	push(sb, callback_url=rx.url + "/hooks/stk", Amount=3)
	stk_receipt = rx.wait(path="/hooks/stk")[0].json["Body"]["stkCallback"]["CallbackMetadata"]["Item"][1][
		"Value"
	]

	initiate(sb, STATUS, credential, rx.url, TransactionID=receipt)
	values = parameters(result_of(rx, count=2))
	assert list(values) == [
		"DebitPartyName",
		"CreditPartyName",
		"OriginatorConversationID",
		"InitiatedTime",
		"DebitAccountType",
		"DebitPartyCharges",
		"TransactionReason",
		"ReasonType",
		"TransactionStatus",
		"FinalisedTime",
		"Amount",
		"ConversationID",
		"ReceiptNo",
	]
	assert (values["DebitPartyName"], values["CreditPartyName"]) == (
		f"{ORG} - Sandbox Organization",
		f"{CUSTOMER} - JOHN DOE",
	)
	assert values["OriginatorConversationID"] == payout.json["OriginatorConversationID"]
	assert values["ConversationID"] == payout.json["ConversationID"]
	assert (values["TransactionStatus"], values["Amount"], values["ReceiptNo"]) == ("Completed", 10, receipt)
	assert values["TransactionReason"] == "<missing>" and values["DebitAccountType"] == "Utility Account"
	assert values["ReasonType"] == "Business Payment to Customer via API"
	assert isinstance(values["InitiatedTime"], int) and len(str(values["InitiatedTime"])) == 14

	initiate(
		sb, STATUS, credential, rx.url, TransactionID="", OriginalConversationID=payout.json["ConversationID"]
	)
	assert parameters(result_of(rx, count=3))["ReceiptNo"] == receipt
	initiate(sb, STATUS, credential, rx.url, TransactionID=stk_receipt)
	values = parameters(result_of(rx, count=4))
	assert (values["ReceiptNo"], values["Amount"], values["DebitAccountType"]) == (
		stk_receipt,
		3,
		"MMF Account For Customer",
	)

	unknown = initiate(sb, STATUS, credential, rx.url, TransactionID="NOSUCHTX01")
	result = result_of(rx, count=5)
	assert_result_base(result, unknown, 2032, "The transaction receipt number does not exist.")
	assert set(result) == BASE_RESULT_KEYS


def test_reversal_once_then_r000001_and_unknown_r000002(sb, rx, credential):
	register_c2b(sb, rx.url)
	simulate(sb, Amount=50)
	transaction_id = rx.wait(path="/c2b/confirmation")[0].json["TransID"]

	first = initiate(sb, REVERSAL, credential, rx.url, TransactionID=transaction_id, Amount=50)
	result = result_of(rx)
	assert_result_base(result, first, 0, SUCCESS)
	values = parameters(result)
	assert list(values) == [
		"DebitAccountBalance",
		"Amount",
		"TransCompletedTime",
		"OriginalTransactionID",
		"Charge",
		"CreditPartyPublicName",
		"DebitPartyPublicName",
	]
	assert values["DebitAccountBalance"] == "Utility Account|KES|228037.00|228037.00|0.00|0.00"
	assert (values["Amount"], values["OriginalTransactionID"], values["Charge"]) == (50, transaction_id, 0)
	assert values["CreditPartyPublicName"] == f"{CUSTOMER} - JOHN DOE"
	assert values["DebitPartyPublicName"] == f"{ORG} - Sandbox Organization"
	assert sb.payments[transaction_id]["state"] == "reversed"
	assert sb.balances["Utility Account"] == Decimal("228037.00")

	again = initiate(sb, REVERSAL, credential, rx.url, TransactionID=transaction_id, Amount=50)
	result = result_of(rx, count=2)
	assert_result_base(result, again, "R000001", "The transaction has already been reversed")
	assert set(result) == BASE_RESULT_KEYS
	unknown = initiate(sb, REVERSAL, credential, rx.url, TransactionID="NOSUCHTX01")
	assert_result_base(result_of(rx, count=3), unknown, "R000002", "The OriginalTransactionID is invalid.")


# ---- Quirks ---------------------------------------------------------------------------------------


def test_quirks_numbers_as_strings_and_single_parameter(sb, rx, credential):
	sb.quirks = {"numbers_as_strings", "single_parameter"}
	initiate(sb, B2C, credential, rx.url)
	result = result_of(rx)
	assert (result["ResultType"], result["ResultCode"]) == ("0", "0")
	assert result["ResultParameters"]["ResultParameter"] == {"Key": "TransactionAmount", "Value": "10.00"}
	wait_until(lambda: sb.callbacks)
	assert sb.callbacks[0].payload == {"Result": result}


def test_quirks_strings_as_numbers_and_value_missing(rx, credential):
	quirks = ["strings_as_numbers", "value_missing"]
	with Sandbox(callback_delay=0.01, msisdn_style="plain", quirks=quirks) as sb:
		assert sb.quirks == frozenset(quirks)
		register_c2b(sb, rx.url)
		simulate(sb)
		confirmation = rx.wait(path="/c2b/confirmation")[0].json
		assert (confirmation["TransAmount"], confirmation["OrgAccountBalance"]) == (5, 228042)
		assert isinstance(confirmation["TransTime"], int)
		assert confirmation["MSISDN"] == CUSTOMER and confirmation["BusinessShortCode"] == ORG
		initiate(sb, B2C, credential, rx.url)
		values = parameters(result_of(rx))
		assert values["B2CUtilityAccountAvailableFunds"] == "<missing>"
		assert values["B2CChargesPaidAccountAvailableFunds"] == "<missing>"
		assert values["TransactionAmount"] == 10 and values["B2CWorkingAccountAvailableFunds"] == 700000
		initiate(sb, B2B, credential, rx.url)
		values = parameters(result_of(rx, count=2))
		assert values["Amount"] == 100 and isinstance(values["TransCompletedTime"], int)
		assert values["DebitPartyCharges"] == "<missing>"


def test_quirks_apply_to_stk_callbacks(sb, rx):
	sb.quirks = ["numbers_as_strings"]
	push(sb, callback_url=rx.url + "/hooks/stk", Amount=25)
	callback = rx.wait()[0].json["Body"]["stkCallback"]
	assert callback["ResultCode"] == "0"
	values = {item["Name"]: item.get("Value") for item in callback["CallbackMetadata"]["Item"]}
	assert (values["Amount"], values["PhoneNumber"]) == ("25.00", CUSTOMER)


def test_quirks_checked(sb):
	assert set(QUIRKS) == {"strings_as_numbers", "numbers_as_strings", "single_parameter", "value_missing"}
	with pytest.raises(ValueError):
		sb.quirks = ["sideways"]
	with pytest.raises(ValueError):
		Sandbox(quirks=["strings_as_numbers", "numbers_as_strings"])
	with pytest.raises(ValueError):
		Sandbox(msisdn_style="scrambled")
	assert sb.quirks == frozenset()
	assert call(sb, "POST", "/__sandbox__/quirks", {"quirks": ["single_parameter"]}).status == 200
	assert sb.quirks == {"single_parameter"}
	assert call(sb, "POST", "/__sandbox__/quirks", {"quirks": ["sideways"]}).status == 400
	assert call(sb, "POST", "/__sandbox__/quirks", {"quirks": "single_parameter"}).status == 400
	assert sb.quirks == {"single_parameter"}


# ---- State ----------------------------------------------------------------------------------------


def test_faults_apply_to_the_new_apis(sb, credential):
	sb.fault(B2C, "status", status=503, times=1)
	assert_envelope(post(sb, B2C, valid_body(B2C, credential)), 503, "503.001.01", "Service Unavailable")
	sb.fault("*", "reset", times=1)
	with pytest.raises((ConnectionError, ssl.SSLError)):
		post(sb, QR, valid_body(QR))
	assert post(sb, B2C, valid_body(B2C, credential)).status == 200
	assert sb.count(B2C) == 2 and sb.count(QR) == 1
	assert len(sb.results) == 1


def test_reset_forgets_payments_results_and_registrations(sb, rx, credential):
	register_c2b(sb, rx.url)
	post(sb, PULL_REGISTER, valid_body(PULL_REGISTER))
	simulate(sb)
	initiate(sb, B2C, credential, rx.url)
	rx.wait(count=2)
	wait_until(lambda: len(sb.callbacks) == 2)
	sb.quirks = ["single_parameter"]
	sb.reset()
	assert (sb.c2b_urls, sb.pull_registrations, sb.results, sb.payments) == ({}, {}, {}, {})
	assert sb.balances["Utility Account"] == Decimal("228037.00")
	assert sb.quirks == {"single_parameter"}


def test_stk_success_is_a_payment(sb, rx):
	push(sb, callback_url=rx.url + "/hooks/stk", Amount=25)
	items = rx.wait()[0].json["Body"]["stkCallback"]["CallbackMetadata"]["Item"]
	payment = sb.payments[items[1]["Value"]]
	assert (payment["kind"], payment["amount"], payment["msisdn"], payment["state"]) == (
		"stk",
		25,
		CUSTOMER,
		"completed",
	)
	assert sb.balances["Utility Account"] == Decimal("228062.00")
