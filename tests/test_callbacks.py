"""Callbacks: parsing and typing Daraja's callback bodies, verifying where they came from,
and the exact bodies Daraja expects back. Real extension, recorded payload shapes."""

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from frappe_mpesa import daraja

DATA = Path(__file__).parent / "data" / "callbacks"
EAT = timezone(timedelta(hours=3))
LIMIT = 65536


def load(name):
	return (DATA / f"{name}.json").read_bytes()


def parse(name, kind):
	return daraja.parse_callback(load(name), kind)


def nairobi(*args):
	return datetime(*args, tzinfo=EAT)


def refused(body, kind="c2b_validation"):
	with pytest.raises(daraja.ValidationError) as caught:
		daraja.parse_callback(body, kind)
	return caught.value


def assert_datetime(value, expected):
	assert value == expected
	assert value.utcoffset() == timedelta(hours=3)


def c2b(**fields):
	body = {"TransID": "RKL51ZDR4F", "TransAmount": "5.00", "BusinessShortCode": "600966"}
	body.update(fields)
	return json.dumps(body).encode()


# ---- STK ----------------------------------------------------------------------


def test_stk_success():
	got = parse("stk_success", "stk")
	assert got == {
		"kind": "stk",
		"success": True,
		"MerchantRequestID": "29115-34620561-1",
		"CheckoutRequestID": "ws_CO_191220191020363925",
		"ResultCode": 0,
		"ResultDesc": "The service request is processed successfully.",
		"Amount": Decimal("1.00"),
		"MpesaReceiptNumber": "NLJ7RT61SV",
		"Balance": None,
		"TransactionDate": nairobi(2019, 12, 19, 10, 21, 15),
		"PhoneNumber": "254708374149",
	}
	assert str(got["Amount"]) == "1.00"
	assert_datetime(got["TransactionDate"], nairobi(2019, 12, 19, 10, 21, 15))
	assert "CallbackMetadata" not in got


def test_stk_single_item_object_and_string_code():
	got = parse("stk_success_strings", "stk")
	assert got["ResultCode"] == "0"
	assert got["success"] is True
	assert got["Amount"] == Decimal("5.00") and str(got["Amount"]) == "5.00"


def test_stk_items_as_strings():
	got = parse("stk_success_string_items", "stk")
	assert got["Amount"] == Decimal("5.00")
	assert got["Balance"] is None
	assert_datetime(got["TransactionDate"], nairobi(2024, 7, 6, 22, 48, 52))
	assert got["PhoneNumber"] == "254708374149"


@pytest.mark.parametrize("name, code", [("stk_cancelled", 1032), ("stk_wrong_pin", 2001)])
def test_stk_failures(name, code):
	got = parse(name, "stk")
	assert got["ResultCode"] == code
	assert got["success"] is False
	assert "Amount" not in got and "MpesaReceiptNumber" not in got


def test_stk_item_never_overrides_top_level():
	body = json.loads(load("stk_success"))
	body["Body"]["stkCallback"]["CallbackMetadata"]["Item"].append({"Name": "ResultCode", "Value": 1})
	body["Body"]["stkCallback"]["CallbackMetadata"]["Item"].append({"Name": "success", "Value": False})
	got = daraja.parse_callback(json.dumps(body), "stk")
	assert got["ResultCode"] == 0
	assert got["success"] is True


# ---- C2B ----------------------------------------------------------------------


def test_c2b_confirmation_v1_plain_msisdn():
	got = parse("c2b_confirmation_v1_plain_msisdn", "c2b_confirmation")
	assert got == {
		"kind": "c2b_confirmation",
		"success": True,
		"TransactionType": "Pay Bill",
		"TransID": "RKTQDM7W6S",
		"TransTime": nairobi(2019, 11, 22, 6, 38, 45),
		"TransAmount": Decimal("10.00"),
		"BusinessShortCode": "600638",
		"BillRefNumber": "invoice008",
		"InvoiceNumber": "",
		"OrgAccountBalance": Decimal("49197.00"),
		"ThirdPartyTransID": "",
		"MSISDN": "254708374149",
		"FirstName": "John",
		"MiddleName": "",
		"LastName": "Doe",
	}


def test_c2b_confirmation_v2_hashed_msisdn_and_numbers():
	got = parse("c2b_confirmation_v2_hashed_msisdn", "c2b_confirmation")
	assert got["MSISDN"] == "2b0a3e1f8bbd8b1e5c4cc7f4e6e1b0f7c1dc3a4ce7f2b2a9c0f5d1e6b7a8c9d0"
	assert re.fullmatch(r"[0-9a-f]{64}", got["MSISDN"])
	assert got["TransAmount"] == Decimal("10.50") and str(got["TransAmount"]) == "10.50"
	assert got["BusinessShortCode"] == "600638"
	assert_datetime(got["TransTime"], nairobi(2024, 7, 6, 22, 48, 52))
	assert got["OrgAccountBalance"] == Decimal("1049207.50")


def test_c2b_confirmation_msisdn_as_number():
	got = parse("c2b_confirmation_number_msisdn", "c2b_confirmation")
	assert got["MSISDN"] == "254708374149"
	assert got["TransAmount"] == Decimal("100")
	assert got["OrgAccountBalance"] is None


def test_c2b_validation_masked_msisdn():
	got = parse("c2b_validation", "c2b_validation")
	assert got["kind"] == "c2b_validation"
	assert got["success"] is True
	assert got["MSISDN"] == "25470****149"
	assert got["TransAmount"] == Decimal("5.00")
	assert got["OrgAccountBalance"] is None
	assert_datetime(got["TransTime"], nairobi(2019, 11, 21, 12, 16, 3))


def test_c2b_validation_without_time_or_msisdn():
	got = parse("c2b_validation_minimal", "c2b_validation")
	assert "TransTime" not in got and "MSISDN" not in got
	assert got["TransAmount"] == Decimal("5.00")


def test_c2b_validation_minimal_is_not_a_confirmation():
	with pytest.raises(daraja.ValidationError) as caught:
		parse("c2b_validation_minimal", "c2b_confirmation")
	assert caught.value.field == "TransTime"


# ---- results ------------------------------------------------------------------


