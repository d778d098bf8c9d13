"""No money-moving request is ever sent twice by the client; read-only ones at most three times.

Every Client method runs against injected 5xx answers and connection resets; the sandbox
counts what reached it.
"""

import pytest

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
