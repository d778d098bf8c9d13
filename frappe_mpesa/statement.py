"""The statement a shop downloads from the M-Pesa organisation portal, read row by row.

Plain Python (no Frappe import). ``parse`` takes the file's bytes (CSV, or XLSX through
openpyxl) and returns every row typed, or raises StatementError naming the row and the column of
the first fault: a file is taken whole or not at all. ``classify`` says what the import does
with a row: register it as a collection, or why it is skipped.

The portal's export has a few lines about the account (Account Holder, Short Code, Time Period...)
above a header row with columns such as Receipt No., Completion Time, Initiation Time, Details,
Transaction Status, Paid In, Withdrawn, Balance, Balance Confirmed, Reason Type, Other Party Info,
Linked Transaction ID and A/C No. Times are Nairobi's, as YYYY-MM-DD HH:MM:SS or
DD-MM-YYYY HH:MM:SS (or date cells in XLSX); amounts may carry thousands separators.
"""

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from frappe_mpesa.file_rows import RowError

NAIROBI = timezone(timedelta(hours=3), "EAT")
MAX_BYTES = 20 * 1024 * 1024
MAX_ROWS = 200_000

# Our name for each column, and the headings the portal (and hand-edited copies) use for it.
COLUMNS = {
	"receipt": ("receipt no", "receipt", "receipt number", "transaction id"),
	"completed_at": ("completion time", "completed time", "completion date"),
	"initiated_at": ("initiation time",),
	"details": ("details", "description"),
	"status": ("transaction status", "status"),
	"paid_in": ("paid in", "credit"),
	"withdrawn": ("withdrawn", "withdrawal", "debit"),
	"balance": ("balance",),
	"reason_type": ("reason type",),
	"other_party": ("other party info", "other party"),
	"linked": ("linked transaction id",),
	"account_no": ("a/c no", "ac no", "account no", "account number"),
}
REQUIRED = ("receipt", "completed_at", "status", "paid_in", "withdrawn")
HEADINGS = {"receipt": "Receipt No.", "completed_at": "Completion Time", "initiated_at": "Initiation Time",
	"status": "Transaction Status", "paid_in": "Paid In", "withdrawn": "Withdrawn", "balance": "Balance",
	"details": "Details", "reason_type": "Reason Type", "other_party": "Other Party Info",
	"linked": "Linked Transaction ID", "account_no": "A/C No."}
_RECEIPT = re.compile(r"^[A-Z0-9]{10}$")
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%d-%m-%Y %H:%M:%S", "%d/%m/%Y %H:%M:%S", "%Y-%m-%d %H:%M", "%d-%m-%Y %H:%M")


class StatementError(RowError):
	"""A fault in a statement file (see RowError)."""


@dataclass(frozen=True)
class StatementRow:
	row: int  # the row number in the file
	receipt: str
	completed_at: datetime
	initiated_at: datetime | None
	details: str
	status: str
	paid_in: Decimal
	withdrawn: Decimal
	balance: Decimal | None
	reason_type: str
	other_party: str
	account_no: str

	@property
	def payer_phone(self):
		"""The phone part of Other Party Info ("2547****678 - JOHN DOE"), masked as given."""
		return _split_party(self.other_party)[0]

	@property
	def payer_name(self):
		return _split_party(self.other_party)[1]


@dataclass
class Statement:
	sha256: str
	shortcode: str = ""
	account: str = ""
	period: str = ""
	rows: list = field(default_factory=list)


def _split_party(text):
	phone, sep, name = (text or "").partition(" - ")
	if not sep:
		return ("", text.strip()) if not re.match(r"^[\d*+]{6,}$", (text or "").strip()) else (text.strip(), "")
	return phone.strip(), name.strip()


def _heading_key(value):
	return re.sub(r"[\s.:]+", " ", str(value or "")).strip().lower()


def _find_columns(cells):
	"""{our name: index} when ``cells`` is the header row, else None."""
	keys = [_heading_key(c) for c in cells]
	found = {}
	for name, headings in COLUMNS.items():
		for i, key in enumerate(keys):
			if key in headings and name not in found:
				found[name] = i
	return found if "receipt" in found and "completed_at" in found else None


def _rows_of(content, filename):
	"""The file's rows as lists of cell values (str, or datetime/number for XLSX)."""
	name = (filename or "").lower()
	if name.endswith((".xlsx", ".xlsm")) or content[:4] == b"PK\x03\x04":
		try:
			import openpyxl
		except ImportError as e:
			raise StatementError("reading XLSX needs openpyxl (pip install openpyxl)") from e
		try:
			book = openpyxl.load_workbook(io.BytesIO(content), read_only=True, data_only=True)
		except Exception as e:  # openpyxl raises many types for a damaged file
			raise StatementError(f"not a readable XLSX file ({type(e).__name__})") from e
		sheet = book.worksheets[0]
		return [list(r) for r in sheet.iter_rows(values_only=True)]
	for encoding in ("utf-8-sig", "cp1252"):
		try:
			text = content.decode(encoding)
			break
		except UnicodeDecodeError:
			continue
	if "\x00" in text:
		raise StatementError("not a CSV file (it holds NUL bytes)")
	return list(csv.reader(io.StringIO(text), delimiter=_delimiter(text)))