def test_b2c_result_success():
	got = parse("b2c_result_success", "result")
	assert got == {
		"kind": "result",
		"success": True,
		"ResultType": 0,
		"ResultCode": 0,
		"ResultDesc": "The service request is processed successfully.",
		"OriginatorConversationID": "10571-7910404-1",
		"ConversationID": "AG_20191219_00004e48cf7e3533f581",
		"TransactionID": "NLJ41HAY6Q",
		"TransactionAmount": Decimal("10"),
		"TransactionReceipt": "NLJ41HAY6Q",
		"B2CRecipientIsRegisteredCustomer": "Y",
		"B2CChargesPaidAccountAvailableFunds": Decimal("-4510.00"),
		"ReceiverPartyPublicName": "254708374149 - John Doe",
		"TransactionCompletedDateTime": nairobi(2019, 12, 19, 11, 45, 50),
		"B2CUtilityAccountAvailableFunds": Decimal("10116.00"),
		"B2CWorkingAccountAvailableFunds": Decimal("900000.00"),
		"QueueTimeoutURL": "https://internalsandbox.safaricom.co.ke/mpesa/b2cresults/v1/submit",
		"parameters": [
			("TransactionAmount", Decimal("10")),
			("TransactionReceipt", "NLJ41HAY6Q"),
			("B2CRecipientIsRegisteredCustomer", "Y"),
			("B2CChargesPaidAccountAvailableFunds", Decimal("-4510.00")),
			("ReceiverPartyPublicName", "254708374149 - John Doe"),
			("TransactionCompletedDateTime", nairobi(2019, 12, 19, 11, 45, 50)),
			("B2CUtilityAccountAvailableFunds", Decimal("10116.00")),
			("B2CWorkingAccountAvailableFunds", Decimal("900000.00")),
		],
		"references": [
			("QueueTimeoutURL", "https://internalsandbox.safaricom.co.ke/mpesa/b2cresults/v1/submit"),
		],
	}
	assert str(got["B2CWorkingAccountAvailableFunds"]) == "900000.00"
	assert_datetime(got["TransactionCompletedDateTime"], nairobi(2019, 12, 19, 11, 45, 50))


def test_b2c_result_single_parameter_object_and_item_without_value():
	got = parse("b2c_result_single_parameter_object", "result")
	assert got["ResultCode"] == "0"
	assert got["success"] is True
	assert got["TransactionAmount"] == Decimal("100.00")
	assert got["QueueTimeoutURL"].startswith("https://")
	assert got["Occasion"] is None


@pytest.mark.parametrize(
	"name, code",
	[
		("b2c_result_initiator_invalid", 2001),
		("b2c_result_no_operator", "SFC_IC0003"),
		("reversal_result_R000002", "R000002"),
	],
)
def test_failed_results_keep_their_code(name, code):
	got = parse(name, "result")
	assert got["ResultCode"] == code
	assert type(got["ResultCode"]) is type(code)
	assert got["success"] is False


def test_b2b_result():
	got = parse("b2b_result", "result")
	assert got["ResultType"] == "0"
	assert got["success"] is True
	assert got["Amount"] == Decimal("190.00")
	assert got["DebitPartyCharges"] is None
	assert_datetime(got["TransCompletedTime"], nairobi(2022, 11, 10, 11, 7, 17))
	balance = "{Amount={CurrencyCode=KES, MinimumAmount=618683, BasicAmount=6186.83}}"
	assert got["DebitAccountBalance"] == balance
	assert got["InitiatorAccountCurrentBalance"] == balance
	assert got["DebitPartyAffectedAccountBalance"] == "Working Account|KES|346568.83|6186.83|340382.00|0.00"
	assert got["ReceiverPartyPublicName"] == "000000- Biller 1"
	assert got["Currency"] == "KES"
	assert got["BillReferenceNumber"] == "19008"
	assert got["QueueTimeoutURL"] == "https://mydomain.com/b2b/businessbuygoods/queue/"


def test_tax_result():
	got = parse("tax_result", "result")
	assert got["Amount"] == Decimal("190.00")
	assert got["DebitPartyCharges"] is None
	assert_datetime(got["TransCompletedTime"], nairobi(2022, 11, 10, 11, 7, 17))
	assert got["BillReferenceNumber"] == "353353"


def test_status_result():
	got = parse("status_result", "result")
	assert got["OriginatorConversationID"] == "1236-7134259-1"  # the top-level field wins
	assert_datetime(got["InitiatedTime"], nairobi(2019, 12, 20, 15, 24, 13))
	assert_datetime(got["FinalisedTime"], nairobi(2019, 12, 20, 15, 24, 13))
	assert got["Amount"] == Decimal("300")
	assert got["ReceiptNo"] == "NLK41H8I4E"
	assert got["TransactionReason"] is None
	assert got["TransactionStatus"] == "Completed"
	assert got["Occasion"] is None
	assert got["DebitPartyCharges"] == [
		{"label": "Fee For B2C Payment", "currency": "KES", "amount": Decimal("22.40")}
	]


def test_documented_status_result_keeps_every_parameter():
	got = parse("status_result_documented", "result")
	# The top-level fields are the status query's own ids, used to match it.
	assert got["OriginatorConversationID"] == "3213-416199-2"
	assert got["ConversationID"] == "AG_20180223_0000493344ae97d86f75"
	# The queried transaction's ids, under names that cannot collide.
	assert got["ResultParameter.OriginatorConversationID"] == "3211-416020-3"
	assert got["ResultParameter.ConversationID"] == "AG_20180223_000041b09c22e613d6c9"
	# A repeated Key: the first is the flat field, every one is in "parameters", in order.
	assert got["DebitPartyName"] == "600310 - Safaricom333"
	assert [key for key, _ in got["parameters"]] == [
		"DebitPartyName",
		"DebitPartyName",
		"OriginatorConversationID",
		"InitiatedTime",
		"DebitAccountType",
		"DebitPartyCharges",
		"ReasonType",
		"TransactionStatus",
		"FinalisedTime",
		"Amount",
		"ConversationID",
		"ReceiptNo",
	]
	assert got["parameters"][1] == ("DebitPartyName", "254708374149 - John Doe")
	assert dict(got["parameters"])["Amount"] == Decimal("300") == got["Amount"]
	assert_datetime(got["FinalisedTime"], nairobi(2018, 2, 23, 5, 41, 12))
	assert_datetime(got["InitiatedTime"], nairobi(2018, 2, 23, 5, 41, 12))
	assert got["ReceiptNo"] == "MBN31H462N"
	assert got["references"] == [("Occasion", None)]
	assert got["Occasion"] is None


