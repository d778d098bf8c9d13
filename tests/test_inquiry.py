"""Read-only initiator APIs: transaction status, account balance; and dynamic QR codes."""

import pytest
from conftest import callback_with

from frappe_mpesa import daraja

STATUS = "/mpesa/transactionstatus/v1/query"
BALANCE = "/mpesa/accountbalance/v1/query"
QR = "/mpesa/qrcode/v1/generate"


def sent(sandbox, path):
	return [r for r in sandbox.requests if r.path == path][-1].json


def test_status_by_receipt(client, sandbox, initiator):
	answer = client.transaction_status(**initiator, party_a=600996, transaction_id="OEI2AK4Q16")
	assert answer["ResponseCode"] == "0"
	body = sent(sandbox, STATUS)
	assert body["CommandID"] == "TransactionStatusQuery" and body["IdentifierType"] == "4"
	assert body["PartyA"] == "600996" and body["TransactionID"] == "OEI2AK4Q16"
	assert body["Remarks"]


def test_status_by_phone_identifier_normalises_party_a(client, sandbox, initiator):
	client.transaction_status(**initiator, party_a="0708 374 149", identifier_type=1,
		original_conversation_id="disb-0001")
	body = sent(sandbox, STATUS)
	assert body["PartyA"] == "254708374149" and body["IdentifierType"] == "1"
	assert body["OriginalConversationID"] == "disb-0001" and "TransactionID" not in body


@pytest.mark.parametrize(
	"extra, field",
	[
		({}, "transaction_id"),
		({"transaction_id": "X1", "party_a": "0708374149"}, "party_a"),
		({"transaction_id": "X1", "identifier_type": 1, "party_a": "600996"}, "party_a"),
		({"transaction_id": "X1", "identifier_type": "3"}, "identifier_type"),
		({"transaction_id": "has space"}, "transaction_id"),
	],
)
def test_status_rules(client, sandbox, initiator, extra, field):
	args = {**initiator, "party_a": "600996", **extra}
	with pytest.raises(daraja.ValidationError) as caught:
		client.transaction_status(**args)
	assert caught.value.field == field
	assert sandbox.count() == 0


def test_balance_result_lists_the_accounts(client, receiver, initiator):
	answer = client.account_balance(**initiator, party_a="600996")
	result = callback_with(receiver, "ConversationID", answer["ConversationID"]).json["Result"]
	parameters = result["ResultParameters"]["ResultParameter"]
	parameters = parameters if isinstance(parameters, list) else [parameters]
	assert any(p["Key"] == "AccountBalance" and "Working Account" in p["Value"] for p in parameters)


def test_dynamic_qr_returns_the_png(client, sandbox):
	answer = client.dynamic_qr(merchant_name="Duka La Mama", ref_no="INV-7", amount=120, trx_code="BG", cpi="373132")
	assert answer["png"].startswith(b"\x89PNG\r\n\x1a\n")
	assert isinstance(answer["QRCode"], str)
	assert sent(sandbox, QR) == {"MerchantName": "Duka La Mama", "RefNo": "INV-7", "Amount": 120, "TrxCode": "BG",
		"CPI": "373132", "Size": "300"}


@pytest.mark.parametrize("field, value", [("trx_code", "XX"), ("cpi", "12ab"), ("size", "1"), ("amount", 0)])
def test_dynamic_qr_rules(client, sandbox, field, value):
	args = {"merchant_name": "Duka", "ref_no": "R", "amount": 1, "trx_code": "PB", "cpi": "174379"}
	with pytest.raises(daraja.ValidationError) as caught:
		client.dynamic_qr(**{**args, field: value})
	assert caught.value.field == field
	assert sandbox.count() == 0
