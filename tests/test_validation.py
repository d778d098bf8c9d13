"""Input rules: each accepted and refused, refusals raised before any request leaves."""

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

import pytest
from conftest import STK_PUSH

from frappe_mpesa import daraja
from frappe_mpesa.sandbox import DEFAULT_PASSKEY, DEFAULT_SHORTCODE

def short_id(value):
	"""A test id for any value, even an int too long for str()."""
	if isinstance(value, int) and value.bit_length() > 128:
		return f"{'-' if value < 0 else ''}int_of_{value.bit_length()}_bits"
	return repr(value)[:40]


PHONES_ACCEPTED = [
	("0712345678", "254712345678"),
	("0112345678", "254112345678"),
	("+254712345678", "254712345678"),
	("254712345678", "254712345678"),
	("+254 712 345 678", "254712345678"),
	("0712-345-678", "254712345678"),
	(" 0712345678 ", "254712345678"),
	("254 112-345 678", "254112345678"),
	(254712345678, "254712345678"),
	("712345678", "254712345678"),
	("112345678", "254112345678"),
	("712 345 678", "254712345678"),
	(712345678, "254712345678"),
	(112345678, "254112345678"),
]
PHONES_REFUSED = [
	"",
	"812345678",
	"+712345678",
	"12345678",
	-254712345678,
	-712345678,
	10**5000,
	2**63,
	"07123456789",
	"071234567",
	"0812345678",
	"254812345678",
	"+0712345678",
	"2547123456789",
	"25471234567",
	"0712a45678",
	"0712.345.678",
	"++254712345678",
	"254+712345678",
	"(0712) 345678",
	"٠٧١٢٣٤٥٦٧٨",
	None,
	712345678.0,
	True,
]


@pytest.mark.parametrize("given, expected", PHONES_ACCEPTED)
def test_normalize_phone_accepts(given, expected):
	assert daraja.normalize_phone(given) == expected


@pytest.mark.parametrize("given", PHONES_REFUSED, ids=short_id)
def test_normalize_phone_refuses(given):
	with pytest.raises(daraja.ValidationError) as caught:
		daraja.normalize_phone(given)
	assert caught.value.field == "phone"
	assert str(caught.value).startswith("phone: ")


def test_validation_error_is_a_value_error_and_a_daraja_error():
	assert issubclass(daraja.ValidationError, ValueError)
	assert issubclass(daraja.ValidationError, daraja.DarajaError)


def test_timestamp_is_nairobi_time_whatever_the_zone():
	stamp = daraja.timestamp()
	assert re.fullmatch(r"\d{14}", stamp)
	nairobi = datetime.now(timezone(timedelta(hours=3))).replace(tzinfo=None)
	assert abs((datetime.strptime(stamp, "%Y%m%d%H%M%S") - nairobi).total_seconds()) < 5


def test_stk_password_matches_safaricoms_published_example():
	assert daraja.stk_password("174379", DEFAULT_PASSKEY, "20160216165627") == (
		"MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQyYzkxOTIwMTYwMjE2MTY1NjI3"
	)


@pytest.mark.parametrize(
	"args, field",
	[
		(("1743", DEFAULT_PASSKEY, "20160216165627"), "shortcode"),
		(("174379", "", "20160216165627"), "passkey"),
		(("174379", DEFAULT_PASSKEY, "2016021616562"), "timestamp"),
		(("174379", DEFAULT_PASSKEY, "2016021616562x"), "timestamp"),
		(("174379", DEFAULT_PASSKEY, None), "timestamp"),
	],
)
def test_stk_password_refuses(args, field):
	with pytest.raises(daraja.ValidationError) as caught:
		daraja.stk_password(*args)
	assert caught.value.field == field


# Each rule: (field, accepted values, refused values). Accepted ones must reach the sandbox.
RULES = [
	("amount", [1, 250000, 10.0, "100", "100.00", Decimal("5")], [0, -1, 10.5, "10.5", "1e3", "", True, None, [], float("nan"), 10**12]),
	("shortcode", ["12345", "1234567", 174379], ["1234", "12345678", "17437a", "", -174379, 17437.9, None, 10**5000]),
	("phone", ["0712345678", "+254 112 345 678"], ["0812345678", "12345", 7.5]),
	(
		"callback_url",
		["https://example.com/hooks/stk", "https://shop.example.co.ke:8443/api/method/pay.cb?k=v"],
		[
			"http://example.com/hooks/stk",
			"HTTPS://example.com/hooks/stk",
			"example.com/hooks/stk",
			"https://example.com/mpesa/stk",
			"https://example.com/M-PESA",
			"https://SAFARICOM.example.com/x",
			"https://example.com/run.exe",
			"https://example.com/exec/x",
			"https://example.com/cmd",
			"https://example.com/sql",
			"https://example.com/hooks?Query=1",
			"https://example.com/hooks stk",
			"https:///hooks",
			" https://example.com/hooks",
			"https://exämple.com/hooks",
			"",
		],
	),
	("account_reference", ["A", "123456789012", "Ké"], ["", "1234567890123", "a\nb", 12]),
	("description", ["P", "1234567890123"], ["", "12345678901234", "tab\there"]),
	("transaction_type", ["CustomerPayBillOnline"], ["CustomerPayBill", "", "customerpaybillonline"]),
	("timestamp", [None], ["2024010112000", "20240101120000x", "2024-01-01T12"]),
	("passkey", [DEFAULT_PASSKEY], ["", None, b"bytes", "nul\x00byte"]),
]
ACCEPTED = [(field, value) for field, good, _ in RULES for value in good]
REFUSED = [(field, value) for field, _, bad in RULES for value in bad]