def test_item_named_like_our_own_fields_is_kept_apart():
	body = json.loads(load("status_result_documented"))
	body["Result"]["ResultParameters"]["ResultParameter"] += [
		{"Key": "kind", "Value": "x"},
		{"Key": "parameters", "Value": "y"},
		{"Key": "ResultCode", "Value": 5},
	]
	got = daraja.parse_callback(json.dumps(body), "result")
	assert got["kind"] == "result" and got["success"] is True and got["ResultCode"] == 0
	assert got["ResultParameter.kind"] == "x"
	assert got["ResultParameter.parameters"] == "y"
	assert got["ResultParameter.ResultCode"] == 5
	assert got["parameters"][-3:] == [("kind", "x"), ("parameters", "y"), ("ResultCode", 5)]


@pytest.mark.parametrize("spelling", ["FinalisedTime", "FinalizedTime"])
def test_both_spellings_of_finalised_time_are_dates(spelling):
	body = load("status_result").replace(b'"FinalisedTime"', f'"{spelling}"'.encode())
	got = daraja.parse_callback(body, "result")
	assert_datetime(got[spelling], nairobi(2019, 12, 20, 15, 24, 13))


def test_result_without_parameters_has_empty_lists():
	got = parse("b2c_result_initiator_invalid", "result")
	assert got["parameters"] == [] or all(isinstance(p, tuple) and len(p) == 2 for p in got["parameters"])
	assert isinstance(got["references"], list)


@pytest.mark.parametrize(
	"value, expected",
	[
		("0.00", Decimal("0.00")),
		(12.5, Decimal("12.5")),
		("", None),
		(None, None),
		(
			"Disbursement of Funds Charge|KES|0.00&Disbursement of Funds Charge by Receiver|KES|1.00",
			[
				{"label": "Disbursement of Funds Charge", "currency": "KES", "amount": Decimal("0.00")},
				{"label": "Disbursement of Funds Charge by Receiver", "currency": "KES", "amount": Decimal("1.00")},
			],
		),
	],
)
def test_debit_party_charges_forms(value, expected):
	body = json.loads(load("tax_result"))
	body["Result"]["ResultParameters"]["ResultParameter"][3]["Value"] = value
	assert daraja.parse_callback(json.dumps(body), "result")["DebitPartyCharges"] == expected


def test_balance_result():
	got = parse("balance_result", "result")
	assert_datetime(got["BOCompletedTime"], nairobi(2017, 7, 28, 9, 56, 42))
	accounts = got["AccountBalance"]
	assert [a["account"] for a in accounts] == [
		"Working Account",
		"Float Account",
		"Utility Account",
		"Charges Paid Account",
		"Organization Settlement Account",
	]
	assert accounts[0] == {
		"account": "Working Account",
		"currency": "KES",
		"current": Decimal("700000.00"),
		"available": Decimal("700000.00"),
		"reserved": Decimal("0.00"),
		"uncleared": Decimal("0.00"),
	}
	assert accounts[3]["current"] == Decimal("-1540.00")
	assert str(accounts[2]["available"]) == "228037.00"


def test_balance_result_with_fewer_columns():
	accounts = parse("balance_result_short_columns", "result")["AccountBalance"]
	assert accounts == [
		{
			"account": "Working Account",
			"currency": "KES",
			"current": Decimal("46713.00"),
			"available": Decimal("46713.00"),
			"reserved": None,
			"uncleared": None,
		},
		{
			"account": "Utility Account",
			"currency": "KES",
			"current": Decimal("49217.00"),
			"available": None,
			"reserved": None,
			"uncleared": None,
		},
		{
			"account": "Charges Paid Account",
			"currency": None,
			"current": None,
			"available": None,
			"reserved": None,
			"uncleared": None,
		},
	]


def test_balance_with_bad_number_is_refused():
	body = json.loads(load("balance_result"))
	body["Result"]["ResultParameters"]["ResultParameter"][0]["Value"] = "Working Account|KES|lots|0.00"
	error = refused(json.dumps(body), "result")
	assert error.field == "Result.ResultParameters.AccountBalance"


def test_reversal_result_success():
	got = parse("reversal_result_success", "result")
	assert got["success"] is True
	assert got["Amount"] == Decimal("1.00")
	assert got["Charge"] == Decimal("0.00")
	assert got["OriginalTransactionID"] == "NDG41H8QVZ"
	assert_datetime(got["TransCompletedTime"], nairobi(2019, 4, 16, 12, 37, 12))
	assert got["DebitAccountBalance"] == "Utility Account|KES|51661.00|51661.00|0.00|0.00"


def test_timeout():
	got = parse("timeout", "timeout")
	assert got["kind"] == "timeout"
	assert got["ResultCode"] == 1037
	assert got["success"] is False
	assert got["TransactionID"] == ""
	assert got["QueueTimeoutURL"].startswith("https://")


def test_result_kinds_share_a_shape():
	assert {**parse("b2c_result_success", "timeout"), "kind": "result"} == parse("b2c_result_success", "result")


# ---- pull ---------------------------------------------------------------------


def test_pull_query():
	got = parse("pull_query", "pull")
	assert got["kind"] == "pull"
	assert got["success"] is True
	assert got["ResponseRefID"] == "26178-42530161-2"
	assert got["ResponseCode"] == "1000"
	assert got["ResponseMessage"] == "Success"
	assert "Response" not in got
	first, second, third = got["transactions"]
	assert first == {
		"transactionId": "OHR7N4HEK0",
		"trxDate": nairobi(2020, 8, 5, 10, 12, 44),
		"msisdn": "254722000000",
		"sender": "UPS",
		"transactiontype": "c2b-pay-bill-debit",
		"billreference": "",
		"amount": Decimal("300.0"),
		"organizationname": "Daraja Pull API Test",
	}
	assert_datetime(second["trxDate"], nairobi(2020, 8, 5, 10, 14, 1))
	assert second["msisdn"] == "2547*****000"
	assert second["billreference"] == "12345"
	assert second["amount"] == Decimal("150")
	# 21:30 UTC is 00:30 the next day in Nairobi.
	assert_datetime(third["trxDate"], nairobi(2020, 8, 5, 0, 30, 0))
	assert third["amount"] == Decimal("1.5")


def test_pull_empty_and_flat_response():
	assert parse("pull_empty", "pull")["transactions"] == []
	flat = {"ResponseRefID": "x", "Response": [{"transactionId": "A1", "amount": "2.00"}]}
	assert daraja.parse_callback(json.dumps(flat), "pull")["transactions"] == [
		{"transactionId": "A1", "amount": Decimal("2.00")}
	]
	assert daraja.parse_callback(b'{"ResponseRefID":"x"}', "pull")["transactions"] == []


