"""Reading the M-Pesa organisation portal's statement: CSV and XLSX files the tests make."""

import csv
import io
from datetime import datetime
from decimal import Decimal

import pytest

from frappe_mpesa import statement
from frappe_mpesa.statement import NAIROBI, StatementError, classify, parse

HEADER = [
	"Receipt No.", "Completion Time", "Initiation Time", "Details", "Transaction Status", "Paid In",
	"Withdrawn", "Balance", "Balance Confirmed", "Reason Type", "Other Party Info", "Linked Transaction ID",
	"A/C No.",
]
ABOUT = [
	["Account Holder:", "600000 - Test Shop Ltd"],
	["Short Code:", "600000"],
	["Account:", "Utility Account"],
	["Time Period:", "01-12-2026 00:00:00 - 01-12-2026 23:59:59"],
	["Operator:", "TESTOP"],
	[],
]


def receipt(i):
	"""A receipt number shaped like M-Pesa's: 10 capital letters and digits."""
	alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
	digits = []
	for _ in range(7):
		i, r = divmod(i, len(alphabet))
		digits.append(alphabet[r])
	return "SL1" + "".join(reversed(digits))


def portal_rows(n, start=0):
	rows = []
	for i in range(start, start + n):
		paid = f"{100 + i:,}.00"
		when = f"2026-12-01 {8 + i // 3600 % 12:02d}:{i // 60 % 60:02d}:{i % 60:02d}"
		rows.append([
			receipt(i), when, when, f"Pay Bill Online from 2547****{i % 1000:03d} - CUSTOMER {i} Acc. INV-{i}",
			"Completed", paid, "", f"{50000 + i}.00", "true", "Pay Bill Online",
			f"2547****{i % 1000:03d} - CUSTOMER {i}", "", f"INV-{i}",
		])
	return rows


def csv_file(rows, about=ABOUT, header=HEADER):
	out = io.StringIO()
	writer = csv.writer(out)
	for line in [*about, header, *rows]:
		writer.writerow(line)
	return out.getvalue().encode("utf-8-sig")


def xlsx_file(rows, about=ABOUT, header=HEADER):
	import openpyxl

	book = openpyxl.Workbook()
	sheet = book.active
	for line in [*about, header, *rows]:
		sheet.append(line)
	out = io.BytesIO()
	book.save(out)
	return out.getvalue()


def test_a_portal_csv_is_read_whole_with_typed_fields():
	data = csv_file(portal_rows(3))
	result = parse(data, "statement.csv")
	assert (result.shortcode, result.account) == ("600000", "Utility Account")
	assert len(result.rows) == 3 and len(result.sha256) == 64
	first = result.rows[0]
	assert first.row == len(ABOUT) + 2  # the file's own row number
	assert first.receipt == receipt(0)
	assert first.completed_at == datetime(2026, 12, 1, 8, 0, 0, tzinfo=NAIROBI)
	assert first.paid_in == Decimal("100.00") and first.withdrawn == Decimal(0)
	assert first.balance == Decimal("50000.00")
	assert (first.payer_phone, first.payer_name, first.account_no) == ("2547****000", "CUSTOMER 0", "INV-0")
	assert classify(first) == (True, "")


def test_thousands_separators_and_day_first_dates():
	rows = portal_rows(1)
	rows[0][1] = "01-12-2026 14:05:09"
	rows[0][5] = "1,500.50"
	row = parse(csv_file(rows)).rows[0]
	assert row.paid_in == Decimal("1500.50")
	assert row.completed_at == datetime(2026, 12, 1, 14, 5, 9, tzinfo=NAIROBI)


def test_xlsx_with_date_cells_reads_like_the_csv():
	rows = portal_rows(5)
	for r in rows:
		r[1] = datetime.strptime(r[1], "%Y-%m-%d %H:%M:%S")
	from_xlsx = parse(xlsx_file(rows), "statement.xlsx")
	from_csv = parse(csv_file(portal_rows(5)))
	assert [(r.receipt, r.completed_at, r.paid_in) for r in from_xlsx.rows] == [
		(r.receipt, r.completed_at, r.paid_in) for r in from_csv.rows
	]


@pytest.mark.parametrize(
	"column, value, message",
	[
		(0, "SHORT", "row 13, column 'Receipt No.': 'SHORT' is not an M-Pesa receipt"),
		(1, "yesterday", "row 13, column 'Completion Time': 'yesterday' is not a date"),
		(1, "", "row 13, column 'Completion Time': is empty"),
		(5, "12a.00", "row 13, column 'Paid In': '12a.00' is not an amount"),
		(5, "-5.00", "row 13, column 'Paid In': -5.00 is negative"),
		(6, "1e99999", "row 13, column 'Withdrawn': '1e99999' is not an amount"),
		(4, "", "row 13, column 'Transaction Status': is empty"),
	],
)
def test_a_malformed_row_names_its_row_and_column_and_nothing_is_returned(column, value, message):
	rows = portal_rows(10)
	rows[5][column] = value  # the sixth data row: file row 6 (about) + 1 (header) + 6
	with pytest.raises(StatementError) as caught:
		parse(csv_file(rows))
	assert str(caught.value).startswith(message)
	assert caught.value.row == 13


def test_the_same_receipt_paid_in_twice_is_a_fault_but_a_charge_line_is_not():
	rows = portal_rows(2)
	charge = list(rows[0])
	charge[5], charge[6], charge[3] = "", "-5.00", "Pay Bill Charge"
	result = parse(csv_file([*rows, charge]))
	assert classify(result.rows[2]) == (False, "not a payment in (withdrawn 5.00)")
	with pytest.raises(StatementError, match="paid in twice"):
		parse(csv_file([*rows, rows[0]]))


def test_rows_that_are_not_completed_payments_in_are_skipped_with_a_reason():
	rows = portal_rows(2)
	rows[1][4] = "Failed"
	result = parse(csv_file(rows))
	assert classify(result.rows[1]) == (False, "status is Failed")


@pytest.mark.parametrize(
	"data, message",
	[
		(b"", "no header row"),
		(b"just,some,text\n1,2,3\n", "no header row"),
		(b"Receipt No.,Completion Time\nA,B\n", "lacks Transaction Status, Paid In, Withdrawn"),
		(b"\x00\x01\x02", "NUL"),
		(b"PK\x03\x04 not really a zip", "not a readable XLSX"),
	],
)
def test_files_that_are_not_statements(data, message):
	with pytest.raises(StatementError, match=message):
		parse(data, "upload")


def test_blank_lines_are_ignored_and_the_hash_identifies_the_file():
	data = csv_file([*portal_rows(2), [], ["", ""]])
	a, b = parse(data), parse(data)
	assert len(a.rows) == 2 and a.sha256 == b.sha256
	assert parse(csv_file(portal_rows(3))).sha256 != a.sha256


def test_semicolon_separated_copies_are_read_too():
	text = csv_file(portal_rows(2)).decode("utf-8-sig").replace(",", ";")
	# the amounts' thousands separators became ';' too in this crude copy: use plain amounts
	assert len(parse(text.encode()).rows) == 2


def test_ten_thousand_rows_parse():
	result = parse(csv_file(portal_rows(10_000)))
	assert len(result.rows) == 10_000
	assert len({r.receipt for r in result.rows}) == 10_000


def test_oversized_input_is_refused_before_parsing(monkeypatch):
	monkeypatch.setattr(statement, "MAX_BYTES", 100)
	with pytest.raises(StatementError, match="larger than"):
		parse(csv_file(portal_rows(5)))