@pytest.mark.parametrize("field, value", ACCEPTED)
def test_rule_accepts(client, sandbox, stk_args, field, value):
	assert client.stk_push(**{**stk_args, field: value})["ResponseCode"] == "0"
	assert sandbox.count(STK_PUSH) == 1


@pytest.mark.parametrize("field, value", REFUSED, ids=short_id)
def test_rule_refuses_before_any_request(client, sandbox, stk_args, field, value):
	with pytest.raises(daraja.ValidationError) as caught:
		client.stk_push(**{**stk_args, field: value})
	assert caught.value.field == field
	assert sandbox.count() == 0


@pytest.mark.parametrize(
	"url, word",
	[
		("https://example.com/a/QUERY", "query"),
		("https://example.com/sql/mpesa", "mpesa"),
		("https://example.com/Exec", "exe"),
		("https://example.com/x?c=CmD", "cmd"),
		("https://example.com/m-PeSa", "m-pesa"),
	],
)
def test_callback_url_error_names_the_first_banned_word_in_any_case(client, sandbox, stk_args, url, word):
	with pytest.raises(daraja.ValidationError, match=f"contains '{word}'"):
		client.stk_push(**{**stk_args, "callback_url": url})
	assert sandbox.count() == 0


@pytest.mark.parametrize("url", ["https://example.com/mpes", "https://example.com/quer", "https://ex.ample.com/e-x-e/sq"])
def test_callback_url_with_parts_of_banned_words_is_accepted(client, sandbox, stk_args, url):
	assert client.stk_push(**{**stk_args, "callback_url": url})["ResponseCode"] == "0"


def test_object_keys_read_again_are_the_same_keys():
	# The reader keeps plain keys up to 48 bytes and hands them out again; escaped, non-ASCII,
	# longer and colliding keys take the full path. Every reading must give the same dict.
	fields = {"TransID": "RKL51ZDR4F", "TransAmount": "5.00", "BusinessShortCode": "600966"}
	extra = {"Bill\u00e9Ref": "a", "K" * 48: 1, "K" * 49: 2, "": 3, "AB": 4, "BA": 5, "x\"y": 6}
	body = json.dumps({**fields, **extra}).encode()
	escaped = b'{"TransID":"RKL51ZDR4F","Trans\\u0041mount":"5.00","BusinessShortCode":"600966"}'
	for _ in range(3):
		got = daraja.parse_callback(body, "c2b_validation")
		assert {k: got[k] for k in extra} == extra
		assert daraja.parse_callback(escaped, "c2b_validation")["TransAmount"] == Decimal("5.00")


def test_buy_goods_without_till_is_refused(client, sandbox, stk_args):
	with pytest.raises(daraja.ValidationError) as caught:
		client.stk_push(**{**stk_args, "transaction_type": "CustomerBuyGoodsOnline"})
	assert caught.value.field == "party_b"
	assert sandbox.count() == 0


@pytest.mark.parametrize("value", ["1234", "till", 12.5])
def test_bad_party_b_is_refused(client, sandbox, stk_args, value):
	with pytest.raises(daraja.ValidationError) as caught:
		client.stk_push(**{**stk_args, "party_b": value})
	assert caught.value.field == "party_b"
	assert sandbox.count() == 0


@pytest.mark.parametrize("value", ["", "ws_CO_1 2", "ws_CO_\"x", "x" * 65, 5])
def test_bad_checkout_request_id_is_refused(client, sandbox, value):
	with pytest.raises(daraja.ValidationError) as caught:
		client.stk_query(shortcode=DEFAULT_SHORTCODE, passkey=DEFAULT_PASSKEY, checkout_request_id=value)
	assert caught.value.field == "checkout_request_id"
	assert sandbox.count() == 0


def test_missing_keyword_is_a_type_error(client, stk_args):
	del stk_args["amount"]
	with pytest.raises(TypeError, match="amount"):
		client.stk_push(**stk_args)


def test_positional_arguments_are_refused(client, stk_args):
	with pytest.raises(TypeError):
		client.stk_push(*stk_args.values())


