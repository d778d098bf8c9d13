"""Daraja APIs beyond M-Pesa Express: C2B, pull, the initiator APIs and dynamic QR.

Each handler validates its body as Daraja does and answers synchronously; state and callbacks are the
sandbox's (``Sandbox._register_c2b``, ``_begin_c2b``, ``_begin_initiator``...).
"""

import base64
import hashlib
import re
import struct
import zlib
from datetime import datetime

from frappe_mpesa.sandbox.credential import credential_matches
from frappe_mpesa.sandbox.payloads import SUCCESS
from frappe_mpesa.sandbox.protocol import (
	AMOUNT,
	DATE_TIME,
	IDENTIFIER,
	NAIROBI,
	NOT_BLANK,
	OCCASION,
	PHONE,
	REMARKS,
	SHORTCODE,
	URL,
	DarajaError,
	Reply,
	check_fields,
	invalid,
	json_api,
	optional,
	request_id,
)

ACCEPTED = "Accept the service request successfully."
NO_API_PRODUCT = ("401.003.01", "No apiproduct match found")
NAME = r"\S.{0,99}"
INITIATOR = r"\S.{0,63}"
IDENTIFIER_TYPE = r"[124]"

C2B_REGISTER_FIELDS = {
	"ShortCode": SHORTCODE,
	"ResponseType": r"Completed|Cancelled",
	"ConfirmationURL": URL,
	"ValidationURL": URL,
}
C2B_SIMULATE_FIELDS = {
	"ShortCode": SHORTCODE,
	"CommandID": r"CustomerPayBillOnline|CustomerBuyGoodsOnline",
	"Amount": AMOUNT,
	"Msisdn": PHONE,
	"BillRefNumber": optional(r".{1,20}"),
}
PULL_REGISTER_FIELDS = {
	"ShortCode": SHORTCODE,
	"RequestType": "Pull",
	# Daraja's page shows both: "0722000000" in its sample request, 254722000000 in its table.
	"NominatedNumber": rf"0[71]\d{{8}}|{PHONE}",
	"CallBackURL": URL,
}
PULL_QUERY_FIELDS = {
	"ShortCode": SHORTCODE,
	"StartDate": DATE_TIME,
	"EndDate": DATE_TIME,
	"OffSetValue": optional(r"\d{1,9}"),
}
QR_FIELDS = {
	"MerchantName": NAME,
	"RefNo": NAME,
	"Amount": AMOUNT,
	"TrxCode": r"BG|WA|PB|SM|SB",
	"CPI": r"\d{5,12}",
	"Size": optional(r"\d{2,4}"),
}


def initiator_fields(name_field, command):
	"""What every initiator API asks: who, with which credential, which command."""
	return {name_field: INITIATOR, "SecurityCredential": NOT_BLANK, "CommandID": command}


# Where the result goes, and why; every initiator API has them.
RESULT_FIELDS = {"QueueTimeOutURL": URL, "ResultURL": URL, "Remarks": REMARKS}
B2B_PARTIES = {
	"SenderIdentifierType": "4",
	"RecieverIdentifierType": "4",
	"Amount": AMOUNT,
	"PartyA": SHORTCODE,
}
B2C_FIELDS = {
	"OriginatorConversationID": IDENTIFIER,
	**initiator_fields("InitiatorName", r"SalaryPayment|BusinessPayment|PromotionPayment"),
	"Amount": AMOUNT,
	"PartyA": SHORTCODE,
	"PartyB": PHONE,
	**RESULT_FIELDS,
	"Occassion": OCCASION,
}
B2B_FIELDS = {
	**initiator_fields("Initiator", r"BusinessPayBill|BusinessBuyGoods|BusinessPayToBulk"),
	**B2B_PARTIES,
	"PartyB": SHORTCODE,
	"AccountReference": optional(r".{1,13}"),
	"Requester": optional(PHONE),
	**RESULT_FIELDS,
	"Occassion": OCCASION,
}
TAX_FIELDS = {
	**initiator_fields("Initiator", "PayTaxToKRA"),
	**B2B_PARTIES,
	"PartyB": "572572",
	"AccountReference": r"[A-Za-z0-9_.-]{1,13}",
	**RESULT_FIELDS,
}
STATUS_FIELDS = {
	**initiator_fields("Initiator", "TransactionStatusQuery"),
	"TransactionID": optional(IDENTIFIER),
	"OriginalConversationID": optional(IDENTIFIER),
	"PartyA": f"{PHONE}|{SHORTCODE}",
	"IdentifierType": IDENTIFIER_TYPE,
	**RESULT_FIELDS,
	"Occasion": OCCASION,
}
BALANCE_FIELDS = {
	**initiator_fields("Initiator", "AccountBalance"),
	"PartyA": SHORTCODE,
	"IdentifierType": IDENTIFIER_TYPE,
	**RESULT_FIELDS,
}
REVERSAL_FIELDS = {
	**initiator_fields("Initiator", "TransactionReversal"),
	"TransactionID": IDENTIFIER,
	"Amount": AMOUNT,
	"ReceiverParty": SHORTCODE,
	"RecieverIdentifierType": r"11|4|2|1",
	**RESULT_FIELDS,
	"Occasion": OCCASION,
}

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
QR_MODULES = 25
QR_QUIET = 2
QR_MAX_PIXELS = 1000


