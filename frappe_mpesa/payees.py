"""A payout batch's payees: a CSV file's rows, and the B2B and tax fields, checked with the core's rules.

Plain Python (the C core through ``daraja``, no Frappe import). ``read_csv`` returns every row
typed, or raises PayeeError naming the row and the column of the first fault: a file is taken
whole or not at all. Columns: phone, amount, name, remarks (headings in any order and case; a
file without a header row is read in that order).
"""

import csv
import io
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from frappe_mpesa import daraja
from frappe_mpesa.file_rows import RowError

COLUMNS = ("phone", "amount", "name", "remarks")
ALIASES = {"phone": ("phone", "msisdn", "mobile", "phone number", "mpesa number"), "amount": ("amount", "kes"),
	"name": ("name", "payee", "full name"), "remarks": ("remarks", "remark", "description", "narration")}
MAX_ROWS = 10_000
# What each kind of payee row pays, and the Daraja CommandID it is sent with (tax: PayTaxToKRA,
# fixed by the core, as is KRA's shortcode).
B2C, PAYBILL, TILL, TAX = "B2C", "B2B Paybill", "B2B Till", "Tax"
KINDS = (B2C, PAYBILL, TILL, TAX)
B2B_COMMANDS = {PAYBILL: "BusinessPayBill", TILL: "BusinessBuyGoods"}
KRA_SHORTCODE = "572572"
# The core's limits: a shortcode is 5 to 7 digits; AccountReference at most 13 characters.
SHORTCODE = re.compile(r"[0-9]{5,7}")
PRN = re.compile(r"[0-9A-Za-z]{1,13}")
MAX_ACCOUNT_REFERENCE = 13
MAX_BYTES = 2 * 1024 * 1024


class PayeeError(RowError):
	"""A fault in a payee file (see RowError)."""


@dataclass(frozen=True)
class Payee:
	row: int
	phone: str  # 2547XXXXXXXX / 2541XXXXXXXX
	amount: int  # whole shillings
	name: str
	remarks: str


def whole_shillings(value, minimum=10, maximum=250_000):
	"""``value`` as whole shillings within [minimum, maximum]; ValueError saying why."""
	text = str(value if value is not None else "").replace(",", "").strip()
	try:
		number = Decimal(text)
	except InvalidOperation:
		raise ValueError(f"{text!r} is not an amount") from None
	if not number.is_finite() or number.adjusted() > 12:
		raise ValueError(f"{text!r} is not an amount")
	if number != number.to_integral_value():
		raise ValueError(f"{text} is not a whole number of shillings")
	if not minimum <= number <= maximum:
		raise ValueError(f"{int(number)} is outside {minimum}..{maximum}")
	return int(number)


def shortcode(value):
	"""A paybill or till number as the core sends it (5 to 7 digits); ValueError saying why."""
	text = str(value if value is not None else "").strip()
	if not text:
		raise ValueError("is not set")
	if not SHORTCODE.fullmatch(text):
		raise ValueError(f"{text!r} is not a paybill or till number (5 to 7 digits)")
	return text


def account_reference(value, required):
	"""The account at a paybill: 1 to 13 characters, as Daraja's AccountReference takes; None when
	not ``required`` and empty; ValueError saying why."""
	text = str(value if value is not None else "").strip()
	if not text:
		if required:
			raise ValueError("is required to pay a paybill")
		return None
	if len(text) > MAX_ACCOUNT_REFERENCE:
		raise ValueError(f"is longer than {MAX_ACCOUNT_REFERENCE} characters")
	if any(ord(c) < 32 for c in text):
		raise ValueError("has control characters")
	return text


def prn(value):
	"""A KRA Payment Registration Number: letters and digits only (KRA issues them as digits), 1 to
	13 characters, the core's bound for the AccountReference it is sent in; ValueError saying why."""
	text = str(value if value is not None else "").strip().upper()
	if not text:
		raise ValueError("is not set: enter the PRN KRA issued for this payment")
	if not PRN.fullmatch(text):
		raise ValueError(f"{text!r} is not a KRA PRN (letters and digits, at most 13)")
	return text


def _header(cells):
	keys = [str(c or "").strip().lower() for c in cells]
	found = {}
	for name, aliases in ALIASES.items():
		for i, key in enumerate(keys):
			if key in aliases:
				found[name] = i
	return found if "phone" in found and "amount" in found else None


def read_csv(content, minimum=10, maximum=250_000, remarks_default="Payment"):
	"""The payees of a CSV file; PayeeError (row, column) at the first bad row."""
	if len(content) > MAX_BYTES:
		raise PayeeError(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
	try:
		text = content.decode("utf-8-sig")
	except UnicodeDecodeError:
		text = content.decode("cp1252", errors="replace")
	rows = list(csv.reader(io.StringIO(text)))
	if not rows:
		raise PayeeError("the file is empty")
	columns = _header(rows[0])
	start = 2 if columns else 1
	if columns is None:
		columns = {name: i for i, name in enumerate(COLUMNS)}
	else:
		rows = rows[1:]
	payees = []
	for number, cells in enumerate(rows, start=start):
		if not any(str(c).strip() for c in cells):
			continue
		if len(payees) >= MAX_ROWS:
			raise PayeeError(f"more than {MAX_ROWS} payees in one file", number)

		def cell(name):
			i = columns.get(name)
			return cells[i].strip() if i is not None and i < len(cells) else ""

		try:
			phone = daraja.normalize_phone(cell("phone"))
		except daraja.ValidationError as e:
			raise PayeeError(f"{cell('phone')!r} is not a Kenyan mobile number ({e})", number, "phone") from None
		try:
			amount = whole_shillings(cell("amount"), minimum, maximum)
		except ValueError as e:
			raise PayeeError(str(e), number, "amount") from None
		remarks = cell("remarks") or remarks_default
		if not 2 <= len(remarks) <= 100:
			raise PayeeError("must be 2 to 100 characters", number, "remarks")
		name = cell("name")
		if len(name) > 140:
			raise PayeeError("is longer than 140 characters", number, "name")
		payees.append(Payee(number, phone, amount, name, remarks))
	if not payees:
		raise PayeeError("the file has no payees")
	return payees