@pytest.mark.parametrize(
	"text, expected",
	[
		("2020-08-05T10:12:44.123+03:00", nairobi(2020, 8, 5, 10, 12, 44, 123000)),
		("2020-08-05T10:12:44.123456789+0300", nairobi(2020, 8, 5, 10, 12, 44, 123456)),
		("2020-08-05T07:12:44Z", nairobi(2020, 8, 5, 10, 12, 44)),
		("2020-08-05T07:12:44+00:00", nairobi(2020, 8, 5, 10, 12, 44)),
		("2020-12-31T20:00:00-05:00", nairobi(2021, 1, 1, 4, 0, 0)),
		("2020-08-05T10:12:44", nairobi(2020, 8, 5, 10, 12, 44)),
		("2020-02-29 23:59:59", nairobi(2020, 2, 29, 23, 59, 59)),
	],
)
def test_pull_dates(text, expected):
	body = {"ResponseRefID": "x", "Response": [[{"trxDate": text}]]}
	value = daraja.parse_callback(json.dumps(body), "pull")["transactions"][0]["trxDate"]
	assert_datetime(value, expected)


# ---- typing rules -------------------------------------------------------------


@pytest.mark.parametrize(
	"value, expected",
	[
		("5.00", Decimal("5.00")),
		("-5.10", Decimal("-5.10")),
		("0", Decimal("0")),
		(5, Decimal("5")),
		("", None),
		(None, None),
		("123456789012345678901234567890.01", Decimal("123456789012345678901234567890.01")),
	],
)
def test_amount_forms(value, expected):
	got = daraja.parse_callback(c2b(OrgAccountBalance=value), "c2b_validation")["OrgAccountBalance"]
	assert got == expected
	if expected is not None:
		assert str(got) == str(expected)


def test_amount_literals_are_exact():
	got = daraja.parse_callback(b'{"TransID":"A","TransAmount":0.10,"BusinessShortCode":"1","X":1e2}', "c2b_validation")
	assert got["TransAmount"] == Decimal("0.10") and str(got["TransAmount"]) == "0.10"
	assert got["X"] == Decimal("1E+2") and isinstance(got["X"], Decimal)


@pytest.mark.parametrize("value", ["ten", "1,000.00", "5.", ".5", " 5.00", "5.00 ", "+5", "1e3", "NaN", "Infinity"])
def test_non_numeric_amount_is_refused(value):
	assert refused(c2b(TransAmount=value)).field == "TransAmount"


@pytest.mark.parametrize("value", [True, [], {}, "x"])
def test_amount_of_wrong_type_is_refused(value):
	assert refused(c2b(OrgAccountBalance=value)).field == "OrgAccountBalance"


def test_amount_error_does_not_echo_the_value():
	error = refused(c2b(TransAmount="secret-ish 0712345678"))
	assert "0712345678" not in str(error)


def test_item_amount_error_names_the_field():
	body = json.loads(load("stk_success"))
	body["Body"]["stkCallback"]["CallbackMetadata"]["Item"][0]["Value"] = "one shilling"
	assert refused(json.dumps(body), "stk").field == "Body.stkCallback.CallbackMetadata.Amount"
	body = json.loads(load("b2c_result_success"))
	body["Result"]["ResultParameters"]["ResultParameter"][0]["Value"] = "ten"
	assert refused(json.dumps(body), "result").field == "Result.ResultParameters.TransactionAmount"


def test_empty_required_amount_is_refused():
	error = refused(c2b(TransAmount=""))
	assert error.field == "TransAmount"


@pytest.mark.parametrize(
	"value",
	[
		"20191322063845",
		"20190229000000",
		"20191122246000",
		"20191122236000",
		"20191122235960",
		"00001122063845",
		"2019112206384",
		"201911220638450",
		"2019112206384x",
		"abc",
		2019112206,
		20191322063845,
		1.5,
		True,
		"32.12.2019 11:45:50",
		"31.11.2019 11:45:50",
		"19/12/2019 11:45:50",
		"2020-08-05T25:00:00",
		"2020-08-05T10:12:44+24:00",
		"2020-08-05T10:12:44.+03:00",
		"2020-08-05T10:12:44 ",
		"2020-08-05 8:36:00",
		"9999-12-31T23:00:00-05:00",
	],
)
def test_bad_date_is_refused(value):
	assert refused(c2b(TransTime=value)).field == "TransTime"


def test_dates_in_every_form_on_every_date_field():
	got = daraja.parse_callback(
		c2b(TransTime="20200229235959", TransactionCompletedDateTime="06.07.2024 22:48:52", BOCompletedTime=20170728095642),
		"c2b_validation",
	)
	assert_datetime(got["TransTime"], nairobi(2020, 2, 29, 23, 59, 59))
	assert_datetime(got["TransactionCompletedDateTime"], nairobi(2024, 7, 6, 22, 48, 52))
	assert_datetime(got["BOCompletedTime"], nairobi(2017, 7, 28, 9, 56, 42))


@pytest.mark.parametrize("value", [1.5, True, [], {"a": 1}])
def test_text_field_of_wrong_type_is_refused(value):
	assert refused(c2b(MSISDN=value)).field == "MSISDN"


@pytest.mark.parametrize("value", [None, True, 1.0, [], {}])
def test_result_code_of_wrong_type_is_refused(value):
	body = json.loads(load("stk_cancelled"))
	body["Body"]["stkCallback"]["ResultCode"] = value
	error = refused(json.dumps(body), "stk")
	assert error.field == "Body.stkCallback.ResultCode"


@pytest.mark.parametrize("code, success", [(0, True), ("0", True), (1, False), ("00", False), ("", False), ("R000002", False)])
def test_success_follows_result_code(code, success):
	body = json.loads(load("stk_cancelled"))
	body["Body"]["stkCallback"]["ResultCode"] = code
	assert daraja.parse_callback(json.dumps(body), "stk")["success"] is success


def test_unknown_values_pass_through_as_json():
	body = (
		b'{"TransID":"A","TransAmount":"1","BusinessShortCode":"1",'
		b'"Extra":{"list":[1,2.50,-0.0,true,false,null,"x\\u00e9\\ud83d\\ude00\\"\\\\\\/\\b\\f\\n\\r\\t"],'
		b'"big":123456789012345678901234567890,"dup":1,"dup":2}}'
	)
	extra = daraja.parse_callback(body, "c2b_validation")["Extra"]
	assert extra["list"] == [1, Decimal("2.50"), Decimal("-0.0"), True, False, None, 'xé😀"\\/\b\f\n\r\t']
	assert str(extra["list"][1]) == "2.50"
	assert extra["big"] == 123456789012345678901234567890
	assert extra["dup"] == 2  # duplicate keys: the last wins
	assert not any(isinstance(v, float) for v in extra["list"])


