"""The bodies the sandbox POSTs: STK callbacks, C2B validation and confirmation, initiator results.

Outcomes are chosen by tables keyed on the counterparty (``STK_OUTCOMES``, ``B2C_OUTCOMES``,
``B2B_OUTCOMES``); a successful result moves money in the ``Ledger``. Bodies are built the way Daraja
usually sends them, then ``dress`` applies the quirks asked for (``QUIRKS``).
"""

import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal

from frappe_mpesa.sandbox.books import (
	CANCELLED,
	CHARGES,
	COMPLETED,
	REJECTED,
	REVERSED,
	UTILITY,
	WORKING,
	Payment,
)
from frappe_mpesa.sandbox.protocol import nairobi_now, no_receipt, receipt, timestamp

SUCCESS = (0, "The service request is processed successfully.")
INSUFFICIENT = (1, "The balance is insufficient for the transaction.")
STK_SUCCESS = SUCCESS
STK_OUTCOMES = {
	"254700000001": INSUFFICIENT,
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

INITIATOR_INVALID = (2001, "The initiator information is invalid.")
# The sandbox's choice: Daraja documents no code for a request that timed out in its queue.
QUEUE_TIMEOUT = (1037, "DS timeout user cannot be reached")
# The sandbox's choice for a status query about a transaction it does not know.
TRANSACTION_NOT_FOUND = (2032, "The transaction receipt number does not exist.")
ALREADY_REVERSED = ("R000001", "The transaction has already been reversed")
INVALID_ORIGINAL = ("R000002", "The OriginalTransactionID is invalid.")
NOT_PERMITTED = (2028, "The request is not permitted according to product assignment.")

# B2C outcome by PartyB; QUEUE_TIMEOUT means no result, a notification to the QueueTimeOutURL instead.
B2C_OUTCOMES = {
	"254700000001": INSUFFICIENT,
	"254700002040": (
		2040,
		"Credit Party customer type (Unregistered or Registered Customer) can't be supported by the service.",
	),
	"254700002028": NOT_PERMITTED,
	"254700008006": (8006, "The security credential is locked."),
	"254700009999": QUEUE_TIMEOUT,
}
# B2B outcome by PartyB, as for B2C.
B2B_OUTCOMES = {
	"000001": INSUFFICIENT,
	"002028": NOT_PERMITTED,
	"009999": QUEUE_TIMEOUT,
}

ORGANIZATION_NAME = "Sandbox Organization"
PUBLIC_NAMES = {"572572": "Kenya Revenue Authority"}
FIRST_NAME, LAST_NAME = "JOHN", "DOE"
CUSTOMER_DEBIT_ACCOUNT = "MMF Account For Customer"
BUY_GOODS = ("CustomerBuyGoodsOnline", "BusinessBuyGoods")
REASON_TYPES = {
	"CustomerPayBillOnline": "Pay Bill Online",
	"CustomerBuyGoodsOnline": "Buy Goods Online",
	"SalaryPayment": "Salary Payment via API",
	"BusinessPayment": "Business Payment to Customer via API",
	"PromotionPayment": "Promotion Payment via API",
	"BusinessPayBill": "Business Pay Bill",
	"BusinessBuyGoods": "Business Buy Goods",
	"BusinessPayToBulk": "Business Pay To Bulk",
	"PayTaxToKRA": "Pay Tax To KRA",
}

QUIRKS = ("strings_as_numbers", "numbers_as_strings", "single_parameter", "value_missing")
AMOUNT, INTEGER = "amount", "integer"
# Keys, or item Names and Keys, whose value is a number in one Daraja body and a string in another.
NUMERIC_KEYS = {
	**dict.fromkeys(
		(
			"Amount",
			"TransAmount",
			"OrgAccountBalance",
			"TransactionAmount",
			"Charge",
			"B2CUtilityAccountAvailableFunds",
			"B2CWorkingAccountAvailableFunds",
			"B2CChargesPaidAccountAvailableFunds",
		),
		AMOUNT,
	),
	**dict.fromkeys(
		(
			"ResultCode",
			"ResultType",
			"TransTime",
			"TransactionDate",
			"PhoneNumber",
			"TransCompletedTime",
			"BOCompletedTime",
			"InitiatedTime",
			"FinalisedTime",
		),
		INTEGER,
	),
}
# Lists Daraja sometimes sends as one object.
ITEM_LISTS = ("ResultParameter", "ReferenceItem", "Item")
# Items "value_missing" sends without a Value.
VALUE_OPTIONAL = (
	"B2CUtilityAccountAvailableFunds",
	"B2CChargesPaidAccountAvailableFunds",
	"DebitPartyCharges",
	"InitiatorAccountCurrentBalance",
	"Charge",
	"Balance",
)
PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
# Marks a result parameter sent without a Value.
MISSING = object()
PENDING, FINAL = "pending", "final"


def masked(msisdn):
	"""The number as Daraja's docs show it, e.g. 25470****149."""
	return f"{msisdn[:5]}****{msisdn[-3:]}"


def hashed(msisdn):
	"""The number as C2B v2 sends it since 2024: the hex SHA-256 of its digits."""
	return hashlib.sha256(msisdn.encode()).hexdigest()


MSISDN_STYLES = {"plain": str, "masked": masked, "hashed": hashed}


@dataclass
class Initiated:
	"""An initiator API request the sandbox accepted, and where and what it sent back."""

	api: str  # b2c, b2b, tax, status, balance or reversal
	conversation_id: str
	originator_conversation_id: str
	values: dict  # the request's validated fields, as text
	credential_valid: bool
	state: str = PENDING
	url: str = ""
	payload: dict | None = None


def check_quirks(quirks):
	"""quirks as a frozenset; ValueError for an unknown name or both number conversions at once."""
	quirks = frozenset(quirks)
	unknown = quirks.difference(QUIRKS)
	if unknown:
		raise ValueError(f"unknown quirks {sorted(unknown)}; known: {', '.join(QUIRKS)}")
	if {"strings_as_numbers", "numbers_as_strings"} <= quirks:
		raise ValueError("strings_as_numbers and numbers_as_strings exclude each other")
	return quirks


def retype(key, value, quirks):
	"""value of a numeric key converted as the quirks say: 10 <-> "10.00", 0 <-> "0"."""
	if "numbers_as_strings" in quirks and isinstance(value, (int, float)) and not isinstance(value, bool):
		return f"{value:.2f}" if NUMERIC_KEYS[key] == AMOUNT else str(int(value))
	if "strings_as_numbers" in quirks and isinstance(value, str) and PLAIN_NUMBER.fullmatch(value):
		number = Decimal(value)
		return int(number) if number == number.to_integral_value() else float(number)
	return value


def dress(node, quirks):
	"""A copy of a body with the quirks applied; the body itself when there are none."""
	if not quirks:
		return node
	if isinstance(node, list):
		return [dress(item, quirks) for item in node]
	if not isinstance(node, dict):
		return node
	name = node.get("Key", node.get("Name"))
	dressed = {}
	for key, value in node.items():
		if key == "Value" and name in VALUE_OPTIONAL and "value_missing" in quirks:
			continue
		numeric = name if key == "Value" else key
		if numeric in NUMERIC_KEYS:
			value = retype(numeric, value, quirks)
		if key in ITEM_LISTS and "single_parameter" in quirks and isinstance(value, list) and value:
			value = value[0]
		dressed[key] = dress(value, quirks)
	return dressed


def party_name(shortcode):
	"""An organisation's public name, e.g. 600000 - Sandbox Organization."""
	return f"{shortcode} - {PUBLIC_NAMES.get(shortcode, ORGANIZATION_NAME)}"


def customer_name(msisdn):
	"""A customer's public name, e.g. 254708374149 - JOHN DOE."""
	return f"{msisdn} - {FIRST_NAME} {LAST_NAME}"


def customer_payment(kind, command, amount, msisdn, shortcode, bill_reference, conversation_ids):
	"""A customer's payment (STK or C2B) into the shortcode's Utility Account, not yet recorded."""
	conversation_id, originator_conversation_id = conversation_ids
	return Payment(
		kind,
		receipt(),
		amount,
		shortcode,
		customer_name(msisdn),
		party_name(shortcode),
		nairobi_now(),
		UTILITY,
		Decimal(amount),
		conversation_id,
		originator_conversation_id,
		msisdn,
		bill_reference,
		command,
	)


def stk_callback_payload(transaction):
	"""The body Daraja POSTs to the CallBackURL once the customer has answered."""
	callback = {
		"MerchantRequestID": transaction.merchant_request_id,
		"CheckoutRequestID": transaction.checkout_request_id,
		"ResultCode": transaction.result_code,
		"ResultDesc": transaction.result_desc,
	}
	if transaction.result_code == 0:
		callback["CallbackMetadata"] = {
			"Item": [
				{"Name": "Amount", "Value": transaction.amount},
				{"Name": "MpesaReceiptNumber", "Value": transaction.receipt},
				{"Name": "Balance"},
				{"Name": "TransactionDate", "Value": int(timestamp(nairobi_now()))},
				{"Name": "PhoneNumber", "Value": int(transaction.phone)},
			]
		}
	return {"Body": {"stkCallback": callback}}


def c2b_payload(payment, msisdn_style, balance="", third_party_id=""):
	"""The C2B validation body (balance blank) or confirmation body for payment."""
	return {
		"TransactionType": "Buy Goods" if payment.command in BUY_GOODS else "Pay Bill",
		"TransID": payment.receipt,
		"TransTime": timestamp(payment.time),
		"TransAmount": f"{payment.amount}.00",
		"BusinessShortCode": payment.shortcode,
		"BillRefNumber": payment.bill_reference,
		"InvoiceNumber": "",
		"OrgAccountBalance": balance,
		"ThirdPartyTransID": third_party_id,
		"MSISDN": MSISDN_STYLES[msisdn_style](payment.msisdn),
		"FirstName": FIRST_NAME,
		"MiddleName": "",
		"LastName": LAST_NAME,
	}


def validation_verdict(status, answer, response_type):
	"""(state, ThirdPartyTransID) once the ValidationURL was asked: accepted on ResultCode 0 or "0";
	when it gave no usable answer, the registered ResponseType decides."""
	if status == 200 and isinstance(answer, dict) and "ResultCode" in answer:
		accepted = str(answer["ResultCode"]) == "0"
		return (COMPLETED if accepted else REJECTED), str(answer.get("ThirdPartyTransID") or "")
	return (COMPLETED if response_type == "Completed" else CANCELLED), ""


def pull_entry(payment):
	"""One transaction as the pull query lists it."""
	kind = "buy-goods" if payment.command in BUY_GOODS else "pay-bill"
	return {
		"transactionId": payment.receipt,
		"trxDate": payment.time.isoformat(timespec="milliseconds"),
		"msisdn": int(payment.msisdn),
		"sender": f"{FIRST_NAME} {LAST_NAME}",
		"transactiontype": f"c2b-{kind}-debit",
		"billreference": payment.bill_reference,
		"amount": f"{payment.amount:.1f}",
		"organizationname": ORGANIZATION_NAME,
	}


def parameter(key, value):
	"""A ResultParameter item; MISSING leaves its Value out."""
	return {"Key": key} if value is MISSING else {"Key": key, "Value": value}


def result_body(request, outcome, transaction_id, parameters=None, reference=()):
	"""Daraja's Result for request: parameters are (Key, Value) pairs, reference items precede the
	QueueTimeoutURL item, and ReferenceItem is a list only when there are several."""
	code, description = outcome
	result = {
		"ResultType": 0,
		"ResultCode": code,
		"ResultDesc": description,
		"OriginatorConversationID": request.originator_conversation_id,
		"ConversationID": request.conversation_id,
		"TransactionID": transaction_id,
	}
	if parameters is not None:
		result["ResultParameters"] = {"ResultParameter": [parameter(key, value) for key, value in parameters]}
	items = [*reference, {"Key": "QueueTimeoutURL", "Value": request.values["QueueTimeOutURL"]}]
	result["ReferenceData"] = {"ReferenceItem": items if len(items) > 1 else items[0]}
	return {"Result": result}


def failure(request, outcome):
	"""(url, body) of a failed request: base fields and ReferenceData only; a queue timeout goes to the
	QueueTimeOutURL."""
	url = request.values["QueueTimeOutURL" if outcome == QUEUE_TIMEOUT else "ResultURL"]
	return url, result_body(request, outcome, no_receipt())


def success(request, transaction_id, parameters, reference=()):
	"""(url, body) of a successful request."""
	return request.values["ResultURL"], result_body(request, SUCCESS, transaction_id, parameters, reference)


def pay_out(ledger, request, account, credit_party, msisdn=""):
	"""Record the request's Amount leaving account, and return the payment."""
	values = request.values
	amount = int(values["Amount"])
	payment = Payment(
		request.api,
		receipt(),
		amount,
		values["PartyA"],
		party_name(values["PartyA"]),
		credit_party,
		nairobi_now(),
		account,
		-Decimal(amount),
		request.conversation_id,
		request.originator_conversation_id,
		msisdn,
		values.get("AccountReference", ""),
		values["CommandID"],
	)
	ledger.record(payment)
	return payment


def charge_text(api, charge):
	"""DebitPartyCharges as Daraja writes a charge ("Fee For B2C Payment|KES|33.00"), or "" for none."""
	if not charge:
		return ""
	return f"{CHARGE_LABELS[api]}|KES|{Decimal(str(charge)):.2f}"


CHARGE_LABELS = {"b2c": "Fee For B2C Payment", "b2b": "Fee For Business Payment", "tax": "Fee For Tax Payment"}


def b2c_result(ledger, request, charge=None):
	"""B2C: the phone is paid from the Utility Account, unless B2C_OUTCOMES says otherwise; with a
	``charge``, the result reports it (DebitPartyCharges)."""
	phone = request.values["PartyB"]
	outcome = B2C_OUTCOMES.get(phone, SUCCESS)
	if outcome != SUCCESS:
		return failure(request, outcome)
	payment = pay_out(ledger, request, UTILITY, customer_name(phone), phone)
	parameters = [
		("TransactionAmount", payment.amount),
		("TransactionReceipt", payment.receipt),
		("B2CRecipientIsRegisteredCustomer", "Y"),
		("B2CChargesPaidAccountAvailableFunds", float(ledger.balances[CHARGES])),
		("ReceiverPartyPublicName", payment.credit_party),
		("TransactionCompletedDateTime", f"{payment.time:%d.%m.%Y %H:%M:%S}"),
		("B2CUtilityAccountAvailableFunds", float(ledger.balances[UTILITY])),
		("B2CWorkingAccountAvailableFunds", float(ledger.balances[WORKING])),
	]
	if charge:
		parameters.append(("DebitPartyCharges", charge_text("b2c", charge)))
	return success(request, payment.receipt, parameters)


def b2b_result(ledger, request, charge=None):
	"""B2B and tax: PartyB is paid from the Working Account, unless B2B_OUTCOMES says otherwise;
	DebitPartyCharges reports ``charge``, if any."""
	values = request.values
	outcome = B2B_OUTCOMES.get(values["PartyB"], SUCCESS)
	if outcome != SUCCESS:
		return failure(request, outcome)
	payment = pay_out(ledger, request, WORKING, party_name(values["PartyB"]))
	parameters = [
		("DebitAccountBalance", ledger.amount_record(WORKING)),
		("Amount", f"{payment.amount}.00"),
		("DebitPartyAffectedAccountBalance", ledger.line(WORKING)),
		("TransCompletedTime", timestamp(payment.time)),
		("DebitPartyCharges", charge_text(request.api, charge)),
		("ReceiverPartyPublicName", payment.credit_party),
		("Currency", "KES"),
		("InitiatorAccountCurrentBalance", ledger.amount_record(WORKING)),
	]
	reference = [{"Key": "BillReferenceNumber", "Value": values["AccountReference"]}]
	return success(request, payment.receipt, parameters, reference)


def status_result(ledger, request):
	"""Transaction status: a payment found by TransactionID or OriginalConversationID."""
	values = request.values
	payment = ledger.find(values["TransactionID"], values["OriginalConversationID"])
	if payment is None:
		return failure(request, TRANSACTION_NOT_FOUND)
	moment = int(timestamp(payment.time))
	parameters = [
		("DebitPartyName", payment.debit_party),
		("CreditPartyName", payment.credit_party),
		("OriginatorConversationID", payment.originator_conversation_id),
		("InitiatedTime", moment),
		("DebitAccountType", payment.account if payment.delta < 0 else CUSTOMER_DEBIT_ACCOUNT),
		("DebitPartyCharges", ""),
		("TransactionReason", MISSING),
		("ReasonType", REASON_TYPES.get(payment.command, "")),
		("TransactionStatus", "Completed"),
		("FinalisedTime", moment),
		("Amount", payment.amount),
		("ConversationID", payment.conversation_id),
		("ReceiptNo", payment.receipt),
	]
	return success(request, receipt(), parameters)


def balance_result(ledger, request):
	"""Account balance: every account of the ledger."""
	parameters = [("AccountBalance", ledger.summary()), ("BOCompletedTime", int(timestamp(nairobi_now())))]
	return success(request, receipt(), parameters)


def reversal_result(ledger, request):
	"""Reversal: the payment with that TransactionID moves back, once."""
	values = request.values
	payment = ledger.find(values["TransactionID"])
	if payment is None:
		return failure(request, INVALID_ORIGINAL)
	if payment.state == REVERSED:
		return failure(request, ALREADY_REVERSED)
	ledger.reverse(payment)
	parameters = [
		("DebitAccountBalance", ledger.line(payment.account)),
		("Amount", int(values["Amount"])),
		("TransCompletedTime", int(timestamp(nairobi_now()))),
		("OriginalTransactionID", payment.receipt),
		("Charge", 0),
		("CreditPartyPublicName", payment.debit_party),
		("DebitPartyPublicName", payment.credit_party),
	]
	return success(request, receipt(), parameters)


# api -> result(ledger, request) -> (url, body)
RESULTS = {
	"b2c": b2c_result,
	"b2b": b2b_result,
	"tax": b2b_result,
	"status": status_result,
	"balance": balance_result,
	"reversal": reversal_result,
}


def initiator_result(ledger, request, charge=None):
	"""(url, body) of an initiator request's result, moving money in ledger on success; 2001 first when
	the initiator name or SecurityCredential was wrong. A payout's result reports ``charge``, if any."""
	if not request.credential_valid:
		return failure(request, INITIATOR_INVALID)
	if request.api in CHARGE_LABELS:
		return RESULTS[request.api](ledger, request, charge)
	return RESULTS[request.api](ledger, request)
