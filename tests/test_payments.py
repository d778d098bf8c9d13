"""Money out: B2C, B2B, tax remittance and reversal against the sandbox."""

import re

import pytest
from conftest import callback_with

from frappe_mpesa import daraja

B2C = "/mpesa/b2c/v3/paymentrequest"
B2B = "/mpesa/b2b/v1/paymentrequest"
TAX = "/mpesa/b2b/v1/remittax"
REVERSAL = "/mpesa/reversal/v1/request"
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@pytest.fixture
def b2c_args(initiator):
	return {
		**initiator,
		"command_id": "BusinessPayment",
		"amount": 250,
		"party_a": "600996",
		"phone": "0708 374 149",
		"remarks": "Refund of order 7",
	}


@pytest.fixture
def b2b_args(initiator):
	return {
		**initiator,
		"command_id": "BusinessPayBill",
		"amount": 1000,
		"party_a": "600996",
		"party_b": "600000",
		"account_reference": "SUPPLIER-42",
		"remarks": "Supplier invoice",
	}


def sent(sandbox, path):
	return [r for r in sandbox.requests if r.path == path][-1].json


def test_b2c_generates_and_returns_an_originator_conversation_id(client, sandbox, b2c_args):
	answer = client.b2c_payment(**b2c_args)
	assert answer["ResponseCode"] == "0"
	assert UUID4.fullmatch(answer["OriginatorConversationID"])
	body = sent(sandbox, B2C)
	assert body["OriginatorConversationID"] == answer["OriginatorConversationID"]
	assert body["PartyB"] == "254708374149" and body["Amount"] == 250
	assert body["InitiatorName"] == "testapi" and body["CommandID"] == "BusinessPayment"
	assert "Occassion" not in body


def test_b2c_uses_the_callers_originator_conversation_id(client, sandbox, b2c_args):
	answer = client.b2c_payment(**b2c_args, originator_conversation_id="disb-0001", occasion="June")
	assert answer["OriginatorConversationID"] == "disb-0001"
	assert sent(sandbox, B2C)["Occassion"] == "June"  # Daraja's spelling


def test_b2c_result_arrives_with_the_receipt(client, receiver, b2c_args):
	answer = client.b2c_payment(**b2c_args)
	result = callback_with(receiver, "OriginatorConversationID", answer["OriginatorConversationID"]).json
	assert result["Result"]["ResultCode"] in (0, "0")


def test_b2c_with_a_wrong_initiator_password_fails_in_the_result(client, receiver, b2c_args):
	with open(__import__("frappe_mpesa.sandbox").sandbox.MPESA_TEST_CERT_PEM, "rb") as f:
		wrong = daraja.security_credential(f.read(), "not-the-password")
	answer = client.b2c_payment(**{**b2c_args, "security_credential": wrong})
	result = callback_with(receiver, "OriginatorConversationID", answer["OriginatorConversationID"]).json
	assert result["Result"]["ResultCode"] in (2001, "2001")


def test_duplicate_originator_conversation_id_is_refused(client, b2c_args):
	client.b2c_payment(**b2c_args, originator_conversation_id="disb-dup")
	with pytest.raises(daraja.APIError) as caught:
		client.b2c_payment(**b2c_args, originator_conversation_id="disb-dup")
	assert caught.value.error_code.startswith("500.002.1001")


@pytest.mark.parametrize(
	"field, value",
	[
		("command_id", "SalaryPay"),
		("amount", 0),
		("amount", 12.5),
		("party_a", "1234"),
		("phone", "0812345678"),
		("remarks", "x"),
		("remarks", "x" * 101),
		("occasion", "x" * 101),
		("result_url", "http://example.com/r"),
		("queue_timeout_url", "https://example.com/mpesa/t"),
		("originator_conversation_id", "has space"),
		("security_credential", ""),
		("initiator_name", ""),
	],
)
def test_b2c_rules_refuse_before_sending(client, sandbox, b2c_args, field, value):
	with pytest.raises(daraja.ValidationError) as caught:
		client.b2c_payment(**{**b2c_args, field: value})
	assert caught.value.field == field
	assert sandbox.count() == 0


def test_b2c_unknown_keyword_is_a_type_error(client, b2c_args):
	with pytest.raises(TypeError, match="unexpected keyword argument 'amout'"):
		client.b2c_payment(**b2c_args, amout=1)


def test_b2b_sends_dararas_spellings(client, sandbox, b2b_args):
	client.b2b_payment(**b2b_args, requester="0708374149")
	body = sent(sandbox, B2B)
	assert body["RecieverIdentifierType"] == "4" and body["SenderIdentifierType"] == "4"
	assert body["Initiator"] == "testapi" and body["AccountReference"] == "SUPPLIER-42"
	assert body["Requester"] == "254708374149"


def test_b2b_paybill_needs_an_account_reference(client, sandbox, b2b_args):
	del b2b_args["account_reference"]
	with pytest.raises(daraja.ValidationError) as caught:
		client.b2b_payment(**b2b_args)
	assert caught.value.field == "account_reference"
	assert sandbox.count() == 0
	b2b_args["command_id"] = "BusinessBuyGoods"
	assert client.b2b_payment(**b2b_args)["ResponseCode"] == "0"
	assert "AccountReference" not in sent(sandbox, B2B)


@pytest.mark.parametrize("field, value", [("account_reference", "x" * 14), ("command_id", "PayTaxToKRA")])
def test_b2b_rules(client, sandbox, b2b_args, field, value):
	with pytest.raises(daraja.ValidationError):
		client.b2b_payment(**{**b2b_args, field: value})
	assert sandbox.count() == 0


def test_tax_goes_to_kra_with_the_prn(client, sandbox, initiator):
	client.tax_remittance(**initiator, amount=5000, party_a="600996", prn="2026112800042", remarks="VAT Nov")
	body = sent(sandbox, TAX)
	assert body["CommandID"] == "PayTaxToKRA" and body["PartyB"] == "572572"
	assert body["AccountReference"] == "2026112800042"


def test_reversal_of_an_unknown_transaction_fails_in_the_result(client, sandbox, receiver, initiator):
	answer = client.reversal(
		**initiator, transaction_id="NOSUCH0000", amount=10, receiver_party="600996", remarks="Wrong payee"
	)
	body = sent(sandbox, REVERSAL)
	assert body["RecieverIdentifierType"] == "11" and body["CommandID"] == "TransactionReversal"
	result = callback_with(receiver, "ConversationID", answer["ConversationID"]).json
	assert result["Result"]["ResultCode"] == "R000002"


@pytest.mark.parametrize("api, path", [("b2c", B2C), ("b2b", B2B)])
def test_a_payout_charge_the_sandbox_reports_is_parsed_by_the_core(client, sandbox, receiver, b2c_args, b2b_args, api, path):
	sandbox.payout_charge = 33
	try:
		answer = client.b2c_payment(**b2c_args) if api == "b2c" else client.b2b_payment(**b2b_args)
		body = callback_with(receiver, "OriginatorConversationID", answer["OriginatorConversationID"]).body
	finally:
		sandbox.payout_charge = None
	parsed = daraja.parse_callback(body, "result")
	charges = parsed["DebitPartyCharges"]
	assert [(c["currency"], str(c["amount"])) for c in charges] == [("KES", "33.00")]