def test_str_and_buffer_bodies():
	raw = load("c2b_validation")
	expected = daraja.parse_callback(raw, "c2b_validation")
	assert daraja.parse_callback(raw.decode(), "c2b_validation") == expected
	assert daraja.parse_callback(bytearray(raw), "c2b_validation") == expected
	assert daraja.parse_callback(memoryview(raw), kind="c2b_validation") == expected


# ---- refusals -----------------------------------------------------------------


def padded(size):
	body = c2b()
	return body + b" " * (size - len(body))


def test_body_of_exactly_64_kib_is_accepted():
	assert daraja.parse_callback(padded(LIMIT), "c2b_validation")["TransID"] == "RKL51ZDR4F"


def test_body_over_64_kib_is_refused():
	error = refused(padded(LIMIT + 1))
	assert error.field == "body"
	assert "65536" in str(error)
	assert refused(b"[" * (10 * LIMIT)).field == "body"


def nested(depth):
	# The outer object is level 1; depth - 1 arrays inside it.
	inner = "[" * (depth - 1) + "]" * (depth - 1)
	return ('{"TransID":"A","TransAmount":"1","BusinessShortCode":"1","deep":%s}' % inner).encode()


def test_depth_32_is_accepted():
	got = daraja.parse_callback(nested(32), "c2b_validation")
	level, depth = got["deep"], 2  # the object, then the outermost array
	while level:
		level, depth = level[0], depth + 1
	assert depth == 32


def test_depth_33_is_refused():
	error = refused(nested(33))
	assert error.field == "body"
	assert "32" in str(error)
	assert refused(b'{"a":' * 33 + b"1" + b"}" * 33).field == "body"
	assert refused(b"[" * 5000 + b"]" * 5000).field == "body"


@pytest.mark.parametrize(
	"bad",
	[
		b"\xff",
		b"\xfe",
		b"\x80",
		b"\xbf",
		b"\xc0\xaf",  # overlong '/'
		b"\xc1\xbf",  # overlong
		b"\xe0\x80\xaf",  # overlong
		b"\xe0\x9f\xbf",  # overlong
		b"\xf0\x8f\xbf\xbf",  # overlong
		b"\xed\xa0\x80",  # UTF-8-encoded high surrogate
		b"\xed\xbf\xbf",  # UTF-8-encoded low surrogate
		b"\xed\xa0\xbd\xed\xb8\x80",  # CESU-8 pair
		b"\xf4\x90\x80\x80",  # above U+10FFFF
		b"\xf5\x80\x80\x80",
		b"\xf8\x88\x80\x80\x80",  # 5-byte form
		b"\xe2\x82",  # truncated
		b"\xe2\x82x",
		b"\xf0\x9f\x98",
		b"\xc3",
	],
)
def test_invalid_utf8_in_a_string_is_refused(bad):
	prefix = b'{"TransID":"A","TransAmount":"1","BusinessShortCode":"1","FirstName":"J'
	error = refused(prefix + bad + b'"}')
	assert error.field == "body"
	assert "UTF-8" in str(error)
	assert f"byte {len(prefix)}:" in str(error)


def test_invalid_utf8_outside_strings_is_refused():
	assert "UTF-8" in str(refused(b"\xff{}"))
	assert refused(b'{"a":1}\xc3\xa9').field == "body"


def test_valid_utf8_edges_are_accepted():
	text = "\u0080\u07ff\u0800\ud7ff\ue000\uffff\U00010000\U0010ffff"
	escaped = c2b(FirstName=text)  # json.dumps writes \uXXXX escapes and surrogate pairs
	assert b"\\ud800\\udc00" in escaped
	assert daraja.parse_callback(escaped, "c2b_validation")["FirstName"] == text
	raw = ('{"TransID":"A","TransAmount":"1","BusinessShortCode":"1","FirstName":"%s"}' % text).encode()
	assert daraja.parse_callback(raw, "c2b_validation")["FirstName"] == text


@pytest.mark.parametrize(
	"body",
	[
		b"",
		b"   ",
		b"{",
		b"}",
		b'{"a":1,}',
		b"[1,]",
		b'{"a":1 "b":2}',
		b'{"a" 1}',
		b"{a:1}",
		b"{'a':1}",
		b'{"a":01}',
		b'{"a":-01}',
		b'{"a":1.}',
		b'{"a":.5}',
		b'{"a":+1}',
		b'{"a":-}',
		b'{"a":1e}',
		b'{"a":1e+}',
		b'{"a":0x10}',
		b'{"a":NaN}',
		b'{"a":Infinity}',
		b'{"a":-Infinity}',
		b'{"a":tru}',
		b'{"a":True}',
		b'{"a":nul}',
		b'{"a":undefined}',
		b'{"a":"b"}x',
		b'{"a":1}{"b":2}',
		b'{"a":1} // comment',
		b'{/* c */"a":1}',
		b'{"a":"unterminated}',
		b'{"a":"bad \\x escape"}',
		b'{"a":"bad \\u12 escape"}',
		b'{"a":"bad \\u12g4 escape"}',
		b'{"a":"lone \\ud800 high"}',
		b'{"a":"lone \\udc00 low"}',
		b'{"a":"reversed \\udc00\\ud800"}',
		b'{"a":"high then text \\ud800x"}',
		b'{"a":"high then bmp \\ud800\\u0041"}',
		b'{"a":"tab\there"}',
		b'{"a":"newline\nhere"}',
		b'{"a":"nul\x00here"}',
		b'{"a":"\\',
		b"\xef\xbb\xbf{}",
		b'{"a":1}\x00',
		b"\x00",
		b"\x0b{}",
		b"\xa0{}",
		b'{"a":[1 2]}',
		b'{"a":[1,,2]}',
		b'{"a":1,,"b":2}',
		b'{,"a":1}',
		b'{"a"::1}',
		b'{1:1}',
		b'{"a":"\\U0041"}',
	],
)
def test_invalid_json_is_refused(body):
	error = refused(body)
	assert error.field == "body"


