"""No money-moving request is ever sent twice by the client; read-only ones at most three times.

Every Client method runs against injected 5xx answers and connection resets; the sandbox
counts what reached it.
"""

import pytest
from conftest import OAUTH, STK_PUSH

from frappe_mpesa import daraja
from frappe_mpesa.sandbox import DEFAULT_PASSKEY, DEFAULT_SHORTCODE


def calls(receiver, initiator):
	"""(name, path, moves money, call) for every Client method."""
	url = receiver.url + "/hooks/any"
	stk = {"shortcode": DEFAULT_SHORTCODE, "passkey": DEFAULT_PASSKEY}
	return [
		("stk_push", "/mpesa/stkpush/v1/processrequest", True, lambda c: c.stk_push(**stk, amount=1,
			phone="0708374149", callback_url=url, account_reference="A", description="D")),
		("b2c_payment", "/mpesa/b2c/v3/paymentrequest", True, lambda c: c.b2c_payment(**initiator,
			command_id="BusinessPayment", amount=1, party_a="600996", phone="0708374149", remarks="Pay")),
		("b2b_payment", "/mpesa/b2b/v1/paymentrequest", True, lambda c: c.b2b_payment(**initiator,
			command_id="BusinessBuyGoods", amount=1, party_a="600996", party_b="600000", remarks="Pay")),
		("tax_remittance", "/mpesa/b2b/v1/remittax", True, lambda c: c.tax_remittance(**initiator, amount=1,
			party_a="600996", prn="123", remarks="Tax")),
		("reversal", "/mpesa/reversal/v1/request", True, lambda c: c.reversal(**initiator,
			transaction_id="OEI2AK4Q16", amount=1, receiver_party="600996", remarks="Undo")),
		("c2b_simulate", "/mpesa/c2b/v1/simulate", True, lambda c: c.c2b_simulate(shortcode="600984", amount=1,
			phone="0708374149", bill_ref_number="A")),
		("stk_query", "/mpesa/stkpushquery/v1/query", False, lambda c: c.stk_query(**stk,
			checkout_request_id="ws_CO_1")),
		("transaction_status", "/mpesa/transactionstatus/v1/query", False, lambda c: c.transaction_status(
			**initiator, party_a="600996", transaction_id="OEI2AK4Q16")),
		("account_balance", "/mpesa/accountbalance/v1/query", False, lambda c: c.account_balance(**initiator,
			party_a="600996")),
		("dynamic_qr", "/mpesa/qrcode/v1/generate", False, lambda c: c.dynamic_qr(merchant_name="M", ref_no="R",
			amount=1, trx_code="BG", cpi="373132")),
		("pull_query", "/pulltransactions/v1/query", False, lambda c: c.pull_query(shortcode="600984",
			start_date="2026-11-28 08:00:00", end_date="2026-11-28 09:00:00")),
	]


MONEY_MOVING = ["stk_push", "b2c_payment", "b2b_payment", "tax_remittance", "reversal", "c2b_simulate"]
READ_ONLY = ["stk_query", "transaction_status", "account_balance", "dynamic_qr", "pull_query"]


@pytest.mark.parametrize("fault", ["status", "reset"])
@pytest.mark.parametrize("name", MONEY_MOVING + READ_ONLY)
def test_attempts_under_faults(client, sandbox, receiver, initiator, name, fault):
	_, path, moves_money, call = next(c for c in calls(receiver, initiator) if c[0] == name)
	assert moves_money == (name in MONEY_MOVING)
	client.access_token()
	sandbox.fault(path, fault, **({"status": 503} if fault == "status" else {}))
	with pytest.raises(daraja.DarajaError) as caught:
		call(client)
	if moves_money:
		assert sandbox.count(path) == 1
		if fault == "reset":
			assert caught.value.sent is True and "outcome is unknown" in str(caught.value)
	else:
		assert sandbox.count(path) == 3


# Daraja's gateway refusing the token: a 4xx with a documented code, given before the payment
# system sees the request. Safe to resend once with a new token, even a payment.
REFUSALS = [
	(404, "404.001.03", "Invalid Access Token"),
	(400, "400.003.01", "Invalid Access Token"),
	(401, "401.002.01", "Error parsing token"),
	(401, "401.003.01", "Invalid Access Token"),
]
# Answers that look like a refusal but lack a documented code, or come with a 5xx (which may come
# from behind the gateway, after the payment system saw the request): a payment is never resent.
LOOKALIKES = [
	(401, "401.001.01", "Unauthorized"),
	(401, None, None),  # no body at all
	(500, "500.001.01", "Invalid Access Token"),
	(503, "404.001.03", "Invalid Access Token"),
	(502, "500.003.1001", "Internal Server Error - Invalid Access Token"),
	(400, "400.002.02", "Bad Request - Invalid Access Token"),
]


def answer(status, code, message):
	return {"status": status, "code": code, "message": message} if code else {"status": status, "empty": True}


@pytest.mark.parametrize("status,code,message", REFUSALS)
@pytest.mark.parametrize("name", MONEY_MOVING)
def test_money_moving_call_is_resent_once_after_a_documented_token_refusal(
	client, sandbox, receiver, initiator, name, status, code, message
):
	_, path, _, call = next(c for c in calls(receiver, initiator) if c[0] == name)
	old = client.access_token()
	sandbox.fault(path, "status", times=1, **answer(status, code, message))
	try:
		call(client)
	except daraja.APIError as e:  # the second answer is the real one, whatever it says
		assert e.error_code != code
	assert sandbox.count(path) == 2
	assert sandbox.count(OAUTH) == 2 and client.access_token() != old


@pytest.mark.parametrize("status,code,message", LOOKALIKES)
@pytest.mark.parametrize("name", MONEY_MOVING)
def test_money_moving_call_is_not_resent_after_a_lookalike_refusal(
	client, sandbox, receiver, initiator, name, status, code, message
):
	_, path, _, call = next(c for c in calls(receiver, initiator) if c[0] == name)
	client.access_token()
	sandbox.fault(path, "status", times=1, **answer(status, code, message))
	with pytest.raises(daraja.APIError) as caught:
		call(client)
	assert caught.value.http_status == status and caught.value.error_code == code
	assert sandbox.count(path) == 1


@pytest.mark.parametrize("status,code,message", [(401, "401.001.01", "Unauthorized"), (401, None, None)])
@pytest.mark.parametrize("name", READ_ONLY)
def test_read_only_call_renews_the_token_after_any_401(
	client, sandbox, receiver, initiator, name, status, code, message
):
	_, path, _, call = next(c for c in calls(receiver, initiator) if c[0] == name)
	client.access_token()
	sandbox.fault(path, "status", times=1, **answer(status, code, message))
	try:
		call(client)
	except daraja.APIError as e:
		assert e.http_status != 401
	assert sandbox.count(path) == 2 and sandbox.count(OAUTH) == 2


def test_a_token_refused_with_a_5xx_is_dropped_for_the_next_call(client, sandbox, stk_args):
	old = client.access_token()
	sandbox.fault(STK_PUSH, "status", times=1, status=500, code="500.001.01", message="Invalid Access Token")
	with pytest.raises(daraja.APIError):
		client.stk_push(**stk_args)
	assert sandbox.count(STK_PUSH) == 1
	assert client.access_token() != old  # not resent, but the next call does not meet that token again
	assert client.stk_push(**stk_args)["ResponseCode"] == "0"