def register_urls(sandbox, body):
	"""Keep the shortcode's C2B URLs and answer with Daraja's misspelt OriginatorCoversationID."""
	sandbox._register_c2b(check_fields(body, C2B_REGISTER_FIELDS))
	return Reply(
		200, {"OriginatorCoversationID": request_id(), "ResponseCode": "0", "ResponseDescription": "Success"}
	)


@json_api
def c2b_register_v1(sandbox, body):
	"""C2B URL registration, v1."""
	return register_urls(sandbox, body)


@json_api
def c2b_register_v2(sandbox, body):
	"""C2B URL registration, v2: 401.003.01 unless the app has the v2 product."""
	if not sandbox.c2b_v2_product:
		raise DarajaError(*NO_API_PRODUCT)
	return register_urls(sandbox, body)


@json_api
def c2b_simulate(sandbox, body):
	"""C2B simulation: a customer pays the shortcode; validation and confirmation follow."""
	values = check_fields(body, C2B_SIMULATE_FIELDS)
	originator = request_id()
	sandbox._begin_c2b(values, originator)
	return Reply(
		200, {"OriginatorCoversationID": originator, "ResponseCode": "0", "ResponseDescription": ACCEPTED}
	)


@json_api
def pull_register(sandbox, body):
	"""Pull registration: ResponseStatus 1000 the first time for a shortcode, 1001 after."""
	values = check_fields(body, PULL_REGISTER_FIELDS)
	if sandbox._register_pull(values):
		status, description = "1000", "Shortcode registered successfully"
	else:
		status, description = "1001", "Shortcode already registered"
	answer = {"ResponseRefID": request_id(), "ResponseStatus": status, "ShortCode": values["ShortCode"]}
	return Reply(200, {**answer, "ResponseDescription": description})


def parse_date_time(values, field):
	"""A pull query date, YYYY-MM-DD HH:MM:SS in Nairobi time."""
	try:
		return datetime.strptime(values[field], "%Y-%m-%d %H:%M:%S").replace(tzinfo=NAIROBI)
	except ValueError:
		raise invalid(field) from None


@json_api
def pull_query(sandbox, body):
	"""Pull query: the customer payments to the shortcode in the window, after OffSetValue of them
	(at most pull_page_size of them when it is set)."""
	values = check_fields(body, PULL_QUERY_FIELDS)
	start, end = parse_date_time(values, "StartDate"), parse_date_time(values, "EndDate")
	entries = sandbox._paid_in(values["ShortCode"], start, end)[int(values["OffSetValue"] or 0) :]
	if sandbox.pull_page_size:
		entries = entries[: sandbox.pull_page_size]
	answer = {"ResponseRefID": request_id(), "ResponseCode": "1000", "ResponseMessage": "Success"}
	return Reply(200, {**answer, "Response": [entries]})


def initiate(sandbox, api, body, schema, name_field, check=None):
	"""Accept an initiator request: validate it, check the initiator, schedule the result, answer."""
	values = check_fields(body, schema)
	if check is not None:
		check(values)
	valid = values[name_field] == sandbox.initiator_name and credential_matches(
		values["SecurityCredential"], sandbox._initiator_password
	)
	conversation, originator = sandbox._begin_initiator(api, values, valid)
	answer = {"ConversationID": conversation, "OriginatorConversationID": originator}
	return Reply(200, {**answer, "ResponseCode": "0", "ResponseDescription": ACCEPTED})