def test_json_error_names_the_offset():
	body = b'{"TransID": "A",\n "TransAmount": 01}'
	error = refused(body)
	assert f"byte {body.index(b'01')}:" in str(error)
	assert "leading zero" in str(error)
	assert "trailing" in str(refused(b'{"a":1}  x'))


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"1", b"null", b"true", b"1.5"])
def test_body_must_be_an_object(body):
	assert refused(body).field == "body"


def test_huge_integer_is_refused_not_crashing():
	error = refused(b'{"a":' + b"9" * 5000 + b"}")
	assert error.field == "body"


@pytest.mark.parametrize("literal", [b"1e999999999", b"-1E+999999999", b"1e-999999999", b"2.5e101", b"1e0000000101"])
def test_absurd_exponent_is_refused_with_its_offset(literal):
	body = c2b(X=1).replace(b'"X": 1', b'"X": ' + literal)
	error = refused(body)
	assert error.field == "body"
	assert f"at byte {body.index(literal)}" in str(error)


@pytest.mark.parametrize("literal, expected", [(b"1e100", "1e100"), (b"1.5E-100", "1.5E-100"), (b"25e0001", "25e1")])
def test_exponents_a_number_could_have_are_kept_exact(literal, expected):
	got = daraja.parse_callback(c2b(X=1).replace(b'"X": 1', b'"X": ' + literal), "c2b_validation")
	assert got["X"] == Decimal(expected)


def test_an_amount_with_an_absurd_exponent_cannot_reach_arithmetic():
	program = (
		"from frappe_mpesa import daraja\n"
		"body = b'{\"Result\":{\"ResultCode\":0,\"ResultDesc\":\"d\",\"OriginatorConversationID\":\"o\",'\n"
		"body += b'\"ConversationID\":\"c\",\"ResultParameters\":{\"ResultParameter\":'\n"
		"body += b'{\"Key\":\"TransactionAmount\",\"Value\":1e999999999}}}}'\n"
		"try:\n"
		"\tint(daraja.parse_callback(body, 'result')['TransactionAmount'])\n"
		"except daraja.ValidationError as error:\n"
		"\tprint(error.field)\n"
	)
	try:
		done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=20)
	except subprocess.TimeoutExpired:
		pytest.fail("an amount of 1e999999999 was parsed and int() of it still runs after 20 s")
	assert done.returncode == 0, done.stderr[-2000:]
	assert done.stdout.split() == ["body"]


def test_whitespace_allowed_by_the_rfc_is_accepted():
	body = b' \t\r\n{ "TransID" : "A" ,\n"TransAmount":"1",\r\n\t"BusinessShortCode":"1" } \n'
	assert daraja.parse_callback(body, "c2b_validation")["TransID"] == "A"


@pytest.mark.parametrize("body", [None, 1, 1.5, {}, [], object()])
def test_body_must_be_bytes_or_str(body):
	with pytest.raises(daraja.ValidationError) as caught:
		daraja.parse_callback(body, "stk")
	assert caught.value.field == "body"


def test_str_body_with_lone_surrogate_is_refused():
	with pytest.raises(daraja.ValidationError) as caught:
		daraja.parse_callback('{"a":"\ud800"}', "stk")
	assert caught.value.field == "body"


@pytest.mark.parametrize("kind", ["b2c", "", "STK", "stk ", None, 1, b"stk"])
def test_unknown_kind_is_refused(kind):
	with pytest.raises(daraja.ValidationError) as caught:
		daraja.parse_callback(load("stk_success"), kind)
	assert caught.value.field == "kind"


def test_arguments_are_required():
	with pytest.raises(TypeError):
		daraja.parse_callback(b"{}")


REQUIRED = [
	("stk_success", "stk", ["Body", "stkCallback"], "MerchantRequestID"),
	("stk_success", "stk", ["Body", "stkCallback"], "CheckoutRequestID"),
	("stk_success", "stk", ["Body", "stkCallback"], "ResultCode"),
	("stk_success", "stk", ["Body", "stkCallback"], "ResultDesc"),
	("stk_success", "stk", ["Body"], "stkCallback"),
	("stk_success", "stk", [], "Body"),
	("c2b_validation", "c2b_validation", [], "TransID"),
	("c2b_validation", "c2b_validation", [], "TransAmount"),
	("c2b_validation", "c2b_validation", [], "BusinessShortCode"),
	("c2b_confirmation_v1_plain_msisdn", "c2b_confirmation", [], "TransID"),
	("c2b_confirmation_v1_plain_msisdn", "c2b_confirmation", [], "TransAmount"),
	("c2b_confirmation_v1_plain_msisdn", "c2b_confirmation", [], "BusinessShortCode"),
	("c2b_confirmation_v1_plain_msisdn", "c2b_confirmation", [], "TransactionType"),
	("c2b_confirmation_v1_plain_msisdn", "c2b_confirmation", [], "TransTime"),
	("c2b_confirmation_v1_plain_msisdn", "c2b_confirmation", [], "MSISDN"),
	("b2c_result_success", "result", ["Result"], "ResultCode"),
	("b2c_result_success", "result", ["Result"], "ResultDesc"),
	("b2c_result_success", "result", ["Result"], "OriginatorConversationID"),
	("b2c_result_success", "result", ["Result"], "ConversationID"),
	("b2c_result_success", "result", [], "Result"),
	("timeout", "timeout", ["Result"], "ResultCode"),
	("timeout", "timeout", ["Result"], "ResultDesc"),
	("timeout", "timeout", ["Result"], "OriginatorConversationID"),
	("timeout", "timeout", ["Result"], "ConversationID"),
	("timeout", "timeout", [], "Result"),
	("pull_query", "pull", [], "ResponseRefID"),
]


@pytest.mark.parametrize("name, kind, parents, field", REQUIRED)
@pytest.mark.parametrize("how", ["missing", "null"])
def test_missing_required_field_is_refused(name, kind, parents, field, how):
	body = json.loads(load(name))
	record = body
	for key in parents:
		record = record[key]
	if how == "missing":
		del record[field]
	else:
		record[field] = None
	error = refused(json.dumps(body), kind)
	assert error.field == ".".join([*parents, field])


@pytest.mark.parametrize("name, kind", [("c2b_validation", "c2b_validation"), ("b2c_result_success", "result")])
def test_optional_fields_may_be_missing(name, kind):
	body = json.loads(load(name))
	record = body.get("Result", body)
	record.pop("TransactionID", None)
	record.pop("ResultType", None)
	record.pop("MSISDN", None)
	record.pop("TransTime", None)
	assert daraja.parse_callback(json.dumps(body), kind)["kind"] == kind


