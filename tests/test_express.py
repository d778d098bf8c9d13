"""Lipa na M-Pesa Express: STK push and query end to end against the sandbox."""

import time

import pytest
from conftest import STK_PUSH, STK_QUERY, callback_with

from frappe_mpesa import daraja
from frappe_mpesa.sandbox import DEFAULT_PASSKEY, DEFAULT_SHORTCODE


def wait_for_result(client, checkout_id, timeout=5.0):
	"""Query until the sandbox stops answering 'being processed'."""
	deadline = time.monotonic() + timeout
	while True:
		try:
			return client.stk_query(
				shortcode=DEFAULT_SHORTCODE, passkey=DEFAULT_PASSKEY, checkout_request_id=checkout_id
			)
		except daraja.APIError as e:
			if e.error_code != "500.001.1001" or time.monotonic() > deadline:
				raise
			time.sleep(0.05)


def callback_for(receiver, checkout_id):
	"""The stkCallback body the sandbox posted for one CheckoutRequestID."""
	return callback_with(receiver, "CheckoutRequestID", checkout_id).json["Body"]["stkCallback"]


def test_push_succeeds_and_sends_what_daraja_expects(client, sandbox, stk_args):
	answer = client.stk_push(**stk_args)
	assert answer["ResponseCode"] == "0"
	assert answer["CheckoutRequestID"].startswith("ws_CO_")
	sent = [r for r in sandbox.requests if r.path == STK_PUSH][0].json
	assert sent["PhoneNumber"] == sent["PartyA"] == "254708374149"
	assert sent["PartyB"] == sent["BusinessShortCode"] == DEFAULT_SHORTCODE
	assert sent["Amount"] == 10
	assert sent["TransactionType"] == "CustomerPayBillOnline"
	assert sent["Password"] == daraja.stk_password(DEFAULT_SHORTCODE, DEFAULT_PASSKEY, sent["Timestamp"])


def test_requests_name_their_client(client, sandbox, stk_args):
	"""Every request carries a User-Agent: API gateways and their firewalls commonly refuse a
	request without one."""
	client.stk_push(**stk_args)
	agents = {r.path: r.header("User-Agent") for r in sandbox.requests}
	assert agents and all(agent and agent.startswith("frappe_mpesa") for agent in agents.values()), agents


def test_callback_and_query_report_success(client, receiver, stk_args):
	checkout = client.stk_push(**stk_args)["CheckoutRequestID"]
	callback = callback_for(receiver, checkout)
	assert callback["ResultCode"] == 0
	items = {i["Name"]: i.get("Value") for i in callback["CallbackMetadata"]["Item"]}
	assert items["Amount"] == 10 and len(items["MpesaReceiptNumber"]) == 10
	result = wait_for_result(client, checkout)
	assert result["ResultCode"] == "0"
	assert result["CheckoutRequestID"] == checkout


@pytest.mark.parametrize(
	"phone, code",
	[("254700001032", "1032"), ("254700001037", "1037"), ("254700002001", "2001"), ("254700000001", "1")],
)
def test_failure_outcomes_arrive_as_results(client, receiver, stk_args, phone, code):
	checkout = client.stk_push(**{**stk_args, "phone": phone})["CheckoutRequestID"]
	assert callback_for(receiver, checkout)["ResultCode"] == int(code)
	assert "CallbackMetadata" not in callback_for(receiver, checkout)
	assert wait_for_result(client, checkout)["ResultCode"] == code


def test_pending_query_is_an_api_error_with_the_code(client, sandbox, stk_args):
	sandbox.callback_delay = 5.0
	checkout = client.stk_push(**stk_args)["CheckoutRequestID"]
	with pytest.raises(daraja.APIError) as caught:
		client.stk_query(shortcode=DEFAULT_SHORTCODE, passkey=DEFAULT_PASSKEY, checkout_request_id=checkout)
	assert caught.value.http_status == 500
	assert caught.value.error_code == "500.001.1001"
	assert caught.value.request_id


def test_unknown_checkout_id_is_refused(client):
	with pytest.raises(daraja.APIError) as caught:
		client.stk_query(shortcode=DEFAULT_SHORTCODE, passkey=DEFAULT_PASSKEY, checkout_request_id="ws_CO_0")
	assert caught.value.http_status == 400
	assert caught.value.error_code == "400.002.02"


def test_wrong_passkey_is_refused_by_the_sandbox(client, stk_args):
	with pytest.raises(daraja.APIError) as caught:
		client.stk_push(**{**stk_args, "passkey": "not-the-passkey"})
	assert caught.value.error_code == "500.001.1001"


def test_stale_timestamp_is_refused_by_the_sandbox(client, stk_args):
	with pytest.raises(daraja.APIError) as caught:
		client.stk_push(**{**stk_args, "timestamp": "20160216165627"})
	assert caught.value.error_code == "400.002.02"
	assert "Timestamp" in str(caught.value)


def test_explicit_timestamp_is_used_for_password_and_body(client, sandbox, stk_args):
	now = daraja.timestamp()
	client.stk_push(**{**stk_args, "timestamp": now})
	sent = [r for r in sandbox.requests if r.path == STK_PUSH][0].json
	assert sent["Timestamp"] == now


def test_buy_goods_sends_the_till_as_party_b(client, sandbox, stk_args):
	client.stk_push(**{**stk_args, "transaction_type": "CustomerBuyGoodsOnline", "party_b": "5432101"})
	sent = [r for r in sandbox.requests if r.path == STK_PUSH][0].json
	assert sent["TransactionType"] == "CustomerBuyGoodsOnline"
	assert sent["PartyB"] == "5432101"


def test_query_sends_password_for_its_own_timestamp(client, sandbox, stk_args):
	checkout = client.stk_push(**stk_args)["CheckoutRequestID"]
	wait_for_result(client, checkout)
	sent = [r for r in sandbox.requests if r.path == STK_QUERY][-1].json
	assert sent["Password"] == daraja.stk_password(DEFAULT_SHORTCODE, DEFAULT_PASSKEY, sent["Timestamp"])
	assert sent["CheckoutRequestID"] == checkout


def test_unicode_and_quotes_in_text_fields_are_valid_json(client, sandbox, stk_args):
	client.stk_push(**{**stk_args, "account_reference": 'Ké "1"\\', "description": "Chai ☕"})
	sent = [r for r in sandbox.requests if r.path == STK_PUSH][0].json
	assert sent["AccountReference"] == 'Ké "1"\\'
	assert sent["TransactionDesc"] == "Chai ☕"