def check_b2b(values):
	"""Paying a paybill needs the account to credit there."""
	if values["CommandID"] == "BusinessPayBill" and not values["AccountReference"]:
		raise invalid("AccountReference")


def check_status(values):
	"""A transaction is named by TransactionID or OriginalConversationID; PartyA is a phone for
	IdentifierType 1 and a shortcode or till otherwise."""
	if not (values["TransactionID"] or values["OriginalConversationID"]):
		raise invalid("TransactionID")
	if not re.fullmatch(PHONE if values["IdentifierType"] == "1" else SHORTCODE, values["PartyA"]):
		raise invalid("PartyA")


@json_api
def b2c_payment(sandbox, body):
	"""B2C v3: pay a phone; a reused OriginatorConversationID is refused."""
	return initiate(sandbox, "b2c", body, B2C_FIELDS, "InitiatorName")


@json_api
def b2b_payment(sandbox, body):
	"""B2B: pay a paybill or till, or top up a B2C account."""
	return initiate(sandbox, "b2b", body, B2B_FIELDS, "Initiator", check_b2b)


@json_api
def tax_remittance(sandbox, body):
	"""Tax remittance to KRA against a PRN."""
	return initiate(sandbox, "tax", body, TAX_FIELDS, "Initiator")


@json_api
def transaction_status(sandbox, body):
	"""Transaction status of one of the sandbox's payments."""
	return initiate(sandbox, "status", body, STATUS_FIELDS, "Initiator", check_status)


@json_api
def account_balance(sandbox, body):
	"""Account balance of the sandbox organisation."""
	return initiate(sandbox, "balance", body, BALANCE_FIELDS, "Initiator")


@json_api
def reversal(sandbox, body):
	"""Reversal of one of the sandbox's payments."""
	return initiate(sandbox, "reversal", body, REVERSAL_FIELDS, "Initiator")


def png_chunk(kind, data):
	"""One PNG chunk: length, type, data, CRC."""
	return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def pack_bits(row):
	"""A row of 0/1 pixels as bytes, most significant bit first, padded with zeros."""
	bits = "".join(map(str, row))
	bits += "0" * (-len(bits) % 8)
	return int(bits, 2).to_bytes(len(bits) // 8, "big")


def png(rows):
	"""A 1-bit greyscale PNG of rows of pixels, 0 black and 1 white."""
	header = struct.pack(">IIBBBBB", len(rows[0]), len(rows), 1, 0, 0, 0, 0)
	raw = b"".join(b"\0" + pack_bits(row) for row in rows)
	return (
		PNG_SIGNATURE
		+ png_chunk(b"IHDR", header)
		+ png_chunk(b"IDAT", zlib.compress(raw))
		+ png_chunk(b"IEND", b"")
	)


def qr_picture(values):
	"""A QR-like PNG of the request, about Size pixels square: modules from its digest in a quiet zone.

	It is a valid image, not a scannable code."""
	seed = "|".join(values[name] for name in QR_FIELDS).encode()
	bits = int.from_bytes(hashlib.shake_256(seed).digest(QR_MODULES * QR_MODULES // 8 + 1), "big")
	side = QR_MODULES + 2 * QR_QUIET
	scale = max(1, min(int(values["Size"] or 300), QR_MAX_PIXELS) // side)
	inner = range(QR_QUIET, QR_QUIET + QR_MODULES)
	rows = []
	for y in range(side):
		dark = [
			x in inner and y in inner and bits >> ((y - QR_QUIET) * QR_MODULES + x - QR_QUIET) & 1
			for x in range(side)
		]
		row = [0 if module else 1 for module in dark for _ in range(scale)]
		rows.extend([row] * scale)
	return png(rows)


@json_api
def dynamic_qr(sandbox, body):
	"""Dynamic QR: a picture of the payment as a base64 PNG."""
	values = check_fields(body, QR_FIELDS)
	answer = {"ResponseCode": "00", "RequestID": request_id(), "ResponseDescription": SUCCESS[1]}
	return Reply(200, {**answer, "QRCode": base64.b64encode(qr_picture(values)).decode()})