@pytest.mark.parametrize(
	"mutate, field",
	[
		(lambda b: b.__setitem__("Body", []), "Body"),
		(lambda b: b["Body"].__setitem__("stkCallback", "x"), "Body.stkCallback"),
		(lambda b: b["Body"]["stkCallback"].__setitem__("CallbackMetadata", []), "Body.stkCallback.CallbackMetadata"),
		(lambda b: b["Body"]["stkCallback"]["CallbackMetadata"].__setitem__("Item", "x"), "Body.stkCallback.CallbackMetadata.Item"),
		(lambda b: b["Body"]["stkCallback"]["CallbackMetadata"]["Item"].append(5), "Body.stkCallback.CallbackMetadata.Item[5]"),
		(lambda b: b["Body"]["stkCallback"]["CallbackMetadata"]["Item"].append({"Value": 1}), "Body.stkCallback.CallbackMetadata.Item[5].Name"),
		(lambda b: b["Body"]["stkCallback"]["CallbackMetadata"]["Item"].append({"Name": 1}), "Body.stkCallback.CallbackMetadata.Item[5].Name"),
	],
)
def test_malformed_stk_structure_is_refused(mutate, field):
	body = json.loads(load("stk_success"))
	mutate(body)
	assert refused(json.dumps(body), "stk").field == field


@pytest.mark.parametrize(
	"mutate, field",
	[
		(lambda r: r.__setitem__("ResultParameters", "x"), "Result.ResultParameters"),
		(lambda r: r["ResultParameters"].__setitem__("ResultParameter", 3), "Result.ResultParameters.ResultParameter"),
		(lambda r: r["ResultParameters"]["ResultParameter"].insert(0, []), "Result.ResultParameters.ResultParameter[0]"),
		(lambda r: r["ReferenceData"]["ReferenceItem"].pop("Key"), "Result.ReferenceData.ReferenceItem.Key"),
	],
)
def test_malformed_result_structure_is_refused(mutate, field):
	body = json.loads(load("b2c_result_success"))
	mutate(body["Result"])
	assert refused(json.dumps(body), "result").field == field


def test_null_containers_are_empty():
	body = json.loads(load("b2c_result_success"))
	body["Result"]["ResultParameters"] = None
	body["Result"]["ReferenceData"] = {"ReferenceItem": None}
	got = daraja.parse_callback(json.dumps(body), "result")
	assert "TransactionAmount" not in got and "QueueTimeoutURL" not in got


@pytest.mark.parametrize(
	"response, field",
	[("x", "Response"), ([[1]], "Response[0][0]"), ([5], "Response[0]"), ([[{"amount": "x"}]], "Response[0][0].amount")],
)
def test_malformed_pull_is_refused(response, field):
	body = {"ResponseRefID": "x", "Response": response}
	assert refused(json.dumps(body), "pull").field == field


# ---- secrets and allowlists ---------------------------------------------------

SECRET = "k3J9x-Qq_2mVbWn8R7tY0uZpLs4HdFgAeCi6oN1xT5w"


def test_new_callback_secret():
	secrets = {daraja.new_callback_secret() for _ in range(200)}
	assert len(secrets) == 200
	for secret in secrets:
		assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)


def test_new_callback_secret_has_256_bits():
	import base64

	raw = base64.urlsafe_b64decode(daraja.new_callback_secret() + "=")
	assert len(raw) == 32


@pytest.mark.parametrize(
	"given, expected",
	[
		(SECRET, True),
		(SECRET.encode(), True),
		(bytearray(SECRET.encode()), True),
		(SECRET[:-1] + "x", False),
		("x" + SECRET[1:], False),
		(SECRET[:-1], False),
		(SECRET + "x", False),
		(SECRET + "\x00", False),
		(SECRET.upper(), False),
		("", False),
		(b"", False),
		(None, False),
		(42, False),
		(["x"], False),
		("\ud800", False),
		(" " + SECRET, False),
	],
)
def test_verify_callback_secret(given, expected):
	assert daraja.verify_callback(SECRET, given, "196.201.214.200") is expected


@pytest.mark.parametrize("expected_secret", ["", None, 42, b"bytes"])
def test_verify_callback_refuses_a_bad_expected_secret(expected_secret):
	with pytest.raises(daraja.ValidationError) as caught:
		daraja.verify_callback(expected_secret, "x", "1.2.3.4")
	assert caught.value.field == "expected_secret"


def test_verify_callback_never_echoes_secrets():
	with pytest.raises(daraja.ValidationError) as caught:
		daraja.verify_callback(SECRET, SECRET, "1.2.3.4", ["1.2.3.4/33"])
	assert SECRET not in str(caught.value)


SAFARICOM = ["196.201.214.200", "196.201.214.206", "196.201.213.0/24", "196.201.212.127/32"]
V6 = ["2001:db8::1/128", "2001:db8:1:2::/64"]