def _delimiter(text):
	"""The separator of the header row (the line naming the receipt column): ',', ';' or a tab.
	The lines above it hold fewer fields, which throws csv.Sniffer off."""
	for line in text.splitlines()[:50]:
		if "receipt" in line.lower():
			return max(",;\t", key=line.count)
	return ","


def _text(value):
	if value is None:
		return ""
	if isinstance(value, float) and value.is_integer():
		value = int(value)
	return str(value).strip()


def _time(value, row, column, required):
	if isinstance(value, datetime):
		return value.replace(tzinfo=NAIROBI) if value.tzinfo is None else value.astimezone(NAIROBI)
	text = _text(value)
	if not text:
		if required:
			raise StatementError("is empty", row, column)
		return None
	for fmt in _TIME_FORMATS:
		try:
			return datetime.strptime(text, fmt).replace(tzinfo=NAIROBI)
		except ValueError:
			continue
	raise StatementError(f"{text!r} is not a date and time (YYYY-MM-DD HH:MM:SS)", row, column)


def _amount(value, row, column):
	text = _text(value).replace(",", "").replace("KES", "").replace("Ksh", "").strip()
	if not text:
		return Decimal(0)
	try:
		number = Decimal(text)
	except InvalidOperation:
		raise StatementError(f"{_text(value)!r} is not an amount", row, column) from None
	if not number.is_finite() or number.adjusted() > 12:
		raise StatementError(f"{_text(value)!r} is not an amount", row, column)
	return number.quantize(Decimal("0.01"))


def _about(rows, upto):
	"""The account lines above the header: Short Code, Account, Time Period."""
	facts = {}
	for cells in rows[:upto]:
		texts = [_text(c) for c in cells if _text(c)]
		if len(texts) >= 2 and texts[0].endswith(":"):
			facts[texts[0][:-1].strip().lower()] = texts[1]
	return facts


def parse(content, filename=""):
	"""Every row of a portal statement, typed; StatementError (row, column) at the first fault."""
	if len(content) > MAX_BYTES:
		raise StatementError(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
	rows = _rows_of(content, filename)
	if len(rows) > MAX_ROWS:
		raise StatementError(f"the file has more than {MAX_ROWS} rows")
	header_at, columns = None, None
	for i, cells in enumerate(rows[:50]):
		columns = _find_columns(cells)
		if columns:
			header_at = i
			break
	if columns is None:
		raise StatementError("no header row with 'Receipt No.' and 'Completion Time' in the first 50 rows")
	missing = [HEADINGS[name] for name in REQUIRED if name not in columns]
	if missing:
		raise StatementError(f"the header row lacks {', '.join(missing)}", header_at + 1)
	about = _about(rows, header_at)
	statement = Statement(
		sha256=hashlib.sha256(content).hexdigest(),
		shortcode=about.get("short code", ""),
		account=about.get("account", ""),
		period=about.get("time period", ""),
	)
	width = max(columns.values()) + 1
	seen_paid_in = {}
	for i, cells in enumerate(rows[header_at + 1 :], start=header_at + 2):
		if not any(_text(c) for c in cells):
			continue
		cells = list(cells) + [None] * (width - len(cells))

		def cell(name):
			return cells[columns[name]] if name in columns else None

		receipt = _text(cell("receipt")).upper()
		if not _RECEIPT.match(receipt):
			raise StatementError(f"{_text(cell('receipt'))!r} is not an M-Pesa receipt (10 letters and digits)",
				i, HEADINGS["receipt"])
		status = _text(cell("status"))
		if not status:
			raise StatementError("is empty", i, HEADINGS["status"])
		parsed = StatementRow(
			row=i,
			receipt=receipt,
			completed_at=_time(cell("completed_at"), i, HEADINGS["completed_at"], True),
			initiated_at=_time(cell("initiated_at"), i, HEADINGS["initiated_at"], False),
			details=_text(cell("details")),
			status=status,
			paid_in=_amount(cell("paid_in"), i, HEADINGS["paid_in"]),
			withdrawn=_amount(cell("withdrawn"), i, HEADINGS["withdrawn"]),
			balance=_amount(cell("balance"), i, HEADINGS["balance"]) if "balance" in columns and _text(cell("balance")) else None,
			reason_type=_text(cell("reason_type")),
			other_party=_text(cell("other_party")),
			account_no=_text(cell("account_no")),
		)
		if parsed.paid_in < 0:
			raise StatementError(f"{parsed.paid_in} is negative", i, HEADINGS["paid_in"])
		if parsed.paid_in > 0:
			if receipt in seen_paid_in:
				raise StatementError(f"receipt {receipt} is paid in twice (also on row {seen_paid_in[receipt]})",
					i, HEADINGS["receipt"])
			seen_paid_in[receipt] = i
		statement.rows.append(parsed)
	return statement


def classify(row):
	"""(True, "") for a completed payment into the shortcode, which the import registers;
	otherwise (False, why it is skipped)."""
	if row.status.lower() != "completed":
		return False, f"status is {row.status}"
	if row.paid_in <= 0:
		return False, "not a payment in" + (f" (withdrawn {abs(row.withdrawn)})" if row.withdrawn else "")
	return True, ""