@pytest.mark.parametrize(
	"kwargs, field",
	[
		({"base_url": "http://127.0.0.1:1"}, "base_url"),
		({"base_url": "ftp://example.com"}, "base_url"),
		({"base_url": "https://"}, "base_url"),
		({"base_url": "https://user@example.com"}, "base_url"),
		({"environment": "staging"}, "environment"),
		({"timeout": 0}, "timeout"),
		({"timeout": 5.0, "connect_timeout": 10.0}, "connect_timeout"),
		({"timeout": 10**400}, "timeout"),
		({"timeout": -(10**400)}, "timeout"),
		({"timeout": True}, "timeout"),
		({"timeout": float("nan")}, "timeout"),
		({"timeout": float("inf")}, "timeout"),
		({"timeout": "5"}, "timeout"),
		({"timeout": None}, "timeout"),
		({"connect_timeout": True}, "connect_timeout"),
		({"connect_timeout": 10**400}, "connect_timeout"),
		({"connect_timeout": float("nan")}, "connect_timeout"),
		({"consumer_key": ""}, "consumer_key"),
		({"consumer_key": "a:b"}, "consumer_key"),
		({"consumer_secret": ""}, "consumer_secret"),
		({"token_store": object()}, "token_store"),
		({"ca_file": "/nonexistent/ca.pem"}, "ca_file"),
	],
	ids=short_id,
)
def test_client_refuses_bad_settings(make_client, kwargs, field):
	with pytest.raises(daraja.ValidationError) as caught:
		make_client(**kwargs)
	assert caught.value.field == field


def test_environment_picks_safaricoms_host():
	assert daraja.Client("k", "s").base_url == "https://sandbox.safaricom.co.ke"
	assert daraja.Client("k", "s", environment="production").base_url == "https://api.safaricom.co.ke"
	assert daraja.Client("k", "s", base_url="https://127.0.0.1:9/").base_url == "https://127.0.0.1:9"


def test_timeouts_accept_ints_and_floats():
	assert daraja.Client("k", "s", timeout=5).timeout == 5.0
	assert daraja.Client("k", "s", timeout=2.5, connect_timeout=1).timeout == 2.5


# ---- hostile amounts ---------------------------------------------------------------
#
# Each runs in its own interpreter with a deadline, so a hang (an amount whose conversion
# holds the GIL for minutes) or a crash (unbounded recursion) fails one test, not the suite.

HOSTILE_PRELUDE = """
import sys
from decimal import Decimal
from fractions import Fraction
from frappe_mpesa import daraja

class RatioIsSelf:
	def as_integer_ratio(self):
		return self

class RatioOfSelf:
	def as_integer_ratio(self):
		return (self, 1)

class RatioOfHuge:
	def as_integer_ratio(self):
		return (10**5000, 1)

class RatioRaises:
	def as_integer_ratio(self):
		raise RuntimeError("no")

class IndexIsSelf:
	def __index__(self):
		return self

class IndexIsHuge:
	def __index__(self):
		return 10**5000

class DecimalRatioIsSelf(Decimal):
	def as_integer_ratio(self):
		return self
	def as_tuple(self):
		return self

client = daraja.Client("k", "s", base_url="https://127.0.0.1:9")
args = dict(shortcode="174379", passkey="p", phone="0712345678", callback_url="https://example.com/cb",
	account_reference="A", description="D")
"""

HOSTILE_AMOUNTS = [
	'Decimal("1E+999999999")',
	'Decimal("-1E+999999999")',
	'Decimal("1E-999999999")',
	'Decimal("9" * 100000)',
	'Decimal("NaN")',
	'Decimal("sNaN")',
	'Decimal("Infinity")',
	'Decimal("0.5")',
	'DecimalRatioIsSelf("1E+999999999")',
	'float("inf")',
	'float("nan")',
	"10**5000",
	"-(10**5000)",
	"True",
	"False",
	"RatioIsSelf()",
	"RatioOfSelf()",
	"RatioOfHuge()",
	"RatioRaises()",
	"IndexIsSelf()",
	"IndexIsHuge()",
	"Fraction(1, 3)",
	"Fraction(10**5000, 1)",
]


@pytest.mark.parametrize("amount", HOSTILE_AMOUNTS)
def test_hostile_amounts_end_fast_with_a_validation_error(amount):
	program = HOSTILE_PRELUDE + f"""
try:
	client.stk_push(amount={amount}, **args)
except daraja.ValidationError as error:
	print("field", error.field)
"""
	try:
		done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=20)
	except subprocess.TimeoutExpired:
		pytest.fail(f"amount={amount} still running after 20 s")
	assert done.returncode == 0, f"amount={amount}: exit {done.returncode}\n{done.stderr[-2000:]}"
	assert done.stdout.split() == ["field", "amount"]


@pytest.mark.parametrize(
	"amount", [Decimal("1E+2"), Decimal("100.000"), Decimal("1.00E+2"), Fraction(100, 1), 100.0, "100"]
)
def test_exact_whole_amounts_of_any_type_are_accepted(client, sandbox, stk_args, amount):
	assert client.stk_push(**{**stk_args, "amount": amount})["ResponseCode"] == "0"
	assert sandbox.requests[-1].json["Amount"] == 100


def test_an_integer_like_object_is_read_through_its_index(client, sandbox, stk_args):
	class Hundred:
		def __index__(self):
			return 100

	client.stk_push(**{**stk_args, "amount": Hundred()})
	assert sandbox.requests[-1].json["Amount"] == 100