@pytest.mark.parametrize(
	"remote, allowlist, expected",
	[
		("196.201.214.200", SAFARICOM, True),
		("196.201.214.206", SAFARICOM, True),
		("196.201.214.201", SAFARICOM, False),
		("196.201.213.114", SAFARICOM, True),
		("196.201.213.44", SAFARICOM, True),
		("196.201.212.127", SAFARICOM, True),
		("196.201.212.128", SAFARICOM, False),
		("196.201.215.1", SAFARICOM, False),
		("10.0.0.1", SAFARICOM, False),
		("10.0.0.1", ["0.0.0.0/0"], True),
		("255.255.255.255", ["0.0.0.0/0"], True),
		("2001:db8::1", ["0.0.0.0/0"], False),
		("::ffff:196.201.214.200", SAFARICOM, True),
		("::ffff:196.201.214.201", SAFARICOM, False),
		("::FFFF:c4c9:d6c8", SAFARICOM, True),
		("196.201.214.200", ["::ffff:196.201.214.0/120"], True),
		("196.201.215.200", ["::ffff:196.201.214.0/120"], False),
		("::ffff:196.201.214.200", ["::ffff:196.201.214.200"], True),
		("2001:db8::1", V6, True),
		("2001:db8::2", V6, False),
		("2001:db8:1:2::abcd", V6, True),
		("2001:db8:1:2:ffff:ffff:ffff:ffff", V6, True),
		("2001:db8:1:3::1", V6, False),
		("2001:0db8:0000:0000:0000:0000:0000:0001", V6, True),
		("::1", ["::/0"], True),
		("1.2.3.4", ["::/0"], False),
		("196.201.214.200", V6, False),
		("2001:db8::1", SAFARICOM, False),
		("196.201.214.200", [], False),
		("196.201.214.200", "", False),
		(" 196.201.214.200 ", SAFARICOM, True),
		("196.201.214.200", ("196.201.214.200",), True),
		("196.201.214.200", iter(["196.201.214.200"]), True),
		("196.201.214.200", {"196.201.214.0/24"}, True),
		("196.201.214.200", "196.201.214.200, 196.201.213.114", True),
		("196.201.213.114", "196.201.214.200,196.201.213.114", True),
		("196.201.213.114", "196.201.214.200\n196.201.213.114\n", True),
		("196.201.213.115", "196.201.214.200 196.201.213.114", False),
		("2001:db8:1:2::9", "  2001:db8:1:2::/64\t196.201.214.200 ", True),
		("196.201.214.200", ["196.201.214.206, 196.201.214.200"], True),
		("", SAFARICOM, False),
		("not an ip", SAFARICOM, False),
		("196.201.214", SAFARICOM, False),
		("196.201.214.200.1", SAFARICOM, False),
		("196.201.214.0200", SAFARICOM, False),
		("196.201.214.200/32", SAFARICOM, False),
		("196.201.214.200:443", SAFARICOM, False),
		("[2001:db8::1]", V6, False),
		("fe80::1%eth0", ["fe80::/10"], False),
		("196.201.214.200, 10.0.0.1", SAFARICOM, False),
		("196.201.214.200\x00", SAFARICOM, False),
		(None, SAFARICOM, False),
		(b"196.201.214.200", SAFARICOM, False),
		(3301316296, SAFARICOM, False),
		("x" * 1000, SAFARICOM, False),
	],
)
def test_verify_callback_allowlist(remote, allowlist, expected):
	assert daraja.verify_callback(SECRET, SECRET, remote, allowlist) is expected


@pytest.mark.parametrize("remote", ["196.201.214.200", "not an ip", None, ""])
def test_no_allowlist_ignores_the_address(remote):
	assert daraja.verify_callback(SECRET, SECRET, remote) is True
	assert daraja.verify_callback(SECRET, SECRET, remote, None) is True
	assert daraja.verify_callback(SECRET, "wrong", remote) is False


def test_allowlist_needs_the_secret_too():
	assert daraja.verify_callback(SECRET, "wrong", "196.201.214.200", SAFARICOM) is False
	assert daraja.verify_callback(SECRET, None, "196.201.214.200", SAFARICOM) is False


@pytest.mark.parametrize(
	"allowlist",
	[
		["196.201.214.200/33"],
		["196.201.214.200/-1"],
		["196.201.214.200/"],
		["196.201.214.200/2x"],
		["196.201.214.200/0032"],
		["196.201.215.0/23"],
		["196.201.214.1/24"],
		["196.201.214"],
		["196.201.214.256"],
		["196.201.214.01"],
		["example.com"],
		["2001:db8::/129"],
		["2001:db8::1/64"],
		["2001:db8::/32/1"],
		["::ffff:1.2.3.4/95"],
		["::ffff:1.2.3.4/129"],
		["196.201.214.200", 5],
		["196.201.214.200", None],
		[b"196.201.214.200"],
		"196.201.214.200, nope",
		"196.201.214.200;196.201.214.206",
		5,
		b"196.201.214.200",
		object(),
	],
)
def test_bad_allowlist_entry_raises(allowlist):
	with pytest.raises(daraja.ValidationError) as caught:
		daraja.verify_callback(SECRET, SECRET, "196.201.214.200", allowlist)
	assert caught.value.field == "allowlist"


def test_bad_allowlist_raises_even_for_a_wrong_secret():
	with pytest.raises(daraja.ValidationError):
		daraja.verify_callback(SECRET, "wrong", "1.2.3.4", ["nope"])


def test_allowlist_edges_of_prefixes():
	assert daraja.verify_callback(SECRET, SECRET, "10.1.2.3", ["10.0.0.0/15"]) is True
	assert daraja.verify_callback(SECRET, SECRET, "10.2.0.0", ["10.0.0.0/15"]) is False
	assert daraja.verify_callback(SECRET, SECRET, "10.0.0.127", ["10.0.0.0/25"]) is True
	assert daraja.verify_callback(SECRET, SECRET, "10.0.0.128", ["10.0.0.0/25"]) is False
	assert daraja.verify_callback(SECRET, SECRET, "2001:db8::", ["2001:db8::/127"]) is True
	assert daraja.verify_callback(SECRET, SECRET, "2001:db8::1", ["2001:db8::/127"]) is True
	assert daraja.verify_callback(SECRET, SECRET, "2001:db8::2", ["2001:db8::/127"]) is False


def test_verify_callback_keywords():
	assert daraja.verify_callback(
		expected_secret=SECRET, given_secret=SECRET, remote_addr="1.2.3.4", allowlist="1.2.3.0/24"
	)


# ---- replies ------------------------------------------------------------------


def test_c2b_accept():
	assert daraja.c2b_accept() == '{"ResultCode":"0","ResultDesc":"Accepted"}'
	assert json.loads(daraja.c2b_accept()) == {"ResultCode": "0", "ResultDesc": "Accepted"}


@pytest.mark.parametrize("reason", ["C2B00011", "C2B00012", "C2B00013", "C2B00014", "C2B00015", "C2B00016"])
def test_c2b_reject(reason):
	assert daraja.c2b_reject(reason) == '{"ResultCode":"%s","ResultDesc":"Rejected"}' % reason
	assert daraja.c2b_reject(reason=reason) == daraja.c2b_reject(reason)


@pytest.mark.parametrize("reason", ["C2B00010", "C2B00017", "c2b00012", "C2B00012 ", "", "12", 12, None, b"C2B00012"])
def test_c2b_reject_refuses_other_reasons(reason):
	with pytest.raises(daraja.ValidationError) as caught:
		daraja.c2b_reject(reason)
	assert caught.value.field == "reason"


def test_ack():
	assert daraja.ack() == '{"ResultCode":0,"ResultDesc":"Success"}'


def test_replies_are_str():
	for reply in (daraja.c2b_accept(), daraja.c2b_reject("C2B00016"), daraja.ack()):
		assert type(reply) is str


def test_facade_exports():
	for name in ("parse_callback", "verify_callback", "new_callback_secret", "c2b_accept", "c2b_reject", "ack"):
		assert name in daraja.__all__
		assert getattr(daraja, name).__doc__
	assert "Nairobi" in daraja.parse_callback.__doc__
